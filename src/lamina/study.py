"""The reference study's six parts as one analysis of a token table.

:func:`analyze_table` turns a token table (see :mod:`lamina.table`) into a
:class:`StudyResult`; :func:`run_study` goes from a model and a text to the
table (re-using ``DIR/tokens.parquet`` when it was captured with the same
model, text and windows), analyses it and writes every output into one
directory (:func:`write_outputs`):

``tokens.parquet``  the token table
``results.json``    every number, its parameters and units (``docs/results-format.md``)
``layers.csv``      one row per layer (Part 6)
``figures/``        one PNG and one SVG per figure, named by part (Parts 2-6)
``report.html``     one self-contained page with provenance, headline, tables, figures

The six parts:

1. model and capture: what was run on what;
2. prediction accuracy: top-1 accuracy overall, by position, and the target
   tokens' length in characters for correct vs incorrect predictions;
3. one layer: histograms of the log-norms (natural log of the L2 norm) of the
   site's vectors for correct vs incorrect tokens, as probabilities on shared
   bins, with the count / density / probability normalisations;
4. divergences at the chosen bins (KL both ways, JS; nats and bits), the JS
   bin-count sweep with its permutation null, and binless estimators (kNN KL
   both ways, Kolmogorov-Smirnov, Wasserstein-1) with permutation p-values;
5. significance of the chosen statistic at the one layer: the permutation null
   and ``p = (b + 1) / (m + 1)``;
6. the laminar profile: per layer, class means of the log-norms, their
   difference, the statistic with its null, raw and corrected p-values
   (max-statistic, Holm, Benjamini-Hochberg) and effect sizes (AUROC,
   Hedges' g).

Conventions: ``correct`` (top-1 prediction equals the target) is the first
group, so ``difference = mean(correct) - mean(incorrect)`` and
``KL(correct || incorrect)`` is written ``kl_correct_incorrect``. Divergences
are computed in nats; every divergence field has a ``_bits`` twin
(bits = nats / ln 2). Tokens whose vector has a zero L2 norm at any analysed
layer (log = -inf), or a non-finite norm, are counted, reported and excluded
from Parts 3-6 (Part 2 uses every scored token).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import itertools
import json
import math
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lamina import __version__
from lamina.errors import InputError, OutputError, TableError

if TYPE_CHECKING:
    import pyarrow as pa

    from lamina.sources import LoadedModel, LoadedText

RESULTS_FORMAT = "lamina.study"
RESULTS_FORMAT_VERSION = 1
LN2 = math.log(2.0)
Z_975 = 1.959963984540054  # standard normal 97.5th percentile, for 95% intervals

TOKENS_FILE = "tokens.parquet"
RESULTS_FILE = "results.json"
LAYERS_FILE = "layers.csv"
REPORT_FILE = "report.html"
FIGURES_DIR = "figures"

CORRECTIONS = ("maxstat", "holm", "fdr")
ALTERNATIVES = ("greater", "less", "two-sided")
COMPAT_MODES = ("none", "seed")

SEED_COMPAT_NOTE = (
    "seed compatibility mode: reproduces the reference notebook's numbers, flaws included "
    "(symmetric KL divided by the number of bins, p = #(null > observed) / m, "
    "no multiple-comparison correction, Gutenberg boilerplate kept, the notebook's window); "
    "use it for regression only"
)


# ----------------------------------------------------------------------------- options


@dataclasses.dataclass(frozen=True)
class StudyOptions:
    """Analysis options; the defaults are the reference study's design.

    ``bins`` is a number of bins (edges = bins + 1); ``bin_rule`` (a numpy
    rule such as ``"fd"``), when given, replaces it. ``sweep_bins`` is the
    inclusive range of bin counts of the Part 4 sweep. ``alternative=None``
    means ``"greater"`` for divergences and distances and ``"two-sided"`` for
    signed statistics. ``kl_pseudocount`` is added to every bin's count before
    the asymmetric KL divergences of Part 4 (empty bins make plug-in KL
    infinite); JS needs none. ``running_mean_tokens`` is the width, in token
    positions, of the running mean of accuracy in Part 2.

    ``permutations`` is the number of label permutations of the tests of Parts
    5 and 6. The diagnostics of Part 4 (the null at every bin count of the
    sweep, and the binless estimators) use ``min(diagnostic_permutations,
    permutations)`` permutations each: they describe how the estimate depends
    on the method, and 200 pin a null's mean and spread well at a fraction of
    the cost.

    ``compat="seed"`` reproduces the reference notebook: its symmetric KL
    (``statistic`` must be ``"js"``, which it replaces), its permutations and
    p-value, no correction across layers, and a sweep over the notebook's
    ``nbins`` arguments (numbers of EDGES, so ``sweep_bins`` (10, 50) is 9..49
    bins).
    """

    site: str = "attn_out"
    layer: int = 4
    bins: int = 30
    bin_rule: str | None = None
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

    def validate(self) -> None:
        """Raise :class:`InputError` for a value no analysis can use."""
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
        from lamina.stats import BIN_RULES, STATISTICS

        if self.statistic not in STATISTICS:
            raise InputError(
                f"--statistic {self.statistic!r} is unknown: use one of {', '.join(STATISTICS)}."
            )
        if self.bin_rule is not None and self.bin_rule not in BIN_RULES:
            raise InputError(
                f"--bin-rule {self.bin_rule!r} is unknown: use one of {', '.join(BIN_RULES)}."
            )
        if self.compat == "seed":
            if self.statistic != "js":
                raise InputError(
                    f"--compat seed reproduces the notebook's symmetric KL, not --statistic "
                    f"{self.statistic}; drop --statistic."
                )
            if self.bin_rule is not None:
                raise InputError(
                    "--compat seed uses the notebook's equal-width bins; drop --bin-rule."
                )
            if self.alternative not in (None, "greater"):
                raise InputError(
                    "--compat seed has only the notebook's one-sided p-value; drop --alternative."
                )
        lo, hi = self.sweep_bins
        if lo < 2 or hi < lo:
            raise InputError(
                f"--sweep-bins {lo} {hi} is not a range of bin counts >= 2: give LOW HIGH "
                "with 2 <= LOW <= HIGH."
            )
        if self.correction not in CORRECTIONS:
            raise InputError(
                f"--correction {self.correction!r} is unknown: use one of {', '.join(CORRECTIONS)}."
            )
        if self.alternative is not None and self.alternative not in ALTERNATIVES:
            raise InputError(
                f"--alternative {self.alternative!r} is unknown: use one of "
                f"{', '.join(ALTERNATIVES)}."
            )
        if not 0.0 < self.alpha < 1.0:
            raise InputError(f"--alpha {self.alpha} must lie strictly between 0 and 1.")
        if self.compat not in COMPAT_MODES:
            raise InputError(
                f"--compat {self.compat!r} is unknown: use one of {', '.join(COMPAT_MODES)}."
            )
        if self.kl_pseudocount < 0:
            raise InputError(f"the KL pseudocount {self.kl_pseudocount} must be >= 0.")
        if self.running_mean_tokens < 1:
            raise InputError(
                f"the running-mean width {self.running_mean_tokens} must be at least 1 token."
            )
        if self.layer < 0:
            raise InputError(f"--layer {self.layer} does not exist: layers are numbered from 0.")

    @property
    def effective_statistic(self) -> str:
        """The statistic actually computed: the notebook's in seed mode."""
        return "seed_symmetric_kl" if self.compat == "seed" else self.statistic

    @property
    def n_diagnostic_permutations(self) -> int:
        return min(self.diagnostic_permutations, self.permutations)

    @property
    def resolved_alternative(self) -> str:
        if self.alternative is not None:
            return self.alternative
        return "two-sided" if is_signed(self.statistic) else "greater"

    @property
    def bins_spec(self) -> int | str:
        """What the statistics take as ``bins``: the rule when given, else the bin count."""
        return self.bin_rule if self.bin_rule is not None else self.bins

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["sweep_bins"] = list(self.sweep_bins)
        d["alternative"] = self.resolved_alternative
        d["statistic_computed"] = self.effective_statistic
        d["diagnostic_permutations"] = self.n_diagnostic_permutations
        return d


