"""The pipeline: wires sources, capture, study and report for ``run``, ``analyze`` and ``report``.

It is the only part of lamina that imports both the study and the report; the
command line and the Python API call it. Names are imported lazily.
"""

from lamina._lazy import lazy_exports

_EXPORTS = {
    "FIGURES_DIR": ".outputs",
    "LAYERS_FILE": ".outputs",
    "REPORT_FILE": ".outputs",
    "RESULTS_FILE": ".outputs",
    "TOKENS_FILE": ".outputs",
    "StudyOutputs": ".outputs",
    "rebuild_report": ".outputs",
    "write_outputs": ".outputs",
    "PrecisionCheck": ".precision",
    "check_precision": ".precision",
    "table_matches": ".reuse",
    "StudyRun": ".run",
    "analyze_path": ".run",
    "prewarm": ".run",
    "run_study": ".run",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
