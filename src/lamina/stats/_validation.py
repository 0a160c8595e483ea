"""Argument checks shared by the statistics modules.

Each check raises :class:`lamina.errors.InputError` with one sentence that
names the bad value and says what to do.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from lamina.errors import InputError


def as_finite_1d(values, name: str, *, min_size: int = 1) -> np.ndarray:
    """``values`` as a 1-D float64 array of finite numbers with at least ``min_size`` entries."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be an array of numbers ({exc}); pass a 1-D array.") from exc
    if arr.ndim != 1:
        raise InputError(f"{name} has shape {arr.shape}; pass a 1-D array.")
    if arr.size < min_size:
        raise InputError(
            f"{name} has {arr.size} value(s) but at least {min_size} are needed; pass more data."
        )
    check_finite(arr, name)
    return arr


#: Rows checked at once by :func:`check_finite` (its memory does not grow with the data).
FINITE_CHUNK_ROWS = 2**16


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise if ``arr`` (at least 1-D) holds NaN or +-inf, naming how many and the first position."""
    clean = all(
        np.isfinite(arr[start : start + FINITE_CHUNK_ROWS]).all()
        for start in range(0, arr.shape[0], FINITE_CHUNK_ROWS)
    )
    if not clean:
        finite = np.isfinite(arr)
        bad = np.argwhere(~finite)
        first = tuple(int(i) for i in bad[0])
        where = first[0] if len(first) == 1 else first
        raise InputError(
            f"{name} holds {bad.shape[0]} non-finite value(s) (NaN or inf), the first at "
            f"index {where}; drop or impute them first (a zero norm has log -inf)."
        )


def as_values_matrix(values, name: str = "values") -> np.ndarray:
    """``values`` of shape (n,) or (n, L) as a finite float64 (n, L) array."""
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(
            f"{name} must be an array of numbers ({exc}); pass (n,) or (n, L)."
        ) from exc
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[1] == 0:
        raise InputError(f"{name} has shape {arr.shape}; pass shape (n_tokens,) or (n_tokens, L).")
    check_finite(arr, name)
    return arr


def as_labels(labels, n: int) -> np.ndarray:
    """Boolean labels of length ``n`` with at least two members in each group."""
    arr = np.asarray(labels)
    if arr.dtype != np.bool_:
        raise InputError(
            f"labels have dtype {arr.dtype}, not bool; pass a boolean array "
            "(True = correct = the first group), e.g. labels.astype(bool)."
        )
    if arr.ndim != 1 or arr.size != n:
        raise InputError(
            f"labels have shape {arr.shape} but values have {n} rows; pass one label per row."
        )
    n_true = int(arr.sum())
    n_false = n - n_true
    if n_true < 2 or n_false < 2:
        raise InputError(
            f"the groups have {n_true} (True) and {n_false} (False) member(s); each needs at "
            "least 2: use more tokens."
        )
    return arr


def check_group(values, name: str, *, min_size: int = 2) -> np.ndarray:
    """One sample of a two-sample statistic: finite, 1-D, at least ``min_size`` values."""
    return as_finite_1d(values, name, min_size=min_size)


def check_bin_count(bins) -> int:
    """An integer number of BINS (not edges), at least 2."""
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral):
        raise InputError(
            f"bins={bins!r} is not a whole number or a rule name; pass a bin count >= 2 "
            "(bins, not edges) or a rule such as 'fd' or 'knuth'."
        )
    if bins < 2:
        raise InputError(
            f"bins={bins} is too few; pass a bin count of at least 2 (bins, not edges)."
        )
    return int(bins)


def check_positive_int(value, name: str, *, minimum: int = 1) -> int:
    """A whole number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name}={value!r} is invalid; pass a whole number >= {minimum}.")
    return int(value)


def log_base_divisor(base) -> float:
    """The divisor that converts nats into units of ``base`` (None or e: nats, 2: bits)."""
    if base is None:
        return 1.0
    if isinstance(base, bool) or not isinstance(base, numbers.Real):
        raise InputError(f"base={base!r} is not a number; pass None (nats), 2 (bits) or 10.")
    b = float(base)
    if not math.isfinite(b) or b <= 0 or b == 1:
        raise InputError(
            f"base={base!r} is not a valid logarithm base; pass None (nats) or 2 (bits)."
        )
    return math.log(b)


def check_seed(seed) -> int:
    """A non-negative integer seed (recorded in every output)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise InputError(f"seed={seed!r} is invalid; pass a non-negative whole number.")
    return int(seed)


def check_pseudocount(pseudocount) -> float:
    if isinstance(pseudocount, bool) or not isinstance(pseudocount, numbers.Real):
        raise InputError(f"pseudocount={pseudocount!r} is not a number; pass e.g. 0.5 or 0.")
    c = float(pseudocount)
    if not math.isfinite(c) or c < 0:
        raise InputError(f"pseudocount={pseudocount!r} is invalid; pass a finite number >= 0.")
    return c
