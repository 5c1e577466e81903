// Tessera's dashboard: the farm, the jobs, a job (its task grid, live mosaic, flip-book,
// failures, outputs and a task's log) and a worker. Plain script, no build step: views
// are drawn from the JSON API and kept live by server-sent events (/api/events).
"use strict";

const view = document.getElementById("view");
const live = document.getElementById("live");
const STATES = {
  w: ["waiting", "--waiting"], h: ["held", "--held"], q: ["queued", "--queued"],
  r: ["running", "--running"], d: ["done", "--done"], f: ["failed", "--failed"],
  c: ["canceled", "--canceled"],
};
const ENDED = new Set(["done", "failed", "canceled", "rejected"]);
const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();
let current = null; // the view shown: { stop() }

// --- helpers -------------------------------------------------------------------------

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

async function api(path, options) {
  const response = await fetch(path, options);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : await response.text();
  if (!response.ok) throw new Error((body && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function toast(text, error) {
  const el = document.getElementById("toast");
  el.textContent = text;
  el.className = error ? "error" : "";
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), 5000);
}

function ago(ms) {
  if (!ms) return "";
  const s = Math.max(0, (Date.now() - ms) / 1000);
  if (s < 60) return `${Math.round(s)}s ago`;
  if (s < 3600) return `${Math.round(s / 60)}m ago`;
  if (s < 86400) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86400)}d ago`;
}

function span(seconds) {
  if (seconds === null || seconds === undefined) return "";
  if (seconds < 1) return "<1s";
  const s = Math.round(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function percent(tasks) {
  return tasks.total ? Math.floor((100 * tasks.done) / tasks.total) : 0;
}

function bar(tasks, big) {
  const p = percent(tasks);
  return h("div", { class: big ? "bar big" : "bar", title: `${tasks.done}/${tasks.total}` },
    h("span", { style: `width:${p}%` }));
}

function badge(state, extra) {
  return h("span", { class: `badge ${state}` }, extra || state);
}

// Calls `fn` at most once per `ms`, the last call always landing.
function throttle(fn, ms) {
  let timer = null, again = false;
  return function run() {
    if (timer) { again = true; return; }
    fn();
    timer = setTimeout(() => { timer = null; if (again) { again = false; run(); } }, ms);
  };
}

// Follows /api/events (of one job, or all); `on(batch)` for each batch.
function follow(job, on) {
  const source = new EventSource(job ? `/api/events?job=${encodeURIComponent(job)}` : "/api/events");
  source.addEventListener("ready", () => { live.textContent = "live"; live.className = "live on"; });
  source.addEventListener("events", (e) => on(JSON.parse(e.data)));
  source.onerror = () => { live.textContent = "reconnecting…"; live.className = "live off"; };
  return source;
}

// --- router --------------------------------------------------------------------------

// Stops the view shown: its live connections and timers.
function leave() {
  if (current) current.stop();
  current = null;
}

function route() {
  leave();
  const path = location.hash.replace(/^#/, "") || "/";
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  document.querySelectorAll("nav a").forEach((a) =>
    a.classList.toggle("on", a.dataset.nav === (parts[0] === "farm" || parts[0] === "workers" ? "farm" : "jobs")));
  view.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  if (parts[0] === "farm") current = farmView();
  else if (parts[0] === "workers" && parts[1]) current = workerView(parts[1]);
  else if (parts[0] === "jobs" && parts[1]) current = jobView(parts[1]);
  else current = jobsView();
}
window.addEventListener("hashchange", route);
// A page left for another keeps no live connection open (a browser allows six per host, and
// may keep the page it left, frozen, to go back to); coming back shows it afresh.
window.addEventListener("pagehide", leave);
window.addEventListener("pageshow", (e) => { if (e.persisted) route(); });

// --- jobs ----------------------------------------------------------------------------

function jobsView() {
  let stopped = false;
  const state = h("select", { id: "filter-state", onchange: () => refresh() },
    h("option", { value: "" }, "any state"),
    ...["queued,running", "queued", "running", "done", "failed", "canceled"].map((s) =>
      h("option", { value: s }, s === "queued,running" ? "active" : s)));
  const since = h("select", { id: "filter-since", onchange: () => refresh() },
    ...[["", "any time"], ["1h", "last hour"], ["24h", "last day"], ["7d", "last week"]].map(([v, t]) =>
      h("option", { value: v }, t)));
  const body = h("tbody");
  view.replaceChildren(
    h("div", { class: "row spread" }, h("h1", {}, "Jobs")),
    h("div", { class: "filters" }, h("label", {}, "State", state), h("label", {}, "Accepted", since)),
    h("table", { id: "jobs" },
      h("thead", {}, h("tr", {}, ...["Job", "State", "Progress", "", "ETA", "Priority", "Renderer", "Accepted"].map((t) => h("th", {}, t)))),
      body));
  async function refresh() {
    const query = new URLSearchParams();
    if (state.value) query.set("state", state.value);
    if (since.value) query.set("since", since.value);
    let jobs;
    try { jobs = await api(`/api/jobs?${query}`); } catch (e) { toast(e.message, true); return; }
    if (stopped) return;
    if (!jobs.length) {
      body.replaceChildren(h("tr", {}, h("td", { colspan: 8, class: "muted" }, "No jobs. Submit one with `tessera submit job.toml`.")));
      return;
    }
    body.replaceChildren(...jobs.map((j) =>
      h("tr", { "data-job": j.id, "data-state": j.state },
        h("td", {}, h("a", { href: `#/jobs/${encodeURIComponent(j.id)}` }, j.name),
          j.name !== j.id ? h("div", { class: "muted mono" }, j.id) : null),
        h("td", {}, badge(j.state), j.suspended ? [" ", badge("suspended")] : null),
        h("td", { style: "width:18%" }, bar(j.tasks)),
        h("td", { class: "mono" }, `${percent(j.tasks)}% · ${j.tasks.done}/${j.tasks.total}`,
          j.tasks.failed ? h("span", { style: "color:var(--failed)" }, ` · ${j.tasks.failed} failed`) : null),
        h("td", {}, j.eta_s !== undefined ? span(j.eta_s) : ""),
        h("td", {}, j.priority),
        h("td", {}, j.renderer),
        h("td", { class: "muted" }, ago(j.created_ms)))));
  }
  const later = throttle(refresh, 1000);
  const source = follow(null, later);
  const tick = setInterval(refresh, 10000);
  refresh();
  return { stop() { stopped = true; source.close(); clearInterval(tick); } };
}

