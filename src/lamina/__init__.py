"""lamina: does what each layer of a causal LM writes differ between the tokens
it predicts right and the tokens it predicts wrong?

The public API, re-exported lazily so that ``import lamina`` stays light
(torch, transformers and scipy load only when their part is used)::

    loaded = lamina.load_model("smollm2-135m")           # lamina.sources
    text = lamina.load_text("gutenberg:11")
    table = lamina.extract(loaded, text, windows="middle")  # lamina.capture -> pyarrow Table
    result = lamina.analyze_table(table, lamina.StudyOptions())  # lamina.study
    lamina.run_study(out="lamina-out")                       # lamina.pipeline: every output

In a notebook, a model and tokenizer already loaded with ``transformers`` go in as
they are, and the results show themselves::

    table = lamina.extract(model=model, tokenizer=tokenizer, text=text)
    result = lamina.analyze_table(table)     # a short repr; HTML in a notebook
    result.to_pandas("layers")               # pandas: pip install lamina[notebook]
    lamina.figure(result, "part6")           # a matplotlib Figure
    run = lamina.run_study(model=model, tokenizer=tokenizer, text=text, out="lamina-out")

``lamina.stats`` holds the statistics as pure functions on arrays. ``docs/api.md``
describes every name below.
"""

from lamina._lazy import lazy_exports
from lamina.errors import LaminaError

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "lamina.sources",
    "load_text": "lamina.sources",
    "LoadedModel": "lamina.sources",
    "extract": "lamina.capture",
    "read_table": "lamina.table",
    "write_table": "lamina.table",
    "analyze_table": "lamina.study",
    "StudyOptions": "lamina.study",
    "WindowOptions": "lamina.study",
    "StudyResult": "lamina.study",
    "load_results": "lamina.study",
    "figure": "lamina.report.figures",
    "run_study": "lamina.pipeline",
    "analyze_path": "lamina.pipeline",
    "StudyRun": "lamina.pipeline",
    "check_precision": "lamina.pipeline",
}

__all__ = ["LaminaError", "__version__", *_EXPORTS]
__getattr__, _dir = lazy_exports(__name__, _EXPORTS)


def __dir__() -> list[str]:
    return sorted(__all__)
