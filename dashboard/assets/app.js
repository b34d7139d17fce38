// The Outpost dashboard: draws the fleet view the dashboard streams (/api/events) and sends
// the operator's actions (/api/purge, /api/drain, /api/undrain) with the admin token.
"use strict";

const $ = (selector) => document.querySelector(selector);
const SVG = "http://www.w3.org/2000/svg";
let latest = null;

// ---- colour scheme: auto (the system's), light or dark; remembered in this browser ----
const themes = ["auto", "light", "dark"];
function applyTheme(theme) {
  if (theme === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  $("#theme").textContent = theme;
}
applyTheme(localStorage.getItem("outpost-theme") || "auto");
$("#theme").addEventListener("click", () => {
  const now = $("#theme").textContent;
  const next = themes[(themes.indexOf(now) + 1) % themes.length];
  localStorage.setItem("outpost-theme", next);
  applyTheme(next);
});

// ---- formatting ----
const number = (n) => (n >= 1e6 ? (n / 1e6).toFixed(1) + "M" : n >= 1e4 ? (n / 1e3).toFixed(1) + "k" : String(Math.round(n)));
const rate = (n) => (n >= 100 ? Math.round(n).toString() : n.toFixed(1));
const percent = (r) => (r === null || r === undefined ? "–" : (r * 100).toFixed(1) + " %");
function bytes(n) {
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(1) : Math.round(n)) + " " + units[i] + "/s";
}
const ms = (v) => (v === null || v === undefined ? "–" : v < 10 ? v.toFixed(2) + " ms" : Math.round(v) + " ms");

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

// ---- the map: equirectangular, 1000 x 500, from 80° N to 60° S ----
const project = ([lat, lon]) => [((lon + 180) / 360) * 1000, ((80 - lat) / 140) * 500];
(function graticule() {
  const g = $("#graticule");
  for (let lon = -180; lon <= 180; lon += 30) {
    const [x] = project([0, lon]);
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", x); line.setAttribute("x2", x);
    line.setAttribute("y1", 0); line.setAttribute("y2", 500);
    g.appendChild(line);
  }
  for (let lat = -60; lat <= 80; lat += 20) {
    const [, y] = project([lat, 0]);
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", 0); line.setAttribute("x2", 1000);
    line.setAttribute("y1", y); line.setAttribute("y2", y);
    g.appendChild(line);
  }
})();

// Where each node is drawn: its location, or (origin, control) beside the parents.
function places(view) {
  const at = {};
  const parents = view.nodes.filter((n) => n.role === "parent" && n.location);
  const centre = parents.length
    ? [parents.reduce((s, n) => s + n.location[0], 0) / parents.length, parents.reduce((s, n) => s + n.location[1], 0) / parents.length]
    : [45, 0];
  const offsets = { origin: [8, 10], control: [-8, 10], dns: [14, -14], anycast: [-14, -14] };
  for (const node of view.nodes) {
    const location = node.location || [centre[0] + (offsets[node.role] || [0, 0])[0], centre[1] + (offsets[node.role] || [0, 0])[1]];
    at[node.name] = project(location);
  }
  return at;
}