// --- a job ---------------------------------------------------------------------------

function jobView(id) {
  let stopped = false, status = null, tasks = null, firstDrawn = false;
  const enc = encodeURIComponent(id);
  const title = h("h1", { id: "job-name" }, id);
  const stateEl = h("span", { id: "state" });
  const progress = h("div", { id: "progress", class: "mono" });
  const bigBar = h("div", { class: "bar big", style: "flex:1" }, h("span", { style: "width:0%" }));
  const counts = h("div", { class: "cards", id: "counts" });
  const actions = h("div", { class: "row", id: "actions" });
  const message = h("p", { class: "muted", id: "message" });
  const mosaicBox = h("div", { id: "mosaic-box", hidden: true });
  const flipBox = h("div", { id: "flip-box", hidden: true });
  const gridCanvas = h("canvas", { id: "grid" });
  const gridNote = h("div", { class: "muted", id: "grid-note" }, "\u00a0");
  const taskBox = h("div", { id: "task" }, h("p", { class: "muted" }, "Click a task in the grid to see its log."));
  const failures = h("div", { id: "failures" });
  const outputs = h("div", { id: "outputs" });
  const legend = h("div", { class: "legend" },
    ...Object.values(STATES).map(([name, color]) => h("span", {}, h("i", { style: `background:var(${color})` }), name)));
  view.replaceChildren(
    h("div", { class: "row spread" },
      h("div", {}, title, h("div", { class: "row" }, stateEl, h("span", { class: "muted mono" }, id))),
      actions),
    h("div", { class: "row", style: "margin:14px 0 6px" }, bigBar, progress),
    message, counts,
    h("div", { class: "split" },
      h("div", {}, mosaicBox, flipBox,
        h("h2", {}, "Tasks"), h("div", { class: "grid-wrap" }, gridCanvas, gridNote, legend)),
      h("div", {}, h("h2", {}, "Task"), taskBox, h("h2", {}, "Failures"), failures)),
    h("h2", {}, "Outputs"), outputs);

  // The header, counts and actions, from /api/jobs/{id}.
  function drawStatus() {
    const s = status;
    title.textContent = s.name;
    stateEl.replaceChildren(badge(s.state), s.suspended ? [" ", badge("suspended")] : "");
    stateEl.dataset.state = s.state;
    const p = percent(s.tasks);
    progress.textContent = `${p}% · ${s.tasks.done}/${s.tasks.total} done` +
      (s.eta_s !== undefined ? ` · ETA ${span(s.eta_s)}` : "");
    progress.dataset.percent = p;
    bigBar.firstChild.style.width = `${p}%`;
    message.textContent = s.message || "";
    const by = s.by_state || {};
    counts.replaceChildren(...[["waiting", by.waiting], ["held", by.held], ["queued", by.queued],
      ["running", by.running], ["done", by.done], ["failed", by.failed], ["canceled", by.canceled]]
      .map(([k, v]) => h("div", { class: "card" }, h("b", {}, v || 0), h("small", {}, k))));
    const ended = ENDED.has(s.state);
    const confirmable = (label, act, danger) => {
      const b = h("button", { id: act, class: danger ? "danger" : null });
      b.textContent = label;
      b.onclick = () => {
        if (danger && !b.dataset.armed) {
          b.dataset.armed = "1";
          b.textContent = `Confirm ${label.toLowerCase()}`;
          setTimeout(() => { delete b.dataset.armed; b.textContent = label; }, 4000);
          return;
        }
        doAct(act);
      };
      return b;
    };
    // Rebuilt only when they change, so that a cancel armed stays armed across updates.
    const shape = `${s.state}|${s.suspended}|${s.priority}`;
    if (actions.dataset.shape === shape) return drawFailures(s);
    actions.dataset.shape = shape;
    const priority = h("select", { id: "priority", disabled: ended,
      onchange: () => doAct("priority", { priority: priority.value }) },
      ...["high", "normal", "low"].map((p) => h("option", { value: p, selected: p === s.priority }, p)));
    actions.replaceChildren(...[
      h("label", { class: "muted" }, "Priority ", priority),
      !ended ? (s.suspended ? confirmable("Resume", "resume") : confirmable("Suspend", "suspend")) : null,
      ["failed", "canceled"].includes(s.state) ? confirmable("Retry", "retry") : null,
      !ended ? confirmable("Cancel", "cancel", true) : null].filter(Boolean));
    drawFailures(s);
  }

  function drawFailures(s) {
    failures.replaceChildren(s.failures && s.failures.length
      ? h("table", {}, h("thead", {}, h("tr", {}, ...["Task", "Attempt", "Worker", "Reason"].map((t) => h("th", {}, t)))),
        h("tbody", {}, ...s.failures.slice(-50).reverse().map((f) => h("tr", {},
          h("td", { class: "mono" }, f.task), h("td", {}, f.attempt, f.retried ? " (retried)" : " (failed)"),
          h("td", {}, f.worker ? h("a", { href: `#/workers/${encodeURIComponent(f.worker)}` }, f.worker) : ""),
          h("td", {}, f.reason)))))
      : h("div", { class: "empty" }, "No failed attempts."));
  }

  async function doAct(act, body) {
    try {
      const r = await api(`/api/jobs/${enc}/${act}`, {
        method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body || {}),
      });
      toast(`${id}: ${r.message}`);
    } catch (e) { toast(e.message, true); }
    loadStatus();
  }

  // --- the task grid ---
  // Layout: one row per frame chunk when a chunk has many tasks (tiles, layers), else
  // tasks flowing in index order; `cell` pixels a task.
  let layout = null;
  function placeGrid() {
    const width = Math.max(200, gridCanvas.parentElement.clientWidth - 20);
    const perRow = tasks.layers.length * tasks.tiles[0] * tasks.tiles[1];
    const total = tasks.total;
    let cell, cols, label = 0;
    if (perRow >= 6) {
      label = 48;
      cell = Math.max(3, Math.min(22, Math.floor((width - label) / perRow)));
      cols = perRow;
    } else {
      cell = Math.max(4, Math.min(22, Math.floor(Math.sqrt((width * 360) / Math.max(1, total)))));
      cols = Math.max(1, Math.floor(width / cell));
    }
    const rows = Math.ceil(total / cols);
    layout = { cell, cols, label, rows };
    const ratio = window.devicePixelRatio || 1;
    gridCanvas.width = (label + cols * cell) * ratio;
    gridCanvas.height = rows * cell * ratio;
    gridCanvas.style.width = `${label + cols * cell}px`;
    gridCanvas.style.height = `${rows * cell}px`;
  }
  function drawGrid() {
    if (!tasks) return;
    placeGrid();
    const ctx = gridCanvas.getContext("2d");
    const ratio = window.devicePixelRatio || 1;
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const colors = {};
    for (const [k, [, v]] of Object.entries(STATES)) colors[k] = css(v);
    const { cell, cols, label } = layout;
    const gap = cell >= 6 ? 1 : 0;
    for (let i = 0; i < tasks.total; i++) {
      const r = Math.floor(i / cols), c = i % cols;
      ctx.fillStyle = colors[tasks.states[i]] || colors.w;
      ctx.fillRect(label + c * cell, r * cell, cell - gap, cell - gap);
    }
    if (label && cell >= 10) {
      ctx.fillStyle = css("--muted");
      ctx.font = "11px system-ui";
      ctx.textBaseline = "middle";
      tasks.rows.forEach((text, r) => ctx.fillText(text, 0, r * cell + cell / 2));
    }
    gridNote.textContent = `${tasks.total} tasks` + (tasks.rows.length > 1 ? ` · ${tasks.rows.length} frame chunks` : "") +
      (tasks.tiles[0] * tasks.tiles[1] > 1 ? ` · ${tasks.tiles[0]}×${tasks.tiles[1]} tiles` : "") +
      (tasks.layers.length > 1 ? ` · layers ${tasks.layers.join(", ")}` : "");
  }
  const redraw = throttle(() => requestAnimationFrame(drawGrid), 200);
  function taskAt(event) {
    if (!layout) return null;
    const box = gridCanvas.getBoundingClientRect();
    const c = Math.floor((event.clientX - box.left - layout.label) / layout.cell);
    const r = Math.floor((event.clientY - box.top) / layout.cell);
    const i = r * layout.cols + c;
    return c >= 0 && c < layout.cols && i >= 0 && i < tasks.total ? i : null;
  }
  gridCanvas.addEventListener("mousemove", (e) => {
    const i = taskAt(e);
    if (i !== null) gridNote.textContent = `task ${i}: ${STATES[tasks.states[i]][0]}, attempt ${tasks.attempts[i] + 0}`;
  });
  gridCanvas.addEventListener("click", (e) => { const i = taskAt(e); if (i !== null) showTask(i); });

  // --- a task and its log ---
  let logSource = null;
  async function showTask(index) {
    if (logSource) { logSource.close(); logSource = null; }
    let t;
    try { t = await api(`/api/jobs/${enc}/tasks/${index}`); } catch (e) { toast(e.message, true); return; }
    const pre = h("pre", { class: "log mono", id: "log" }, "");
    taskBox.replaceChildren(
      h("div", { class: "row" }, h("b", { class: "mono" }, t.id), badge(t.state), h("span", { class: "muted" }, `attempt ${t.attempt}`)),
      h("div", { class: "muted" }, `frames ${t.frames.join(", ")}`, t.layer ? ` · layer ${t.layer}` : "",
        t.tile ? ` · tile ${t.tile[0]},${t.tile[1]}` : ""),
      pre);
    if (t.state === "running") {
      pre.textContent = "";
      logSource = new EventSource(`/api/jobs/${enc}/tasks/${index}/log/live`);
      logSource.addEventListener("line", (e) => {
        const line = JSON.parse(e.data);
        pre.append(line.text);
        pre.scrollTop = pre.scrollHeight;
      });
      logSource.addEventListener("end", () => { logSource.close(); logSource = null; });
    } else if (t.logs.length) {
      try { pre.textContent = await api(`/api/jobs/${enc}/tasks/${index}/log`); } catch (e) { pre.textContent = e.message; }
    } else {
      pre.textContent = "No log stored yet.";
    }
  }

  // --- the live mosaic (tiled jobs) ---
  let mosaicImg = null, mosaicName = null, mosaicVersion = 0;
  async function refreshMosaic() {
    if (!status || !status.tiled) return;
    let previews;
    try { previews = await api(`/api/jobs/${enc}/previews`); } catch (e) { return; }
    if (!previews.length || stopped) return;
    mosaicName = previews[0].name;
    if (!mosaicImg) {
      mosaicImg = h("img", { id: "mosaic", alt: "the frame so far" });
      mosaicBox.replaceChildren(h("h2", {}, "Live mosaic ", h("span", { class: "muted", id: "mosaic-name" })),
        h("div", { class: "mosaic" }, mosaicImg));
      mosaicBox.hidden = false;
    }
    mosaicVersion += 1;
    mosaicImg.dataset.version = mosaicVersion;
    document.getElementById("mosaic-name").textContent = mosaicName;
    mosaicImg.src = `/api/jobs/${enc}/previews/${encodeURIComponent(mosaicName)}?v=${mosaicVersion}`;
  }
  const mosaicLater = throttle(refreshMosaic, 700);

  // --- outputs and the flip-book ---
  let flip = null;
  async function loadOutputs() {
    let files;
    try { files = await api(`/api/jobs/${enc}/outputs`); } catch (e) { return; }
    if (stopped) return;
    const url = (f, w) => `/api/jobs/${enc}/outputs/${f.name.split("/").map(encodeURIComponent).join("/")}` + (w ? `?w=${w}` : "");
    outputs.replaceChildren(files.length
      ? h("div", { class: "thumbs" }, ...files.slice(0, 200).map((f) => h("a", { href: url(f), target: "_blank", title: f.name },
        f.picture ? h("img", { loading: "lazy", src: url(f, 240) + `&t=${f.modified_ms}`, alt: f.name }) : null, f.name)))
      : h("div", { class: "empty" }, "No outputs yet."));
    const frames = files.filter((f) => f.picture);
    if (frames.length > 1 && !(status && status.tiled && status.frames <= 1)) {
      if (!flip) flip = makeFlip();
      flip.set(frames.map((f) => url(f, 640) + `&t=${f.modified_ms}`), frames.map((f) => f.name));
    }
  }
  const outputsLater = throttle(loadOutputs, 2000);
  function makeFlip() {
    const img = h("img", { id: "flip", alt: "frames done so far" });
    const slider = h("input", { type: "range", min: 0, max: 0, value: 0 });
    const name = h("span", { class: "muted mono" });
    const play = h("button", {}, "Play");
    let urls = [], names = [], timer = null;
    const show = (i) => { slider.value = i; img.src = urls[i]; name.textContent = names[i]; };
    slider.oninput = () => show(Number(slider.value));
    play.onclick = () => {
      if (timer) { clearInterval(timer); timer = null; play.textContent = "Play"; return; }
      play.textContent = "Pause";
      timer = setInterval(() => show((Number(slider.value) + 1) % urls.length), 1000 / 12);
    };
    flipBox.replaceChildren(h("h2", {}, "Flip-book: frames done so far"),
      h("div", { class: "flip" }, img, h("div", { class: "row" }, play, slider, name)));
    flipBox.hidden = false;
    return {
      set(u, n) {
        const first = !urls.length;
        urls = u; names = n; slider.max = urls.length - 1;
        if (first) show(0);
      },
      stop() { clearInterval(timer); },
    };
  }

  // --- loading and live updates ---
  async function loadStatus() {
    try { status = await api(`/api/jobs/${enc}`); } catch (e) {
      if (!firstDrawn) view.replaceChildren(h("div", { class: "empty", id: "error" }, e.message));
      return false;
    }
    if (stopped) return false;
    drawStatus();
    return true;
  }
  async function loadTasks() {
    try { tasks = await api(`/api/jobs/${enc}/tasks`); } catch (e) { return; }
    if (!stopped) drawGrid();
  }
  const statusLater = throttle(loadStatus, 500);
  const tasksLater = throttle(loadTasks, 3000);
  const mark = { "task.started": "r", "task.done": "d", "task.retry": "q", "task.failed": "f" };
  const source = follow(id, (batch) => {
    let tiles = false, ended = false;
    for (const e of batch.events) {
      if (tasks && e.index !== undefined && mark[e.kind]) {
        if (tasks.states[e.index] !== "d") {
          tasks.states = tasks.states.slice(0, e.index) + mark[e.kind] + tasks.states.slice(e.index + 1);
          if (e.attempt) tasks.attempts[e.index] = e.attempt;
        }
        if (e.kind === "task.done") tiles = true;
      }
      if (e.kind.startsWith("job.")) ended = true;
    }
    redraw();
    statusLater();
    if (batch.more || ended) tasksLater();
    if (tiles) { mosaicLater(); outputsLater(); }
    if (ended) { mosaicLater(); outputsLater(); }
  });
  const tick = setInterval(() => {
    if (status && !ENDED.has(status.state)) { loadTasks(); loadStatus(); mosaicLater(); }
  }, 5000);
  window.addEventListener("resize", redraw);
  (async () => {
    const [ok] = await Promise.all([loadStatus(), loadTasks()]);
    if (!ok || stopped) return;
    firstDrawn = true;
    // When the page first showed the whole job (status and grid): read by the benchmark.
    document.body.dataset.rendered = String(Math.round(performance.now()));
    refreshMosaic();
    loadOutputs();
  })();
  return {
    stop() {
      stopped = true; source.close(); clearInterval(tick);
      window.removeEventListener("resize", redraw);
      if (logSource) logSource.close();
      if (flip) flip.stop();
      delete document.body.dataset.rendered;
    },
  };
}

