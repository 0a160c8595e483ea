"""lamina: does what each layer of a causal LM writes differ between the tokens
it predicts right and the tokens it predicts wrong?

The public API, re-exported lazily so that ``import lamina`` stays light
(torch, transformers and scipy load only when their part is used)::

    loaded = lamina.load_model("smollm2-135m")           # lamina.sources
    text = lamina.load_text("gutenberg:11")
    table = lamina.extract(loaded, text, windows="middle")  # lamina.capture -> pyarrow Table
    result = lamina.analyze_table(table, lamina.StudyOptions())  # lamina.study
    lamina.run_study(out="lamina-out")                       # lamina.pipeline: every output

``lamina.stats`` holds the statistics as pure functions on arrays.
"""

from lamina._lazy import lazy_exports
from lamina.errors import LaminaError

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "lamina.sources",
    "load_text": "lamina.sources",
    "extract": "lamina.capture",
    "read_table": "lamina.table",
    "write_table": "lamina.table",
    "analyze_table": "lamina.study",
    "StudyOptions": "lamina.study",
    "WindowOptions": "lamina.study",
    "StudyResult": "lamina.study",
    "run_study": "lamina.pipeline",
    "analyze_path": "lamina.pipeline",
}

__all__ = ["LaminaError", "__version__", *_EXPORTS]
__getattr__, _dir = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(__all__)