@dataclasses.dataclass(frozen=True)
class WindowOptions:
    """How the text is cut into windows for the forward pass (see :func:`lamina.capture.extract`).

    The default is the reference study's: one window from the middle of the
    text of ``window`` tokens (None: 1024, or the model's context if shorter).
    """

    windows: str = "middle"
    window: int | None = None
    stride: int | None = None
    batch_size: int = 1
    max_tokens: int | None = None
    bos: bool = False

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ----------------------------------------------------------------------------- result


@dataclasses.dataclass
class StudyData:
    """Per-token arrays the figures need that are not stored in ``results.json``.

    All arrays have one entry per scored token (``n_tokens``), in table order.
    """

    correct: np.ndarray  # (n_tokens,) bool
    ctx_pos: np.ndarray  # (n_tokens,) int, tokens of left context
    log_norm_layer: np.ndarray  # (n_tokens,) float64, ln of the L2 norm at the single layer


@dataclasses.dataclass
class StudyResult:
    """Everything the study computed; ``to_dict()`` is ``results.json``.

    ``part1`` ... ``part6`` are plain JSON-ready dicts whose fields are listed
    in ``docs/results-format.md``; ``data`` holds the per-token arrays for
    the figures and is not serialised.
    """

    lamina_version: str
    created: str
    compat: str
    compat_note: str | None
    command_line: str | None
    parameters: dict[str, Any]
    units: dict[str, str]
    provenance: dict[str, Any]
    exclusions: dict[str, Any]
    headline: str
    part1: dict[str, Any]
    part2: dict[str, Any]
    part3: dict[str, Any]
    part4: dict[str, Any]
    part5: dict[str, Any]
    part6: dict[str, Any]
    data: StudyData | None = dataclasses.field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of ``results.json`` (non-finite floats become null)."""
        out: dict[str, Any] = {"format": RESULTS_FORMAT, "format_version": RESULTS_FORMAT_VERSION}
        for f in dataclasses.fields(self):
            if f.name != "data":
                out[f.name] = _jsonable(getattr(self, f.name))
        return out

    def to_json(self) -> str:
        """``results.json`` text: deterministic (same result, same bytes)."""
        return dumps_results(self.to_dict())

    @property
    def significant_layers(self) -> list[int]:
        return [row["layer"] for row in self.part6["layers"] if row["significant"]]


def dumps_results(results: Mapping[str, Any]) -> str:
    """Serialise a results dict: objects indented, lists of scalars on one line."""
    return _dumps(results, 0) + "\n"


def _dumps(obj: Any, level: int) -> str:
    pad = "  " * (level + 1)
    if isinstance(obj, Mapping):
        if not obj:
            return "{}"
        items = [
            f"{pad}{json.dumps(str(k), ensure_ascii=False)}: {_dumps(v, level + 1)}"
            for k, v in obj.items()
        ]
        return "{\n" + ",\n".join(items) + "\n" + "  " * level + "}"
    if isinstance(obj, list | tuple):
        if all(not isinstance(v, Mapping | list | tuple) for v in obj):
            return "[" + ", ".join(_dumps(v, level + 1) for v in obj) + "]"
        items = [pad + _dumps(v, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + "  " * level + "]"
    return json.dumps(obj, ensure_ascii=False, allow_nan=False)


def _jsonable(obj: Any) -> Any:
    """Plain Python for JSON: numpy to builtins, non-finite floats to None."""
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.bool_ | bool):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj


# ----------------------------------------------------------------------------- analysis


def _bits(nats: float) -> float:
    return nats / LN2


def is_divergence(statistic: str) -> bool:
    """Whether ``statistic`` is a divergence (reported in nats and bits)."""
    from lamina.stats import DIVERGENCES  # lazily: scipy is not needed to parse options

    return statistic in DIVERGENCES


def is_signed(statistic: str) -> bool:
    """Whether the sign of ``statistic`` carries the direction (tested two-sided by default)."""
    from lamina.stats import SIGNED_CENTERS

    return statistic in SIGNED_CENTERS


def _utc_now() -> str:
    return (
        _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")
    )


def _require_column(table: pa.Table, name: str) -> np.ndarray:
    if name not in table.column_names:
        raise TableError(
            f"the token table has no {name!r} column; re-extract it with this version of lamina."
        )
    return table.column(name).to_numpy(zero_copy_only=False)


def analyze_table(
    table: pa.Table,
    options: StudyOptions | None = None,
    *,
    command_line: str | None = None,
    table_path: str | None = None,
    created: str | None = None,
) -> StudyResult:
    """Run Parts 1-6 on a token table.

    ``table`` is a token table as written by :func:`lamina.capture.extract`;
    only its columns and metadata are used (no model). ``created`` is the
    result's one timestamp (UTC ISO 8601; now if omitted). Raises
    :class:`InputError` for options the table cannot satisfy (a layer it does
    not have, a class with fewer than two tokens, ...) and :class:`TableError`
    for a table without the needed columns.
    """
    from lamina import stats
    from lamina.table import layer_matrix, site_layers, table_metadata

    options = options or StudyOptions()
    options.validate()
    meta = table_metadata(table)
    site = options.site

    layers = list(site_layers(table, site))
    if not layers:
        present = ", ".join(meta.get("sites", [])) or "none"
        raise InputError(
            f"the token table has no {site!r} columns (sites captured: {present}); "
            f"pick one of those with --site or re-extract with --site {site}."
        )
    if options.layer not in layers:
        raise InputError(
            f"--layer {options.layer} does not exist: the table has {site} layers "
            f"{layers[0]}-{layers[-1]}; pick one of them."
        )
    seed_mode = options.compat == "seed"
    if seed_mode:
        _check_seed_table(meta)

    correct_all = _require_column(table, "correct").astype(bool)
    ctx_pos = _require_column(table, "ctx_pos").astype(np.int64)
    target_chars = _require_column(table, "target_chars").astype(np.int64)
    n_tokens = int(correct_all.size)
    if n_tokens == 0:
        raise InputError("the token table has no scored tokens; use a longer text or window.")
    raw = np.asarray(layer_matrix(table, site))  # (n_tokens, n_layers) float32 L2 norms

    # -- exclusions: zero norms (log = -inf) and non-finite norms
    finite = np.isfinite(raw)
    zero = raw == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        # The notebook takes logs of float32 norms in float32; lamina in float64.
        log_norm = np.log(raw).astype(np.float64) if seed_mode else np.log(raw.astype(np.float64))
    bad = zero | ~finite
    keep = ~bad.any(axis=1)
    exclusions = {
        "rule": "a token whose vector has a zero (log = -inf) or non-finite L2 norm at any "
        "analysed layer is excluded from Parts 3-6",
        "n_tokens_excluded": int((~keep).sum()),
        "n_correct_excluded": int((~keep & correct_all).sum()),
        "n_incorrect_excluded": int((~keep & ~correct_all).sum()),
        "zero_norm_by_layer": {str(layer): int(zero[:, j].sum()) for j, layer in enumerate(layers)},
        "non_finite_by_layer": {
            str(layer): int((~finite[:, j]).sum()) for j, layer in enumerate(layers)
        },
    }
    labels = correct_all[keep]
    values = log_norm[keep]  # (n_kept, n_layers) natural-log norms
    n_correct, n_incorrect = int(labels.sum()), int((~labels).sum())
    for name, count in (("correctly", n_correct), ("incorrectly", n_incorrect)):
        if count < 2:
            raise InputError(
                f"only {count} token(s) were predicted {name}"
                + (
                    f" after excluding {exclusions['n_tokens_excluded']} zero-norm token(s)"
                    if exclusions["n_tokens_excluded"]
                    else ""
                )
                + "; comparing the classes needs at least 2 of each: use a longer text or "
                "window, or another model."
            )

    layer_index = layers.index(options.layer)
    alternative = options.resolved_alternative
    compat_arg = "seed" if seed_mode else None

    # -- Part 6's permutation test: every layer at once, the same labellings for all.
    perm = stats.permutation_test(
        values,
        labels,
        statistic=options.statistic,
        bins=options.bins_spec,
        n_permutations=options.permutations,
        alternative=alternative,
        seed=options.seed,
        compat=compat_arg,
    )
    # Part 5 is the chosen layer's column; the notebook ran its own loop for it.
    single = perm
    single_index = layer_index
    if seed_mode:
        single = stats.permutation_test(
            values[:, [layer_index]],
            labels,
            statistic=options.statistic,
            bins=options.bins_spec,
            n_permutations=options.permutations,
            seed=options.seed,
            compat="seed",
        )
        single_index = 0

    part1 = _part1(meta, site, layers, n_tokens, table_path, table)
    part2 = _part2(correct_all, ctx_pos, target_chars, options.running_mean_tokens)
    part3 = _part3(values[:, layer_index], labels, options, stats)
    part4 = _part4(values[:, layer_index], labels, options, stats, np.asarray(part3["edges"]))
    part5 = _part5(single, single_index, options, alternative)
    correction = "none" if seed_mode else options.correction
    part6 = _part6(perm, values, labels, layers, options, alternative, correction, zero, stats)

    provenance = {
        "model": meta.get("model", {}),
        "text": meta.get("text", {}),
        "windows": meta.get("windows", {}),
        "sites": meta.get("sites", []),
        "table": {
            "path": table_path,
            "format_version": meta.get("format_version"),
            "lamina_version": meta.get("lamina_version"),
            "command_line": meta.get("command_line"),
            "n_rows": n_tokens,
        },
    }
    parameters = options.to_dict()
    parameters["correction"] = correction
    parameters["bins_used"] = part3["n_bins"]
    result = StudyResult(
        lamina_version=__version__,
        created=created or _utc_now(),
        compat=options.compat,
        compat_note=SEED_COMPAT_NOTE if seed_mode else None,
        command_line=command_line,
        parameters=parameters,
        units=_units(options.effective_statistic),
        provenance=provenance,
        exclusions=exclusions,
        headline="",
        part1=part1,
        part2=part2,
        part3=part3,
        part4=part4,
        part5=part5,
        part6=part6,
        data=StudyData(
            correct=correct_all, ctx_pos=ctx_pos, log_norm_layer=log_norm[:, layer_index]
        ),
    )
    from lamina.report.summary import headline

    result.headline = headline(result.to_dict())
    return result


def _check_seed_table(meta: Mapping[str, Any]) -> None:
    """Refuse --compat seed on a table not captured as the notebook did."""
    windows = meta.get("windows", {})
    context = meta.get("model", {}).get("context_length")
    notebook = seed_windows(context) if context else None
    if (
        notebook is None
        or windows.get("mode") != notebook.windows
        or windows.get("window") != notebook.window
        or windows.get("bos")
    ):
        raise InputError(
            "--compat seed needs a table captured with the notebook's window (the model's "
            f"context of {context} tokens from the middle of the text), but this one used "
            f"{windows.get('mode')!r} windows of {windows.get('window')} tokens; re-extract "
            "with `lamina run --compat seed`."
        )
    if meta.get("text", {}).get("boilerplate") == "stripped":
        raise InputError(
            "--compat seed needs the text with its Gutenberg boilerplate kept, as the notebook "
            "read it; re-extract with `lamina run --compat seed`."
        )


def _units(statistic: str) -> dict[str, str]:
    units = {
        "log_norm": "natural log of the L2 norm of the site's output vector "
        "(the norm is in the model's activation units)",
        "difference": "difference of mean log-norms (correct minus incorrect), natural-log units",
        "divergence": "nats (natural logarithm); every *_bits field is the same value in bits "
        "(nats / ln 2)",
        "ks": "dimensionless (largest gap between the two empirical CDFs)",
        "wasserstein": "natural-log units of the norm (same as log_norm)",
        "pvalue": "Monte-Carlo permutation p-value (b + 1) / (m + 1), b = #(null >= observed) "
        "for alternative 'greater'",
        "accuracy": "fraction of scored tokens whose top-1 prediction is the target",
        "target_chars": "characters of the decoded target token",
        "auroc": "P(log-norm of a correct token > that of an incorrect token), ties count 1/2",
        "hedges_g": "standardised mean difference (correct minus incorrect), "
        "small-sample corrected",
    }
    units["statistic"] = _statistic_unit(statistic)
    return units


def _statistic_unit(statistic: str) -> str:
    if statistic == "seed_symmetric_kl":
        return "nats divided by the number of bins (the notebook's)"
    if is_divergence(statistic):
        return "nats"
    if statistic == "ks":
        return "dimensionless"
    if statistic in ("wasserstein", "mean_difference"):
        return "natural-log units of the norm"
    return "dimensionless"


def _part1(
    meta: Mapping[str, Any],
    site: str,
    layers: Sequence[int],
    n_tokens: int,
    table_path: str | None,
    table: pa.Table,
) -> dict[str, Any]:
    model = meta.get("model", {})
    windows = meta.get("windows", {})
    text = meta.get("text", {})
    n_windows = windows.get("n_windows")
    if n_windows is None and "window" in table.column_names:
        n_windows = int(np.unique(table.column("window").to_numpy()).size)
    text_pos = (
        table.column("text_pos").to_numpy() if "text_pos" in table.column_names else np.zeros(0)
    )
    return {
        "model": {
            k: model.get(k)
            for k in (
                "spec",
                "name",
                "source",
                "architecture",
                "n_layers",
                "hidden_size",
                "n_heads",
                "context_length",
                "n_params",
                "dtype",
                "device",
                "revision",
                "fingerprint",
            )
        },
        "text": {k: text.get(k) for k in ("spec", "source", "sha256", "n_chars", "boilerplate")},
        "site": site,
        "site_module": (meta.get("site_modules") or {}).get(site),
        "sites_captured": list(meta.get("sites", [])),
        "n_layers": len(layers),
        "layers": list(layers),
        "windows": dict(windows),
        "n_windows": n_windows,
        "n_tokens_scored": n_tokens,
        "n_text_tokens": meta.get("n_text_tokens"),
        "text_positions": [int(text_pos.min()), int(text_pos.max())] if text_pos.size else None,
        "table": table_path,
    }


def _part2(
    correct: np.ndarray, ctx_pos: np.ndarray, target_chars: np.ndarray, running_width: int
) -> dict[str, Any]:
    n = int(correct.size)
    n_correct = int(correct.sum())
    n_pos = int(ctx_pos.max()) + 1
    tokens_at = np.bincount(ctx_pos, minlength=n_pos)
    correct_at = np.bincount(ctx_pos, weights=correct, minlength=n_pos)
    # Accuracy in equal-width position bins (at most 16) for the table.
    n_groups = min(16, n_pos)
    group_edges = np.linspace(0, n_pos, n_groups + 1).round().astype(int)
    groups = []
    for lo, hi in itertools.pairwise(group_edges):
        t = int(tokens_at[lo:hi].sum())
        c = int(correct_at[lo:hi].sum())
        groups.append(
            {
                "ctx_pos_from": int(lo),
                "ctx_pos_to": int(hi - 1),
                "n_tokens": t,
                "n_correct": c,
                "accuracy": c / t if t else None,
            }
        )
    # Running mean over positions, weighted by the tokens at each position.
    width = min(running_width, n_pos)
    kernel = np.ones(width)
    running = np.convolve(correct_at, kernel, "same") / np.maximum(
        np.convolve(tokens_at, kernel, "same"), 1
    )
    max_len = int(target_chars.max()) if n else 0
    lengths = np.arange(max_len + 1)
    counts_c = np.bincount(target_chars[correct], minlength=max_len + 1)
    counts_i = np.bincount(target_chars[~correct], minlength=max_len + 1)

    def _summary(x: np.ndarray) -> dict[str, Any]:
        return {
            "n": int(x.size),
            "mean": float(x.mean()) if x.size else None,
            "median": float(np.median(x)) if x.size else None,
            "sd": float(x.std(ddof=1)) if x.size > 1 else None,
        }

    return {
        "n_tokens": n,
        "n_correct": n_correct,
        "n_incorrect": n - n_correct,
        "accuracy": n_correct / n,
        "by_position": groups,
        "running_mean": {"width_tokens": width, "accuracy": running},
        "target_chars": {
            "correct": _summary(target_chars[correct]),
            "incorrect": _summary(target_chars[~correct]),
            "lengths": lengths,
            "counts_correct": counts_c,
            "counts_incorrect": counts_i,
            "probability_correct": counts_c / max(counts_c.sum(), 1),
            "probability_incorrect": counts_i / max(counts_i.sum(), 1),
        },
    }


def _histogram_normalisations(counts: np.ndarray, edges: np.ndarray) -> dict[str, Any]:
    widths = np.diff(edges)
    total = counts.sum()
    density = counts / (total * widths)
    probability = counts / total
    return {
        "sum_counts": int(total),
        "sum_density": float(density.sum()),
        "sum_density_times_bin_width": float((density * widths).sum()),
        "sum_probability": float(probability.sum()),
    }


def _class_summary(x: np.ndarray) -> dict[str, Any]:
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "sd": float(x.std(ddof=1)),
        "median": float(np.median(x)),
        "min": float(x.min()),
        "max": float(x.max()),
    }


def _part3(v: np.ndarray, labels: np.ndarray, options: StudyOptions, stats: Any) -> dict[str, Any]:
    c, i = v[labels], v[~labels]
    if options.compat == "seed":
        from lamina.stats.seed import seed_bin_indices, seed_linspace

        # torch.linspace(min, max, bins + 1) and torch.histogram, in float32 as the notebook.
        v32 = v.astype(np.float32)
        edges32 = seed_linspace(v32.min(), v32.max(), options.bins + 1)
        index = seed_bin_indices(v32, edges32)
        counts_c = np.bincount(index[labels], minlength=options.bins)
        counts_i = np.bincount(index[~labels], minlength=options.bins)
        edges = edges32.astype(np.float64)
    else:
        edges = np.asarray(stats.shared_edges(c, i, bins=options.bins_spec), dtype=np.float64)
        counts_c = stats.histogram_counts(c, edges)
        counts_i = stats.histogram_counts(i, edges)
    return {
        "layer": options.layer,
        "site": options.site,
        "n_bins": int(edges.size - 1),
        "bin_rule": options.bin_rule,
        "edges": edges,
        "counts_correct": counts_c,
        "counts_incorrect": counts_i,
        "probability_correct": counts_c / counts_c.sum(),
        "probability_incorrect": counts_i / counts_i.sum(),
        "correct": _class_summary(c),
        "incorrect": _class_summary(i),
        "difference": float(c.mean() - i.mean()),
        "normalisations": {
            "correct": _histogram_normalisations(counts_c, edges),
            "incorrect": _histogram_normalisations(counts_i, edges),
        },
    }


def _nats_bits(nats: float) -> dict[str, float]:
    return {"nats": float(nats), "bits": _bits(float(nats))}


def _null_summary(null: np.ndarray) -> dict[str, float]:
    return {
        "mean": float(null.mean()),
        "sd": float(null.std(ddof=1)) if null.size > 1 else 0.0,
        "min": float(null.min()),
        "max": float(null.max()),
        "q025": float(np.quantile(null, 0.025)),
        "q95": float(np.quantile(null, 0.95)),
        "q975": float(np.quantile(null, 0.975)),
    }


def _standardised(observed: float, null: np.ndarray) -> float | None:
    """(observed - null mean) / null SD: how far the statistic is from its null, unit-free."""
    sd = float(null.std(ddof=1)) if null.size > 1 else 0.0
    return (observed - float(null.mean())) / sd if sd > 0 else None


BINLESS_ESTIMATORS = (
    ("knn_kl", "kNN KL(correct ‖ incorrect)", "nats"),
    ("knn_kl_reverse", "kNN KL(incorrect ‖ correct)", "nats"),
    ("ks", "Kolmogorov-Smirnov D", "dimensionless"),
    ("wasserstein", "Wasserstein-1", "natural-log units of the norm"),
)


def _part4(
    v: np.ndarray,
    labels: np.ndarray,
    options: StudyOptions,
    stats: Any,
    edges: np.ndarray,
) -> dict[str, Any]:
    seed_mode = options.compat == "seed"
    c, i = v[labels], v[~labels]
    if seed_mode:
        from lamina.stats.seed import seed_bin_indices

        index = seed_bin_indices(v.astype(np.float32), edges.astype(np.float32))
        counts_c = np.bincount(index[labels], minlength=edges.size - 1)
        counts_i = np.bincount(index[~labels], minlength=edges.size - 1)
        # The notebook's c2i is F.kl_div(log(yC), yI): KL(incorrect || correct) / n_bins.
        kl_ci = stats.seed_kl_div(counts_c, counts_i)
        kl_ic = stats.seed_kl_div(counts_i, counts_c)
        js = float(stats.seed_symmetric_kl(c, i, nbins=edges.size))
        kl_note = (
            "the notebook's F.kl_div(log(q + 1e-15), p, reduction='batchmean'), i.e. KL(p || q) "
            "divided by the number of bins (its c2i is kl_incorrect_correct, its i2c "
            "kl_correct_incorrect); js is its symmetric_KL"
        )
    else:
        counts_c = stats.histogram_counts(c, edges)
        counts_i = stats.histogram_counts(i, edges)
        pc = options.kl_pseudocount
        kl_ci = float(stats.kl_divergence(counts_c, counts_i, pseudocount=pc))
        kl_ic = float(stats.kl_divergence(counts_i, counts_c, pseudocount=pc))
        js = float(stats.js_divergence(counts_c, counts_i))
        kl_note = f"plug-in KL of the two histograms with {pc:g} added to every bin's count"
    at_bins = {
        "n_bins": int(edges.size - 1),
        "kl_correct_incorrect": _nats_bits(kl_ci),
        "kl_incorrect_correct": _nats_bits(kl_ic),
        "kl_mean_of_both": _nats_bits((kl_ci + kl_ic) / 2),
        "js": _nats_bits(js),
        "kl_pseudocount": None if seed_mode else options.kl_pseudocount,
        "note": kl_note,
    }

    m = options.n_diagnostic_permutations
    lo, hi = options.sweep_bins
    if seed_mode:
        sweep = _seed_sweep(c, i, lo, hi)
    else:
        sweep = _js_sweep(v, labels, list(range(lo, hi + 1)), m, options.seed, stats)

    binless = []
    for name, label, unit in BINLESS_ESTIMATORS:
        result = stats.permutation_test(
            v, labels, statistic=name, n_permutations=m, seed=options.seed
        )
        observed = float(np.ravel(result.statistic)[0])
        null = np.ravel(result.null_distribution).astype(np.float64)
        entry: dict[str, Any] = {
            "name": name,
            "label": label,
            "unit": unit,
            "value": observed,
            "value_bits": _bits(observed) if unit == "nats" else None,
            "null": _null_summary(null),
            "standardised": _standardised(observed, null),
            "pvalue": float(np.ravel(result.pvalue)[0]),
            "n_permutations": int(result.n_permutations),
        }
        binless.append(entry)
    return {
        "layer": options.layer,
        "at_bins": at_bins,
        "js_sweep": sweep,
        "binless": binless,
        "diagnostic_permutations": m,
    }


def _js_sweep(
    v: np.ndarray,
    labels: np.ndarray,
    bin_counts: list[int],
    n_permutations: int,
    seed: int,
    stats: Any,
) -> dict[str, Any]:
    """JS divergence at every bin count, each with its permutation null, in one test.

    A histogram divergence depends only on which tokens share a bin. So the
    column ``codes_b`` (each token's bin index with ``b`` bins) histogrammed
    with ``B = max(bin_counts)`` equal-width bins over its range ``[0, b - 1]``
    puts the tokens of every bin in a bin of their own (the bin width
    ``(b - 1) / B`` is below 1), and the extra bins stay empty, which adds
    nothing to JS. One permutation test of all the code columns with ``B`` bins
    therefore gives the JS of every bin count, under the same labellings.
    """
    codes = np.empty((v.size, len(bin_counts)), dtype=np.float64)
    for j, b in enumerate(bin_counts):
        codes[:, j] = stats.bin_indices(v, stats.bin_edges(v, b))
    result = stats.permutation_test(
        codes,
        labels,
        statistic="js",
        bins=max(bin_counts),
        n_permutations=n_permutations,
        seed=seed,
    )
    observed = np.asarray(result.statistic, dtype=np.float64)
    null = np.asarray(result.null_distribution, dtype=np.float64)
    null_sd = null.std(axis=0, ddof=1) if null.shape[0] > 1 else np.zeros(len(bin_counts))
    with np.errstate(divide="ignore", invalid="ignore"):
        standardised = np.where(null_sd > 0, (observed - null.mean(axis=0)) / null_sd, np.nan)
    return {
        "bins": bin_counts,
        "edges": [b + 1 for b in bin_counts],
        "statistic": "js",
        "js_nats": observed,
        "js_bits": observed / LN2,
        "null_mean_bits": null.mean(axis=0) / LN2,
        "null_q025_bits": np.quantile(null, 0.025, axis=0) / LN2,
        "null_q975_bits": np.quantile(null, 0.975, axis=0) / LN2,
        "standardised": standardised,
        "pvalue": np.asarray(result.pvalue, dtype=np.float64),
        "n_permutations": int(result.n_permutations),
    }


def _seed_sweep(c: np.ndarray, i: np.ndarray, lo: int, hi: int) -> dict[str, Any]:
    """The notebook's sweep: ``symmetric_KL(C, I, nbins)`` for nbins (EDGES) lo..hi; no null."""
    from lamina.stats import seed_symmetric_kl

    edges = list(range(lo, hi + 1))
    values = np.array([seed_symmetric_kl(c, i, nbins=e) for e in edges])
    none = [None] * len(edges)
    return {
        "bins": [e - 1 for e in edges],
        "edges": edges,
        "statistic": "seed_symmetric_kl",
        "js_nats": values,
        "js_bits": values / LN2,
        "null_mean_bits": none,
        "null_q025_bits": none,
        "null_q975_bits": none,
        "standardised": none,
        "pvalue": none,
        "n_permutations": 0,
    }


def _part5(perm: Any, column: int, options: StudyOptions, alternative: str) -> dict[str, Any]:
    observed = float(np.ravel(perm.statistic)[column])
    null = np.asarray(perm.null_distribution)[:, column].astype(np.float64)
    seed_mode = options.compat == "seed"
    if seed_mode:
        n_extreme = int((null > observed).sum())
    elif alternative == "greater":
        n_extreme = int((null >= observed).sum())
    elif alternative == "less":
        n_extreme = int((null <= observed).sum())
    else:
        center = 0.5 if options.statistic == "auroc" else 0.0
        n_extreme = int((np.abs(null - center) >= abs(observed - center)).sum())
    statistic = options.effective_statistic
    divergence = is_divergence(statistic)
    out = {
        "layer": options.layer,
        "statistic_name": statistic,
        "statistic_unit": _statistic_unit(statistic),
        "statistic": observed,
        "statistic_bits": _bits(observed) if divergence else None,
        "alternative": alternative,
        "n_permutations": int(perm.n_permutations),
        "exact": bool(perm.exact),
        "n_null_at_least_observed": n_extreme,
        "pvalue": float(np.ravel(perm.pvalue)[column]),
        "pvalue_rule": perm.pvalue_rule,
        "pvalue_floor": None if (seed_mode or perm.exact) else 1.0 / (perm.n_permutations + 1),
        "null": _null_summary(null),
        "null_distribution": null,
        "null_distribution_bits": null / LN2 if divergence else None,
        "seed": options.seed,
    }
    return out


def _hedges_g_se(g: float, n1: int, n2: int) -> float:
    """Large-sample standard error of Hedges' g (Hedges & Olkin 1985, eq. 5.8.13)."""
    return math.sqrt((n1 + n2) / (n1 * n2) + g * g / (2.0 * (n1 + n2)))


def _part6(
    perm: Any,
    values: np.ndarray,
    labels: np.ndarray,
    layers: Sequence[int],
    options: StudyOptions,
    alternative: str,
    correction: str,
    zero: np.ndarray,
    stats: Any,
) -> dict[str, Any]:
    statistic = np.ravel(perm.statistic).astype(np.float64)
    null = np.asarray(perm.null_distribution, dtype=np.float64)
    pvalues = {
        "none": np.ravel(perm.pvalue),
        "maxstat": np.ravel(perm.pvalue_maxstat),
        "holm": np.ravel(perm.pvalue_holm),
        "fdr": np.ravel(perm.pvalue_fdr),
    }
    chosen = pvalues[correction]
    statistic_name = options.effective_statistic
    divergence = is_divergence(statistic_name)
    rows = []
    for j, layer in enumerate(layers):
        c, i = values[labels, j], values[~labels, j]
        mean_c, mean_i = float(c.mean()), float(i.mean())
        layer_null = null[:, j]
        g = float(stats.hedges_g(c, i))
        g_se = _hedges_g_se(g, c.size, i.size)
        rows.append(
            {
                "layer": int(layer),
                "n_correct": int(c.size),
                "n_incorrect": int(i.size),
                "n_zero_norm": int(zero[:, j].sum()),
                "mean_log_norm_correct": mean_c,
                "mean_log_norm_incorrect": mean_i,
                "difference": mean_c - mean_i,
                "statistic": float(statistic[j]),
                "statistic_bits": _bits(float(statistic[j])) if divergence else None,
                "null_mean": float(layer_null.mean()),
                "null_min": float(layer_null.min()),
                "null_max": float(layer_null.max()),
                "null_q95": float(np.quantile(layer_null, 0.95)),
                "pvalue": float(pvalues["none"][j]),
                "pvalue_maxstat": float(pvalues["maxstat"][j]),
                "pvalue_holm": float(pvalues["holm"][j]),
                "pvalue_fdr": float(pvalues["fdr"][j]),
                "pvalue_corrected": float(chosen[j]),
                "significant": bool(chosen[j] <= options.alpha),
                "auroc": float(stats.auroc(c, i)),
                "hedges_g": g,
                "hedges_g_ci_low": g - Z_975 * g_se,
                "hedges_g_ci_high": g + Z_975 * g_se,
            }
        )
    significant = [r["layer"] for r in rows if r["significant"]]
    return {
        "site": options.site,
        "statistic_name": statistic_name,
        "statistic_unit": _statistic_unit(statistic_name),
        "alternative": alternative,
        "correction": correction,
        "alpha": options.alpha,
        "n_permutations": int(perm.n_permutations),
        "significance_rule": f"p ({correction}) <= {options.alpha}",
        "n_layers": len(rows),
        "n_significant": len(significant),
        "significant_layers": significant,
        "n_significant_correct_higher": sum(
            1 for r in rows if r["significant"] and r["difference"] > 0
        ),
        "n_significant_correct_lower": sum(
            1 for r in rows if r["significant"] and r["difference"] < 0
        ),
        "layers": rows,
    }


# ----------------------------------------------------------------------------- outputs


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file, not a directory; give a directory path.")


@dataclasses.dataclass
class StudyOutputs:
    """Paths written by :func:`write_outputs`."""

    out_dir: Path
    results: Path
    layers: Path
    report: Path
    figures: list[Path]
    table: Path | None


def write_outputs(
    result: StudyResult,
    out_dir: str | Path,
    *,
    table: pa.Table | None = None,
    workers: int | None = None,
) -> StudyOutputs:
    """Render the figures and report in memory, then write every output file atomically.

    Nothing is written if rendering fails. ``table``, when given, is written
    as ``tokens.parquet`` too. ``workers`` is the number of processes that
    render figures (default: up to 2).
    """
    from lamina._io import atomic_open
    from lamina.report import figures as figures_mod
    from lamina.report import html as html_mod
    from lamina.report import summary as summary_mod

    out = Path(out_dir)
    _check_out_dir(out)
    results = result.to_dict()
    rendered = figures_mod.render_figures(result, workers=workers)
    page = html_mod.render_report(results, {name: r["png"] for name, r in rendered.items()})
    csv = summary_mod.layers_csv(results)
    text = dumps_results(results)

    figures_dir = out / FIGURES_DIR
    if figures_dir.exists() and not figures_dir.is_dir():
        raise OutputError(
            f"{figures_dir} is a file, not a directory; remove it or pick another --out."
        )
    written: list[Path] = []
    table_path = None
    if table is not None:
        from lamina.table import write_table

        table_path = out / TOKENS_FILE
        write_table(table, table_path)
    for name, formats in rendered.items():
        for ext, data in formats.items():
            path = figures_dir / f"{name}.{ext}"
            with atomic_open(path, "wb") as fh:
                fh.write(data)
            written.append(path)
    with atomic_open(out / LAYERS_FILE, "w", newline="") as fh:
        fh.write(csv)
    with atomic_open(out / RESULTS_FILE) as fh:
        fh.write(text)
    with atomic_open(out / REPORT_FILE) as fh:
        fh.write(page)
    return StudyOutputs(
        out_dir=out,
        results=out / RESULTS_FILE,
        layers=out / LAYERS_FILE,
        report=out / REPORT_FILE,
        figures=written,
        table=table_path,
    )


def load_results(out_dir: str | Path) -> dict[str, Any]:
    """Read ``DIR/results.json`` (OutputError if missing or not lamina's)."""
    out = Path(out_dir)
    path = out / RESULTS_FILE if out.is_dir() or not out.suffix else out
    if not path.is_file():
        raise OutputError(
            f"{path} does not exist; run `lamina run --out {out}` or `lamina analyze` first."
        )
    try:
        results = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"{path} is not readable JSON ({exc}); re-run the study.") from exc
    if not isinstance(results, dict) or results.get("format") != RESULTS_FORMAT:
        raise OutputError(f"{path} is not a lamina results file; re-run the study.")
    return results


