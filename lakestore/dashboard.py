"""``lakestore ui``: a local web dashboard over the query layer, read-only.

One page (``lakestore/ui_static``: plain HTML, CSS and JavaScript, and uPlot, vendored from
npm with its licence, so the page works with no internet) and a small JSON API over
:class:`lakestore.Store`: experiments, a search of runs in MLflow's filter grammar, a run,
a comparison, metric histories downsampled on the server, exports, and SQL in a sandbox.
Nothing here writes to the store, and no endpoint reads outside it.
"""

from __future__ import annotations

import io
import math
import os
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from typing import TYPE_CHECKING, Any

from lakestore.errors import LakestoreError

if TYPE_CHECKING:
    import pyarrow as pa
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from lakestore.query import Store

DEFAULT_PORT = 5050
"""The port ``lakestore ui`` serves on unless told otherwise."""

CHART_POINTS = 2000
"""Points a chart draws of each series at most: first, last and the extremes of equal
slices of its steps (Store.metric_history), so spikes and divergence stay visible."""

MAX_TABLE_ROWS = 10_000
"""Most runs the runs table asks for; SQL results are cut to MAX_SQL_ROWS."""
MAX_SQL_ROWS = 1000

REFRESH_SECONDS = 5.0
"""How often an open page asks again for the runs table and the charts."""


class UIError(LakestoreError):
    """The dashboard cannot start (its optional dependencies, its port)."""


@dataclass
class _Stores:
    """The Stores the app reads through: one for its own queries, one sandboxed for SQL
    typed in the page; DuckDB connections are used by one thread at a time."""

    uri: str
    storage_options: dict[str, Any]
    lock: threading.Lock = field(default_factory=threading.Lock)
    _store: Store | None = None
    _sandbox: Store | None = None

    def store(self) -> Store:
        from lakestore.query import connect

        if self._store is None:
            self._store = connect(self.uri, self.storage_options, read_only=True)
        return self._store

    def sandbox(self) -> Store:
        from lakestore.query import connect

        if self._sandbox is None:
            self._sandbox = connect(self.uri, self.storage_options, read_only=True, sandbox=True)
        return self._sandbox


def _plain(value: Any) -> Any:
    """``value`` as JSON can hold it: times as milliseconds since the epoch, NaN and
    infinities as the text Python writes them in, maps as objects."""
    import datetime as dt

    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, dt.datetime):
        return round(value.timestamp() * 1000)
    if isinstance(value, list) and value and isinstance(value[0], tuple):
        return {str(k): _plain(v) for k, v in value}  # a MAP column
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _rows(table: pa.Table) -> dict[str, Any]:
    """A table as ``{"columns": [...], "rows": [[...], ...]}``."""
    columns = [[_plain(value) for value in column.to_pylist()] for column in table.columns]
    rows = [list(row) for row in zip(*columns, strict=True)]
    return {"columns": table.column_names, "rows": rows}


def _differing_first(table: pa.Table) -> list[str]:
    """The columns of a search, attributes first, then the params, metrics and tags whose
    values differ between runs, then those that do not."""
    attributes = [
        "run_id", "run_name", "status", "start_time", "duration_s", "user", "experiment",
        "parent_run_id",
    ]  # fmt: skip
    keyed = [name for name in table.column_names if name.split(".", 1)[0] in _KEY_KINDS]
    differing: list[str] = []
    same: list[str] = []
    for name in keyed:
        values = table.column(name).to_pylist()
        (differing if len({repr(v) for v in values}) > 1 else same).append(name)
    present = [name for name in attributes if name in table.column_names]
    return present + differing + same


_KEY_KINDS = ("params", "metrics", "tags")


def _whole_number(query: Any, name: str, default: int) -> int:
    text = query.get(name)
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise LakestoreError(f"{name} must be a whole number >= 1, got {text!r}")
    return int(text)


def _finite_or_none(values: list[Any]) -> list[Any]:
    return [v if v is None or math.isfinite(v) else None for v in values]


