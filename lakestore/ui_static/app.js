// lakestore ui: the page. Every name, key, tag and param from the store is shown as text
// (textContent, never HTML), so that no run name can run a script or break the layout.
"use strict";

const state = {
  experiment: null,
  filter: "",
  orderBy: "",
  runs: { columns: [], rows: [] },
  selected: new Set(),
  sort: null, // [column, descending]
  xAxis: "step",
  logScale: false,
  smoothing: 0,
  charts: new Map(), // metric key -> uPlot
  refreshSeconds: 5,
  timer: null,
};

// What the page drew, for tests and for anyone who wants it from the console.
window.lakestore = { charts: {}, runs: state.runs, ready: false };

const PALETTE = [
  "#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2", "#db2777", "#65a30d",
  "#4f46e5", "#b45309", "#0d9488", "#be123c", "#7c3aed", "#15803d", "#c2410c", "#1d4ed8",
];

const colours = new Map();

function colour(runId) {
  // A run keeps the colour it was first given, on every chart and every page.
  if (!colours.has(runId)) colours.set(runId, PALETTE[colours.size % PALETTE.length]);
  return colours.get(runId);
}

function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

async function api(path, params = {}) {
  const query = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    for (const item of [].concat(value)) if (item !== "" && item != null) query.append(name, item);
  }
  const response = await fetch(`api/${path}?${query}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || response.statusText);
  return body;
}

function shown(value) {
  if (value == null) return "";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

function timeText(ms) {
  return ms == null ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

function cellText(column, value) {
  if (column === "start_time" || column === "end_time") return timeText(value);
  if (column === "duration_s" && value != null) return `${Number(value).toFixed(1)} s`;
  if (typeof value === "number" && column.startsWith("metrics.")) return formatNumber(value);
  return shown(value);
}

function formatNumber(value) {
  if (typeof value !== "number") return shown(value);
  return Math.abs(value) >= 1e5 || (value !== 0 && Math.abs(value) < 1e-3)
    ? value.toExponential(4)
    : String(Number(value.toPrecision(6)));
}

// -- routing ------------------------------------------------------------------------------

function route() {
  const [path, query] = location.hash.replace(/^#/, "").split("?");
  const params = new URLSearchParams(query || "");
  stopRefresh();
  const view = document.getElementById("view");
  view.replaceChildren();
  if (path.startsWith("/run/")) return showRun(view, decodeURIComponent(path.slice(5)));
  if (path === "/compare") return showCompare(view, params.getAll("run"));
  if (path === "/sql") return showSql(view);
  // #/?experiment=E&filter=F&run=A&run=B: a view to share or to bookmark.
  if (params.has("experiment")) state.experiment = params.get("experiment");
  if (params.has("filter")) state.filter = params.get("filter");
  if (params.has("run")) state.selected = new Set(params.getAll("run"));
  markExperiment();
  return showRuns(view);
}

function stopRefresh() {
  if (state.timer) clearTimeout(state.timer);
  state.timer = null;
}

// -- experiments --------------------------------------------------------------------------

async function loadExperiments() {
  const list = document.getElementById("experiment-list");
  let found;
  try {
    found = await api("experiments");
  } catch (error) {
    list.replaceChildren(el("li", { class: "error", text: error.message }));
    return;
  }
  const items = [el("li", { text: "All experiments", onclick: () => chooseExperiment(null) })];
  for (const [id, name, runs] of found.rows) {
    const item = el("li", { title: name, onclick: () => chooseExperiment(id) },
      el("span", { class: "count", text: String(runs) }), el("span", { text: name }));
    item.dataset.experiment = id;
    items.push(item);
  }
  list.replaceChildren(...items);
  markExperiment();
}

function markExperiment() {
  for (const item of document.querySelectorAll("#experiment-list li")) {
    item.classList.toggle("selected", (item.dataset.experiment ?? null) === state.experiment);
  }
}

function chooseExperiment(id) {
  state.experiment = id;
  state.selected.clear();
  markExperiment();
  if (location.hash !== "#/" && location.hash !== "") location.hash = "#/";
  else route();
}

// -- the runs view: search, table, charts -------------------------------------------------

function showRuns(view) {
  const filter = el("input", {
    type: "text", id: "filter", value: state.filter,
    placeholder: "metrics.acc > 0.9 and params.optimizer = 'adam'",
  });
  const error = el("div", { class: "error", id: "filter-error" });
  const apply = () => { state.filter = filter.value; refreshRuns(); };
  filter.addEventListener("keydown", (event) => { if (event.key === "Enter") apply(); });
  const topMetric = el("select", { id: "top-metric" });
  const topCount = el("input", { type: "number", id: "top-count", value: "5", min: "1", style: "width:60px" });
  const topOrder = el("select", { id: "top-order" },
    el("option", { value: "DESC", text: "highest" }), el("option", { value: "ASC", text: "lowest" }));
  view.append(
    el("div", { class: "bar" }, filter, el("button", { id: "apply", text: "Search", onclick: apply })),
    error,
    el("div", { class: "bar" },
      el("span", { text: "Select top" }), topCount, el("span", { text: "by" }), topMetric, topOrder,
      el("button", { id: "select-top", text: "Select", onclick: () => selectTop(topMetric.value, Number(topCount.value), topOrder.value) }),
      el("button", { text: "Clear selection", onclick: () => { state.selected.clear(); drawTable(); refreshCharts(); } }),
      el("button", { id: "compare", text: "Compare selected", onclick: compareSelected }),
      el("span", { class: "muted", text: "Export:" }),
      el("a", { id: "export-runs-csv", href: "#", text: "runs CSV", onclick: (e) => exportLink(e, "runs", "csv") }),
      el("a", { href: "#", text: "runs Parquet", onclick: (e) => exportLink(e, "runs", "parquet") }),
      el("a", { id: "export-history-csv", href: "#", text: "chart data CSV", onclick: (e) => exportLink(e, "history", "csv") }),
      el("a", { href: "#", text: "chart data Parquet", onclick: (e) => exportLink(e, "history", "parquet") })),
    el("div", { class: "table-wrap" }, el("table", { id: "runs-table" })),
    el("div", { class: "muted", id: "more-runs" }),
    el("div", { class: "bar", id: "chart-controls" },
      el("label", { text: "x-axis " }, xAxisSelect()),
      el("label", {}, checkbox("log-scale", state.logScale, (on) => { state.logScale = on; forAll("logScale"); }), " log scale"),
      el("label", { text: "smoothing " }, smoothingSlider())),
    el("div", { id: "charts" }),
    el("h2", { text: "Sweep" }),
    el("div", { class: "bar" }, el("label", { text: "param " }, el("select", { id: "scatter-x" })),
      el("label", { text: " against metric " }, el("select", { id: "scatter-y" }))),
    el("div", { id: "scatter" }),
  );
  document.getElementById("scatter-x").addEventListener("change", drawScatter);
  document.getElementById("scatter-y").addEventListener("change", drawScatter);
  refreshRuns();
  const tick = () => {
    if (document.getElementById("live").checked) refreshRuns();
    state.timer = setTimeout(tick, state.refreshSeconds * 1000);
  };
  state.timer = setTimeout(tick, state.refreshSeconds * 1000);
}

function forAll(name) {
  // A setting of the page applies to every chart, those that had their own too.
  for (const key of Object.keys(overrides)) delete overrides[key][name];
  drawCharts();
}

function checkbox(id, checked, changed) {
  const box = el("input", { type: "checkbox", id });
  box.checked = checked;
  box.addEventListener("change", () => changed(box.checked));
  return box;
}

function xAxisSelect() {
  const select = el("select", { id: "x-axis" },
    el("option", { value: "step", text: "step" }),
    el("option", { value: "time", text: "wall-clock time" }),
    el("option", { value: "relative", text: "relative time" }));
  select.value = state.xAxis;
  select.addEventListener("change", () => { state.xAxis = select.value; forAll("xAxis"); });
  return select;
}

function smoothingSlider() {
  const slider = el("input", { type: "range", id: "smoothing", min: "0", max: "0.99", step: "0.01", value: String(state.smoothing) });
  slider.addEventListener("input", () => { state.smoothing = Number(slider.value); forAll("smoothing"); });
  return slider;
}

function exportLink(event, kind, format) {
  event.preventDefault();
  const query = new URLSearchParams();
  if (kind === "runs") {
    if (state.filter) query.append("filter", state.filter);
    if (state.experiment) query.append("experiment", state.experiment);
  } else {
    for (const runId of state.selected) query.append("run", runId);
  }
  location.href = `api/export/${kind}.${format}?${query}`;
}

let runsAsked = 0; // answers to older questions than the latest are dropped
let chartsAsked = 0;

const FIRST_ROWS = 100; // asked first, so that the table shows at once; then every run
const SHOWN_ROWS = 1000; // rows drawn; sorting and "select top" use every run

async function refreshRuns() {
  const question = JSON.stringify([state.filter, state.experiment]);
  if (state.runs.question !== question) {
    await askRuns(question, FIRST_ROWS); // a new question: its first rows at once
  }
  await askRuns(question, null);
}

async function askRuns(question, limit) {
  const error = document.getElementById("filter-error");
  const ticket = ++runsAsked;
  let found;
  try {
    found = await api("runs", { filter: state.filter, experiment: state.experiment ?? "", limit });
  } catch (failure) {
    if (error && ticket === runsAsked) error.textContent = failure.message;
    return;
  }
  if (ticket !== runsAsked || !document.getElementById("runs-table")) return;
  error.textContent = "";
  found.question = question;
  state.runs = window.lakestore.runs = found;
  const present = new Set(found.rows.map((row) => row[0]));
  for (const runId of state.selected) if (!present.has(runId)) state.selected.delete(runId);
  if (state.selected.size === 0) {
    for (const row of found.rows.slice(0, 5)) state.selected.add(row[0]); // the newest runs
  }
  drawTable();
  fillMetricChoices();
  drawScatter();
  await refreshCharts();
}

function sortedRows() {
  const rows = state.runs.rows.slice();
  if (!state.sort) return rows;
  const [column, descending] = state.sort;
  const index = state.runs.columns.indexOf(column);
  const key = (value) => (typeof value === "string" && /^-?(inf|nan)$/.test(value) ? NaN : value);
  rows.sort((a, b) => {
    const [x, y] = [key(a[index]), key(b[index])];
    if (x == null || Number.isNaN(x)) return 1;
    if (y == null || Number.isNaN(y)) return -1;
    const order = x < y ? -1 : x > y ? 1 : 0;
    return descending ? -order : order;
  });
  return rows;
}

function drawTable() {
  const table = document.getElementById("runs-table");
  if (!table) return;
  const columns = state.runs.columns;
  const head = el("tr", {}, el("th", { text: "" }));
  for (const column of columns) {
    const arrow = state.sort && state.sort[0] === column ? (state.sort[1] ? " ▼" : " ▲") : "";
    head.append(el("th", {
      text: column + arrow, title: column,
      onclick: () => {
        state.sort = state.sort && state.sort[0] === column ? [column, !state.sort[1]] : [column, false];
        drawTable();
      },
    }));
  }
  const body = [];
  const rows = sortedRows();
  for (const row of rows.slice(0, SHOWN_ROWS)) {
    const runId = row[0];
    const box = checkbox(`select-${runId}`, state.selected.has(runId), (on) => {
      if (on) state.selected.add(runId); else state.selected.delete(runId);
      refreshCharts();
    });
    box.className = "select-run";
    box.dataset.run = runId;
    const cells = [el("td", {}, box, el("span", { class: "swatch", style: `background:${colour(runId)}` }))];
    row.forEach((value, index) => {
      const column = columns[index];
      const text = cellText(column, value);
      const cell = el("td", { title: text, class: typeof value === "number" ? "num" : "" });
      if (column === "run_id" || column === "run_name") {
        cell.append(el("a", { href: `#/run/${encodeURIComponent(runId)}`, text }));
      } else {
        cell.textContent = text;
      }
      cells.push(cell);
    });
    const line = el("tr", {}, ...cells);
    line.dataset.run = runId;
    body.push(line);
  }
  table.replaceChildren(el("thead", {}, head), el("tbody", {}, ...body));
  const more = document.getElementById("more-runs");
  if (more) {
    more.textContent = rows.length > SHOWN_ROWS
      ? `${SHOWN_ROWS} of ${rows.length} runs shown: sort, filter or select the top ones to see others`
      : `${rows.length} runs`;
  }
}

