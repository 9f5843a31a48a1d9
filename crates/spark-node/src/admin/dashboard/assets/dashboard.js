// Spark dashboard: polls /v1/dashboard every second and renders it. Every piece of node data
// goes into the page as text (textContent / text nodes), never as markup.
"use strict";

const POLL_MS = 1000;
const CLASSES = ["critical", "normal", "background"];
let paused = false;
let timer = null;
let inflight = false;
const last = {}; // region -> JSON of what it shows, so unchanged regions are not re-rendered

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) node.setAttribute(k, String(v));
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function num(v, digits) {
  return v === null || v === undefined ? "–" : Number(v).toFixed(digits);
}
function pct(v) {
  return v === null || v === undefined ? "–" : `${(v * 100).toFixed(0)}%`;
}
function time(ms) {
  return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}
function warmth(m) {
  return m.warmth === m.warmth_target ? m.warmth : `${m.warmth} → ${m.warmth_target}`;
}
function td(text, numeric) {
  return el("td", numeric ? { class: "num" } : {}, text);
}

// Replaces a region's children only when what it shows changed.
function render(key, data, target, build) {
  const json = JSON.stringify(data);
  if (last[key] === json) return;
  last[key] = json;
  target.replaceChildren(...build());
}

function renderHeader(v) {
  document.getElementById("node-release").textContent = v.release ? `· release ${v.release}` : "";
  const o = v.orchestrator;
  const active = o ? o.modes.filter((m) => m.on).map((m) => m.name) : [];
  const summary = `v${v.version}, serving ${v.listen}, ${v.modules.length} module(s); ` +
    (o ? `modes: ${active.length ? active.join(", ") : "none"}` : "orchestrator off");
  const node = document.getElementById("node-summary");
  if (node.textContent !== summary) node.textContent = summary;
  document.getElementById("updated").textContent = `updated ${time(v.at_ms)} UTC, up ${v.uptime_secs}s`;
}

function renderModes(v) {
  const o = v.orchestrator;
  render("modes", o ? o.modes : null, document.getElementById("modes"), () =>
    o ? o.modes.map((m) => el("li", { "data-mode": m.name, "data-on": m.on }, `${m.name}: ${m.on ? "on" : "off"}`))
      : [el("li", {}, "orchestrator off")]);
  const s = o ? `node CPU ${pct(o.cpu)}, memory pressure ${pct(o.memory_pressure)}, ${o.ticks} ticks` : "";
  document.getElementById("signals").textContent = s;
}

function renderModules(v) {
  const table = document.getElementById("modules");
  const old = Array.from(table.tBodies);
  const bodies = CLASSES.map((cls) => {
    const rows = v.modules.filter((m) => m.class === cls);
    if (!rows.length) return null;
    const body = el("tbody", { "data-class": cls });
    body.append(el("tr", {}, el("th", { scope: "rowgroup", colspan: 11 }, cls)));
    for (const m of rows) {
      body.append(el("tr", { "data-module": m.id },
        el("th", { scope: "row" }, m.id),
        td(num(m.requests_per_sec, 1), true),
        td(num(m.p99_ms, 1), true),
        td(pct(m.cpu_used), true),
        td(m.cpu_share === null ? "uncapped" : pct(m.cpu_share), true),
        td(warmth(m)),
        td(m.state),
        td(`${m.running}/${m.concurrency}`, true),
        td(m.queued, true),
        td(m.requests.requests, true),
        td(m.requests.errors, true)));
    }
    return body;
  }).filter(Boolean);
  old.forEach((b) => b.remove());
  table.append(...bodies);
}

function renderDecisions(v) {
  const o = v.orchestrator;
  const list = o ? o.decisions : [];
  render("decisions", list, document.querySelector("#decisions tbody"), () =>
    list.length ? list.map((d) => el("tr", {}, td(time(d.at_ms)), td(d.scope), td(d.change), td(d.reason)))
      : [el("tr", {}, el("td", { colspan: 4 }, o ? "no decisions yet" : "orchestrator off"))]);
}

function renderPredictor(v) {
  render("predictor", v.modules.map((m) => [m.id, m.expected_per_min, m.observed_per_min, m.p_within_1m, m.warmth, m.warmth_target]),
    document.querySelector("#predictor tbody"), () => v.modules.map((m) => el("tr", {},
      el("th", { scope: "row" }, m.id),
      td(num(m.expected_per_min, 2), true),
      td(num(m.observed_per_min, 1), true),
      td(pct(m.p_within_1m), true),
      td(warmth(m)))));
}

