"""Theory of operation: the status page, one self-contained HTML document.

No build chain and no external asset: the CSS and the script are inline, the
icon is a data URL (so the browser does not even ask for ``/favicon.ico``).
The script refreshes itself every few seconds (``?refresh=SECONDS``, default
5) with same-origin GETs of ``/report`` -- everything the router says about
itself, each service's section included -- and reloads ``/graph.svg``.  Every
value is put in the page with ``textContent``, never as markup, so a container
or peer name cannot inject anything.  A failed refresh is shown on the page and
retried; it never throws (the browser test requires a clean console).
"""

from __future__ import annotations

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>meshrouter status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 0; color: #1b262c; background: #f5f7f8; }
header { background: #263238; color: #fff; padding: 10px 18px; }
header h1 { font-size: 18px; margin: 0 0 4px; }
header .facts span { margin-right: 18px; opacity: .85; }
main { display: grid; grid-template-columns: minmax(320px, 1fr) minmax(420px, 1.3fr);
       gap: 14px; padding: 14px; }
section { background: #fff; border: 1px solid #cfd8dc; border-radius: 6px; padding: 8px 12px;
          overflow-x: auto; }
section h2 { font-size: 15px; margin: 4px 0 8px; }
#picture { grid-row: span 3; }
#graph { max-width: 100%; height: auto; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 3px 8px 3px 0; border-bottom: 1px solid #eceff1;
         vertical-align: top; }