function metricColumns() {
  return state.runs.columns.filter((column) => column.startsWith("metrics."));
}

function fillMetricChoices() {
  const fill = (id, columns) => {
    const select = document.getElementById(id);
    if (!select) return;
    const previous = select.value;
    select.replaceChildren(...columns.map((column) => el("option", { value: column, text: column })));
    if (columns.includes(previous)) select.value = previous;
  };
  fill("top-metric", metricColumns());
  fill("scatter-y", metricColumns());
  fill("scatter-x", state.runs.columns.filter((column) => column.startsWith("params.")));
}

function selectTop(column, count, order) {
  const index = state.runs.columns.indexOf(column);
  if (index < 0) return;
  const ranked = state.runs.rows
    .filter((row) => typeof row[index] === "number")
    .sort((a, b) => (order === "ASC" ? a[index] - b[index] : b[index] - a[index]))
    .slice(0, count);
  state.selected = new Set(ranked.map((row) => row[0]));
  drawTable();
  refreshCharts();
}

function compareSelected() {
  const query = new URLSearchParams();
  for (const runId of state.selected) query.append("run", runId);
  location.hash = `#/compare?${query}`;
}

// -- charts -----------------------------------------------------------------------------

let history = { series: [] };

async function refreshCharts() {
  const runIds = [...state.selected];
  const ticket = ++chartsAsked;
  let answer;
  try {
    answer = runIds.length ? await api("history", { run: runIds }) : { series: [] };
  } catch (failure) {
    const error = document.getElementById("filter-error");
    if (error && ticket === chartsAsked) error.textContent = failure.message;
    return;
  }
  if (ticket !== chartsAsked) return;
  history = answer;
  drawCharts();
}

