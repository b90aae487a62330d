// The hub's console: reads the admin API of the hub that serves it (/status, /history, /invocations,
// /mappings/NAME/failures, /replays/ID) and changes it (disable, enable, replay) with the admin token when the hub
// has one. No library, no build step; everything shown is set as text, never as HTML.
"use strict";

const TOKEN_KEY = "eventhub.adminToken"; // sessionStorage: this tab only, gone when it closes
const STATUS_EVERY = 2000;
const INVOCATIONS_EVERY = 3000;
const HISTORY_EVERY = 10000;
const JOB_EVERY = 500;
const COLORS = ["#2563eb", "#16a34a", "#dc2626", "#9333ea", "#ea580c", "#0891b2"];
const SVG = "http://www.w3.org/2000/svg";

const state = { status: null, selected: null, busy: new Set(), failures: [], job: null };

// ---- small helpers -------------------------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key in node && typeof value !== "string") node[key] = value;
    else node.setAttribute(key, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function svg(tag, attrs, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function $(id) {
  return document.getElementById(id);
}

function show(message, kind) {
  const box = el("div", { class: "message " + (kind || "info"), text: message });
  $("messages").append(box);
  setTimeout(() => box.remove(), kind === "error" ? 10000 : 4000);
}

function time(epoch) {
  if (epoch === null || epoch === undefined || epoch === "") return "—";
  const date = typeof epoch === "number" ? new Date(epoch * 1000) : new Date(epoch);
  return isNaN(date) ? String(epoch) : date.toLocaleTimeString();
}

function number(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value !== "number") return String(value);
  return Number.isInteger(value) ? value.toLocaleString() : value.toFixed(2);
}

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// ---- the admin API ------------------------------------------------------------------------------------------

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

function showTokenState() {
  const held = token() !== null;
  $("token-state").textContent = held ? "admin token: kept in this tab" : "";
  $("forget-token").hidden = !held;
}

function askToken(why) {
  const dialog = $("token-dialog");
  $("token-why").textContent = why;
  $("token-input").value = "";
  return new Promise((resolve) => {
    const done = (value) => {
      $("token-ok").onclick = $("token-cancel").onclick = $("token-input").onkeydown = null;
      dialog.close();
      resolve(value);
    };
    $("token-ok").onclick = () => done($("token-input").value || null);
    $("token-cancel").onclick = () => done(null);
    $("token-input").onkeydown = (event) => {
      if (event.key === "Enter") done($("token-input").value || null);
      if (event.key === "Escape") done(null);
    };
    dialog.showModal();
    $("token-input").focus();
  });
}

async function api(method, path, body) {
  const send = () => {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const held = token();
    if (held !== null && method !== "GET") headers.Authorization = "Bearer " + held;
    return fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
      credentials: "omit",
    });
  };
  let answer = await send();
  if (answer.status === 401 && method !== "GET") {
    const why = token() === null
      ? "This hub needs its admin token to change anything."
      : "The hub refused the token: give the right one.";
    const given = await askToken(why);
    if (given === null) throw new ApiError(401, "not done: the admin token is needed");
    sessionStorage.setItem(TOKEN_KEY, given);
    showTokenState();
    answer = await send();
    if (answer.status === 401) {
      sessionStorage.removeItem(TOKEN_KEY);
      showTokenState();
    }
  }
  let data = null;
  try {
    data = await answer.json();
  } catch (_) {
    data = null;
  }
  if (!answer.ok) throw new ApiError(answer.status, (data && data.error) || answer.statusText);
  return data;
}

// ---- mappings -------------------------------------------------------------------------------------------------

function allMappings(status) {
  const running = status.mappings.map((m) => ({ ...m, running: true }));
  const stopped = (status.stopped_mappings || []).map((m) => ({ ...m, running: false }));
  return running.concat(stopped);
}

const STEADY = new Set(["Enabled", "Disabled"]);

function mappingRow(m) {
  const name = m.name;
  const counters = m.counters || {};
  const switchBox = el("input", {
    type: "checkbox",
    role: "switch",
    class: "switch",
    "data-mapping": name,
    "aria-label": "enable " + name,
    checked: m.State === "Enabled",
    disabled: state.busy.has(name) || !STEADY.has(m.State) || m.source === "http",
    onchange: (event) => toggle(name, event.target),
  });
  const open = el("button", { type: "button", class: "link", text: name, onclick: () => select(name) });
  return el(
    "tr",
    { "data-mapping": name, class: state.selected === name ? "selected" : "" },
    el("td", {}, open),
    el("td", { text: m.function || "—" }),
    el("td", { text: m.source || "—" }),
    el("td", {}, el("span", { class: "state state-" + m.State, "data-state": m.State, text: m.State })),
    el("td", { class: "muted", title: m.last_error || undefined, text: m.running ? m.state : m.StateTransitionReason || "" }),
    el("td", { class: "num", text: m.lanes ? m.lanes.length : "—" }),
    el("td", { class: "num", text: number(counters.polled) }),
    el("td", { class: "num", text: number(counters.invoked) }),
    el("td", { class: "num", text: number(counters.failed_invoke) }),
    el("td", { class: "num", text: number(counters.destination_delivered) }),
    el("td", {}, switchBox),
  );
}