function stateText(state) {
  if (typeof state === "string") return state.toLowerCase();
  const [kind, detail] = Object.entries(state)[0];
  return `${kind.toLowerCase()}${detail && detail.reason ? `: ${detail.reason}` : ""}`;
}

function renderRollout(v) {
  const r = v.rollout.rollout;
  const summary = r ? `Rolling out ${r.to} (from ${r.from || "nothing"}), ${stateText(r.state)}`
    : `No rollout in progress; serving ${v.rollout.current}.`;
  const node = document.getElementById("rollout-summary");
  if (node.textContent !== summary) node.textContent = summary;
  const modules = r ? Object.entries(r.modules) : [];
  render("rollout", modules, document.querySelector("#rollout tbody"), () =>
    modules.length ? modules.map(([id, m]) => el("tr", {},
      el("th", { scope: "row" }, id),
      el("td", {}, ...m.steps.map((s, i) => el("span", {
        class: "step", "data-state": i < m.step ? "done" : i === m.step ? "current" : "pending",
        title: i < m.step ? "passed" : i === m.step ? "current step" : "pending",
      }, `${s}%`))),
      td(`${num(m.share, 0)}%`, true),
      td(`${m.canary_requests}/${m.canary_errors} (stable ${m.stable_requests}/${m.stable_errors})`),
      td(m.compared_with),
      td(m.last || "no verdict yet")))
      : [el("tr", {}, el("td", { colspan: 6 }, "no rollout in progress (verdicts of past rollouts are in the events below)"))]);
}

function renderFleet(v) {
  const f = v.fleet;
  const table = document.getElementById("fleet");
  document.getElementById("fleet-summary").textContent = f
    ? `App ${f.app}, this node ${f.node}; ${f.nodes.length} node(s), read ${time(f.read_ms)} UTC`
    : "This node is not in a fleet (spark up --fleet).";
  table.hidden = !f;
  const nodes = f ? f.nodes : [];
  render("fleet", nodes, table.tBodies[0], () => nodes.map((n) => el("tr", {},
    el("th", { scope: "row" }, n.node + (f && n.node === f.node ? " (this node)" : "")),
    td(n.release || "–"), td(n.running, true), td(n.requests, true), td(pct(n.cpu), true),
    td(n.rollout || "–"), td(n.last_error || "–"))));
}

function renderEvents(v) {
  render("events", v.events, document.querySelector("#events tbody"), () =>
    v.events.length ? v.events.map((e) => el("tr", {}, td(time(e.at_ms)), td(e.kind), td(e.release || "–"), td(e.detail)))
      : [el("tr", {}, el("td", { colspan: 4 }, "no events"))]);
}

function problem(text) {
  const p = document.getElementById("problem");
  p.hidden = !text;
  if (p.textContent !== text) p.textContent = text || "";
}

async function poll() {
  timer = null;
  if (inflight) return;
  inflight = true;
  try {
    const res = await fetch("/v1/dashboard", { credentials: "same-origin", cache: "no-store" });
    if (res.status === 401) {
      problem("Your session has ended (or the node restarted). Run `spark dashboard` again and open the new link.");
      inflight = false;
      return; // no more polling without a session
    }
    if (!res.ok) throw new Error(`the node answered ${res.status}`);
    const v = await res.json();
    problem("");
    renderHeader(v); renderModes(v); renderModules(v); renderDecisions(v);
    renderPredictor(v); renderRollout(v); renderFleet(v); renderEvents(v);
    document.body.dataset.ready = "true";
  } catch (e) {
    problem(`Cannot reach the node: ${e.message}. Retrying.`);
  }
  inflight = false;
  if (!paused) timer = setTimeout(poll, POLL_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  const button = document.getElementById("pause");
  button.addEventListener("click", () => {
    paused = !paused;
    button.setAttribute("aria-pressed", String(paused));
    button.textContent = paused ? "Resume updates" : "Pause updates";
    if (!paused && timer === null) poll();
    if (paused && timer !== null) { clearTimeout(timer); timer = null; }
  });
  poll();
});
