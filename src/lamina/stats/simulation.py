"""Synthetic token tables for calibration studies: known confounds, serial dependence, effect.

:func:`simulate_table` draws a table at the scale of a real run (by default 40,000 tokens and
30 layers) whose norms and labels are associated through the covariates in a chosen shape, with
the serial dependence of real text and a planted direct effect ``true_g`` of the label on the
norms. With ``effect=0`` it is a draw from the null hypothesis of a test conditional on the
covariates; with ``effect=g`` it measures power.

The model. The ``n`` tokens are cut into consecutive windows of ``window`` tokens (the last may
be shorter): ``window[t] = t // window``, ``ctx_pos[t] = t % window``,
``input_is_first = ctx_pos == 0``. An AR(1) series "within windows" below is
``x[t] = rho * x[t-1] + sqrt(1 - rho**2) * e[t]`` with ``e`` iid N(0, 1) and a stationary start
``x[0] ~ N(0, 1)`` in each window, independent of the previous window: unit variance,
lag-1 autocorrelation ``rho`` inside a window and 0 across a window boundary.

Covariates, independent per token given ``ctx_pos``:
``target_chars = min(1 + Poisson(3.5), 15)``;
``target_freq = floor(exp(N(4, 2.5**2))) + 1`` (a Zipf-like corpus count);
``target_repeat ~ Bernoulli(0.2 + 0.5 * (1 - exp(-ctx_pos / 200)))``.
Write ``f = (log1p(target_freq) - mean) / sd`` (mean and SD over the table's tokens) and
``p = ctx_pos / window`` (the nominal window, also in a shorter last window).

Confound shapes, ``m`` acting on the label logit and ``h`` on the norms (0 where not given):

=========  ======================================  ==========================
confound   m(Z)                                    h(Z)
=========  ======================================  ==========================
none       0                                       0
linear     1.5 * (p - 0.5)                         2 * (p - 0.5)
early      -2 * exp(-ctx_pos / 30)                 1.5 * exp(-ctx_pos / 30)
step       -1 * (ctx_pos < 64)                     0.8 * (ctx_pos < 64)
first      -4 * (ctx_pos == 0)                     8 * (ctx_pos == 0)
ushape     0.8 * f**2 - 0.8                        0.6 * f**2
=========  ======================================  ==========================

and in every shape ``m += 0.5 * f - 0.15 * (target_chars - 4.5) + 0.8 * target_repeat``
(correct targets are more frequent, shorter and repeated) while ``h`` does not depend on them.

Labels: ``logit = a + m(Z) + u[t] + w_label[window]`` with ``u = label_sd * (an AR(1) series
within windows with rho = label_rho)`` and ``w_label ~ N(0, window_label_sd**2)`` one offset per
window; ``labels = U < sigmoid(logit)``, ``U`` iid uniform. With the default ``label_sd=1.5``
the labels' lag-1 autocorrelation within windows is about 0.13, 0.18, 0.24 for ``label_rho``
0.5, 0.7, 0.9 (about 0.08, 0.11, 0.14 with ``label_sd=1``). The intercept ``a`` is solved
(Gauss-Hermite quadrature over the normal ``u + w_label``) so that the expected accuracy over
the table's covariates is 0.45 (``params["intercept"]``).

Norms: ``values[:, l] = base_l + s_l * h(Z) + true_g[l] * labels + eps_l + w_norm[window]`` with
``base_l = linspace(2, 5)``, loading ``s_l = linspace(0.3, 1.0)`` (both over the layers),
``eps_l = sqrt(1 - c) * own_l + sqrt(c) * common`` with ``c = 0.5`` and ``own_l``, ``common``
independent AR(1) series within windows with rho = ``rho`` (so ``eps_l`` is AR(1) with unit
variance, lag-1 autocorrelation ``rho``, and correlation ``c`` between two layers), and
``w_norm ~ N(0, window_sd**2)`` one offset per window shared by every layer.

``eps`` is independent of the labels given the covariates (and the window), with unit SD, so
``true_g[l]`` is the controlled Hedges' g of layer ``l``: the difference of the class means of
its norms given the covariates, in units of the within-class SD given the covariates (and the
window, when ``window_sd > 0``). Every part draws from its own stream of the seed, so one seed
gives the same covariates, labels and noise whatever ``effect`` (common random numbers) and
the same covariates and labels whatever ``n_layers``, ``rho`` or ``window_sd``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.signal import lfilter
from scipy.special import expit

from lamina.errors import InputError

CONFOUNDS = ("none", "linear", "early", "step", "first", "ushape")
#: The expected accuracy the label intercept is solved for.
TARGET_ACCURACY = 0.45
#: The share of each layer's noise variance that all layers have in common.
COMMON_SHARE = 0.5

_NODES, _WEIGHTS = np.polynomial.hermite_e.hermegauss(24)
_WEIGHTS = _WEIGHTS / _WEIGHTS.sum()


@dataclass(frozen=True)
class SimulatedTable:
    """A simulated token table: per-token arrays, the planted effect, and the parameters."""

    window: np.ndarray  # (n,) int64 window code
    ctx_pos: np.ndarray  # (n,) int64 position in the window
    input_is_first: np.ndarray  # (n,) bool
    target_chars: np.ndarray  # (n,) int64
    target_freq: np.ndarray  # (n,) float64
    target_repeat: np.ndarray  # (n,) bool
    labels: np.ndarray  # (n,) bool, True = correct
    values: np.ndarray  # (n, n_layers) float64 log-norms
    true_g: np.ndarray  # (n_layers,) float64 planted controlled Hedges' g
    params: dict  # what was simulated

    def covariates(self) -> dict[str, np.ndarray]:
        """The covariates a conditional test controls for, by name."""
        return {
            "ctx_pos": self.ctx_pos,
            "target_chars": self.target_chars,
            "target_freq": self.target_freq,
            "target_repeat": self.target_repeat,
            "input_is_first": self.input_is_first,
        }


def ar1_within_windows(rng, n: int, window: int, k: int, rho: float) -> np.ndarray:
    """``k`` independent unit-variance AR(1) series of length ``n``, restarted in each window.

    Shape (n, k). Each window's first value is drawn from the stationary law N(0, 1).
    """
    n_windows = -(-n // window)
    scale = math.sqrt(1.0 - rho * rho)
    e = rng.standard_normal((n_windows, window, k))
    e[:, 0, :] /= scale  # the filter's first output is scale * e[0] = N(0, 1)
    x = lfilter([scale], [1.0, -rho], e, axis=1)
    return x.reshape(n_windows * window, k)[:n]


def _check_int(value, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise InputError(f"{name} must be an integer of at least {minimum}, not {value!r}.")
    return int(value)


def _check_real(value, name: str, low: float, high: float, *, open_ends: bool) -> float:
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
    inside = ok and (low < value < high if open_ends else low <= value <= high)
    if not inside:
        span = f"strictly between {low} and {high}" if open_ends else f"between {low} and {high}"
        raise InputError(f"{name} must be a finite number {span}, not {value!r}.")
    return float(value)


def _true_g(effect, effect_layers, n_layers: int) -> np.ndarray:
    """The planted effect per layer from a number (on ``effect_layers``) or one per layer."""
    if np.ndim(effect) == 0:
        effect = effect.item() if isinstance(effect, np.ndarray | np.generic) else effect
        g = _check_real(effect, "effect", -math.inf, math.inf, open_ends=True)
        try:
            layers = range(n_layers) if effect_layers is None else list(effect_layers)
        except TypeError as exc:
            raise InputError(f"effect_layers must be a list of layer indices ({exc}).") from exc
        for layer in layers:
            if isinstance(layer, bool) or not isinstance(layer, numbers.Integral):
                raise InputError(f"effect_layers must hold layer indices, not {layer!r}.")
            if not 0 <= layer < n_layers:
                raise InputError(
                    f"effect_layers holds layer {layer}, outside 0..{n_layers - 1}; "
                    "pass indices of existing layers."
                )
        out = np.zeros(n_layers)
        out[np.asarray(layers, dtype=np.int64)] = g
        return out
    if effect_layers is not None:
        raise InputError("effect_layers goes with a single effect; pass one or the other.")
    try:
        out = np.array(effect, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"effect must be a number or an array of numbers ({exc}).") from exc
    if out.shape != (n_layers,) or not np.isfinite(out).all():
        raise InputError(
            f"effect has shape {out.shape} or non-finite entries; pass {n_layers} finite numbers."
        )
    return out


def _covariates(rng, n: int, window: int) -> dict[str, np.ndarray]:
    t = np.arange(n, dtype=np.int64)
    ctx_pos = t % window
    return {
        "window": t // window,
        "ctx_pos": ctx_pos,
        "input_is_first": ctx_pos == 0,
        "target_chars": np.minimum(1 + rng.poisson(3.5, n), 15).astype(np.int64),
        "target_freq": np.floor(np.exp(rng.normal(4.0, 2.5, n))) + 1.0,
        "target_repeat": rng.random(n) < 0.2 + 0.5 * (1.0 - np.exp(-ctx_pos / 200.0)),
    }


def _shapes(confound: str, cov: dict, window: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """``m(Z)`` (label logit) and ``h(Z)`` (norms) of the module docstring, and f's centring."""
    pos = cov["ctx_pos"].astype(np.float64)
    log_freq = np.log1p(cov["target_freq"])
    centre, scale = float(log_freq.mean()), float(log_freq.std())
    f = (log_freq - centre) / (scale if scale > 0 else 1.0)
    m = 0.5 * f - 0.15 * (cov["target_chars"] - 4.5) + 0.8 * cov["target_repeat"]
    h = np.zeros_like(pos)
    if confound == "linear":
        m += 1.5 * (pos / window - 0.5)
        h += 2.0 * (pos / window - 0.5)
    elif confound == "early":
        m += -2.0 * np.exp(-pos / 30.0)
        h += 1.5 * np.exp(-pos / 30.0)
    elif confound == "step":
        m += -1.0 * (pos < 64)
        h += 0.8 * (pos < 64)
    elif confound == "first":
        m += -4.0 * (pos == 0)
        h += 8.0 * (pos == 0)
    elif confound == "ushape":
        m += 0.8 * f**2 - 0.8
        h += 0.6 * f**2
    return m, h, {"freq_centre": centre, "freq_scale": scale}


