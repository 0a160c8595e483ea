"""lamina.backends: where the permutation engine's exact count products run, and why.

The permutation engine (:mod:`lamina.stats.permutation`) reduces every
histogram statistic to one product per block of labellings: labels (rows x
tokens, 0/1) times the one-hot bin matrix of all columns (tokens x total bins),
an exact integer count. This package runs that product on numpy's float32 BLAS,
torch's float32 or int8 product on the CPU, or torch on a CUDA device
(:mod:`~lamina.backends.products`), in tiles of tokens and groups of columns
(:mod:`~lamina.backends.counts`); every backend gives the same counts. Which one
runs is chosen by argument, environment or a cached measurement
(:mod:`~lamina.backends.choice`, :mod:`~lamina.backends.autotune`).

It is the only place below the pipeline, besides capture, that may use torch,
imported lazily and only when a torch backend is considered, so
:mod:`lamina.stats` stays pure numpy and scipy.
"""

from lamina._lazy import lazy_exports

_EXPORTS = {
    "ALIASES": ".choice",
    "AUTO_TORCH_MIN_WORK": ".choice",
    "BACKENDS": ".choice",
    "ENVIRONMENT": ".choice",
    "Choice": ".choice",
    "check_backend": ".choice",
    "choose_backend": ".choice",
    "OneHotCounts": ".counts",
    "NAMES": ".products",
    "available": ".products",
    "torch_int_mm_available": ".products",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
