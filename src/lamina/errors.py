"""lamina's user-facing errors.

Every mistake a user can make (a bad path, an unknown site, an empty text, an
unreachable model) raises a subclass of :class:`LaminaError` whose message is
one sentence saying what went wrong and what to do. The CLI prints that
sentence and exits with status 2; ``--debug`` shows the traceback instead.
Programming errors are not LaminaErrors and keep their tracebacks.
"""

from __future__ import annotations


class LaminaError(Exception):
    """Base class of every error caused by user input or the environment."""

    exit_code = 2


class InputError(LaminaError, ValueError):
    """An argument or option has a value lamina cannot use."""


class ModelLoadError(LaminaError):
    """A model spec cannot be resolved, fetched or loaded."""


class TextLoadError(LaminaError):
    """A text spec cannot be resolved, fetched or decoded."""


class CaptureError(LaminaError):
    """Activations cannot be captured as asked (unknown site, bad window, ...)."""


class TableError(LaminaError):
    """A token table is missing, malformed or inconsistent with the options."""


class OutputError(LaminaError):
    """An output path cannot be written."""


class ExtractionInterrupted(LaminaError):
    """Extraction stopped on request (SIGINT) after saving every finished shard."""

    exit_code = 130