def create_app(
    store: str | os.PathLike[str] | None = None,
    storage_options: dict[str, Any] | None = None,
    *,
    refresh_seconds: float = REFRESH_SECONDS,
) -> Starlette:
    """The dashboard as an ASGI app reading the store at ``store`` (default: the store
    runs are written to); an open page asks again for its runs and charts every
    ``refresh_seconds``."""
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from lakestore.session import get_store_options, get_store_uri

    if store is None:
        store, storage_options = get_store_uri(), get_store_options()
    stores = _Stores(os.fspath(store), dict(storage_options or {}))
    static = resources.files("lakestore") / "ui_static"

    def endpoint(handler: Callable[[Request, Store], Any]) -> Callable[[Request], Response]:
        """``handler(request, store)`` under the lock, its answer as JSON; a bad request
        (a malformed filter, an unknown run) as a 400 with the message."""

        def run(request: Request) -> Response:
            try:
                with stores.lock, warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # unreadable files: skipped, as by the CLI
                    answer = handler(request, stores.store())
            except LakestoreError as error:
                return JSONResponse({"error": str(error)}, status_code=400)
            if isinstance(answer, Response):
                return answer
            return JSONResponse(answer)

        return run

    def index(request: Request) -> Response:
        return FileResponse(str(static / "index.html"))

    def settings(request: Request, store: Store) -> dict[str, Any]:
        return {"store": store.storage.url, "refresh_seconds": refresh_seconds}

    def experiments(request: Request, store: Store) -> dict[str, Any]:
        found = store.arrow(
            "SELECT experiment, name, runs, last_start FROM experiments ORDER BY name"
        )
        assert found is not None  # a SELECT has a result
        return _rows(found)

    def search(request: Request, store: Store) -> pa.Table:
        query = request.query_params
        order_by = [query["order_by"]] if query.get("order_by") else None
        limit = min(_whole_number(query, "limit", MAX_TABLE_ROWS), MAX_TABLE_ROWS)
        experiments = query.getlist("experiment") or None
        return store.search_runs(
            query.get("filter") or None,
            order_by=order_by,
            max_results=limit,
            experiments=experiments,
        ).to_arrow_table()

    def runs(request: Request, store: Store) -> dict[str, Any]:
        found = search(request, store)
        return _rows(found.select(_differing_first(found)))

    def run(request: Request, store: Store) -> dict[str, Any]:
        run_id = request.path_params["run_id"]
        record = store.get_run(run_id)
        summary = store.arrow(
            "SELECT key, latest, min, max, count, last_step FROM metric_summary "
            "WHERE run_id = $id ORDER BY key",
            {"id": run_id},
        )
        children = store.arrow(
            "SELECT run_id, run_name, status FROM runs WHERE parent_run_id = $id "
            "ORDER BY start_time",
            {"id": run_id},
        )
        attributes = {
            name: _plain(getattr(record, name))
            for name in (
                "run_id", "run_name", "experiment", "status", "lifecycle_stage", "user",
                "host", "start_time", "end_time", "parent_run_id",
            )
        }  # fmt: skip
        return {
            "attributes": attributes,
            "params": record.params,
            "tags": record.tags,
            "metrics": _rows(summary) if summary is not None else None,
            "children": _rows(children) if children is not None else None,
        }

    def history(request: Request, store: Store) -> dict[str, Any]:
        query = request.query_params
        run_ids = query.getlist("run")
        if not run_ids:
            return {"series": []}
        points = min(_whole_number(query, "points", CHART_POINTS), 100_000)
        keys = query.getlist("key") or None
        table = store.metric_history(run_ids, keys, points=points).to_arrow_table()
        series = []
        import pyarrow.compute as pc

        for run_id in run_ids:
            of_run = table.filter(pc.equal(table["run_id"], run_id))
            for key in sorted(set(of_run.column("key").to_pylist())):
                rows = of_run.filter(pc.equal(of_run["key"], key))
                times = pc.cast(rows["timestamp"], "int64").to_pylist()
                series.append(
                    {
                        "run_id": run_id,
                        "key": key,
                        "step": rows.column("step").to_pylist(),
                        "time": [t // 1000 for t in times],
                        "value": _finite_or_none(rows.column("value").to_pylist()),
                    }
                )
        return {"series": series}

    def compare(request: Request, store: Store) -> dict[str, Any]:
        run_ids = request.query_params.getlist("run")
        if len(run_ids) < 2:
            raise LakestoreError("compare takes two runs or more: run=<id>&run=<id>")
        compared = store.compare(run_ids)
        names = dict(
            store._run(
                "SELECT run_id, run_name FROM all_runs WHERE list_contains($ids, run_id)",
                {"ids": run_ids},
                lambda relation: relation.fetchall(),
            )
        )
        sides = {}
        for side, relation in (("params", compared.params), ("metrics", compared.metrics)):
            table = relation.to_arrow_table()
            rows = []
            for row in _rows(table)["rows"]:
                values = row[1:]
                rows.append(
                    {"key": row[0], "values": values, "differs": len(set(map(repr, values))) > 1}
                )
            sides[side] = rows
        return {"runs": [{"run_id": r, "run_name": names.get(r)} for r in run_ids], **sides}

    def export(request: Request, store: Store) -> Response:
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq

        kind = request.path_params["kind"]
        file_format = request.path_params["format"]
        if kind == "runs":
            table = search(request, store)
        elif kind == "history":
            run_ids = request.query_params.getlist("run")
            table = store.metric_history(run_ids).to_arrow_table()
        else:
            raise LakestoreError(f"nothing to export as {kind!r}: runs or history")
        sink = io.BytesIO()
        if file_format == "csv":
            import pyarrow as pa

            flat = [
                pa.array([str(v) for v in column.to_pylist()])
                if pa.types.is_map(column.type)
                else column
                for column in table.columns
            ]
            pacsv.write_csv(pa.table(flat, names=table.column_names), sink)
            media = "text/csv"
        elif file_format == "parquet":
            pq.write_table(table, sink)
            media = "application/vnd.apache.parquet"
        else:
            raise LakestoreError(f"no export format {file_format!r}: csv or parquet")
        name = f"{kind}.{file_format}"
        return Response(
            sink.getvalue(),
            media_type=media,
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )

    def sql(request: Request, store: Store) -> dict[str, Any]:
        text = request.query_params.get("q", "")
        if not text.strip():
            raise LakestoreError("type a query: SELECT ... FROM runs")
        sandbox = stores.sandbox()
        table = sandbox.arrow(text)
        if table is None:
            return {"columns": [], "rows": [], "truncated": False}
        answer = _rows(table.slice(0, MAX_SQL_ROWS))
        answer["truncated"] = table.num_rows > MAX_SQL_ROWS
        return answer

    routes = [
        Route("/", index),
        Route("/api/settings", endpoint(settings)),
        Route("/api/experiments", endpoint(experiments)),
        Route("/api/runs", endpoint(runs)),
        Route("/api/run/{run_id}", endpoint(run)),
        Route("/api/history", endpoint(history)),
        Route("/api/compare", endpoint(compare)),
        Route("/api/export/{kind}.{format}", endpoint(export)),
        Route("/api/sql", endpoint(sql)),
        Mount("/static", StaticFiles(directory=str(static)), name="static"),
    ]
    return Starlette(routes=routes)


def _dependencies() -> None:
    import importlib.util

    missing = [name for name in ("starlette", "uvicorn") if importlib.util.find_spec(name) is None]
    if missing:
        raise UIError(
            f"lakestore ui needs {' and '.join(missing)}: pip install {' '.join(missing)}"
        )


def _server(app: Starlette, host: str, port: int) -> Any:
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)
    return uvicorn.Server(config)


