"""The report's visual constants: palette, figure sizes and names, matplotlib settings.

Colours are the Okabe-Ito palette (safe for the common colour-vision
deficiencies); correct predictions are blue, incorrect vermillion, the
permutation null grey. PNGs are ``FIGURE_SIZES[name] * DPI`` pixels; SVGs are
deterministic (fixed hash salt, no date).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "black": "#000000",
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
}
CORRECT_COLOR = OKABE_ITO["blue"]
INCORRECT_COLOR = OKABE_ITO["vermillion"]
NULL_COLOR = "#8C8C8C"
SIGNIFICANT_COLOR = OKABE_ITO["bluish_green"]

DPI = 150
JITTER_STREAM = 2
FIGURE_SIZES: dict[str, tuple[float, float]] = {
    "part2_accuracy": (10.0, 3.8),
    "part3_layer_histograms": (8.0, 4.2),
    "part4_divergences": (10.0, 4.6),
    "part5_significance": (8.0, 3.8),
    "part6_laminar_profile": (10.0, 7.0),
    "part7_controls": (10.0, 7.4),
}
FIGURE_NAMES: tuple[str, ...] = tuple(FIGURE_SIZES)
FIGURE_TITLES = {
    "part2_accuracy": "Part 2: prediction accuracy",
    "part3_layer_histograms": "Part 3: log-norms at one layer",
    "part4_divergences": "Part 4: divergences and the number of bins",
    "part5_significance": "Part 5: permutation test at one layer",
    "part6_laminar_profile": "Part 6: laminar profile over all layers",
    "part7_controls": "Part 7: the difference after the controls",
}
#: Figures drawn only when their part ran (its results field is not null).
OPTIONAL_FIGURES = {"part7_controls": "part7"}


# Figures drawn only when the results call for them: several sites, attn_head, a comparison.
SITE_SERIES = (
    (OKABE_ITO["blue"], "o"),
    (OKABE_ITO["orange"], "s"),
    (OKABE_ITO["bluish_green"], "D"),
    (OKABE_ITO["reddish_purple"], "^"),
    (OKABE_ITO["sky_blue"], "v"),
    (OKABE_ITO["vermillion"], "P"),
    (OKABE_ITO["black"], "X"),
    (OKABE_ITO["yellow"], "h"),
)
FIGURE_SIZES.update(
    {
        "sites_laminar_profiles": (10.0, 6.4),
        "sites_attn_heads": (10.0, 4.6),
        "compare_profiles": (10.0, 6.4),
    }
)
FIGURE_TITLES.update(
    {
        "sites_laminar_profiles": "Every site: laminar profiles on shared axes",
        "sites_attn_heads": "attn_head: effect size per layer and head",
        "compare_profiles": "Runs side by side: laminar profiles",
    }
)
SITE_FIGURES: tuple[str, ...] = ("sites_laminar_profiles", "sites_attn_heads")
# Part 8's figure: only when the table held probe scores (not among FIGURE_NAMES, which every
# study draws).
FIGURE_SIZES["part8_probes"] = (10.0, 7.0)
FIGURE_TITLES["part8_probes"] = "Part 8: correctness in the direction of the vectors"


def figure_names(results) -> tuple[str, ...]:
    """The figures of a results dict, in report order: every part's (Part 7's only when
    Part 7 ran, Part 8's when it ran), then ``sites_laminar_profiles`` for two or more
    per-layer sites and ``sites_attn_heads`` when ``attn_head`` was analysed."""
    names = [
        name
        for name in FIGURE_NAMES
        if name not in OPTIONAL_FIGURES or results.get(OPTIONAL_FIGURES[name]) is not None
    ]
    if results.get("part8") is not None:
        names.append("part8_probes")
    kinds = [p.get("kind") for p in (results.get("sites") or {}).get("profiles", [])]
    if kinds.count("layers") > 1:
        names.append("sites_laminar_profiles")
    if "heads" in kinds:
        names.append("sites_attn_heads")
    return tuple(names)


RC_PARAMS = {
    "axes.spines.right": False,
    "axes.spines.top": False,
    "axes.titleweight": "bold",
    "axes.titlesize": 10.5,
    "axes.titlelocation": "left",
    "axes.labelsize": 9.5,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "font.family": "DejaVu Sans",
    "svg.hashsalt": "lamina",
    "svg.fonttype": "path",
    "path.simplify": True,
}
SVG_METADATA = {"Date": None}
PNG_METADATA = {"Software": None}


def pixel_size(name: str) -> tuple[int, int]:
    """(width, height) in pixels of a figure's PNG."""
    w, h = FIGURE_SIZES[name]
    return round(w * DPI), round(h * DPI)


def writable_matplotlib_dir() -> str | None:
    """Point ``MPLCONFIGDIR`` at a writable directory if matplotlib's own would not be one.

    Call it before matplotlib is imported. Matplotlib keeps its configuration
    and font cache in ``$MPLCONFIGDIR``, else ``$XDG_CONFIG_HOME/matplotlib`` and
    ``$XDG_CACHE_HOME/matplotlib`` (``~/.config``, ``~/.cache``); when one
    cannot be written (a read-only home, a path through a file) it makes a
    temporary one and prints two lines of warnings on every run. lamina uses
    ``lamina-matplotlib-<uid>`` in the temporary directory instead, silently,
    and keeps it so that the font cache is built once. Returns the directory
    set, or None when matplotlib's own serve (or matplotlib is already imported).
    """
    if "matplotlib" in sys.modules:
        return None
    home = os.environ.get("MPLCONFIGDIR")
    if home:
        wanted = [Path(home).expanduser()]
    elif sys.platform.startswith(("linux", "freebsd")):
        wanted = [_xdg("XDG_CONFIG_HOME", ".config"), _xdg("XDG_CACHE_HOME", ".cache")]
    else:
        return None
    if all(path is not None and _usable(path) for path in wanted):
        return None
    fallback = _private_temp_dir()
    if fallback is not None:
        os.environ["MPLCONFIGDIR"] = fallback
    return fallback


def _xdg(variable: str, default: str) -> Path | None:
    value = os.environ.get(variable)
    try:
        base = Path(value).expanduser() if value else Path.home() / default
    except RuntimeError:  # no home directory
        return None
    return base / "matplotlib"


def _usable(path: Path) -> bool:
    """Whether matplotlib would accept ``path``: created if needed, a writable directory."""
    try:
        path = path.resolve()
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return path.is_dir() and os.access(path, os.W_OK)


def _private_temp_dir() -> str | None:
    """``lamina-matplotlib-<uid>`` in the temporary directory if it is this user's alone,
    else a fresh temporary directory; None if neither can be made."""
    getuid = getattr(os, "getuid", None)
    if getuid is not None:
        path = Path(tempfile.gettempdir()) / f"lamina-matplotlib-{getuid()}"
        try:
            path.mkdir(mode=0o700, exist_ok=True)
            info = path.lstat()
            if (
                path.is_dir()
                and not path.is_symlink()
                and info.st_uid == getuid()
                and not info.st_mode & 0o022
                and os.access(path, os.W_OK)
            ):
                return str(path)
        except OSError:
            pass
    try:
        fresh = tempfile.mkdtemp(prefix="lamina-matplotlib-")
    except OSError:
        return None
    atexit.register(shutil.rmtree, fresh, ignore_errors=True)
    return fresh