function runName(runId) {
  const nameIndex = state.runs.columns.indexOf("run_name");
  const row = state.runs.rows.find((r) => r[0] === runId);
  return (row && nameIndex >= 0 && row[nameIndex]) || runId.slice(0, 8);
}

function smoothed(values, weight) {
  // An exponential moving average, debiased at the start (as TensorBoard's).
  if (!weight) return values;
  const out = [];
  let last = 0;
  let count = 0;
  for (const value of values) {
    if (value == null) { out.push(null); continue; }
    last = last * weight + (1 - weight) * value;
    count += 1;
    out.push(last / (1 - weight ** count));
  }
  return out;
}

const overrides = {}; // metric key -> the settings its chart changed for itself

function settingsOf(key) {
  return { xAxis: state.xAxis, logScale: state.logScale, smoothing: state.smoothing, ...overrides[key] };
}

function xValues(series, xAxis) {
  if (xAxis === "step") return series.step;
  const seconds = series.time.map((ms) => ms / 1000);
  if (xAxis === "time") return seconds;
  const first = seconds.length ? seconds[0] : 0;
  return seconds.map((s) => s - first);
}

function chartData(key) {
  // One x array for every run of the chart (uPlot.join), a y array per run.
  const series = history.series.filter((s) => s.key === key);
  const { xAxis, logScale, smoothing } = settingsOf(key);
  const tables = series.map((s) => {
    const xs = xValues(s, xAxis);
    const order = xs.map((_, i) => i).sort((a, b) => xs[a] - xs[b]);
    let ys = order.map((i) => s.value[i]);
    if (logScale) ys = ys.map((v) => (v != null && v > 0 ? v : null));
    return [order.map((i) => xs[i]), ys];
  });
  const joined = tables.length ? uPlot.join(tables) : [[]];
  const data = [joined[0]];
  const lines = [];
  series.forEach((s, index) => {
    const raw = joined[index + 1];
    if (smoothing > 0) {
      data.push(raw);
      lines.push({ run_id: s.run_id, label: `${runName(s.run_id)} (raw)`, raw: true });
      data.push(smoothed(raw, smoothing));
      lines.push({ run_id: s.run_id, label: runName(s.run_id), raw: false });
    } else {
      data.push(raw);
      lines.push({ run_id: s.run_id, label: runName(s.run_id), raw: false });
    }
  });
  return { data, lines, points: series.map((s) => ({ run_id: s.run_id, step: s.step, value: s.value })) };
}