async function toggle(name, box) {
  const action = box.checked ? "enable" : "disable";
  state.busy.add(name);
  box.disabled = true;
  try {
    const slot = await api("POST", `/mappings/${encodeURIComponent(name)}/${action}`);
    show(`${name}: ${slot.State}`);
  } catch (error) {
    box.checked = !box.checked;
    show(`${name} could not ${action}: ${error.message}`, "error");
  } finally {
    state.busy.delete(name);
    await refreshStatus();
  }
}

async function refreshStatus() {
  let status;
  try {
    status = await api("GET", "/status");
  } catch (error) {
    $("hub-info").textContent = "the hub does not answer: " + error.message;
    return;
  }
  state.status = status;
  const uptime = Math.round(status.uptime_s);
  $("hub-info").textContent = `up ${Math.floor(uptime / 60)} min ${uptime % 60} s · checkpoints: ${status.checkpoints}`;
  const rows = allMappings(status).map(mappingRow);
  $("mappings").tBodies[0].replaceChildren(...rows);
  if (state.selected) renderLanes();
}

// ---- one mapping: lanes, graphs, invocations, failures ------------------------------------------------------

function selectedMapping() {
  if (!state.status || !state.selected) return null;
  return allMappings(state.status).find((m) => m.name === state.selected) || null;
}

function select(name) {
  state.selected = name;
  state.failures = [];
  $("detail").hidden = false;
  $("detail-title").textContent = name;
  $("replay-results").replaceChildren();
  $("replay-progress").hidden = true;
  for (const row of $("mappings").tBodies[0].rows) row.classList.toggle("selected", row.dataset.mapping === name);
  renderLanes();
  refreshHistory();
  refreshInvocations();
  refreshFailures();
}

function flat(value, prefix, out) {
  if (value !== null && typeof value === "object" && !Array.isArray(value)) {
    for (const [key, inner] of Object.entries(value)) flat(inner, prefix ? `${prefix}.${key}` : key, out);
  } else {
    out[prefix] = value;
  }
  return out;
}

function renderLanes() {
  const m = selectedMapping();
  const table = $("lanes");
  if (!m) return;
  const lag = m.lag && typeof m.lag === "object" ? flat(m.lag, "", {}) : {};
  const parts = Object.entries(lag).map(([k, v]) => `${k} ${number(v)}`);
  $("lag-summary").textContent = parts.length ? "Lag: " + parts.join(" · ") : "";
  // lanes_detail: {lane: {offset_lag, iterator_age_ms, ...}} (or a list of {lane, ...}); lanes it does not name
  // (no lag known yet) are shown from `lanes`
  let detail = m.lanes_detail;
  if (detail && !Array.isArray(detail) && typeof detail === "object") {
    detail = Object.entries(detail).map(([lane, info]) => ({ lane, ...(typeof info === "object" ? info : { value: info }) }));
  }
  if (!Array.isArray(detail)) detail = [];
  const named = new Set(detail.map((item) => item.lane));
  detail = detail.concat((m.lanes || []).filter((lane) => !named.has(lane)).map((lane) => ({ lane })));
  const minute = m.last_minute || {};
  $("last-minute").textContent = Object.keys(minute).length
    ? `Last minute: ${number(minute.polled)} polled, ${number(minute.invoked)} invoked, ${number(minute.failed_invoke)} failed` +
      ` (${number(minute.polled_per_s)} polled/s, ${number(minute.invoked_per_s)} invoked/s)`
    : "";
  const rows = detail.map((item) => flat(item, "", {}));
  const columns = [];
  for (const row of rows) for (const key of Object.keys(row)) if (!columns.includes(key)) columns.push(key);
  if (!columns.includes("lane")) columns.unshift("lane");
  if (columns.length === 1) columns.push("lag");
  table.tHead.replaceChildren(el("tr", {}, columns.map((c) => el("th", { text: c }))));
  table.tBodies[0].replaceChildren(
    ...rows.map((row) => el("tr", { "data-lane": row.lane }, columns.map((c) => el("td", { text: c === "lane" ? row[c] : number(row[c]) })))),
  );
  if (!rows.length) table.tBodies[0].append(el("tr", {}, el("td", { colspan: columns.length, class: "muted", text: m.running ? "no lane read now" : "not running" })));
}

