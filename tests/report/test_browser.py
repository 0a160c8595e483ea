"""The HTML report renders in headless Chromium: no console errors, six parts, images decode."""

from __future__ import annotations

import os
import shutil

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