function drawMap(view) {
  const at = places(view);
  const regions = $("#regions");
  regions.replaceChildren();
  const seen = new Set();
  for (const region of view.regions) {
    const key = region.location.join(",");
    if (seen.has(key)) continue;
    seen.add(key);
    const [x, y] = project(region.location);
    const circle = document.createElementNS(SVG, "circle");
    circle.setAttribute("class", "region");
    circle.setAttribute("cx", x); circle.setAttribute("cy", y); circle.setAttribute("r", 60);
    const title = document.createElementNS(SVG, "title");
    title.textContent = view.regions.filter((r) => r.location.join(",") === key).map((r) => `${r.prefix} → DNS ${r.dns || "–"}, anycast ${r.anycast || "–"}`).join("\n");
    circle.appendChild(title);
    regions.appendChild(circle);
  }
  const links = $("#links");
  links.replaceChildren();
  for (const link of view.links) {
    const from = at[link.from], to = at[link.to];
    if (!from || !to) continue;
    const line = document.createElementNS(SVG, "line");
    line.setAttribute("x1", from[0]); line.setAttribute("y1", from[1]);
    line.setAttribute("x2", to[0]); line.setAttribute("y2", to[1]);
    line.setAttribute("class", link.requests_per_s > 0 ? "link" : "link idle");
    line.setAttribute("stroke-width", Math.min(12, 1.5 + Math.log2(1 + link.requests_per_s)));
    line.dataset.from = link.from; line.dataset.to = link.to;
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${link.from} → ${link.to}: ${rate(link.requests_per_s)} req/s`;
    line.appendChild(title);
    links.appendChild(line);
  }
  const nodes = $("#nodes");
  nodes.replaceChildren();
  for (const node of view.nodes) {
    if (node.role === "dns" || node.role === "anycast") continue;
    const [x, y] = at[node.name];
    const g = document.createElementNS(SVG, "g");
    g.setAttribute("class", "node");
    g.dataset.node = node.name;
    g.dataset.state = node.state;
    const circle = document.createElementNS(SVG, "circle");
    circle.setAttribute("cx", x); circle.setAttribute("cy", y);
    circle.setAttribute("r", node.role === "edge" ? 9 : 7);
    const label = document.createElementNS(SVG, "text");
    // Edges label above-right, the rest below, so that an edge and its nearby parent do not
    // write over each other.
    label.setAttribute("x", x + 12); label.setAttribute("y", node.role === "edge" ? y - 6 : y + 18);
    label.textContent = node.role === "edge" ? `${node.name} ${rate(node.requests_per_s)}/s` : node.name;
    const title = document.createElementNS(SVG, "title");
    title.textContent = `${node.name} (${node.role}): ${node.state}`;
    g.append(circle, label, title);
    nodes.appendChild(g);
  }
}

function drawTables(view) {
  const body = $("#nodes-table tbody");
  body.replaceChildren();
  for (const node of view.nodes) {
    const row = document.createElement("tr");
    row.dataset.node = node.name;
    row.dataset.state = node.state;
    cell(row, node.name);
    cell(row, node.role);
    const state = cell(row, node.state, "state");
    state.dataset.state = node.state;
    if (node.error) state.title = node.error;
    cell(row, number(node.requests_total), "requests").dataset.value = node.requests_total;
    cell(row, rate(node.requests_per_s), "rps");
    cell(row, percent(node.hit_ratio), "hit-ratio");
    cell(row, bytes(node.bytes_per_s));
    cell(row, ms(node.upstream_ms));
    const actions = cell(row, "");
    if (node.role === "edge" || node.role === "parent") {
      const button = document.createElement("button");
      const draining = node.state === "draining";
      button.type = "button";
      button.className = draining ? "undrain" : "drain";
      button.dataset.node = node.name;
      button.textContent = draining ? "Undrain" : "Drain";
      button.addEventListener("click", () => drain(node.name, !draining));
      actions.appendChild(button);
    }
    body.appendChild(row);
  }

  const chips = $("#dns-edges");
  chips.replaceChildren();
  for (const node of view.nodes.filter((n) => n.role === "edge")) {
    const li = document.createElement("li");
    li.dataset.dnsEdge = node.name;
    li.dataset.serving = String(node.dns_serving !== false);
    const answers = node.dns_answers_per_s === null || node.dns_answers_per_s === undefined ? "" : ` · ${rate(node.dns_answers_per_s)} answers/s`;
    li.textContent = `${node.name}: DNS ${node.dns_serving === false ? "withdrawn" : node.dns_serving ? "serving" : "–"}, anycast ${node.anycast_serving === false ? "withdrawn" : node.anycast_serving ? "announced" : "–"}${answers}`;
    chips.appendChild(li);
  }
  $("#horizon").textContent = `${view.health_horizon_ms} ms`;
  const routing = $("#routing-table tbody");
  routing.replaceChildren();
  for (const region of view.regions) {
    const row = document.createElement("tr");
    row.dataset.network = region.prefix;
    cell(row, region.prefix);
    cell(row, region.dns || "–", "dns");
    cell(row, region.anycast || "–", "anycast");
    routing.appendChild(row);
  }

  const workers = $("#workers-table tbody");
  workers.replaceChildren();
  for (const w of view.workers) {
    const row = document.createElement("tr");
    cell(row, w.edge); cell(row, w.worker); cell(row, number(w.invocations_total));
    cell(row, rate(w.invocations_per_s)); cell(row, number(w.errors_total)); cell(row, ms(w.mean_ms));
    workers.appendChild(row);
  }
  if (!view.workers.length) { const row = document.createElement("tr"); cell(row, "no worker has run yet").colSpan = 6; workers.appendChild(row); }
  const video = $("#video-table tbody");
  video.replaceChildren();
  for (const v of view.video) {
    const row = document.createElement("tr");
    cell(row, v.edge); cell(row, number(v.requests_total)); cell(row, rate(v.requests_per_s));
    cell(row, v.mean_bitrate_kbps === null ? "–" : Math.round(v.mean_bitrate_kbps) + " kbit/s");
    cell(row, v.mean_buffer_s === null ? "–" : v.mean_buffer_s.toFixed(1) + " s");
    cell(row, number(v.starvations_total));
    video.appendChild(row);
  }
  if (!view.video.length) { const row = document.createElement("tr"); cell(row, "no player has sent CMCD yet").colSpan = 6; video.appendChild(row); }
  const streams = $("#streams-table tbody");
  streams.replaceChildren();
  for (const s of view.streams || []) {
    const row = document.createElement("tr");
    row.dataset.session = s.session;
    row.dataset.edge = s.edge;
    cell(row, s.edge); cell(row, s.session); cell(row, s.content || "–");
    cell(row, s.stream_type === "l" ? "live" : s.stream_type === "v" ? "VOD" : "–");
    cell(row, s.bitrate_kbps === null ? "–" : s.bitrate_kbps + " kbit/s", "bitrate");
    cell(row, s.buffer_s === null ? "–" : s.buffer_s.toFixed(1) + " s", "buffer");
    cell(row, String(s.starvations), "rebuffers");
    cell(row, String(s.requests));
    cell(row, Math.round(s.playing_s) + " s");
    cell(row, `${s.last_path} (${Math.round(s.idle_s)} s ago)`);
    streams.appendChild(row);
  }
  if (!(view.streams || []).length) { const row = document.createElement("tr"); cell(row, "no player has sent a CMCD session id yet").colSpan = 10; streams.appendChild(row); }

  const purges = $("#purges-table tbody");
  purges.replaceChildren();
  for (const p of Array.isArray(view.purges) ? view.purges : []) {
    const row = document.createElement("tr");
    row.dataset.seq = p.seq;
    const what = [...(p.request.urls || []), ...(p.request.tags || []).map((t) => "tag " + t)].join(", ") || (p.request.all ? "everything" : "–");
    cell(row, String(p.seq));
    cell(row, new Date(p.at_ms).toLocaleTimeString());
    cell(row, what + (p.request.soft ? " (soft)" : ""));
    cell(row, ms(p.report.last_node_ms));
    cell(row, ms(p.report.acknowledged_ms));
    cell(row, p.report.nodes.map((n) => `${n.node}: ${n.outcome}${n.purged === null || n.purged === undefined ? "" : " " + n.purged}`).join(", "));
    purges.appendChild(row);
  }
}

function draw(view) {
  latest = view;
  const t = view.totals;
  $("#total-requests").textContent = number(t.requests_total);
  $("#total-requests").dataset.value = t.requests_total;
  $("#total-rps").textContent = rate(t.requests_per_s);
  $("#hit-ratio").textContent = percent(t.hit_ratio);
  $("#hit-ratio").dataset.value = t.hit_ratio === null ? "" : t.hit_ratio;
  $("#offload").textContent = percent(t.origin_offload);
  $("#bytes").textContent = bytes(t.bytes_per_s);
  drawMap(view);
  drawTables(view);
}

// ---- live updates ----
function connect() {
  const events = new EventSource("/api/events");
  events.onopen = () => { $("#status").dataset.live = "true"; $("#status").textContent = "live"; };
  events.onmessage = (event) => {
    const view = JSON.parse(event.data);
    if (!view.nodes) return;
    $("#status").dataset.live = "true";
    $("#status").textContent = "live · " + new Date().toLocaleTimeString();
    draw(view);
  };
  events.onerror = () => { $("#status").dataset.live = "false"; $("#status").textContent = "reconnecting…"; };
}
connect();

// ---- actions: each asks first, then shows what every node said ----
const tokenInput = $("#token");
tokenInput.value = sessionStorage.getItem("outpost-token") || "";
tokenInput.addEventListener("change", () => sessionStorage.setItem("outpost-token", tokenInput.value));

function confirmAction(text) {
  return new Promise((resolve) => {
    const dialog = $("#confirm");
    $("#confirm-text").textContent = text;
    dialog.returnValue = "";
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "yes"), { once: true });
    dialog.showModal();
  });
}

function show(ok, text) {
  const result = $("#action-result");
  result.dataset.ok = String(ok);
  result.textContent = text;
}

async function act(path, payload) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: "Bearer " + tokenInput.value },
    body: JSON.stringify(payload),
  });
  const text = await response.text();
  let json = null;
  try { json = JSON.parse(text); } catch (_) { /* a plain-text error */ }
  return { ok: response.ok, status: response.status, text, json };
}

$("#purge-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const target = $("#purge-target").value.trim();
  if (!target) { show(false, "Name a URL, a path or a tag."); return; }
  const kind = $("#purge-kind").value;
  const soft = $("#purge-soft").checked;
  if (!(await confirmAction(`Purge ${kind === "tag" ? "tag " : ""}${target}${soft ? " (soft)" : ""} on every node?`))) return;
  const answer = await act("/api/purge", kind === "tag" ? { tag: target, soft } : { url: target, soft });
  if (!answer.ok) { show(false, `Purge refused (${answer.status}): ${answer.text}`); return; }
  if (answer.json && answer.json.nodes) {
    const report = answer.json;
    const purged = report.nodes.reduce((s, n) => s + (n.purged || 0), 0);
    show(true, `Purge ${report.seq} acknowledged in ${ms(report.acknowledged_ms)}: ${purged} objects on ${report.nodes.length} nodes (${report.nodes.map((n) => n.node + " " + n.outcome).join(", ")})`);
  } else if (Array.isArray(answer.json)) {
    const ok = answer.json.every((n) => n.status === 200);
    show(ok, answer.json.map((n) => `${n.node}: ${n.status === 200 ? n.body.trim() : "failed " + n.status + " " + n.body.trim()}`).join("; "));
  } else {
    show(true, answer.text);
  }
});

async function drain(node, draining) {
  if (!(await confirmAction(`${draining ? "Drain" : "Undrain"} ${node}? ${draining ? "DNS and anycast move its clients to other edges." : "It gets its clients back."}`))) return;
  const answer = await act(draining ? "/api/drain" : "/api/undrain", { node });
  if (!answer.ok) { show(false, `Refused (${answer.status}): ${answer.text}`); return; }
  const [first] = answer.json || [];
  show(first && first.status === 200, `${node}: ${first ? first.body.trim() || first.status : answer.text}`);
}