def rebuild_report(out_dir: str | Path) -> Path:
    """Rebuild ``DIR/report.html`` from ``DIR/results.json`` and ``DIR/figures/*.png``."""
    from lamina._io import atomic_open
    from lamina.report import figures as figures_mod
    from lamina.report import html as html_mod

    out = Path(out_dir)
    _check_out_dir(out)
    results = load_results(out)
    pngs: dict[str, bytes] = {}
    for name in figures_mod.FIGURE_NAMES:
        path = out / FIGURES_DIR / f"{name}.png"
        if not path.is_file():
            raise OutputError(f"{path} is missing; re-run `lamina analyze` to redraw the figures.")
        pngs[name] = path.read_bytes()
    page = html_mod.render_report(results, pngs)
    with atomic_open(out / REPORT_FILE) as fh:
        fh.write(page)
    return out / REPORT_FILE


# ----------------------------------------------------------------------------- run


@dataclasses.dataclass
class StudyRun:
    """What :func:`run_study` produced."""

    result: StudyResult
    outputs: StudyOutputs
    reused_table: bool
    reuse_note: str


def table_matches(
    meta: Mapping[str, Any],
    *,
    model: str,
    text_sha256: str,
    windows: WindowOptions,
    site: str,
    model_kwargs: Mapping[str, Any] | None = None,
) -> tuple[bool, str]:
    """Whether a table's metadata matches a run's model, text and windows; and why not."""
    model_kwargs = dict(model_kwargs or {})
    m = meta.get("model", {})
    if m.get("spec") != model:
        return False, f"it was captured from model {m.get('spec')!r}, not {model!r}"
    revision = model_kwargs.get("revision")
    if revision is not None and m.get("revision") != revision:
        return False, f"it was captured at revision {m.get('revision')!r}, not {revision!r}"
    for key in ("dtype", "device"):
        want = model_kwargs.get(key, "auto")
        if want not in (None, "auto") and m.get(key) != want:
            return False, f"it was captured with {key} {m.get(key)!r}, not {want!r}"
    t = meta.get("text", {})
    if t.get("sha256") != text_sha256:
        return False, "it was captured from a different text"
    from lamina.capture.windows import default_window

    w = meta.get("windows", {})
    window = windows.window
    if window is None:
        window = default_window(m.get("context_length"), windows.bos)
    want = {"mode": windows.windows, "window": window, "bos": windows.bos}
    want["max_tokens"] = windows.max_tokens
    if windows.windows == "all":
        want["stride"] = windows.stride if windows.stride is not None else max(1, window // 2)
    for key, value in want.items():
        if w.get(key) != value:
            return False, f"it used windows {key}={w.get(key)!r}, not {value!r}"
    if site not in meta.get("sites", []):
        return False, f"it has no {site!r} site"
    return True, "same model, text and windows"


def prewarm() -> threading.Thread:
    """Import the analysis and plotting libraries in a background thread; returns the thread.

    ``run_study`` starts this before loading the model and joins it before the
    analysis, so scipy's and matplotlib's imports and first-use set-up (about a
    second on a small CPU) overlap the model load instead of following the
    forward pass. Any error is left for the real import to raise.
    """

    def work() -> None:
        with contextlib.suppress(Exception):
            import scipy.stats  # noqa: F401

            import lamina.stats  # noqa: F401
            from lamina.report import figures, html

            figures.warm_up()
            html.template()

    thread = threading.Thread(target=work, name="lamina-prewarm", daemon=True)
    thread.start()
    return thread


def seed_windows(context_length: int) -> WindowOptions:
    """The notebook's window: ``context_length`` tokens from the middle of the token stream.

    Capture's ``middle`` mode is the notebook's slicing: the window starts at
    ``n_tokens // 2`` and every position is scored against the next token of
    the whole stream.
    """
    return WindowOptions(windows="middle", window=context_length)


def run_study(
    model: str = "smollm2-135m",
    text: str = "gutenberg:11",
    out: str | Path = "lamina-out",
    *,
    options: StudyOptions | None = None,
    windows: WindowOptions | None = None,
    keep_boilerplate: bool = False,
    model_kwargs: Mapping[str, Any] | None = None,
    reuse: bool = True,
    progress: bool | None = True,
    command_line: str | None = None,
    log: Callable[[str], None] | None = None,
) -> StudyRun:
    """From a model and a text to every output in ``out``.

    Re-uses ``out/tokens.parquet`` when its metadata matches the model, text
    and windows (and the site is present), else loads the model and extracts
    the table. In ``options.compat == "seed"`` the text keeps its boilerplate
    and the window is the notebook's (the model's context length from the
    middle of the token stream). ``progress``: True/False shows/hides the
    loading and extraction bars, None shows them on a terminal only. ``log``
    receives one line saying whether the table was re-used and why (e.g.
    ``print``), or None.
    """
    from lamina.sources import load_text
    from lamina.table import read_table, table_metadata

    options = options or StudyOptions()
    options.validate()
    windows = windows or WindowOptions()
    model_kwargs = dict(model_kwargs or {})
    out_dir = Path(out)
    _check_out_dir(out_dir)
    seed_mode = options.compat == "seed"
    if seed_mode:
        keep_boilerplate = True

    def say(line: str) -> None:
        if log is not None:
            log(line)

    warming = prewarm()
    loaded_text = load_text(text, keep_boilerplate=keep_boilerplate)
    table = None
    reused = False
    note = "no tokens.parquet in the output directory"
    table_file = out_dir / TOKENS_FILE
    if reuse and table_file.is_file():
        try:
            candidate = read_table(table_file)
            meta = table_metadata(candidate)
        except TableError as exc:
            note = f"it is not a usable token table: {exc}"
        else:
            want_windows = windows
            if seed_mode:
                want_windows = seed_windows(int(meta.get("model", {}).get("context_length") or 0))
            reused, note = table_matches(
                meta,
                model=model,
                text_sha256=loaded_text.provenance.sha256,
                windows=want_windows,
                site=options.site,
                model_kwargs=model_kwargs,
            )
            if reused:
                table = candidate
    elif not reuse:
        note = "re-extraction asked for"
    if table is None:
        say(f"extracting: {table_file} not reused ({note})")
        table = _extract(model, loaded_text, windows, options, model_kwargs, progress, command_line)
    else:
        say(f"re-using {table_file} ({note})")
    warming.join()
    result = analyze_table(table, options, command_line=command_line, table_path=TOKENS_FILE)
    outputs = write_outputs(result, out_dir, table=None if reused else table)
    if reused:
        outputs.table = table_file
    return StudyRun(result=result, outputs=outputs, reused_table=reused, reuse_note=note)


def analyze_path(
    table_path: str | Path,
    out: str | Path | None = None,
    *,
    options: StudyOptions | None = None,
    expect_model: str | None = None,
    command_line: str | None = None,
) -> StudyRun:
    """Analyse an existing token table and write every output (but the table) into ``out``.

    ``out`` defaults to the table's directory. ``expect_model``, when given,
    must be the table's model spec, name or fingerprint (InputError if not).
    """
    from lamina.table import read_table, table_metadata

    options = options or StudyOptions()
    options.validate()
    out_dir = Path(out) if out is not None else Path(table_path).parent
    _check_out_dir(out_dir)
    table = read_table(table_path)
    meta = table_metadata(table)
    if expect_model is not None:
        m = meta.get("model", {})
        if expect_model not in (m.get("spec"), m.get("name"), m.get("fingerprint")):
            raise InputError(
                f"{table_path} was captured from model {m.get('spec')!r}, not {expect_model!r}; "
                f"drop --model, or extract a table with `lamina run --model {expect_model}`."
            )
    relative = os.path.relpath(Path(table_path), out_dir)
    result = analyze_table(table, options, command_line=command_line, table_path=relative)
    outputs = write_outputs(result, out_dir)
    outputs.table = Path(table_path)
    return StudyRun(
        result=result, outputs=outputs, reused_table=True, reuse_note="analysed an existing table"
    )


def _extract(
    model: str,
    loaded_text: LoadedText,
    windows: WindowOptions,
    options: StudyOptions,
    model_kwargs: Mapping[str, Any],
    progress: bool | None,
    command_line: str | None,
) -> pa.Table:
    """Load the model and extract the table (the layer is checked before the forward pass)."""
    import sys

    from lamina.capture import extract
    from lamina.sources import load_model

    show = sys.stderr.isatty() if progress is None else progress
    loaded: LoadedModel = load_model(model, progress=show, **model_kwargs)
    if options.compat == "seed":
        windows = seed_windows(loaded.report.context_length)
    n_layers = loaded.report.n_layers
    if options.layer >= n_layers:
        raise InputError(
            f"--layer {options.layer} does not exist: {loaded.report.name} has layers "
            f"0-{n_layers - 1}; pick one of them."
        )
    return extract(
        loaded,
        loaded_text,
        sites=(options.site,),
        windows=windows.windows,
        window=windows.window,
        stride=windows.stride,
        batch_size=windows.batch_size,
        max_tokens=windows.max_tokens,
        bos=windows.bos,
        progress=progress,
        command_line=command_line,
    )