def exposure_warning(host: str) -> str | None:
    """The warning to print when ``host`` makes the dashboard reachable from elsewhere."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return None
    return (
        f"lakestore ui listens on {host}: anyone who can reach this port can read the whole "
        "store (runs, params, metrics, tags and SQL over them)"
    )


def serve(
    store: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    storage_options: dict[str, Any] | None = None,
    refresh_seconds: float = REFRESH_SECONDS,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Serve the dashboard until interrupted; ``ready(url)`` is called once it listens."""
    _dependencies()
    app = create_app(store, storage_options, refresh_seconds=refresh_seconds)
    server = _server(app, host, port)
    url = f"http://{host}:{port}/"
    if ready is not None:
        original = server.startup

        async def startup(*args: Any, **kwargs: Any) -> None:
            await original(*args, **kwargs)
            if server.started:
                ready(url)

        server.startup = startup
    server.run()
    if not server.started:
        raise UIError(f"lakestore ui could not listen on {host}:{port} (is the port taken?)")


def ui(
    store: str | os.PathLike[str] | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Serve the dashboard from a background thread (for notebooks and scripts) and
    return its URL; it stops when the process exits."""
    _dependencies()
    server = _server(create_app(store, storage_options), host, port)
    thread = threading.Thread(target=server.run, name="lakestore-ui", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise UIError(f"lakestore ui could not listen on {host}:{port} (is the port taken?)")
        thread.join(0.05)
    warning = exposure_warning(host)
    if warning is not None:
        warnings.warn(warning, stacklevel=2)
    url = f"http://{host}:{port}/"
    print(f"lakestore ui: {url}")
    return url