// --- the farm ------------------------------------------------------------------------

function slotCells(w) {
  const slots = [];
  for (let i = 0; i < w.slots; i++) {
    const r = w.running[i];
    slots.push(r
      ? h("div", { class: "slot" }, h("div", { class: "bar" }, h("span", { style: `width:${Math.round(100 * r.progress)}%;background:var(--running)` })),
        h("a", { href: `#/jobs/${encodeURIComponent(r.job)}`, class: "mono" }, `${r.job} ${r.task}`))
      : h("div", { class: "slot muted" }, h("div", { class: "bar" }), "idle"));
  }
  return slots;
}

function farmView() {
  let stopped = false;
  const summary = h("div", { class: "cards", id: "farm-summary" });
  const workers = h("tbody");
  const queues = h("tbody");
  view.replaceChildren(h("h1", {}, "Farm"), summary,
    h("h2", {}, "Workers"),
    h("table", { id: "workers" }, h("thead", {}, h("tr", {}, ...["Worker", "Classes", "Renderers", "Slots", "Speed", "Seen"].map((t) => h("th", {}, t)))), workers),
    h("h2", {}, "Queues"),
    h("table", { id: "queues" }, h("thead", {}, h("tr", {}, ...["Class", "Priority", "Renderer", "Waiting", "Running", ""].map((t) => h("th", {}, t)))), queues));
  async function refresh() {
    let farm;
    try { farm = await api("/api/farm"); } catch (e) { toast(e.message, true); return; }
    if (stopped) return;
    const slots = farm.workers.reduce((n, w) => n + w.slots, 0);
    const busy = farm.workers.reduce((n, w) => n + w.running.length, 0);
    const waiting = farm.queues.reduce((n, q) => n + q.pending, 0);
    summary.replaceChildren(...[["workers", farm.workers.length], ["slots busy", `${busy}/${slots}`],
      ["tasks waiting", waiting], ["paused queues", farm.queues.filter((q) => q.paused).length]]
      .map(([k, v]) => h("div", { class: "card" }, h("b", {}, v), h("small", {}, k))));
    workers.replaceChildren(...(farm.workers.length ? farm.workers.map((w) => h("tr", { "data-worker": w.id },
      h("td", {}, h("a", { href: `#/workers/${encodeURIComponent(w.id)}` }, w.id), h("div", { class: "muted" }, w.host)),
      h("td", {}, w.classes.join(", ")),
      h("td", {}, w.renderers.map((r) => (w.versions[r] ? `${r} ${w.versions[r]}` : r)).join(", ")),
      h("td", {}, slotCells(w)),
      h("td", {}, w.speed.toFixed(1), w.burst !== undefined ? h("div", { class: "muted" }, `burst at ${w.burst}`) : null),
      h("td", { class: "muted" }, ago(w.heartbeat_ms))))
      : [h("tr", {}, h("td", { colspan: 6, class: "muted" }, "No live worker."))]));
    // The queues with work or paused; the idle rest in one line.
    const shown = farm.queues.filter((q) => q.pending || q.delivered || q.paused);
    const idle = farm.queues.length - shown.length;
    queues.replaceChildren(...shown.map((q) => h("tr", {},
      h("td", {}, q.class), h("td", {}, q.priority), h("td", {}, q.renderer),
      h("td", {}, q.pending), h("td", {}, q.delivered), h("td", {}, q.paused ? badge("paused") : ""))),
      ...(idle || !shown.length ? [h("tr", {}, h("td", { colspan: 6, class: "muted" },
        !farm.queues.length ? "No queue yet." : `${idle} ${idle === 1 ? "queue" : "queues"} idle${shown.length ? "" : ": nothing waits"}.`))] : []));
  }
  const later = throttle(refresh, 1000);
  const source = follow(null, later);
  const tick = setInterval(refresh, 2000);
  refresh();
  return { stop() { stopped = true; source.close(); clearInterval(tick); } };
}