const zoomed = new Set(); // the charts the user zoomed into: live updates keep their range

function sameLines(chart, lines) {
  const labels = chart.series.slice(1).map((series) => series.label);
  return labels.length === lines.length && labels.every((label, i) => label === lines[i].label);
}

function drawCharts() {
  const holder = document.getElementById("charts");
  if (!holder) return;
  const keys = [...new Set(history.series.map((s) => s.key))].sort();
  const current = [...state.charts.keys()].sort();
  const settings = JSON.stringify([state.xAxis, state.logScale, state.smoothing, overrides]);
  if (holder.dataset.settings === settings && keys.join("\n") === current.join("\n")) {
    // A live update: new points into the same charts, zoom kept.
    const updates = keys.map((key) => [key, chartData(key)]);
    if (updates.every(([key, { lines }]) => sameLines(state.charts.get(key), lines))) {
      for (const [key, { data, points }] of updates) {
        state.charts.get(key).setData(data, !zoomed.has(key));
        window.lakestore.charts[key].points = points;
      }
      return;
    }
  }
  holder.dataset.settings = settings;
  for (const chart of state.charts.values()) chart.destroy();
  state.charts.clear();
  zoomed.clear();
  window.lakestore.charts = {};
  const groups = new Map();
  for (const key of keys) {
    const group = key.includes("/") ? key.slice(0, key.indexOf("/")) : "";
    if (!groups.has(group)) groups.set(group, []);
    groups.get(group).push(key);
  }
  const sections = [];
  for (const [group, members] of groups) {
    const row = el("div", { class: "charts" });
    sections.push(el("div", { class: "group" }, el("h3", { text: group || "metrics" }), row));
    for (const key of members) {
      const own = settingsOf(key);
      const box = el("div", { class: "chart" },
        el("div", { class: "title", text: key, title: key }), chartSettings(key, own));
      box.dataset.key = key;
      row.append(box);
      const { data, lines, points } = chartData(key);
      const options = {
        width: 450, height: 220,
        scales: { x: { time: own.xAxis === "time" }, y: { distr: own.logScale ? 3 : 1 } },
        series: [
          { label: own.xAxis === "step" ? "step" : own.xAxis === "time" ? "time" : "seconds" },
          ...lines.map((line, index) => ({
            label: line.label,
            stroke: colour(line.run_id) + (line.raw ? "40" : ""),
            width: line.raw ? 1 : 1.5,
            spanGaps: true,
            // A series of a point or two shows its points: a line would not show at all.
            points: { show: data[index + 1].filter((v) => v != null).length <= 2 },
            value: (_, v) => (v == null ? "--" : formatNumber(v)),
          })),
        ],
        axes: [{}, { size: 60, values: (_, ticks) => ticks.map(formatNumber) }],
        cursor: { drag: { x: true, y: false } },
        hooks: {
          setSelect: [() => zoomed.add(key)],
          ready: [(u) => u.over.addEventListener("dblclick", () => zoomed.delete(key))],
        },
      };
      const chart = new uPlot(options, data, box);
      state.charts.set(key, chart);
      window.lakestore.charts[key] = {
        runs: lines.filter((l) => !l.raw).map((l) => l.run_id),
        lines: lines.length,
        logScale: own.logScale,
        smoothing: own.smoothing,
        xAxis: own.xAxis,
        points,
      };
    }
  }
  holder.replaceChildren(...sections);
  window.lakestore.ready = true;
}

