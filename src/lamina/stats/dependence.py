"""Serial dependence of token series: autocorrelation, effective tokens, block length.

Every function takes the tokens in *series order* (a
:class:`~lamina.stats.shifts.ShiftLayout`: windows or documents one after the
other, text order inside each), and never pairs tokens of different series.

- :func:`autocorrelation`: per column, the lag-``k`` autocorrelation within
  series, ``sum_t (x_t - m)(x_{t+k} - m) / sum_t (x_t - m)^2`` over the pairs
  that lie in one series (``m`` the overall mean): the standard estimator
  (Box & Jenkins), pooled over series.
- :func:`effective_tokens`: how many independent tokens a correlation of two
  independent series is worth. Bartlett (1935): the variance of the sample
  cross-correlation of two independent stationary series is
  ``(1 + 2 sum_k rho_x(k) rho_y(k)) / n``, so ``n_eff = n / (1 + 2 sum_k w_k
  rho_x(k) rho_y(k))`` with a Bartlett taper ``w_k = 1 - k / (K + 1)`` over
  ``K`` lags (the taper keeps the estimate non-negative in practice and damps
  the noise of high lags).
- :func:`block_length`: the block length of a block bootstrap of a mean of
  ``z_t`` (a product of residuals), Politis & White (2004, with Patton, Politis
  & White's 2009 correction) for the circular block bootstrap:
  ``b = (2 G^2 / D)^(1/3) n^(1/3)``, ``G = sum_k lambda(k/M) |k| gamma(k)``,
  ``D = (4/3) g(0)^2``, ``g(0) = sum_k lambda(k/M) gamma(k)`` with the flat-top
  lag window ``lambda`` and ``M = 2 m``, ``m`` the first lag after which
  ``K_n = 5`` autocorrelations in a row are below ``2 sqrt(log10(n) / n)``.
  At least ``n^(1/3)``, at most the median series length.
"""

from __future__ import annotations

import math

import numpy as np

from lamina.stats.shifts import ShiftLayout

#: Lags reported per column (results.json, layers.csv).
REPORTED_LAGS = 5
#: Lags summed for the effective number of tokens.
ESS_LAGS = 20


def autocorrelation(values, layout: ShiftLayout, max_lag: int) -> np.ndarray:
    """Lag-1 .. ``max_lag`` autocorrelations within series: (max_lag, L) (NaN where undefined).

    ``values``: (n,) or (n, L) in series order.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    centred = x - x.mean(axis=0)
    denom = (centred**2).sum(axis=0)
    out = np.full((max_lag, x.shape[1]), np.nan)
    series = np.repeat(np.arange(layout.n_series), layout.sizes)
    for lag in range(1, max_lag + 1):
        if lag >= x.shape[0]:
            break
        same = series[lag:] == series[:-lag]  # token t and t + lag lie in one series
        if not same.any():
            continue
        # the pairs' products summed without copying the pairs out (a boolean index of an
        # (n, L) array per lag was most of a 40,000-token table's analysis)
        products = np.einsum("i,ij,ij->j", same.astype(np.float64), centred[lag:], centred[:-lag])
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lag - 1] = products / denom
    return out


def effective_tokens(acf_x: np.ndarray, acf_y: np.ndarray, n_tokens: int) -> np.ndarray:
    """Bartlett's effective number of tokens of a correlation of ``x`` (per column) with ``y``.

    ``acf_x`` (K, L), ``acf_y`` (K,) or (K, 1): autocorrelations at lags 1..K.
    Returns (L,), at most ``n_tokens``.
    """
    ax = np.nan_to_num(np.asarray(acf_x, dtype=np.float64))
    ay = np.nan_to_num(np.asarray(acf_y, dtype=np.float64)).reshape(-1, 1)
    k = ax.shape[0]
    taper = (1.0 - np.arange(1, k + 1) / (k + 1))[:, None]
    inflation = 1.0 + 2.0 * (taper * ax * ay).sum(axis=0)
    return n_tokens / np.maximum(inflation, 1.0)


def _flat_top(t: np.ndarray) -> np.ndarray:
    """Politis & Romano's trapezoidal flat-top lag window."""
    a = np.abs(t)
    return np.where(a <= 0.5, 1.0, np.where(a <= 1.0, 2.0 * (1.0 - a), 0.0))


def block_length(z, layout: ShiftLayout) -> int:
    """Politis-White block length for the mean of each column of ``z`` (the largest over
    columns), in tokens (module docstring)."""
    x = np.asarray(z, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    n = x.shape[0]
    floor = max(1, math.ceil(n ** (1.0 / 3.0)))
    ceiling = max(floor, int(np.median(layout.sizes)))
    max_lag = int(min(max(2 * math.sqrt(n), 10), n - 1, 200))
    if max_lag < 2:
        return min(floor, ceiling)
    rho = autocorrelation(x, layout, max_lag)  # (max_lag, L)
    gamma0 = x.var(axis=0)
    threshold = 2.0 * math.sqrt(math.log10(max(n, 10)) / n)
    best = floor
    for j in range(x.shape[1]):
        r = np.nan_to_num(rho[:, j])
        small = np.abs(r) < threshold
        run = 5
        m = max_lag
        for lag in range(max_lag - run + 1):
            if small[lag : lag + run].all():
                m = lag  # lags 1..lag are the significant ones
                break
        big_m = min(2 * max(m, 1), max_lag)
        lags = np.arange(1, big_m + 1)
        weights = _flat_top(lags / big_m)
        gamma = r[:big_m] * gamma0[j]
        g = 2.0 * (weights * lags * gamma).sum()
        spectrum0 = gamma0[j] + 2.0 * (weights * gamma).sum()
        if spectrum0 <= 0 or g == 0:
            continue
        d = (4.0 / 3.0) * spectrum0**2
        best = max(best, math.ceil((2.0 * g * g / d) ** (1.0 / 3.0) * n ** (1.0 / 3.0)))
    return int(min(best, ceiling))