// --- a worker ------------------------------------------------------------------------

function workerView(id) {
  let stopped = false;
  async function refresh() {
    let w;
    try { w = await api(`/api/workers/${encodeURIComponent(id)}`); } catch (e) {
      if (!stopped) view.replaceChildren(h("h1", {}, id), h("div", { class: "empty", id: "error" }, e.message));
      return;
    }
    if (stopped) return;
    view.replaceChildren(
      h("h1", {}, w.id), h("p", { class: "muted" }, `${w.host} · up since ${new Date(w.started_ms).toLocaleString()} · seen ${ago(w.heartbeat_ms)}`),
      h("div", { class: "cards" }, ...[["slots", w.slots], ["busy", w.running.length], ["speed", w.speed.toFixed(1)],
        ["classes", w.classes.join(", ")]].map(([k, v]) => h("div", { class: "card" }, h("b", {}, v), h("small", {}, k)))),
      h("h2", {}, "Slots"), h("div", { class: "card" }, slotCells(w)),
      h("h2", {}, "Renderers"),
      h("table", {}, h("tbody", {}, ...w.renderers.map((r) => h("tr", {}, h("td", {}, r), h("td", { class: "muted" }, w.versions[r] || ""))))),
      w.blocklist.length ? [h("h2", {}, "Jobs it no longer takes"), h("p", { class: "mono" }, w.blocklist.join(", "))] : null);
  }
  const tick = setInterval(refresh, 2000);
  refresh();
  return { stop() { stopped = true; clearInterval(tick); } };
}

route();
