"""The HTML report in headless Chromium: rows, images, sorting, console errors, XSS, banners."""

from __future__ import annotations

import shutil

import pytest

import t2ibench

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
XSS = "<script>alert(1)</script>"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (.ci/run installs it)")


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("html")
    import yaml

    from tests.conftest import suite_dict

    suite = suite_dict(
        prompts=["a red cube on a table", XSS, 'quotes " and & ampersands'],
        matrix={"steps": [2, 3], "scheduler": ["euler", "ddim"]},
        include=[{"name": "<b>bold</b> & co", "steps": 4}],
        reference={"steps": 5},
        metrics={"clip_score": {"model": "random:ViT-B-32"}, "lpips": {"net": "random:alex"}},
        objectives={"latency_ms_p50": "min", "clip_score": "max"},
        constraints={"latency_ms_p95": {"max": 100000}},
    )
    path = tmp / "suite.yaml"
    path.write_text(yaml.safe_dump(suite, sort_keys=False))
    run = t2ibench.run(path, out=tmp / "run", device="cpu")
    return run.run_dir / "report.html"


@pytest.fixture(scope="module")
def page(report):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"])
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.console_errors, pg.dialogs = [], []
        pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
        pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
        pg.on("dialog", lambda d: (pg.dialogs.append(d.message), d.dismiss()))
        pg.goto(report.as_uri())
        pg.wait_for_load_state("load")
        yield pg
        browser.close()


def test_one_row_per_config(page):
    names = page.locator("#results tbody tr td:first-child").all_inner_texts()
    assert len(names) == 6 and "reference" in names and "<b>bold</b> & co" in names


def test_every_image_loads(page):
    widths = page.eval_on_selector_all(".grid img", "imgs => imgs.map(i => i.complete ? i.naturalWidth : -1)")
    assert len(widths) == 6 * 3 * 2
    assert all(w > 0 for w in widths), widths
    plots = page.eval_on_selector_all(".plots img", "imgs => imgs.map(i => i.naturalWidth)")
    assert plots and all(w > 0 for w in plots)


def test_sorting_a_column_reorders_rows(page):
    def p50s():
        return [float(v) for v in page.eval_on_selector_all(
            "#results tbody tr", "rows => rows.map(r => r.cells[Array.from(document.querySelectorAll('#results th'))"
            ".findIndex(h => h.textContent.startsWith('p50 ms'))].dataset.value)")]

    header = page.locator("#results th", has_text="p50 ms")
    header.click()
    ascending = p50s()
    assert ascending == sorted(ascending)
    header.click()
    descending = p50s()
    assert descending == sorted(descending, reverse=True) and descending != ascending


def test_filter_hides_rows(page):
    page.fill("#filter", "ddim")
    visible = page.locator("#results tbody tr:not(.hidden)").count()
    page.fill("#filter", "")
    assert visible == 2


def test_no_console_errors_and_xss_stays_text(page):
    assert page.console_errors == []
    assert page.dialogs == []
    assert XSS in page.locator(".grid").inner_text()
    assert page.locator(".grid script").count() == 0


def test_banner_and_recommendation_on_top(page, report):
    banner = page.locator(".banner").first.inner_text()
    assert "Random weights" in banner and "not meaningful" in banner
    rec = page.locator("#recommendation").inner_text()
    assert rec.startswith("Recommended:") and "lowest latency_ms_p50" in rec
    # seed selector switches the visible images
    page.select_option("#seed", "1")
    shown = page.eval_on_selector_all(".grid img:not(.hidden)", "imgs => imgs.map(i => i.dataset.seed)")
    assert shown and set(shown) == {"1"}