function chartSettings(key, own) {
  // This chart's own x-axis, log scale and smoothing, over the page's.
  const change = (name, value) => { overrides[key] = { ...overrides[key], [name]: value }; drawCharts(); };
  const axis = el("select", { class: "chart-x-axis" },
    el("option", { value: "step", text: "step" }), el("option", { value: "time", text: "time" }),
    el("option", { value: "relative", text: "relative" }));
  axis.value = own.xAxis;
  axis.addEventListener("change", () => change("xAxis", axis.value));
  const log = el("input", { type: "checkbox", class: "chart-log" });
  log.checked = own.logScale;
  log.addEventListener("change", () => change("logScale", log.checked));
  const smooth = el("input", { type: "range", class: "chart-smoothing", min: "0", max: "0.99", step: "0.01", value: String(own.smoothing) });
  smooth.addEventListener("change", () => change("smoothing", Number(smooth.value)));
  return el("div", { class: "chart-settings muted" }, axis, el("label", {}, log, " log"), " smooth ", smooth);
}

// -- sweep scatter ----------------------------------------------------------------------

function drawScatter() {
  const holder = document.getElementById("scatter");
  if (!holder) return;
  const xColumn = document.getElementById("scatter-x").value;
  const yColumn = document.getElementById("scatter-y").value;
  holder.replaceChildren();
  if (!xColumn || !yColumn) {
    holder.append(el("p", { class: "muted", text: "A sweep needs a param and a metric." }));
    return;
  }
  const xi = state.runs.columns.indexOf(xColumn);
  const yi = state.runs.columns.indexOf(yColumn);
  const points = state.runs.rows
    .map((row) => ({ run: row[0], x: row[xi], y: row[yi] }))
    .filter((p) => p.x != null && typeof p.y === "number");
  const numeric = points.every((p) => !Number.isNaN(Number(p.x)));
  const categories = [...new Set(points.map((p) => String(p.x)))].sort();
  const xs = points.map((p) => (numeric ? Number(p.x) : categories.indexOf(String(p.x))));
  const ys = points.map((p) => p.y);
  const [width, height, pad] = [460, 220, 40];
  const scale = (values, size) => {
    const [low, high] = [Math.min(...values), Math.max(...values)];
    return (v) => pad + ((v - low) / (high - low || 1)) * (size - 2 * pad);
  };
  const sx = scale(xs, width);
  const sy = scale(ys, height);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "scatter");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  points.forEach((p, i) => {
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", sx(xs[i]));
    dot.setAttribute("cy", height - sy(ys[i]));
    dot.setAttribute("r", 4);
    dot.setAttribute("fill", colour(p.run));
    const title = document.createElementNS(ns, "title");
    title.textContent = `${runName(p.run)}: ${xColumn} = ${p.x}, ${yColumn} = ${p.y}`;
    dot.append(title);
    svg.append(dot);
  });
  holder.append(svg, el("div", { class: "muted", text: `${xColumn} (x) against ${yColumn} (y), ${points.length} runs` }));
}

