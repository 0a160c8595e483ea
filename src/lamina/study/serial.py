"""The serial structure of a prepared table: the series the tests stay within, the blocks of
the bootstrap, and how dependent the tokens are (autocorrelation, effective tokens).

Tokens of a text are not independent; every test of Parts 5-7 draws its null by
the options' ``scheme`` within the options' ``series`` (:mod:`lamina.stats.shifts`),
and every interval resamples blocks of consecutive tokens
(:mod:`lamina.stats.resampling`) whose length is chosen from the data
(:func:`lamina.stats.resampling.bootstrap_blocks`). Computed once per prepared
table and kept on it.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from lamina.stats.dependence import (
    ESS_LAGS,
    REPORTED_LAGS,
    autocorrelation,
    effective_tokens,
)
from lamina.stats.resampling import Blocks, bootstrap_blocks
from lamina.stats.shifts import ShiftLayout, shift_layout
from lamina.study.options import StudyOptions
from lamina.study.prepare import Prepared

SCHEME_WORDS = {
    "shift": "circular shifts of the labels within each {series}, which keep serial dependence",
    "exchangeable": "exchangeable permutations of the labels{within}, which assume independent "
    "tokens",
}


@dataclasses.dataclass(frozen=True)
class Serial:
    """``codes`` (n,) the series of each kept token (table order); ``layout`` its series
    order; ``blocks`` the bootstrap's blocks (series order); autocorrelations at lags
    1..REPORTED_LAGS of the labels (K,) and of each column's values (K, L); Bartlett's
    effective tokens per column (L,); the scheme and the series in words."""

    series: str
    n_series: int
    codes: np.ndarray
    layout: ShiftLayout
    blocks: Blocks
    label_acf: np.ndarray
    values_acf: np.ndarray
    effective_tokens: np.ndarray
    scheme: str
    description: str

    def test_arguments(self) -> dict:
        """``permutation_test``'s keywords for this scheme and series."""
        if self.scheme == "shift":
            return {"shift_within": self.codes}
        return {} if self.series == "none" else {"strata": self.codes}


def series_codes(data: Prepared, series: str) -> tuple[np.ndarray, str]:
    """One code per kept token, and what the series are (a missing column: one series)."""
    n = int(data.labels.size)
    column = {"window": data.window, "doc": data.doc}.get(series)
    if column is None:
        return np.zeros(n, dtype=np.int64), "none"
    return np.unique(column[data.keep], return_inverse=True)[1].ravel().astype(np.int64), series


def serial_structure(data: Prepared, options: StudyOptions) -> Serial:
    """The serial structure of ``data`` under ``options`` (computed once, then kept)."""
    key = (options.scheme, options.series)
    cached = getattr(data, "_serial", None)
    if cached is not None and cached[0] == key:
        return cached[1]
    codes, series = series_codes(data, options.series)
    layout = shift_layout(codes)
    x = data.values[layout.order]
    y = data.labels[layout.order].astype(np.float64)
    centred = (x - x.mean(axis=0)) * (y - y.mean())[:, None]
    n = y.size
    lags = max(REPORTED_LAGS, ESS_LAGS)
    acf_x = autocorrelation(x, layout, lags)
    acf_y = autocorrelation(y, layout, lags)[:, 0]
    within = "" if series == "none" else f" within each {series}"
    unit = {"none": "table (one series)", "window": "window", "doc": "document"}[series]
    serial = Serial(
        series=series,
        n_series=layout.n_series,
        codes=codes,
        layout=layout,
        blocks=bootstrap_blocks(centred, layout),
        label_acf=acf_y[:REPORTED_LAGS],
        values_acf=acf_x[:REPORTED_LAGS],
        effective_tokens=effective_tokens(acf_x, acf_y, n),
        scheme=options.scheme,
        description=SCHEME_WORDS[options.scheme].format(series=unit, within=within),
    )
    data._serial = (key, serial)  # type: ignore[attr-defined]
    return serial