function niceCeiling(value) {
  // 1, 2 or 5 times a power of ten, at or above value: round numbers on the axis
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  return [1, 2, 5, 10].map((step) => step * power).find((candidate) => candidate >= value);
}

function chart(title, series, unit) {
  const width = 440;
  const height = 150;
  const pad = { left: 44, right: 10, top: 10, bottom: 22 };
  const now = Date.now() / 1000;
  const from = now - 3600;
  const values = series.flatMap((s) => s.points.map((p) => p[1]));
  const top = niceCeiling(Math.max(1, ...values) * 1.05);
  const x = (t) => pad.left + ((t - from) / 3600) * (width - pad.left - pad.right);
  const y = (v) => height - pad.bottom - (v / top) * (height - pad.top - pad.bottom);
  const root = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title });
  for (const fraction of [0, 0.5, 1]) {
    const value = top * fraction;
    root.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(value), y2: y(value), class: "grid" }));
    root.append(svg("text", { x: pad.left - 4, y: y(value) + 4, class: "axis", "text-anchor": "end" }, value.toLocaleString()));
  }
  root.append(svg("text", { x: pad.left, y: height - 6, class: "axis" }, "−60 min"));
  root.append(svg("text", { x: width - pad.right, y: height - 6, class: "axis", "text-anchor": "end" }, "now"));
  series.forEach((s, i) => {
    const points = s.points.filter((p) => p[0] >= from);
    if (!points.length) return;
    const path = points.map((p, j) => `${j ? "L" : "M"}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    root.append(svg("path", { d: path, class: "series", stroke: COLORS[i % COLORS.length] }));
  });
  const legend = el("div", { class: "legend" }, series.map((s, i) => {
    const last = s.points.length ? s.points[s.points.length - 1][1] : null;
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = COLORS[i % COLORS.length];
    return el("span", {}, swatch, `${s.name} ${number(last)}${unit ? " " + unit : ""}`);
  }));
  return el("figure", { class: "graph", "data-graph": title }, el("figcaption", { text: title }), root, legend);
}

async function refreshHistory() {
  const name = state.selected;
  if (!name) return;
  let history = null;
  let note = "";
  try {
    history = await api("GET", "/history");
  } catch (error) {
    note = error.status === 404 ? "This hub keeps no history (no /history): the graphs stay empty." : "History: " + error.message;
  }
  if (state.selected !== name) return;
  const points = (history && history.mappings && history.mappings[name]) || [];
  const series = (key) => points.filter((p) => typeof p[key] === "number").map((p) => [p.t, p[key]]);
  const lagKeys = [];
  for (const p of points) for (const [k, v] of Object.entries(flat(p.lag || {}, "", {}))) if (typeof v === "number" && !lagKeys.includes(k)) lagKeys.push(k);
  const lagSeries = lagKeys.map((k) => ({ name: k, points: points.map((p) => [p.t, flat(p.lag || {}, "", {})[k]]).filter((q) => typeof q[1] === "number") }));
  $("graphs").replaceChildren(
    chart("Records per second", [{ name: "polled", points: series("polled_per_s") }, { name: "invoked", points: series("invoked_per_s") }], "/s"),
    chart("Errors per second", [{ name: "failed", points: series("failed_per_s") }], "/s"),
    chart("Lag", lagSeries.length ? lagSeries : [{ name: "lag", points: [] }], ""),
  );
  if (!note && !points.length) note = "No history for this mapping yet.";
  $("history-note").textContent = note;
}

async function refreshInvocations() {
  const name = state.selected;
  if (!name) return;
  let list = [];
  let note = "";
  try {
    list = await api("GET", `/invocations?mapping=${encodeURIComponent(name)}&limit=20`);
  } catch (error) {
    note = error.status === 404 ? "This hub does not record invocations (no /invocations)." : "Invocations: " + error.message;
  }
  if (state.selected !== name) return;
  const rows = (list || []).map((i) =>
    el(
      "tr",
      { "data-request-id": i.request_id },
      el("td", { text: time(i.started) }),
      el("td", { class: "mono", text: i.request_id }),
      el("td", { class: "num", text: number(i.duration_ms) }),
      el("td", {}, el("span", { class: "outcome outcome-" + (i.outcome === "success" ? "ok" : "bad"), text: i.outcome })),
      el("td", { class: "num", text: number(i.records) }),
      el("td", { class: "num", text: number(i.attempt) }),
      el("td", { class: "error-text", text: i.error || "" }),
    ),
  );
  $("invocations").tBodies[0].replaceChildren(...rows);
  $("invocations-note").textContent = note || (rows.length ? "" : "No invocation yet.");
}

const REPLAY_WORDS = {
  event: "with the event it holds",
  source: "records read again from the stream",
};

async function refreshFailures() {
  const name = state.selected;
  if (!name) return;
  let answer = null;
  let note = "";
  try {
    answer = await api("GET", `/mappings/${encodeURIComponent(name)}/failures?limit=200`);
  } catch (error) {
    note = error.message;
  }
  if (state.selected !== name) return;
  state.failures = (answer && answer.failures) || [];
  $("failures-kind").textContent = answer ? answer.destination : "";
  if (answer) {
    const count = answer.total === null || answer.total === undefined ? state.failures.length : answer.total;
    note = `${count} record${count === 1 ? "" : "s"} in the destination. ${answer.replay || ""}`;
  }
  $("failures-note").textContent = note;
  const rows = state.failures.map((f) => {
    const pick = el("input", { type: "checkbox", class: "pick", value: f.id, disabled: !f.replay, "aria-label": "choose " + f.id, onchange: updateReplayButton });
    const doc = el("details", {}, el("summary", { text: f.summary || "document" }), el("pre", { text: f.document || "" }));
    return el(
      "tr",
      { "data-failure-id": f.id },
      el("td", {}, pick),
      el("td", { text: time(f.when) }),
      el("td", { text: f.kind }),
      el("td", { text: f.condition || "" }),
      el("td", { class: "error-text", text: f.error || "" }),
      el("td", { class: "num", text: number(f.records) }),
      el("td", {}, doc),
      el("td", { class: "muted", text: f.replay ? REPLAY_WORDS[f.replay] || f.replay : "cannot be replayed" }),
    );
  });
  if (!rows.length && answer) rows.push(el("tr", {}, el("td", { colspan: 8, class: "muted", text: "Nothing in the failure destination." })));
  $("failures").tBodies[0].replaceChildren(...rows);
  $("select-all").checked = false;
  updateReplayButton();
}

function chosen() {
  return [...$("failures").querySelectorAll("input.pick:checked")].map((box) => box.value);
}

function updateReplayButton() {
  const count = chosen().length;
  $("replay").disabled = count === 0 || state.job !== null;
  $("replay").textContent = count ? `Replay ${count} selected` : "Replay selected";
}

async function replay() {
  const name = state.selected;
  const ids = chosen();
  if (!name || !ids.length) return;
  let job;
  try {
    job = await api("POST", `/mappings/${encodeURIComponent(name)}/failures/replay`, { ids });
  } catch (error) {
    show("Replay refused: " + error.message, "error");
    return;
  }
  state.job = job.id;
  updateReplayButton();
  $("replay-results").replaceChildren();
  $("replay-progress").hidden = false;
  try {
    while (job.state === "running") {
      renderJob(job);
      await new Promise((resolve) => setTimeout(resolve, JOB_EVERY));
      job = await api("GET", `/replays/${job.id}`);
    }
    renderJob(job);
  } catch (error) {
    show("Replay progress unknown: " + error.message, "error");
  } finally {
    state.job = null;
  }
  $("replay-results").replaceChildren(
    ...job.results.map((r) => el("li", { class: r.outcome === "success" ? "ok" : "bad", "data-result": r.outcome },
      `${r.id}: ${r.outcome}` + (r.request_id ? ` (request ${r.request_id})` : "") + (r.error ? ` — ${r.error}` : ""))),
  );
  if (state.selected === name) {
    await refreshFailures();
    await refreshInvocations();
  }
}

function renderJob(job) {
  const finished = job.done + job.failed;
  $("replay-bar").max = Math.max(1, job.total);
  $("replay-bar").value = finished;
  let text = `${finished} of ${job.total} replayed: ${job.done} succeeded, ${job.failed} failed`;
  if (job.state === "finished") text = "Replay finished: " + text;
  if (job.state === "error") text = `Replay stopped (${job.error}): ` + text;
  $("replay-text").textContent = text;
  $("replay-text").dataset.state = job.state;
}

// ---- start ------------------------------------------------------------------------------------------------------

function every(ms, work) {
  const run = async () => {
    try {
      await work();
    } finally {
      setTimeout(run, ms);
    }
  };
  setTimeout(run, ms);
}

document.addEventListener("DOMContentLoaded", async () => {
  $("forget-token").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    showTokenState();
  });
  $("failures-refresh").addEventListener("click", refreshFailures);
  $("replay").addEventListener("click", replay);
  $("select-all").addEventListener("change", (event) => {
    for (const box of $("failures").querySelectorAll("input.pick:not(:disabled)")) box.checked = event.target.checked;
    updateReplayButton();
  });
  showTokenState();
  await refreshStatus();
  const wanted = new URLSearchParams(location.search).get("mapping");
  if (wanted && selectedMapping() === null && state.status && allMappings(state.status).some((m) => m.name === wanted)) select(wanted);
  every(STATUS_EVERY, refreshStatus);
  every(INVOCATIONS_EVERY, refreshInvocations);
  every(HISTORY_EVERY, refreshHistory);
});
