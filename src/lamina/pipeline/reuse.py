"""When a token table already in the output directory can serve a run again."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from lamina.capture.probe_spec import AUTO_PROBE_MODES, DEFAULT_FOLDS, PROBE_SITES
from lamina.capture.windows import default_stride, default_window, middle_span
from lamina.study.options import WindowOptions


def table_matches(
    meta: Mapping[str, Any],
    *,
    model: str,
    text_sha256: str,
    windows: WindowOptions,
    site: str | Iterable[str],
    model_kwargs: Mapping[str, Any] | None = None,
    probe: str | None = None,
    probe_folds: int = DEFAULT_FOLDS,
) -> tuple[bool, str]:
    """Whether a table's metadata matches a run's model, text and windows; and why not.

    ``site`` is the site, or the sites, the run analyses: the table must have each.
    ``probe`` (``--probe``; None: not checked): a run that asks for probe scores needs a
    table with the same method and folds over every probed site it analyses.
    """
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
    w = meta.get("windows", {})
    window = windows.window
    if window is None:
        window = default_window(m.get("context_length"), windows.bos)
    want = {"mode": windows.mode, "window": window, "bos": windows.bos}
    want["max_tokens"] = windows.max_tokens
    if windows.mode == "all":
        want["stride"] = windows.stride if windows.stride is not None else default_stride(window)
    for key, value in want.items():
        if w.get(key) != value:
            return False, f"it used windows {key}={w.get(key)!r}, not {value!r}"
    if windows.mode == "middle":
        expected = _middle_scored(meta, window, windows.max_tokens)
        if expected is not None and meta.get("n_scored") != expected:
            return False, (
                f"it scored {meta.get('n_scored')} tokens where the middle windows score "
                f"{expected} (a text shorter than the window is now scored whole)"
            )
    sites = [site] if isinstance(site, str) else list(site)
    for wanted in sites:
        if wanted not in meta.get("sites", []):
            return False, f"it has no {wanted!r} site"
    if probe is not None:
        matches, why = probe_matches(meta, probe, probe_folds, windows.mode, sites)
        if not matches:
            return False, why
    return True, "same model, text and windows"


def probe_matches(
    meta: Mapping[str, Any], probe: str, folds: int, mode: str, sites: Iterable[str]
) -> tuple[bool, str]:
    """Whether a table has the probe scores a run asks for (``auto`` resolved by ``mode``)."""
    method = probe
    if probe == "auto":
        method = "diffmeans" if mode in AUTO_PROBE_MODES else "none"
    probed = [s for s in sites if s in PROBE_SITES]
    if method == "none" or not probed:
        return True, ""
    have = meta.get("probe")
    if not isinstance(have, dict) or have.get("method") != method:
        return False, f"it has no {method} probe scores"
    if have.get("folds") != folds:
        return False, f"its probe has {have.get('folds')} folds, not {folds}"
    missing = [s for s in probed if s not in (have.get("sites") or [])]
    if missing:
        return False, f"it has no probe scores for {', '.join(missing)}"
    return True, ""


def _middle_scored(meta: Mapping[str, Any], window: int, max_tokens: int | None) -> int | None:
    """The tokens the middle windows of the table's documents score, or None if unknown."""
    lengths = [d.get("n_tokens") for d in meta.get("documents") or []]
    if not lengths or not all(isinstance(n, int) and n >= 2 for n in lengths):
        return None
    total = sum(stop - start for start, stop in (middle_span(n, window) for n in lengths))
    return total if max_tokens is None else min(total, max_tokens)