def _intercept(m: np.ndarray, latent_sd: float) -> float:
    """``a`` with mean over tokens of E[sigmoid(a + m + N(0, latent_sd^2))] = TARGET_ACCURACY."""
    grid = np.round(m, 3)  # to the nearest 0.001 in the logit: the accuracy moves < 0.0003
    levels, counts = np.unique(grid, return_counts=True)
    shifts = latent_sd * _NODES

    def excess(a: float) -> float:
        expected = expit(a + levels[:, None] + shifts) @ _WEIGHTS
        return float(counts @ expected) / m.size - TARGET_ACCURACY

    return float(brentq(excess, -levels.max() - 50.0, -levels.min() + 50.0, xtol=1e-9))


def simulate_table(
    n_tokens: int = 40_000,
    n_layers: int = 30,
    *,
    confound: str = "none",
    rho: float = 0.5,
    label_rho: float = 0.5,
    label_sd: float = 1.5,
    effect=0.0,
    effect_layers=None,
    window: int = 1024,
    window_sd: float = 0.0,
    window_label_sd: float = 0.0,
    seed: int = 0,
) -> SimulatedTable:
    """A synthetic token table drawn from the model of the module docstring.

    ``confound`` is one of :data:`CONFOUNDS`; ``rho`` and ``label_rho`` the lag-1
    autocorrelations of the norms' noise and of the labels' latent series within windows;
    ``label_sd`` that latent series' SD; ``effect`` the planted controlled Hedges' g, a number
    applied to ``effect_layers`` (default: every layer) or one number per layer;
    ``window_sd`` and ``window_label_sd`` the SDs of the per-window offsets of the norms and of
    the label logit; ``seed`` a non-negative integer.
    """
    n = _check_int(n_tokens, "n_tokens", 1)
    n_layers = _check_int(n_layers, "n_layers", 1)
    window = _check_int(window, "window", 1)
    seed = _check_int(seed, "seed", 0)
    if confound not in CONFOUNDS:
        raise InputError(f"confound must be one of {', '.join(CONFOUNDS)}, not {confound!r}.")
    rho = _check_real(rho, "rho", -1.0, 1.0, open_ends=True)
    label_rho = _check_real(label_rho, "label_rho", -1.0, 1.0, open_ends=True)
    label_sd = _check_real(label_sd, "label_sd", 0.0, 1e3, open_ends=False)
    window_sd = _check_real(window_sd, "window_sd", 0.0, 1e3, open_ends=False)
    window_label_sd = _check_real(window_label_sd, "window_label_sd", 0.0, 1e3, open_ends=False)
    true_g = _true_g(effect, effect_layers, n_layers)

    rng_cov, rng_label, rng_noise, rng_window = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(4)
    )
    cov = _covariates(rng_cov, n, window)
    m, h, centring = _shapes(confound, cov, window)
    n_windows = int(cov["window"][-1]) + 1
    latent = label_sd * ar1_within_windows(rng_label, n, window, 1, label_rho)[:, 0]
    latent += rng_label.normal(0.0, window_label_sd, n_windows)[cov["window"]]
    intercept = _intercept(m, math.hypot(label_sd, window_label_sd))
    labels = rng_label.random(n) < expit(intercept + m + latent)

    series = ar1_within_windows(rng_noise, n, window, n_layers + 1, rho)
    values = math.sqrt(1.0 - COMMON_SHARE) * series[:, :n_layers]
    values += math.sqrt(COMMON_SHARE) * series[:, n_layers:]
    base = np.linspace(2.0, 5.0, n_layers)
    loading = np.linspace(0.3, 1.0, n_layers)
    values += base + h[:, None] * loading + labels[:, None] * true_g
    values += rng_window.normal(0.0, window_sd, n_windows)[cov["window"]][:, None]

    params = {
        "n_tokens": n,
        "n_layers": n_layers,
        "confound": confound,
        "rho": rho,
        "label_rho": label_rho,
        "label_sd": label_sd,
        "window": window,
        "window_sd": window_sd,
        "window_label_sd": window_label_sd,
        "seed": seed,
        "common_share": COMMON_SHARE,
        "target_accuracy": TARGET_ACCURACY,
        "intercept": intercept,
        "base": base,
        "loading": loading,
        **centring,
    }
    return SimulatedTable(labels=labels, values=values, true_g=true_g, params=params, **cov)