// -- a run --------------------------------------------------------------------------------

async function showRun(view, runId) {
  state.selected = new Set([runId]);
  const charts = refreshCharts(); // asked beside the run itself
  let run;
  try {
    run = await api(`run/${encodeURIComponent(runId)}`);
  } catch (failure) {
    view.append(el("div", { class: "error", text: failure.message }));
    return;
  }
  const a = run.attributes;
  const pairs = (object) => {
    const grid = el("div", { class: "kv" });
    for (const [key, value] of Object.entries(object)) {
      grid.append(el("div", { class: "muted", text: key }), el("div", { text: shown(value) }));
    }
    return grid;
  };
  const attributes = { ...a, start_time: timeText(a.start_time), end_time: timeText(a.end_time) };
  view.append(
    el("h2", { text: "Run" }),
    el("div", { id: "run-name", class: "title", text: a.run_name || a.run_id }),
    pairs(attributes),
  );
  if (a.parent_run_id) {
    view.append(el("p", {}, "Parent: ", el("a", { href: `#/run/${encodeURIComponent(a.parent_run_id)}`, text: a.parent_run_id })));
  }
  if (run.children && run.children.rows.length) {
    const list = el("ul", { id: "children" });
    for (const [childId, name, status] of run.children.rows) {
      list.append(el("li", {}, el("a", { href: `#/run/${encodeURIComponent(childId)}`, text: name || childId }), ` ${status}`));
    }
    view.append(el("h2", { text: "Child runs" }), list);
  }
  view.append(el("h2", { text: "Params" }), pairs(run.params), el("h2", { text: "Tags" }), pairs(run.tags));
  if (run.metrics) view.append(el("h2", { text: "Metrics" }), tableOf(run.metrics, "run-metrics"));
  view.append(el("div", { id: "charts" }));
  await charts;
  drawCharts();
}

