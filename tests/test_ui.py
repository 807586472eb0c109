"""The dashboard (``lakestore ui``) in a real headless Chromium: the page's runs table,
charts, run page, comparison, live updates, SQL box and exports, over a real server
process, on a local folder and on the loopback S3 server."""

from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import lakestore

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="playwright is a test extra: pip install -e '.[test]'"
)

CHILD = str(Path(__file__).with_name("child_writer.py"))
HOSTILE_NAME = "<script>window.pwned=1</script>\u202eevil'\"" + "x" * 5000
HOSTILE_KEY = "<img src=x onerror=window.pwned=2>"


def _chromium() -> str:
    found = os.environ.get("LAKESTORE_CHROMIUM") or shutil.which("chromium")
    if found is None:
        pytest.fail("no chromium: apt-get install -y chromium (.ci/run does)")
    return found


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        yield launched
        launched.close()


def _log_sweep(store: str) -> dict[str, str]:
    """Three runs of a sweep and one with hostile names; run ids by name."""
    ids = {}
    for lr in (0.1, 0.01, 0.001):
        with lakestore.start_run(store=store, experiment="sweep", run_name=f"lr={lr}") as run:
            run.log_params({"lr": lr, "optimizer": "adam" if lr > 0.005 else "sgd"})
            run.set_tag("team", "vision")
            for step in range(50):
                run.log_metrics(
                    {"train/loss": 1 / (1 + step * lr), "val/acc": step * lr / 5}, step=step
                )
        ids[f"lr={lr}"] = run.run_id
    with lakestore.start_run(store=store, experiment="hostile", run_name=HOSTILE_NAME) as run:
        run.log_param(HOSTILE_KEY, "\"'<b>'\"")
        run.set_tag("<b>bold</b>", "<i>italic</i>")
        run.log_metric(HOSTILE_KEY, 1.0)
    ids["hostile"] = run.run_id
    return ids


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, dict[str, str]]]:
    """A store with runs, and ``lakestore ui`` serving it from a process of its own:
    (URL, store, run ids by name). Parametrized indirectly by backend."""
    from tests.conftest import fresh_store_uri

    store = fresh_store_uri(getattr(request, "param", "local"), request)
    ids = _log_sweep(store)
    with _ui_process(store) as url:
        yield url, store, ids


