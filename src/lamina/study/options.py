"""What a study is asked to do: the analysis options and the windows of the forward pass.

:class:`StudyOptions` and :class:`WindowOptions` (defined with the window plan in
:mod:`lamina.capture.windows`, re-exported here) are frozen dataclasses validated
on construction: a value no analysis can use raises
:class:`~lamina.errors.InputError` with one sentence, before any model is
loaded. The defaults are the reference study's design.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from lamina.capture.windows import WindowOptions
from lamina.errors import InputError

__all__ = [
    "COMPAT_ALIASES",
    "COMPAT_MODES",
    "NOTEBOOK_STATISTIC",
    "StudyOptions",
    "WindowOptions",
    "check_windows",
    "notebook_windows",
]
from lamina.stats.catalog import (
    ALTERNATIVES,
    BIN_RULES,
    CORRECTIONS,
    MAX_BINS,
    STATISTICS,
    is_signed,
)

#: Compatibility modes: ``notebook`` reproduces the reference notebook, flaws included.
COMPAT_MODES = ("none", "notebook")
#: Older names of the compatibility modes, still accepted.
COMPAT_ALIASES = {"seed": "notebook"}
#: Which tests a multiple-comparison correction spans when several sites are analysed:
#: every test of the run (all sites, every head), or each site's own tests.
CORRECTION_SCOPES = ("run", "site")
#: What ``correct`` means in every token table lamina writes (``results.json`` records it).
CORRECT_DEFINITION = "top1"
#: The site whose norms are per head: analysed per (layer, head), never as the primary site.
HEAD_SITE = "attn_head"
#: The statistic the notebook mode computes in place of ``js``.
NOTEBOOK_STATISTIC = "notebook_symmetric_kl"

#: Covariates Part 7 can control for (docs/token-table.md), and its default controls.
CONTROL_NAMES = (
    "ctx_pos",
    "target_chars",
    "target_freq",
    "target_repeat",
    "input_is_first",
    "input_is_delimiter",
    "entropy",
)
DEFAULT_CONTROLS = ("ctx_pos", "target_chars", "target_freq", "target_repeat", "input_is_first")
#: The series the tests' labellings stay within (``auto``: windows for the shift scheme,
#: every token for the exchangeable one).
PERMUTE_WITHIN = ("auto", "none", "doc", "window")
#: How the tests of Parts 5-7 draw their null (lamina.stats.shifts): circular shifts of the
#: labels within each series, which keep the serial dependence of text, or exchangeable
#: permutations, valid only if tokens were independent.
SCHEMES = ("shift", "exchangeable")
#: Tokens ``exclude`` can drop from every part.
EXCLUDABLE = ("first", "delimiters")
#: Bin edges for a bin count: robust (equal-width over the central 99% plus two open end
#: bins) or range (equal-width over [min, max], as the notebook did); lamina.stats.histograms.
BINNINGS = ("robust", "range")

NOTEBOOK_COMPAT_NOTE = (
    "notebook compatibility mode: reproduces the reference notebook's numbers, flaws included "
    "(symmetric KL divided by the number of bins, p = #(null > observed) / m, "
    "no multiple-comparison correction, Gutenberg boilerplate kept, the notebook's window); "
    "use it for regression only"
)


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """Analysis options; the defaults are the reference study's design.

    ``bins`` is a number of bins (edges = bins + 1); ``bin_rule`` (a numpy
    rule such as ``"fd"``, or ``"knuth"``), when given, replaces it.
    ``binning`` says how a bin count is laid out: ``"robust"`` (the default:
    ``bins - 2`` equal-width bins over the central 99% of the pooled log-norms
    and two open end bins, so one massive-activation outlier cannot collapse
    the histogram; up to 2 bins fewer where there is no tail) or ``"range"``
    (``bins`` equal-width bins over ``[min, max]``, as the reference notebook
    did); a rule and the notebook mode always use the range
    (:attr:`robust_bins`).
    ``sweep_bins`` is the inclusive range of bin counts of the Part 4 sweep.
    ``alternative=None`` means ``"greater"`` for divergences and distances and
    ``"two-sided"`` for signed statistics. ``kl_pseudocount`` is added to every
    bin's count before the asymmetric KL divergences of Part 4 (empty bins make
    plug-in KL infinite); JS needs none. ``running_mean_tokens`` is the width, in
    token positions, of the running mean of accuracy in Part 2.

    ``permutations`` is the number of label permutations of the tests of Parts
    5 and 6. The diagnostics of Part 4 (the null at every bin count of the
    sweep, and the binless estimators) use ``min(diagnostic_permutations,
    permutations)`` permutations each: they describe how the estimate depends
    on the method, and 200 pin a null's mean and spread well at a fraction of
    the cost.

    ``compat="notebook"`` (alias ``"seed"``) reproduces the reference notebook:
    its symmetric KL (``statistic`` must be ``"js"``, which it replaces), its
    permutations and p-value, no correction across layers, and a sweep over the
    notebook's ``nbins`` arguments (numbers of EDGES, so ``sweep_bins`` (10, 50)
    is 9..49 bins).

    ``sites`` are further sites analysed beside ``site`` (the primary site of
    Parts 1-6), each with its own laminar profile (``attn_head`` per head);
    ``correction_scope`` says whether a test's significance is corrected over
    every test of the run (``"run"``, the default) or over its site's tests
    only (``"site"``); both are reported. With one site the two are the same.
    ``scheme`` is how every test draws its null: ``"shift"`` (circular shifts
    of the labels within each series, keeping the serial dependence of text)
    or ``"exchangeable"`` (permutations, valid only for independent tokens);
    ``permute_within`` (``"auto"``, ``"none"``, ``"doc"``, ``"window"``) names
    the series (``auto``: windows for shifts, every token for permutations).
    Part 7 (controls): ``controls`` are the covariates it conditions on (an
    empty tuple turns Part 7 off) through a flexible regression basis
    (:mod:`lamina.stats.adjustment`); a layer whose controlled Hedges' g has
    its whole 95% interval within ``+/- min_effect`` is called negligible. ``exclude`` drops the
    first token of every window (``"first"``) and/or delimiter tokens
    (``"delimiters"``) from every part. ``correction="cluster"`` is the
    cluster-mass correction over adjacent layers.
    """

    site: str = "attn_out"
    layer: int = 4
    bins: int = 30
    bin_rule: str | None = None
    binning: str = "robust"
    statistic: str = "js"
    permutations: int = 1000
    correction: str = "maxstat"
    alternative: str | None = None
    alpha: float = 0.05
    seed: int = 0
    sweep_bins: tuple[int, int] = (10, 50)
    diagnostic_permutations: int = 200
    kl_pseudocount: float = 0.5
    running_mean_tokens: int = 64
    compat: str = "none"
    sites: tuple[str, ...] = ()
    correction_scope: str = "run"
    controls: tuple[str, ...] = DEFAULT_CONTROLS
    scheme: str = "shift"
    permute_within: str = "auto"
    min_effect: float = 0.1
    exclude: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "compat", COMPAT_ALIASES.get(self.compat, self.compat))
        object.__setattr__(self, "sweep_bins", tuple(self.sweep_bins))
        self._check_counts()
        self._check_names()
        self._check_sites()
        self._check_controls()
        if self.notebook:
            self._check_notebook()

    def _check_controls(self) -> None:
        for field, option, known in (
            ("controls", "--controls", CONTROL_NAMES),
            ("exclude", "--exclude", EXCLUDABLE),
        ):
            value = getattr(self, field)
            names = tuple(n for n in value.split(",") if n) if isinstance(value, str) else value
            names = tuple(names)
            object.__setattr__(self, field, names)
            for name in names:
                if name not in known:
                    raise InputError(
                        f"{option} {name!r} is unknown: use some of {', '.join(known)}."
                    )
            if len(set(names)) != len(names):
                raise InputError(f"{option} names a covariate twice; name each once.")
        if self.scheme not in SCHEMES:
            raise InputError(
                f"--scheme {self.scheme!r} is unknown: use one of {', '.join(SCHEMES)}."
            )
        if self.permute_within not in PERMUTE_WITHIN:
            raise InputError(
                f"--permute-within {self.permute_within!r} is unknown: use one of "
                f"{', '.join(PERMUTE_WITHIN)}."
            )
        if not 0.0 <= self.min_effect < float("inf"):
            raise InputError(
                f"--min-effect {self.min_effect} must be a finite |Hedges' g| >= 0 (0.1 is the "
                "default)."
            )

    def _check_counts(self) -> None:
        if self.bin_rule is None and self.bins < 2:
            raise InputError(f"--bins {self.bins} is too few: a histogram needs at least 2 bins.")
        if self.permutations < 1:
            raise InputError(
                f"--permutations {self.permutations} leaves no null distribution: "
                "give at least 1 (1000 is the default)."
            )
        if self.diagnostic_permutations < 1:
            raise InputError(
                f"the diagnostic permutations {self.diagnostic_permutations} must be at least 1."
            )
        sweep = list(self.sweep_bins)
        if len(sweep) != 2 or sweep[0] < 2 or sweep[1] < sweep[0]:
            raise InputError(
                f"--sweep-bins {' '.join(map(str, sweep))} is not a range of bin counts >= 2: "
                "give LOW HIGH with 2 <= LOW <= HIGH."
            )
        if not 0.0 < self.alpha < 1.0:
            raise InputError(f"--alpha {self.alpha} must lie strictly between 0 and 1.")
        if self.kl_pseudocount < 0:
            raise InputError(f"the KL pseudocount {self.kl_pseudocount} must be >= 0.")
        if self.running_mean_tokens < 1:
            raise InputError(
                f"the running-mean width {self.running_mean_tokens} must be at least 1 token."
            )
        if self.layer < 0:
            raise InputError(f"--layer {self.layer} does not exist: layers are numbered from 0.")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise InputError(f"--seed {self.seed} is invalid: give a whole number >= 0.")
        if self.bin_rule is None and self.bins > MAX_BINS:
            raise InputError(
                f"--bins {self.bins} is more than {MAX_BINS}: give a smaller bin count."
            )

    def _check_names(self) -> None:
        choices = (
            ("--statistic", self.statistic, STATISTICS),
            ("--bin-rule", self.bin_rule, BIN_RULES),
            ("--binning", self.binning, BINNINGS),
            ("--correction", self.correction, CORRECTIONS),
            ("--alternative", self.alternative, ALTERNATIVES),
            ("--compat", self.compat, COMPAT_MODES),
        )
        for option, value, known in choices:
            if value is not None and value not in known:
                raise InputError(f"{option} {value!r} is unknown: use one of {', '.join(known)}.")

    def _check_sites(self) -> None:
        object.__setattr__(self, "sites", tuple(dict.fromkeys(self.sites)))
        if self.correction_scope not in CORRECTION_SCOPES:
            raise InputError(
                f"--correction-scope {self.correction_scope!r} is unknown: use one of "
                f"{', '.join(CORRECTION_SCOPES)}."
            )
        if self.site == HEAD_SITE:
            raise InputError(
                f"--site {HEAD_SITE} has no per-layer norms for Parts 1-6; keep a per-layer "
                f"--site such as attn_out and add --sites {HEAD_SITE} for the per-head profile."
            )

    def _check_notebook(self) -> None:
        if self.statistic != "js":
            raise InputError(
                f"--compat notebook reproduces the notebook's symmetric KL, not --statistic "
                f"{self.statistic}; drop --statistic."
            )
        if self.bin_rule is not None:
            raise InputError(
                "--compat notebook uses the notebook's equal-width bins; drop --bin-rule."
            )
        if self.alternative not in (None, "greater"):
            raise InputError(
                "--compat notebook has only the notebook's one-sided p-value; drop --alternative."
            )
        if self.exclude:
            raise InputError(
                "--compat notebook analyses every token, as the notebook did; drop --exclude."
            )

    @property
    def notebook(self) -> bool:
        """Whether the notebook compatibility mode is on."""
        return self.compat == "notebook"

    @property
    def effective_statistic(self) -> str:
        """The statistic actually computed: the notebook's in the notebook mode."""
        return NOTEBOOK_STATISTIC if self.notebook else self.statistic

    @property
    def analysed_sites(self) -> tuple[str, ...]:
        """Every site analysed: the primary ``site`` first, then ``sites`` in their order."""
        return (self.site, *(s for s in self.sites if s != self.site))

    @property
    def controls_on(self) -> bool:
        """Whether Part 7 runs: it has controls, and the notebook mode has no Part 7."""
        return bool(self.controls) and not self.notebook

    @property
    def series(self) -> str:
        """The series the labellings stay within: ``none``, ``doc`` or ``window``."""
        if self.permute_within != "auto":
            return self.permute_within
        return "window" if self.scheme == "shift" else "none"

    @property
    def n_diagnostic_permutations(self) -> int:
        return min(self.diagnostic_permutations, self.permutations)

    @property
    def resolved_alternative(self) -> str:
        if self.alternative is not None:
            return self.alternative
        return "two-sided" if is_signed(self.statistic) else "greater"

    @property
    def resolved_correction(self) -> str:
        """The correction applied: none in the notebook mode (the notebook corrects nothing)."""
        return "none" if self.notebook else self.correction

    @property
    def robust_bins(self) -> bool:
        """Whether bin counts get robust edges: asked for, a count (no rule), not the notebook."""
        return self.binning == "robust" and self.bin_rule is None and not self.notebook

    @property
    def bins_spec(self) -> int | str:
        """What the statistics take as ``bins``: the rule when given, else the bin count."""
        return self.bin_rule if self.bin_rule is not None else self.bins

    def to_dict(self) -> dict[str, Any]:
        """The options as ``results.json`` records them (resolved values included)."""
        d = dataclasses.asdict(self)
        d["sweep_bins"] = list(self.sweep_bins)
        d["controls"] = list(self.controls)
        d["exclude"] = list(self.exclude)
        d["alternative"] = self.resolved_alternative
        d["statistic_computed"] = self.effective_statistic
        d["binning"] = "robust" if self.robust_bins else "range"
        d["diagnostic_permutations"] = self.n_diagnostic_permutations
        d["sites"] = list(self.analysed_sites)
        return d


def notebook_windows(context_length: int) -> WindowOptions:
    """The notebook's window: ``context_length`` tokens from the middle of the token stream.

    Capture's ``middle`` mode is the notebook's slicing: the window starts at
    ``n_tokens // 2`` and every position is scored against the next token of
    the whole stream.
    """
    return WindowOptions(mode="middle", window=context_length)


def check_windows(options: StudyOptions, windows: WindowOptions) -> None:
    """Refuse windows the study cannot use with these options (the notebook fixes its own)."""
    if options.notebook and (windows.mode != "middle" or windows.window is not None):
        raise InputError(
            "--compat notebook uses the reference notebook's window (the model's context from "
            "the middle of the text); drop --windows and --window."
        )
