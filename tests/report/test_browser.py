"""The HTML reports in headless Chromium: no console errors, every part, images decode; the
token view, the profile and the comparison chart respond to the mouse and the keyboard."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from lamina.pipeline import write_outputs
from lamina.report.figures import FIGURE_NAMES
from lamina.study import StudyOptions, analyze_table
from study.token_tables import separated_norms, token_table

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        pytest.skip(
            "chromium and chromedriver are not installed (Debian packages chromium, "
            "chromium-driver; scripts/setup-browser.sh installs them)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    browser = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield browser
    browser.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    correct, norms = separated_norms(n_tokens=300, n_layers=5, shift_layers=(1, 3))
    options = StudyOptions(layer=1, permutations=99, diagnostic_permutations=49)
    result = analyze_table(token_table(correct, norms), options, created="2000-01-01T00:00:00Z")
    return write_outputs(result, tmp_path_factory.mktemp("report")).report


def test_report_renders_without_console_errors(driver, report):
    from selenium.webdriver.common.by import By

    driver.get(report.resolve().as_uri())
    assert driver.title.startswith("lamina: synthetic on synthetic.txt")
    for k in range(1, 7):
        section = driver.find_element(By.ID, f"part{k}")
        assert section.is_displayed()
        assert section.find_element(By.TAG_NAME, "h2").text.startswith(f"Part {k}:")
    images = driver.find_elements(By.TAG_NAME, "img")
    assert len(images) == len(FIGURE_NAMES)
    decoded = driver.execute_script(
        "return Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight]);"
    )
    for complete, width, height in decoded:
        assert complete and width > 0 and height > 0
    rows = driver.find_elements(By.CSS_SELECTOR, "#layers tr")
    assert len(rows) == 1 + 5
    errors = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []


# ----------------------------------------------------------------------------- explore


@pytest.fixture(scope="module")
def explore(tmp_path_factory):
    """A report with several sites, its token view, and the table it came from."""
    from lamina.study.token_view import token_view
    from study.token_tables import multi_site_table

    table = multi_site_table(n_tokens=300, n_layers=4, n_heads=3)
    options = StudyOptions(
        layer=1, permutations=99, diagnostic_permutations=19, sites=("mlp_out", "attn_head")
    )
    result = analyze_table(table, options, created="2000-01-01T00:00:00Z")
    out = tmp_path_factory.mktemp("explore")
    written = write_outputs(result, out, token_view=token_view(table, options))
    return written.report, table, result


def _open(driver, page):
    driver.get(page.resolve().as_uri())
    driver.get_log("browser")  # start each test with an empty log


def _backgrounds(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#tv-text .tok'))"
        ".map(t => getComputedStyle(t).backgroundColor);"
    )


def _log_norms(table, layer: int) -> np.ndarray:
    return np.log(table.column(f"attn_out.{layer}").to_numpy().astype(np.float64))


def test_the_layer_selector_recolours_the_tokens_by_their_log_norm(driver, explore):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    page, table, _ = explore
    _open(driver, page)
    tokens = driver.find_elements(By.CSS_SELECTOR, "#tv-text .tok")
    assert len(tokens) == 300
    by_correct = _backgrounds(driver)
    correct = table.column("correct").to_numpy()
    assert {by_correct[k] for k in np.flatnonzero(correct)} == {"rgb(213, 232, 246)"}
    assert {by_correct[k] for k in np.flatnonzero(~correct)} == {"rgb(249, 220, 203)"}
    seen = []
    for layer in (2, 3):  # layer 1 is selected already
        Select(driver.find_element(By.ID, "tv-layer")).select_by_visible_text(f"layer {layer}")
        colours = _backgrounds(driver)
        x = _log_norms(table, layer)
        low, high = np.quantile(x, 0.02), np.quantile(x, 0.98)
        # the ends of the scale (viridis): at or beyond the 2nd and 98th percentiles
        assert {colours[k] for k in np.flatnonzero(x <= low - 1e-3)} == {"rgb(68, 1, 84)"}
        assert {colours[k] for k in np.flatnonzero(x >= high + 1e-3)} == {"rgb(253, 231, 37)"}
        assert len(set(colours)) > 50
        seen.append(colours)
    assert seen[0] != seen[1]
    assert driver.find_element(By.ID, "tv-colour").get_attribute("value") == "norm"
    assert "at layer 3" in driver.find_element(By.ID, "tv-legend").text
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def _info(driver, panel: str) -> dict[str, str]:
    from selenium.webdriver.common.by import By

    dts = driver.find_elements(By.CSS_SELECTOR, f"#{panel} dt")
    dds = driver.find_elements(By.CSS_SELECTOR, f"#{panel} dd")
    return {dt.text: dd.text for dt, dd in zip(dts, dds, strict=True)}


def _expected_token(table, k: int, layer: int) -> dict[str, str]:
    from study.token_tables import WORDS

    row = {name: table.column(name)[k].as_py() for name in table.column_names}
    return {
        "target": f"{json.dumps(WORDS[row['target_id']])} (id {row['target_id']})",
        "prediction": f"{json.dumps(WORDS[row['pred_id']])} (id {row['pred_id']})",
        "correct": "yes" if row["correct"] else "no",
        "rank of the target": str(row["target_rank"]),
        "log-probability": f"{row['target_logprob']:.3f} nats",
        "entropy": f"{row['entropy']:.3f} nats",
        f"ln ‖attn_out‖ at layer {layer}": f"{_log_norms(table, layer)[k]:.3f}",
        "text position": f"{row['text_pos']:,}",
    }


def test_hovering_a_token_shows_its_numbers(driver, explore):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    page, table, _ = explore
    _open(driver, page)
    tokens = driver.find_elements(By.CSS_SELECTOR, "#tv-text .tok")
    for k in (0, 17, 299):
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", tokens[k])
        ActionChains(driver).move_to_element(tokens[k]).perform()
        assert _info(driver, "tv-info") == _expected_token(table, k, 1)
        assert (
            driver.find_element(By.CSS_SELECTOR, "#tv-info strong").text == f"token {k + 1} of 300"
        )
    # markup in a token's text is shown as text, never parsed
    assert "<b>&" in driver.find_element(By.ID, "tv-text").text
    assert driver.find_elements(By.CSS_SELECTOR, "#tv-text b, #tv-info b") == []
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_token_view_works_from_the_keyboard(driver, explore):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page, table, _ = explore
    _open(driver, page)
    driver.execute_script("document.getElementById('tv-page').focus()")
    driver.switch_to.active_element.send_keys(Keys.TAB)  # the next tab stop: the text
    active = driver.switch_to.active_element
    assert active.get_attribute("class").startswith("tok") and active.get_attribute("data-i") == "0"
    assert _info(driver, "tv-info") == _expected_token(table, 0, 1)
    active.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    assert driver.switch_to.active_element.get_attribute("data-i") == "2"
    assert _info(driver, "tv-info") == _expected_token(table, 2, 1)
    driver.switch_to.active_element.send_keys(Keys.END)
    assert driver.switch_to.active_element.get_attribute("data-i") == "299"
    # one tab stop for the whole text: Tab leaves it
    driver.switch_to.active_element.send_keys(Keys.TAB)
    assert driver.switch_to.active_element.get_attribute("class") != "tok c1"
    assert [
        t.get_attribute("tabindex") for t in driver.find_elements(By.CSS_SELECTOR, ".tok")
    ].count("0") == 1
    # the layer selector by keyboard recolours the tokens
    before = _backgrounds(driver)
    driver.find_element(By.ID, "tv-layer").send_keys(Keys.ARROW_DOWN)
    assert driver.find_element(By.ID, "tv-layer").get_attribute("value") == "2"
    assert _backgrounds(driver) != before
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_profile_chart_shows_a_layer_and_selects_it(driver, explore):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    page, table, result = explore
    _open(driver, page)
    points = driver.find_elements(By.CSS_SELECTOR, "[data-chart=profile] .pt")
    assert len(points) == 4
    ActionChains(driver).move_to_element(points[2]).perform()
    info = _info(driver, "lp-info")
    row = result.part6.layers[2]
    assert driver.find_element(By.CSS_SELECTOR, "#lp-info strong").text == "layer 2 (attn_out)"
    assert info["Hedges' g"] == f"{row.hedges_g:+.3f}"
    assert info["AUROC"] == f"{row.auroc:.3f}"
    assert info["mean ln-norm, correct"] == f"{row.mean_log_norm_correct:.4f}"
    assert info["significant"] == ("yes" if row.significant else "no")
    # keyboard: focus the first layer, move right, press Enter: the token view follows
    driver.execute_script("arguments[0].focus()", points[0])
    driver.switch_to.active_element.send_keys(Keys.ARROW_RIGHT, Keys.ARROW_RIGHT, Keys.ARROW_RIGHT)
    assert driver.find_element(By.CSS_SELECTOR, "#lp-info strong").text == "layer 3 (attn_out)"
    driver.switch_to.active_element.send_keys(Keys.ENTER)
    assert driver.find_element(By.ID, "tv-layer").get_attribute("value") == "3"
    assert driver.find_element(By.ID, "tv-colour").get_attribute("value") == "norm"
    assert "layer 3" in driver.find_element(By.ID, "lp-status").text
    tokens = driver.find_elements(By.CSS_SELECTOR, "#tv-text .tok")
    ActionChains(driver).move_to_element(tokens[4]).perform()
    assert _info(driver, "tv-info") == _expected_token(table, 4, 3)
    points[1].click()  # a click selects too
    assert driver.find_element(By.ID, "tv-layer").get_attribute("value") == "1"
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_every_site_and_head_figure_is_in_the_report(driver, explore):
    from selenium.webdriver.common.by import By

    page, _, _ = explore
    _open(driver, page)
    assert driver.find_element(By.ID, "sites").is_displayed()
    rows = driver.find_elements(By.CSS_SELECTOR, "#sites-table tr")
    assert [r.find_elements(By.TAG_NAME, "td")[0].text for r in rows[1:]] == [
        "attn_out",
        "mlp_out",
        "attn_head",
    ]
    assert len(driver.find_elements(By.TAG_NAME, "img")) == len(FIGURE_NAMES) + 2
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_without_token_strings_the_view_is_omitted_without_errors(driver, report):
    from selenium.webdriver.common.by import By

    _open(driver, report)
    assert "omitted" in driver.find_element(By.ID, "tv-absent").text
    assert len(driver.find_elements(By.CSS_SELECTOR, "[data-chart=profile] .pt")) == 5
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_comparison_chart_shows_absolute_layers(driver, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from lamina.pipeline.compare_runs import compare_runs

    dirs = []
    for k, n_layers in enumerate((3, 5)):
        correct, norms = separated_norms(n_tokens=200, n_layers=n_layers, shift_layers=(1,), seed=k)
        result = analyze_table(
            token_table(correct, norms), StudyOptions(layer=1, permutations=49), created="x"
        )
        dirs.append(write_outputs(result, tmp_path / f"run{k}").out_dir)
    compared = compare_runs(dirs, tmp_path / "compare")
    _open(driver, compared.report)
    points = driver.find_elements(By.CSS_SELECTOR, "[data-chart=compare] .pt")
    assert len(points) == 3 + 5
    ActionChains(driver).move_to_element(points[3 + 3]).perform()
    info = _info(driver, "cmp-info")
    assert info["layer"] == "3 of 0–4" and info["relative depth"] == "0.750"
    point = compared.comparison["series"][1]["points"][3]
    assert info["Hedges' g"] == f"{point['hedges_g']:.3g}"
    assert [e for e in driver.get_log("browser") if e["level"] == "SEVERE"] == []


def test_the_header_timestamp_stays_on_one_line(driver, report):
    """The timestamp is one unbreakable span, even where the header is narrow."""
    from selenium.webdriver.common.by import By

    size = driver.get_window_size()
    driver.set_window_size(360, 800)
    try:
        driver.get(report.resolve().as_uri())
        created = driver.find_element(By.ID, "created")
        assert created.text == "created 2000-01-01T00:00:00Z"
        assert created.value_of_css_property("white-space") == "nowrap"
        lines = driver.execute_script("return arguments[0].getClientRects().length;", created)
        assert lines == 1
    finally:
        driver.set_window_size(size["width"], size["height"])


@pytest.mark.parametrize("table_id", ["controlled-layers", "layers", "balance"])
def test_wide_tables_fit_the_page_without_scrolling(driver, report, table_id):
    """At a laptop's width every column of the per-layer tables is on screen."""
    from selenium.webdriver.common.by import By

    size = driver.get_window_size()
    driver.set_window_size(1280, 900)
    try:
        driver.get(report.resolve().as_uri())
        table = driver.find_element(By.ID, table_id)
        table_right, box_right = driver.execute_script(
            "const t = arguments[0], box = t.parentElement;"
            "return [t.getBoundingClientRect().right, box.getBoundingClientRect().right];",
            table,
        )
        assert table_right <= box_right + 1, (table_right, box_right)
    finally:
        driver.set_window_size(size["width"], size["height"])
