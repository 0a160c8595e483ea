"""lamina: does what each layer of a causal LM writes differ between the tokens
it predicts right and the tokens it predicts wrong?

The public API is re-exported here; see the submodules for details.
"""

from lamina.errors import LaminaError

__version__ = "0.1.0"

__all__ = ["LaminaError", "__version__"]
