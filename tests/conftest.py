"""Session-wide fixtures.

The embedded SmolLM2 and the pre-seeded Alice are loaded once per session and
shared by every slow test. Tiny random-init models for the architecture
families live in ``tests/tiny_models.py``.
"""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def embedded():
    """The embedded default model (SmolLM2-135M-Instruct Q4_1), loaded once."""
    from lamina.sources import load_model

    return load_model("smollm2-135m", device="cpu", progress=False)


@pytest.fixture(scope="session")
def alice():
    """Alice's Adventures in Wonderland from the pre-seeded cache, boilerplate stripped."""
    from lamina.sources import load_text

    return load_text("gutenberg:11")
