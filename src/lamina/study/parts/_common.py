"""Summaries several parts share: of a class's values, of a null, of a value in nats."""

from __future__ import annotations

import numpy as np

from lamina.stats.catalog import LN2
from lamina.study.records import ClassSummary, NatsBits, NullSummary


def bits(nats: float) -> float:
    return nats / LN2


def nats_bits(nats: float) -> NatsBits:
    return NatsBits(nats=float(nats), bits=bits(float(nats)))


def class_summary(x: np.ndarray) -> ClassSummary:
    return ClassSummary(
        n=int(x.size),
        mean=float(x.mean()),
        sd=float(x.std(ddof=1)),
        median=float(np.median(x)),
        min=float(x.min()),
        max=float(x.max()),
    )


def null_summary(null: np.ndarray) -> NullSummary:
    return NullSummary(
        mean=float(null.mean()),
        sd=float(null.std(ddof=1)) if null.size > 1 else 0.0,
        min=float(null.min()),
        max=float(null.max()),
        q025=float(np.quantile(null, 0.025)),
        q95=float(np.quantile(null, 0.95)),
        q975=float(np.quantile(null, 0.975)),
    )


def standardised(observed: float, null: np.ndarray) -> float | None:
    """(observed - null mean) / null SD: how far the statistic is from its null, unit-free."""
    sd = float(null.std(ddof=1)) if null.size > 1 else 0.0
    return (observed - float(null.mean())) / sd if sd > 0 else None
