// The dashboard page: one EventSource on /events (a snapshot, then a row per change),
// a table of every breaker, and, under /breaker/<name>, that breaker's history. No
// framework, no build step: the server embeds this file as it is.
"use strict";

const rows = new Map(); // breaker -> row, as the server's view model sends it
let clockOffsetMs = 0; // the dashboard's clock minus the browser's, from each snapshot
const detailName = decodeURIComponent((location.pathname.match(/^\/breaker\/([^/]+)$/) || [])[1] || "");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("data-")) node.setAttribute(key, value);
    else node[key] = value;
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// 850ms, 42s, 3m05s, 2h07m, 4d03h: the CLI's way of writing an age.
function age(ms) {
  if (ms < 0) ms = 0;
  if (ms < 1000) return Math.floor(ms) + "ms";
  const s = Math.floor(ms / 1000);
  const two = (n) => String(n).padStart(2, "0");
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + two(s % 60) + "s";
  if (s < 86400) return Math.floor(s / 3600) + "h" + two(Math.floor((s % 3600) / 60)) + "m";
  return Math.floor(s / 86400) + "d" + two(Math.floor((s % 86400) / 3600)) + "h";
}

function now() {
  return Date.now() + clockOffsetMs;
}

function stateBadge(row) {
  const state = row.state || "unknown";
  return el("span", { class: "state state-" + state, "data-state": state }, row.state_text || state);
}

function evidenceCell(row) {
  const e = row.evidence;
  if (!e) return "";
  const rate = e.rate === null ? "-" : (e.rate * 100).toFixed(1) + "%";
  const nodes = e.top.map((c) => c.node + " (" + c.failed + " failed" + (c.slow ? ", " + c.slow + " slow" : "") + ")");
  return el("div", {},
    el("div", {}, e.rule + " " + rate + " of " + e.decisive + " from " + e.nodes + (e.nodes === 1 ? " node" : " nodes")),
    nodes.length ? el("div", { class: "small" }, "top: " + nodes.join(", ")) : null);
}

function overrideCell(row) {
  const m = row.manual;
  if (!m) return "";
  const who = m.actor ? "by " + m.actor : "actor not seen";
  const until = m.expires_ms === null ? "until reset" : "ends in " + age(m.expires_ms - now());
  return el("div", {}, el("div", {}, m.command + " " + who), el("div", { class: "small" }, (m.reason || "") + " · " + until));
}

function probesCell(row) {
  const p = row.probes;
  if (!p) return "";
  const granted = p.grants.map(([node, n]) => node + ": " + n).join(", ");
  return el("div", {}, "budget " + p.budget, el("div", { class: "small" }, granted || "none granted yet"));
}

function rowElement(row) {
  const link = el("a", { href: "/breaker/" + encodeURIComponent(row.breaker) }, row.breaker);
  return el("tr", { "data-breaker": row.breaker, "data-state": row.state || "unknown" },
    el("td", { class: "name" }, link, row.error ? el("div", { class: "small" }, row.error) : null),
    el("td", {}, stateBadge(row)),
    el("td", { class: "since", "data-since": String(row.since_ms) }, age(now() - row.since_ms)),
    el("td", {}, row.decider || "-"),
    el("td", {}, row.term === null ? "-" : "(" + row.term + ", " + row.seq + ")"),
    el("td", {}, row.reason || "-"),
    el("td", {}, evidenceCell(row)),
    el("td", {}, overrideCell(row)),
    el("td", {}, probesCell(row)));
}

function render() {
  const body = document.querySelector("#breakers tbody");
  const shown = detailName ? [rows.get(detailName)].filter(Boolean) : [...rows.values()];
  shown.sort((a, b) => a.breaker.localeCompare(b.breaker));
  body.replaceChildren(...shown.map(rowElement));
  document.getElementById("empty").hidden = shown.length > 0;
}

function tick() {
  for (const cell of document.querySelectorAll("td.since")) {
    cell.textContent = age(now() - Number(cell.dataset.since));
  }
}

function showStatus(status) {
  const problem = document.getElementById("problem");
  problem.hidden = !status.problem;
  problem.textContent = status.problem || "";
}

async function loadHistory() {
  const error = document.getElementById("history-error");
  try {
    const answer = await fetch("/api/breakers/" + encodeURIComponent(detailName) + "/history");
    if (!answer.ok) throw new Error(answer.status + " " + (await answer.text()));
    const history = await answer.json();
    const body = document.querySelector("#history tbody");
    body.replaceChildren(...history.slice().reverse().map((h) => el("tr", { "data-revision": String(h.revision) },
      el("td", {}, String(h.revision)),
      el("td", {}, h.time),
      el("td", {}, h.term === null ? "-" : String(h.term)),
      el("td", {}, h.seq === null ? "-" : String(h.seq)),
      el("td", {}, h.state ? el("span", { class: "state state-" + h.state }, h.state) : "-"),
      el("td", {}, h.decider || "-"),
      el("td", {}, h.reason || h.error || "-"))));
    error.hidden = true;
  } catch (e) {
    error.hidden = false;
    error.textContent = "history: " + e.message;
  }
}

function connect() {
  const feed = document.getElementById("feed");
  const events = new EventSource("/events");
  events.addEventListener("open", () => { feed.dataset.feed = "live"; feed.textContent = "live"; });
  events.addEventListener("error", () => { feed.dataset.feed = "lost"; feed.textContent = "reconnecting…"; });
  events.addEventListener("snapshot", (e) => {
    const snapshot = JSON.parse(e.data);
    clockOffsetMs = snapshot.now_ms - Date.now();
    rows.clear();
    for (const row of snapshot.rows) rows.set(row.breaker, row);
    showStatus(snapshot);
    render();
  });
  events.addEventListener("row", (e) => {
    const row = JSON.parse(e.data);
    const known = rows.get(row.breaker);
    // A change already in the snapshot may come again: keep the newest revision.
    if (known && known.revision >= row.revision) return;
    rows.set(row.breaker, row);
    render();
    if (detailName && row.breaker === detailName) loadHistory();
  });
  events.addEventListener("removed", (e) => {
    rows.delete(JSON.parse(e.data));
    render();
  });
  events.addEventListener("status", (e) => showStatus(JSON.parse(e.data)));
}

if (detailName) {
  document.getElementById("detail").hidden = false;
  document.getElementById("detail-name").textContent = detailName + ": history";
  document.title = detailName + " · Fusebox";
  loadHistory();
}
connect();
setInterval(tick, 1000);