th { color: #546e7a; font-weight: 600; }
tr.failed td, tr.retrying td, .bad { color: #c62828; }
tr.connecting td { color: #8d6e00; }
.muted { color: #78909c; }
#error { color: #c62828; padding: 0 18px; }
</style>
</head>
<body>
<header>
  <h1 id="title">meshrouter</h1>
  <div class="facts" id="facts"></div>
</header>
<div id="error" role="alert"></div>
<main>
  <section id="picture"><h2>Mesh</h2>
    <img id="graph" alt="picture of the mesh" src="/graph.svg"></section>
  <section id="peers-section"><h2>Peers</h2><table id="peers"></table></section>
  <section id="connections-section"><h2>Connections</h2><table id="connections"></table>
  </section>
  <section id="ipam-section"><h2>IP addresses</h2><div id="ipam-facts" class="muted"></div>
    <table id="ipam"></table><h2>Pending requests</h2><table id="pending"></table></section>
  <section id="containers-section"><h2>Containers</h2><table id="containers"></table></section>
  <section id="dns-section"><h2>DNS names</h2><table id="dns"></table></section>
</main>
<script>
"use strict";
const byId = (id) => document.getElementById(id);
const params = new URLSearchParams(window.location.search);
const every = Math.max(1, Number(params.get("refresh")) || 5) * 1000;

function text(value) {
  if (value === null || value === undefined) { return ""; }
  if (typeof value === "object") { return JSON.stringify(value); }
  return String(value);
}

function fill(id, columns, rows, rowClass) {
  const table = byId(id);
  table.replaceChildren();
  const head = table.insertRow();
  for (const [label] of columns) {
    const th = document.createElement("th");
    th.textContent = label;
    head.appendChild(th);
  }
  if (!rows.length) {
    const cell = table.insertRow().insertCell();
    cell.colSpan = columns.length;
    cell.className = "muted";
    cell.textContent = "none";
    return;
  }
  for (const row of rows) {
    const tr = table.insertRow();
    if (rowClass) { tr.className = rowClass(row); }
    for (const [, get] of columns) { tr.insertCell().textContent = text(get(row)); }
  }
}

function facts(router) {
  const box = byId("facts");
  box.replaceChildren();
  const items = [
    ["peer", router.name], ["version", router.version], ["listen", router.listen],
    ["cluster", router.cluster_id || "-"],
    ["encryption", router.encryption ? "on" : "off"],
    ["datapath", router.datapath ? router.datapath.type + " (" + router.datapath.health + ")"
                                 : "-"],
  ];
  for (const [label, value] of items) {
    const span = document.createElement("span");
    span.textContent = label + ": " + text(value);
    box.appendChild(span);
  }
  byId("title").textContent = "meshrouter " + text(router.nickname);
  document.title = "meshrouter " + text(router.nickname);
}

function show(router) {
  facts(router);
  const routes = router.routes || {};
  const paths = {};
  for (const row of (router.dataplane && router.dataplane.peers) || []) { paths[row.peer] = row; }
  fill("peers", [
    ["nickname", (p) => p.nickname],
    ["name", (p) => p.name],
    ["links", (p) => p.connections.filter((c) => c.established).length],
    ["data path", (p) => p.name === router.name ? "ourselves"
      : !(p.name in routes) ? "unreachable"
      : routes[p.name] === p.name ? "direct" : "relayed via " + routes[p.name]],
    ["underlay", (p) => (paths[p.name] || {}).underlay || ""],
  ], router.peers || []);
  fill("connections", [
    ["peer", (c) => c.nickname ? c.nickname + " " + c.peer : c.peer],
    ["address", (c) => c.address],
    ["state", (c) => c.state],
    ["direction", (c) => c.outbound ? "out" : "in"],
    ["why", (c) => c.info],
  ], router.connections || [], (c) => c.state);
  const ipam = router.ipam;
  if (ipam) {
    byId("ipam-facts").textContent = "range " + text(ipam.range) + " - " + text(ipam.state) +
      " - " + text(ipam.allocated) + " allocated here - unreachable share " +
      (100 * (ipam.unreachable_ratio || 0)).toFixed(1) + "%";
    fill("ipam", [
      ["peer", (p) => p.peer], ["ranges", (p) => (p.ranges || []).join(" ")],
      ["size", (p) => p.size], ["free", (p) => p.free],
      ["reachable", (p) => p.reachable ? "yes" : "no"],
    ], ipam.peers || [], (p) => p.reachable ? "" : "failed");
    fill("pending", [
      ["container", (p) => p.container], ["request", (p) => p.request],
      ["waiting (s)", (p) => p.waiting_s], ["why", (p) => p.reason],
    ], ipam.pending || []);
  } else {
    byId("ipam-facts").textContent = "IPAM is off on this router";
  }
  const endpoints = (router.dataplane && router.dataplane.endpoints) || [];
  fill("containers", [
    ["name", (e) => e.name], ["container", (e) => String(e.container_id).slice(0, 12)],
    ["address", (e) => e.ip], ["mac", (e) => e.mac], ["host", (e) => e.host],
  ], endpoints);
  const records = (router.dns && router.dns.records) || {};
  const names = [];
  for (const [name, rows] of Object.entries(records)) {
    for (const row of rows) { names.push(Object.assign({ name: name }, row)); }
  }
  fill("dns", [
    ["name", (r) => r.name], ["address", (r) => r.address],
    ["container", (r) => String(r.container).slice(0, 12)], ["owner", (r) => r.owner],
    ["state", (r) => r.state],
  ], names, (r) => r.state === "live" ? "" : "connecting");
}

async function refresh() {
  try {
    const response = await fetch("/report", { headers: { "Accept": "application/json" } });
    if (!response.ok) { throw new Error("GET /report answered " + response.status); }
    const body = await response.json();
    show(body.router);
    byId("graph").src = "/graph.svg?at=" + Date.now();
    byId("error").textContent = "";
    document.body.dataset.loaded = "yes";
  } catch (err) {
    byId("error").textContent = "refresh failed: " + err.message + " (retrying)";
  }
  window.setTimeout(refresh, every);
}
byId("graph").addEventListener("load", () => { document.body.dataset.graph = "yes"; });
byId("graph").addEventListener("error", () => {
  document.body.dataset.graph = "no";
  byId("error").textContent = "the picture (/graph.svg) did not load (retrying)";
});
refresh();
</script>
</body>
</html>
"""


def status_page() -> bytes:
    """The page, as served (UTF-8)."""
    return PAGE.encode("utf-8")
