"""``examples/notebook.ipynb``, executed in a Jupyter kernel (nbclient + ipykernel) on the tiny
GPT-2 it builds: every cell runs, and what it shows is short text, HTML tables, inline PNGs."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "notebook.ipynb"
N_LAYERS = 4  # the notebook's tiny GPT-2


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_the_committed_notebook_has_no_outputs():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in _code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    pytest.importorskip("pandas")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    work = tmp_path_factory.mktemp("notebook")
    with pytest.MonkeyPatch.context() as patch:
        # the kernel inherits the environment: no hub, one thread (the suite runs beside it)
        patch.setenv("HF_HUB_OFFLINE", "1")
        patch.setenv("OMP_NUM_THREADS", "1")
        patch.delenv("LAMINA_EXAMPLE_MODEL", raising=False)
        client = nbclient.NotebookClient(
            nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(work)}}
        )
        client.execute()
    return nb


def _outputs(nb, source_end: str) -> list:
    """The outputs of the one code cell whose source ends with ``source_end``."""
    found = [cell for cell in _code_cells(nb) if cell.source.rstrip().endswith(source_end)]
    assert len(found) == 1, source_end
    return found[0].outputs


def _result(nb, source_end: str) -> dict:
    results = [o for o in _outputs(nb, source_end) if o.output_type == "execute_result"]
    assert len(results) == 1, source_end
    return results[0].data


def _body_rows(html: str) -> int:
    return len(re.findall(r"<tr[ >]", html.split("<tbody>")[1].split("</tbody>")[0]))


@pytest.mark.slow
def test_every_cell_ran_without_an_error(executed):
    for cell in _code_cells(executed):
        assert cell.execution_count is not None
        assert not [o for o in cell.outputs if o.output_type == "error"], cell.source[:60]


@pytest.mark.slow
def test_the_model_passed_in_is_identified_by_content(executed):
    text = "".join(o.text for o in _outputs(executed, "print(loaded.report.format())"))
    assert "spec '<GPT2LMHeadModel passed in>'" in text
    assert re.search(r"fingerprint   sha256-tensors:[0-9a-f]{64}\n", text)
    assert re.search(r"config        sha256:[0-9a-f]{64}", text)


@pytest.mark.slow
def test_the_result_shows_as_a_short_text_and_an_html_table(executed):
    data = _result(executed, "\nresult")
    assert len(data["text/plain"]) < 1000
    assert data["text/plain"].startswith("StudyResult: GPT2LMHeadModel on <string>")
    assert data["text/html"].count("<table") == 1
    assert _body_rows(data["text/html"]) == N_LAYERS
    printed = "".join(o.text for o in _outputs(executed, "print(repr(result))"))
    assert printed.strip() == data["text/plain"].strip()


@pytest.mark.slow
def test_the_frames_have_one_row_per_layer_and_per_token(executed):
    n_tokens = int(_result(executed, "table.num_rows")["text/plain"])
    layers = _result(executed, "\nlayers")
    assert _body_rows(layers["text/html"]) == N_LAYERS
    assert "mean_log_norm_correct" in layers["text/html"]
    tokens = _result(executed, "tokens.head()")
    assert _body_rows(tokens["text/html"]) == 5
    assert _result(executed, 'run.to_pandas("tokens").shape')["text/plain"].startswith(
        f"({n_tokens}, "
    )


@pytest.mark.slow
def test_the_figure_and_the_run_show_inline_pngs(executed):
    figure = _result(executed, "\nfig")
    assert base64.b64decode(figure["image/png"]).startswith(b"\x89PNG")
    run = _result(executed, "\nrun")
    assert len(run["text/plain"]) < 1200
    html = run["text/html"]
    assert html.count("<table") == 1 and _body_rows(html) == N_LAYERS
    png = re.search(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")
    listing = _result(executed, "sorted(p.name for p in run.outputs.out_dir.iterdir())")
    for name in ("figures", "layers.csv", "report.html", "results.json", "tokens.parquet"):
        assert repr(name) in listing["text/plain"]