class _ui_process:  # noqa: N801 (a context manager used as a function)
    def __init__(self, store: str, *extra: str) -> None:
        self.args = [
            "lakestore", "ui", "--store", store,
            "--port", str(_free_port()), "--refresh", "0.5", *extra,
        ]  # fmt: skip

    def __enter__(self) -> str:
        self.process = subprocess.Popen(
            self.args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        assert self.process.stderr is not None
        self.said = []
        while True:
            line = self.process.stderr.readline()
            assert line, f"lakestore ui exited: {''.join(self.said)}"
            self.said.append(line)
            if line.startswith("lakestore ui: "):
                return line.split()[2]

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def _open(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.problems = []
    page.on("pageerror", lambda error: page.problems.append(str(error)))
    page.on("dialog", lambda dialog: (page.problems.append(dialog.message), dialog.dismiss()))
    page.goto(url)
    page.wait_for_function("window.lakestore && window.lakestore.ready")
    return page


def _choose_experiment(page: Any, name: str) -> None:
    page.click(f"#experiment-list li[data-experiment='{name}']")
    page.wait_for_function(
        "names => window.lakestore.runs.rows.every(row => names.includes(row[6]))", arg=[name]
    )
    page.wait_for_function(
        """() => {
            const shown = new Set(window.lakestore.runs.rows.map(row => row[0]));
            const charts = Object.values(window.lakestore.charts);
            return charts.length && charts.every(chart => chart.runs.every(r => shown.has(r)));
        }"""
    )


def _charts(page: Any) -> dict[str, Any]:
    return page.evaluate("window.lakestore.charts")  # type: ignore[no-any-return]


@pytest.mark.parametrize("served", ["local", "s3"], indirect=True)
def test_the_page_draws_one_line_per_selected_run_with_the_logged_values(
    browser: Any, served: tuple[str, str, dict[str, str]]
) -> None:
    url, store, ids = served
    page = _open(browser, url)
    _choose_experiment(page, "sweep")
    assert page.locator("#runs-table tbody tr").count() == 3
    sweep = {ids[name] for name in ("lr=0.1", "lr=0.01", "lr=0.001")}
    charts = _charts(page)
    assert set(charts) == {"train/loss", "val/acc"}
    assert set(charts["train/loss"]["runs"]) == sweep
    for point in charts["train/loss"]["points"]:
        history = lakestore.get_metric_history(point["run_id"], "train/loss", store=store)
        steps, values = zip(*history.select("step", "value").fetchall(), strict=True)
        assert (point["step"], point["value"]) == (list(steps), list(values))
    # Charts are grouped by the prefix before "/".
    assert page.locator(".group h3").all_text_contents() == ["train", "val"]
    # Unselecting a run takes its line away.
    page.click(f"input.select-run[data-run='{ids['lr=0.1']}']")
    page.wait_for_function("window.lakestore.charts['train/loss'].runs.length === 2")
    assert not page.problems


def test_a_filter_narrows_the_table_and_a_malformed_one_says_why(
    browser: Any, served: tuple[str, str, dict[str, str]]
) -> None:
    url, _, ids = served
    page = _open(browser, url)
    page.fill("#filter", "params.optimizer = 'sgd' and metrics.`val/acc` > 0")
    page.click("#apply")
    page.wait_for_function("window.lakestore.runs.rows.length === 1")
    assert page.locator("#runs-table tbody tr").get_attribute("data-run") == ids["lr=0.001"]
    page.fill("#filter", "metrics.acc >")
    page.press("#filter", "Enter")
    page.wait_for_function("document.querySelector('#filter-error').textContent !== ''")
    assert "expected a number or a quoted string" in page.text_content("#filter-error")


def test_log_scale_smoothing_and_time_axes_redraw_the_charts(
    browser: Any, served: tuple[str, str, dict[str, str]]
) -> None:
    url, _, _ = served
    page = _open(browser, url)
    _choose_experiment(page, "sweep")
    page.check("#log-scale")
    page.wait_for_function("window.lakestore.charts['train/loss'].logScale === true")
    page.fill("#smoothing", "0.6")
    page.wait_for_function("window.lakestore.charts['train/loss'].smoothing === 0.6")
    # Each run: its smoothed line, and its raw line faint behind it.
    assert _charts(page)["train/loss"]["lines"] == 6
    page.select_option("#x-axis", "relative")
    page.wait_for_function("window.lakestore.charts['train/loss'].xAxis === 'relative'")
    # One chart's own setting leaves the others as the page's.
    page.locator(".chart[data-key='val/acc'] .chart-log").uncheck()
    page.wait_for_function("window.lakestore.charts['val/acc'].logScale === false")
    assert _charts(page)["train/loss"]["logScale"] is True
    page.select_option("#top-metric", "metrics.val/acc")
    page.fill("#top-count", "1")
    page.click("#select-top")
    page.wait_for_function("window.lakestore.charts['train/loss'].runs.length === 1")
    assert not page.problems


def test_a_run_page_and_a_comparison_of_two_runs(
    browser: Any, served: tuple[str, str, dict[str, str]]
) -> None:
    url, _, ids = served
    page = _open(browser, url)
    _choose_experiment(page, "sweep")
    page.click("#runs-table a:text-is('lr=0.01')")
    page.wait_for_selector("#run-name")
    assert page.text_content("#run-name") == "lr=0.01"
    assert "optimizer" in page.text_content("#view")
    page.wait_for_function("Object.keys(window.lakestore.charts).length === 2")
    page.goto(f"{url}#/compare?run={ids['lr=0.1']}&run={ids['lr=0.001']}")
    page.wait_for_selector("#compare-params")
    differing = page.locator("#compare-params tr.differs td:first-child").all_text_contents()
    assert differing == ["lr", "optimizer"]
    assert not page.problems


def test_a_live_run_grows_on_its_chart(browser: Any, tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    writer = subprocess.Popen(
        [sys.executable, CHILD, "steady", store],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None
        writer.stdout.readline()  # the run id: the run is in the store
        writer.stdout.readline()  # its first points are too
        with _ui_process(store) as url:
            page = _open(browser, url)
            # The chart draws at most 2,000 points a series: its last step shows it growing.
            first = _charts(page)["loss"]["points"][0]["step"][-1]
            page.wait_for_function(
                f"window.lakestore.charts.loss.points[0].step.at(-1) > {first}", timeout=30_000
            )
            assert page.locator("#runs-table tbody tr").count() == 1
    finally:
        writer.stdin.write("stop\n")  # type: ignore[union-attr]
        writer.stdin.flush()  # type: ignore[union-attr]
        writer.communicate(timeout=60)


def test_hostile_names_render_as_text(
    browser: Any, served: tuple[str, str, dict[str, str]]
) -> None:
    url, _, ids = served
    page = _open(browser, url)
    _choose_experiment(page, "hostile")
    assert page.evaluate("window.pwned") is None
    cell = page.locator(f"#runs-table tr[data-run='{ids['hostile']}'] a").nth(1)
    assert cell.text_content() == HOSTILE_NAME
    assert set(_charts(page)) == {HOSTILE_KEY}
    assert page.locator(".chart .title").text_content() == HOSTILE_KEY
    assert page.locator("img").count() == 0
    assert page.locator("script").count() == 2  # uPlot and the page's own
    # A 5,000-character name does not widen the page.
    assert page.evaluate("document.documentElement.scrollWidth") <= 1400
    page.goto(f"{url}#/run/{ids['hostile']}")
    page.wait_for_selector("#run-name")
    assert page.text_content("#run-name") == HOSTILE_NAME
    assert page.evaluate("window.pwned") is None
    assert not page.problems


def test_the_sql_box_reads_the_store_and_nothing_else(
    browser: Any, served: tuple[str, str, dict[str, str]]
) -> None:
    url, _, _ = served
    page = _open(browser, url)
    page.goto(f"{url}#/sql")
    page.fill("#sql", "SELECT count(*) AS n FROM runs")
    page.click("#run-sql")
    page.wait_for_selector("#sql-table")
    assert page.locator("#sql-table td").all_text_contents() == ["4"]
    for refused in ("COPY runs TO '/tmp/out.csv'", "SELECT * FROM read_csv('/etc/passwd')"):
        page.fill("#sql", refused)
        page.click("#run-sql")
        page.wait_for_selector("#sql-error")
        assert page.text_content("#sql-error")
    assert not Path("/tmp/out.csv").exists()


def test_the_runs_table_and_chart_data_export(
    browser: Any, served: tuple[str, str, dict[str, str]]
) -> None:
    url, _, ids = served
    page = _open(browser, url)
    runs = page.request.get(f"{url}api/export/runs.csv?experiment=sweep")
    assert runs.ok
    lines = runs.text().splitlines()
    assert len(lines) == 4
    assert "params.lr" in lines[0]
    history = page.request.get(f"{url}api/export/history.parquet?run={ids['lr=0.1']}")
    table = pq.read_table(io.BytesIO(history.body()))
    assert table.num_rows == 100  # two metrics of 50 steps
    with page.expect_download() as download:
        page.click("#export-runs-csv")
    assert download.value.suggested_filename == "runs.csv"


def test_listening_beyond_this_machine_warns(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    _log_sweep(store)
    server = _ui_process(store, "--host", "0.0.0.0")
    with server as url:
        assert url.startswith("http://0.0.0.0:")
    assert any("anyone who can reach this port" in line for line in server.said)
