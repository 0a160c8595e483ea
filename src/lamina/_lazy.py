"""Lazy package namespaces: a name is imported from its module on first use.

Every lamina package ``__init__`` re-exports its public names through
:func:`lazy_exports`, so ``import lamina.stats`` (or ``from lamina.capture import
SITES``) imports only the module that defines the name asked for, and torch,
transformers, scipy and matplotlib load only with the part that needs them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` re-exporting ``{name: module}`` lazily.

    ``module`` is a module path relative to ``package`` (``".permutation"``) or absolute.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module, package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__