function tableOf(result, id) {
  const table = el("table", { id });
  table.append(el("thead", {}, el("tr", {}, ...result.columns.map((c) => el("th", { text: c })))));
  const body = el("tbody");
  for (const row of result.rows) {
    body.append(el("tr", {}, ...row.map((value) => el("td", {
      text: typeof value === "number" ? formatNumber(value) : shown(value),
      class: typeof value === "number" ? "num" : "",
    }))));
  }
  table.append(body);
  return el("div", { class: "table-wrap" }, table);
}

// -- comparing runs -----------------------------------------------------------------------

async function showCompare(view, runIds) {
  let compared;
  try {
    compared = await api("compare", { run: runIds });
  } catch (failure) {
    view.append(el("div", { class: "error", text: failure.message }));
    return;
  }
  view.append(el("h2", { text: `Comparing ${runIds.length} runs` }));
  for (const side of ["params", "metrics"]) {
    const table = el("table", { id: `compare-${side}` });
    const head = el("tr", {}, el("th", { text: side === "params" ? "param" : "metric (latest)" }));
    for (const run of compared.runs) {
      head.append(el("th", { title: run.run_id }, el("span", { class: "swatch", style: `background:${colour(run.run_id)}` }), run.run_name || run.run_id));
    }
    const body = el("tbody");
    for (const row of compared[side]) {
      const line = el("tr", { class: row.differs ? "differs" : "" }, el("td", { text: row.key }));
      for (const value of row.values) line.append(el("td", { text: typeof value === "number" ? formatNumber(value) : shown(value) }));
      body.append(line);
    }
    table.append(el("thead", {}, head), body);
    view.append(el("h2", { text: side }), el("div", { class: "table-wrap" }, table));
  }
  state.selected = new Set(runIds);
  view.append(el("h2", { text: "Charts" }), el("div", { id: "charts" }));
  await refreshCharts();
}

// -- SQL ----------------------------------------------------------------------------------

function showSql(view) {
  const text = el("textarea", { id: "sql" });
  text.value = "SELECT experiment, count(*) AS runs FROM runs GROUP BY experiment";
  const result = el("div", { id: "sql-result" });
  const run = async () => {
    result.replaceChildren();
    try {
      const answer = await api("sql", { q: text.value });
      result.append(tableOf(answer, "sql-table"));
      if (answer.truncated) result.append(el("p", { class: "muted", text: "First 1,000 rows." }));
    } catch (failure) {
      result.append(el("div", { class: "error", id: "sql-error", text: failure.message }));
    }
  };
  view.append(
    el("h2", { text: "SQL (read-only, the store's files only)" }), text,
    el("div", { class: "bar" }, el("button", { id: "run-sql", text: "Run", onclick: run })),
    result,
  );
}

// -- start ----------------------------------------------------------------------------------

async function start() {
  window.addEventListener("hashchange", route);
  route(); // the view, the experiments and the settings are asked for side by side
  loadExperiments();
  setInterval(() => { if (document.getElementById("live").checked) loadExperiments(); }, 30000);
  try {
    const settings = await api("settings");
    document.getElementById("store").textContent = settings.store;
    state.refreshSeconds = settings.refresh_seconds;
  } catch (failure) {
    document.getElementById("store").textContent = failure.message;
  }
}

start();
