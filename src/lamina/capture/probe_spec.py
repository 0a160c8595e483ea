"""What a cross-fitted probe is asked to be: its method, its folds, its sites; what it costs.

Plain Python (no numpy, no torch), so the command line's options can name the
choices. The probe itself (folds, sums, directions, the two passes) is in
:mod:`lamina.capture.probe_folds`, :mod:`lamina.capture.probe_math`,
:mod:`lamina.capture.probe_hooks` and :mod:`lamina.capture.probe_run`; the
contract is in ``docs/token-table.md`` (section "Probe scores").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from lamina.errors import InputError

#: The probes: the difference of class means, and the same with a Ledoit-Wolf shrunk
#: pooled within-class covariance (linear discriminant analysis).
METHODS: tuple[str, ...] = ("diffmeans", "lda")
#: ``--probe`` values: ``auto`` is ``diffmeans`` for ``middle`` windows (one window: the
#: second pass costs seconds) and ``none`` for ``all`` and ``stream`` (where it doubles
#: the forward passes of a whole text).
PROBE_CHOICES: tuple[str, ...] = ("auto", "none", *METHODS)
DEFAULT_PROBE = "auto"
DEFAULT_FOLDS = 5
#: Sites a probe reads: every site that writes one d_model vector per position.
PROBE_SITES: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post")
#: Window modes where ``auto`` probes.
AUTO_PROBE_MODES: tuple[str, ...] = ("middle",)


@dataclasses.dataclass(frozen=True)
class ProbeSpec:
    """A probe to fit: ``method`` over ``folds`` contiguous folds, on ``sites`` x ``n_layers``."""

    method: str
    folds: int
    sites: tuple[str, ...]
    n_layers: int

    @property
    def second_moments(self) -> bool:
        """Whether the pass-1 sums need the scatter matrices (``lda``)."""
        return self.method == "lda"

    def vector_columns(self) -> list[tuple[str, int]]:
        """``(site, layer)`` of every probed vector, site by site, layers ascending."""
        return [(site, layer) for site in self.sites for layer in range(self.n_layers)]

    def column_names(self) -> list[str]:
        """The token table's probe columns, ``probe.{site}.{layer}``, in the same order."""
        return [f"probe.{site}.{layer}" for site, layer in self.vector_columns()]


def check_probe_options(probe: str, folds: int) -> None:
    """One sentence for a ``--probe`` or ``--probe-folds`` lamina cannot use."""
    if probe not in PROBE_CHOICES:
        raise InputError(f"--probe {probe!r} is unknown: use one of {', '.join(PROBE_CHOICES)}.")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise InputError(f"--probe-folds {folds!r} must be a number of folds of at least 2.")


def resolve_probe(
    probe: str, folds: int, mode: str, sites: Iterable[str], n_layers: int
) -> ProbeSpec | None:
    """The probe an extraction fits (None: no probe), from ``--probe`` and the window mode."""
    check_probe_options(probe, folds)
    method = probe
    if probe == "auto":
        method = "diffmeans" if mode in AUTO_PROBE_MODES else "none"
    probed = tuple(site for site in sites if site in PROBE_SITES)
    if method == "none":
        return None
    if not probed:
        if probe == "auto":
            return None
        raise InputError(
            f"--probe {probe} reads {', '.join(PROBE_SITES)}, and none of them is among the "
            "sites extracted; add one with --sites, or use --probe none."
        )
    return ProbeSpec(method, folds, probed, n_layers)


def probe_bytes(spec: ProbeSpec, hidden: int, span: int) -> int:
    """Host memory the probe's sums take at most, in bytes.

    Per probed vector (site and layer), fold and class: the count, the sum of ``x``
    (``d`` float64) and for ``lda`` the sum of ``x x^T`` (``d^2``), of ``|x|^2 x``
    (``d``) and of ``|x|^4``: ``16 (d^2 + 2d + 2)`` bytes per fold (two classes),
    ``16 (d + 1)`` for ``diffmeans``. The run holds the totals of the ``folds``
    folds and one shard's sums (``span``: the most folds one shard covers).
    """
    per_fold = 16 * (hidden * hidden + 2 * hidden + 2) if spec.second_moments else 16 * (hidden + 1)
    return per_fold * len(spec.vector_columns()) * (spec.folds + span)


def check_probe_memory(spec: ProbeSpec, hidden: int, span: int, available: int) -> int:
    """Refuse, in one sentence, a probe whose sums would not fit in ``available`` bytes."""
    need = probe_bytes(spec, hidden, span)
    if need > available:
        gib = 2**30
        raise InputError(
            f"--probe {spec.method} would hold {need / gib:.1f} GiB of sums ((folds {spec.folds} "
            f"+ {span} of a shard) x 2 classes x {spec.n_layers} layers x {len(spec.sites)} "
            f"site(s) x (d^2 + 2d + 2) x 8 bytes, d = {hidden}) but {available / gib:.1f} GiB is "
            "available; use --probe diffmeans, fewer --sites or fewer --probe-folds."
            if spec.second_moments
            else f"--probe {spec.method} would hold {need / gib:.1f} GiB of sums but "
            f"{available / gib:.1f} GiB is available; use fewer --sites or --probe none."
        )
    return need
