// hearth's live page: plain JS, no build step. Everything comes from the gateway's HTTP/JSON
// face; Watch methods arrive as Server-Sent Events and redraw their panel in place.
"use strict";

const state = {
  token: localStorage.getItem("hearth-token") || "",
  hosts: new Map(),
  wakes: new Map(),
  streams: new Map(),
  zones: new Map(),
  health: new Map(),
  player: null,
  dashboard: null,
  sources: [],
  audioLive: false, // the audio watch is open: it, not an RPC's answer, updates the page
};

// ---------------------------------------------------------------- helpers

// Every text from the gateway or an upstream goes in as a text node or an attribute value,
// never as HTML; "style" goes through the CSSOM (the page's CSP allows no style attributes).
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "style") node.style.cssText = value;
    else if (key === "href") {
      const url = safeUrl(value);
      if (url) node.setAttribute("href", url);
    }
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value === true) node.setAttribute(key, "");
    else if (value !== false && value != null) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child == null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// An absolute http(s) URL, else null: a javascript:, data: or relative link from an
// upstream (a CI server's change URL) is shown as text, never made clickable.
function safeUrl(value) {
  if (typeof value !== "string" || !/^https?:\/\//i.test(value)) return null;
  try {
    const url = new URL(value);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (e) {
    return null;
  }
}

// Enum values arrive by their contract names ("HOST_STATE_AWAKE", "ROLE_OPERATOR"); the
// page shows the word after the prefix and keeps the full name in data-* and classes.
function word(value, prefix) {
  return typeof value === "string" && value.startsWith(prefix) ? value.slice(prefix.length) : value;
}

function seconds(duration) {
  // proto3 JSON Duration: "1.500s"
  return duration ? parseFloat(duration) : null;
}

function span(secs) {
  if (secs == null || isNaN(secs)) return "–";
  if (secs < 1) return `${Math.round(secs * 1000)} ms`;
  if (secs < 90) return `${secs.toFixed(1)} s`;
  if (secs < 5400) return `${Math.round(secs / 60)} min`;
  return `${(secs / 3600).toFixed(1)} h`;
}

function ago(stamp) {
  if (!stamp) return "never";
  const secs = (Date.now() - Date.parse(stamp)) / 1000;
  return secs < 5 ? "just now" : `${span(secs)} ago`;
}

let toastTimer = null;
function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { box.hidden = true; }, 5000);
}

function headers() {
  const out = { "Content-Type": "application/json" };
  if (state.token) out.Authorization = `Bearer ${state.token}`;
  return out;
}

async function api(method, path, body) {
  const response = await fetch(path, {
    method, headers: headers(), body: body === undefined ? undefined : JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    const hint = response.status === 401 || response.status === 403
      ? " — enter an operator token above" : "";
    toast(`${data.message || response.statusText}${hint}`);
    throw new Error(data.message || response.statusText);
  }
  return data;
}

// One EventSource per Watch; reconnects itself after errors (and after a refused start).
function watch(path, onEvent, onState) {
  let source = null;
  const open = () => {
    const url = state.token ? `${path}${path.includes("?") ? "&" : "?"}access_token=${encodeURIComponent(state.token)}` : path;
    source = new EventSource(url);
    source.onopen = () => onState && onState(true);
    source.onmessage = (msg) => onEvent(JSON.parse(msg.data));
    source.onerror = () => {
      onState && onState(false);
      if (source.readyState === EventSource.CLOSED) setTimeout(open, 3000);
    };
    source.addEventListener("error", (msg) => {
      if (msg.data) toast(JSON.parse(msg.data).message);
    });
  };
  open();
  const handle = { close: () => source && source.close() };
  state.sources.push(handle);
  return handle;
}

// ---------------------------------------------------------------- system

function renderBackends(status) {
  const box = document.getElementById("backends");
  box.replaceChildren(...status.backends.map((b) => el("span", {
    class: `badge ${b.up ? "up" : "down"}`, "data-backend": b.name,
    title: `${b.address} ${word(b.health, "HEALTH_STATUS_")} ${b.version || ""} ${b.error || ""}`,
  }, `${b.name} ${b.up ? span(seconds(b.roundTrip)) : "down"}`)));
  document.getElementById("role").textContent = word(status.role, "ROLE_").toLowerCase();
  document.body.dataset.role = status.role;
}

// ---------------------------------------------------------------- machines

function onHostEvent(event) {
  const host = event.host;
  if (host && host.name) {
    if (event.kind === "KIND_DELETED") state.hosts.delete(host.name);
    else state.hosts.set(host.name, host);
  }
  if (event.wake && event.wake.name) state.wakes.set(event.wake.name, event.wake);
  renderHosts();
  if (event.wake) renderWakes();
}

function renderHosts() {
  const rows = [...state.hosts.values()].sort((a, b) => a.name.localeCompare(b.name));
  document.getElementById("hosts").replaceChildren(...rows.map((h) => {
    const id = h.name.split("/").pop();
    return el("tr", { "data-host": id },
      el("td", {}, id),
      el("td", {}, el("span", { class: `state ${h.state}`, "data-state": h.state },
        word(h.state, "HOST_STATE_"))),
      el("td", { class: "muted" }, ago(h.lastSeen)),
      el("td", {}, el("button", {
        class: "primary", "data-wake": id,
        onclick: (e) => wakeHost(h.name, e.target),
      }, "Wake")));
  }));
}

async function wakeHost(name, button) {
  button.disabled = true;
  try {
    const wake = await api("POST", `/v1/${name}:wake`, {});
    state.wakes.set(wake.name, wake);
    renderWakes();
  } catch (e) { /* toast shown */ }
  finally { button.disabled = false; }
}

function renderWakes() {
  const wakes = [...state.wakes.values()]
    .sort((a, b) => (b.demandTime || "").localeCompare(a.demandTime || "")).slice(0, 10);
  document.getElementById("wakes").replaceChildren(...wakes.map((w) => el("tr", { "data-wake": w.name },
    el("td", {}, (w.host || "").split("/").pop()),
    el("td", { class: "muted" }, ago(w.demandTime)),
    el("td", {}, word(w.trigger, "WAKE_TRIGGER_")),
    el("td", {}, word(w.outcome, "WAKE_OUTCOME_")),
    el("td", { class: "reaction" }, span(seconds(w.reaction))),
    el("td", { class: "resume" }, span(seconds(w.resume))))));
}

async function loadWakes() {
  try {
    const data = await api("GET", "/v1/hosts/-/wakes?page_size=20");
    for (const w of data.wakes || []) state.wakes.set(w.name, w);
    renderWakes();
  } catch (e) { /* shown */ }
}

// ---------------------------------------------------------------- audio

function onAudioEvent(event) {
  if (event.kind === "KIND_CURRENT") {
    state.streams.clear(); state.zones.clear();
  }
  const del = event.kind === "KIND_STREAM_DELETED" || event.kind === "KIND_ZONE_DELETED";
  for (const s of event.streams || []) del ? state.streams.delete(s.name) : state.streams.set(s.name, s);
  for (const z of event.zones || []) del ? state.zones.delete(z.name) : state.zones.set(z.name, z);
  for (const h of event.health || []) state.health.set(h.name, h);
  if (event.player) state.player = event.player;
  renderAudio();
}

function renderAudio() {
  const streams = [...state.streams.values()].sort((a, b) => a.name.localeCompare(b.name));
  const zones = [...state.zones.values()].sort((a, b) => a.name.localeCompare(b.name));
  const short = (name) => name.split("/").pop();
  const head = el("tr", {}, el("th", {}, "zone \\ stream"),
    ...streams.map((s) => el("th", { title: `${s.group || ""}:${s.port || ""}` },
      s.displayName || short(s.name))));
  const rows = zones.map((z) => el("tr", { "data-zone": short(z.name) },
    el("th", { class: "zone" }, z.displayName || short(z.name)),
    ...streams.map((s) => {
      const on = z.stream === s.name;
      return el("td", {}, el("button", {
        class: `cell ${on ? "on" : ""}`, "data-zone": short(z.name), "data-stream": short(s.name),
        "aria-pressed": on ? "true" : "false", title: `${short(z.name)} ← ${short(s.name)}`,
        onclick: () => patch(z, s, on),
      }));
    })));
  document.getElementById("matrix").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));

  document.getElementById("zones").replaceChildren(...zones.map((z) => {
    const status = z.status || {};
    const badge = !status.reachable ? ["bad", "unreachable"]
      : status.stalled ? ["warn", "stalled"] : status.receiving ? ["ok", "playing"] : ["", "idle"];
    const percent = Math.round((z.volume ?? 1) * 100); // the contract: unset = 100 %
    return el("div", { class: "zone", "data-zone": short(z.name) },
      el("span", { class: "name" }, z.displayName || short(z.name)),
      el("span", { class: `badge ${badge[0]}` }, badge[1]),
      el("input", {
        type: "range", min: "0", max: "150", value: String(percent),
        "aria-label": `volume ${short(z.name)}`,
        oninput: (e) => { e.target.nextElementSibling.textContent = `${e.target.value}%`; },
        onchange: (e) => updateZone(z.name, { volume: Number(e.target.value) / 100 }, "volume"),
      }),
      el("output", { class: "volume" }, `${percent}%`),
      el("button", {
        "data-mute": short(z.name), "aria-pressed": z.muted ? "true" : "false",
        onclick: () => updateZone(z.name, { muted: !z.muted }, "muted"),
      }, z.muted ? "Unmute" : "Mute"));
  }));

  const p = state.player || {};
  const song = p.currentSong || {};
  document.getElementById("player").replaceChildren(
    el("span", { class: "song" }, el("strong", {}, song.title || song.file || "nothing"),
      song.artist ? ` — ${song.artist}` : "",
      el("span", { class: "muted", "data-player-state": p.state || "" },
        ` (${word(p.state, "PLAYER_STATE_") || "?"})`)),
    ...["ACTION_PLAY", "ACTION_PAUSE", "ACTION_NEXT"].map((action) => el("button", {
      "data-action": action, onclick: () => control(action),
    }, action[7] + action.slice(8).toLowerCase())));

  document.getElementById("health").replaceChildren(...[...state.health.values()].map((h) => {
    const loss = h.lossRatio || 0;
    const age = seconds(h.lastPacketAge);
    const cls = !h.up ? "bad" : loss > 0.01 || (age != null && age > 1) ? "warn" : "ok";
    return el("span", { class: `badge ${cls}`, title: h.name },
      `${h.name.split("/")[1]}: loss ${(loss * 100).toFixed(1)}% · jitter ${span(seconds(h.jitter))}`
      + ` · age ${span(age)}`);
  }));
}

// An audio change's answer is shown only while the audio watch is down. The watch is
// ordered and brings the same change; an answer applied directly could be overwritten by an
// older event still on its way (a mute that flips back, so the next click mutes again).
function showAudioAnswer(apply) {
  if (state.audioLive) return;
  apply();
  renderAudio();
}

async function patch(zone, stream, on) {
  try {
    const updated = on ? await api("POST", `/v1/${zone.name}:unsubscribe`, {})
      : await api("POST", `/v1/${zone.name}:subscribe`, { stream: stream.name });
    showAudioAnswer(() => state.zones.set(updated.name, updated));
  } catch (e) { /* shown */ }
}

async function updateZone(name, fields, mask) {
  try {
    const updated = await api("PATCH", `/v1/${name}?update_mask=${mask}`, fields);
    showAudioAnswer(() => state.zones.set(updated.name, updated));
  } catch (e) { /* shown */ }
}

async function control(action) {
  try {
    const player = await api("POST", "/v1/player:control", { action });
    showAudioAnswer(() => { state.player = player; });
  } catch (e) { /* shown */ }
}

// ---------------------------------------------------------------- ci

let ciWatch = null;

function onDashboardEvent(event) {
  if (event.dashboard && event.dashboard.pipelines) state.dashboard = event.dashboard;
  if (event.kind !== "KIND_SNAPSHOT" && event.message) {
    const ticker = document.getElementById("ci-events");
    ticker.prepend(el("div", {}, `${new Date().toLocaleTimeString()} ${event.message}`));
    while (ticker.childElementCount > 5) ticker.lastChild.remove();
  }
  renderDashboard();
}

function renderDashboard() {
  const d = state.dashboard;
  if (!d) return;
  const zuul = d.zuul || {};
  const banner = document.getElementById("zuul-banner");
  banner.hidden = !zuul.message;
  banner.textContent = zuul.message || "";
  document.getElementById("backlog").replaceChildren(
    ...Object.entries(zuul.eventQueues || {}).map(([name, length]) => el("span", {
      class: `badge ${length > 100 ? "bad" : length > 10 ? "warn" : "ok"}`,
    }, `${name}: ${length}`)),
    ...(d.sources || []).filter((s) => !s.ok || s.stale).map((s) => el("span", {
      class: "badge bad",
    }, `${word(s.source, "UPSTREAM_").toLowerCase()}: ${s.error || "stale"}`)));
  const pipelines = (d.pipelines || []).filter((p) => (p.queues || []).some((q) => (q.items || []).length));
  document.getElementById("pipelines").replaceChildren(
    ...(pipelines.length ? [] : [el("p", { class: "muted" }, `nothing matching ${d.filterDescription || ""}`)]),
    ...pipelines.map((p) => el("div", { class: "pipeline", "data-pipeline": p.name },
      el("h3", {}, p.name, el("span", { class: "muted" }, ` (${p.totalItems || 0} in total)`)),
      ...(p.queues || []).filter((q) => (q.items || []).length).map((q) => el("div", { class: "queue" },
        el("div", { class: "queue-name", title: q.name || "" },
          `${q.total || 0} items · ${q.name || "(queue)"}`),
        ...q.items.map(renderItem))))));
}

function renderItem(item) {
  const pct = Math.round((item.progress || 0) * 100);
  const eta = seconds(item.eta);
  return el("div", { class: `item ${item.status}`, "data-change": item.change },
    el("div", { class: "subject" },
      safeUrl(item.url)
        ? el("a", { href: item.url, target: "_blank", rel: "noopener noreferrer" }, item.change)
        : el("span", { class: "change" }, item.change),
      " ",
      item.subject || item.project,
      item.status === "ITEM_STATUS_BEHIND_FAILURE" ? el("span", { class: "muted" }, ` behind ${item.behindChange}`) : null),
    el("div", { class: "eta" }, `${pct}%`, eta ? ` · ETA ${span(eta)}` : ""),
    el("div", { class: "progress" }, el("div", { style: `width:${pct}%` })),
    item.jobString ? el("div", { class: "jobs" }, item.jobString) : null);
}

async function loadWatches() {
  const select = document.getElementById("watch-select");
  try {
    const data = await api("GET", "/v1/watches?page_size=100");
    const watches = data.watches || [];
    select.replaceChildren(...watches.map((w) => el("option", { value: w.name },
      w.displayName || w.name.split("/").pop())));
    const saved = localStorage.getItem("hearth-watch");
    if (saved && watches.some((w) => w.name === saved)) select.value = saved;
    if (watches.length) openWatch(select.value);
    else document.getElementById("pipelines").replaceChildren(
      el("p", { class: "muted" }, "no CI watches yet (hearth ci ... or POST /v1/watches)"));
  } catch (e) { /* shown */ }
  select.onchange = () => { localStorage.setItem("hearth-watch", select.value); openWatch(select.value); };
}

function openWatch(name) {
  if (ciWatch) ciWatch.close();
  state.dashboard = null;
  ciWatch = watch(`/v1/${name}/dashboard:watch`, onDashboardEvent);
}

// ---------------------------------------------------------------- start

function start() {
  document.getElementById("toast").hidden = true;
  for (const source of state.sources.splice(0)) source.close();
  api("GET", "/v1/system/status").then(renderBackends).catch(() => {
    document.getElementById("role").textContent = "token needed";
  });
  watch("/v1/system/status:watch", renderBackends);
  watch("/v1/hosts:watch", onHostEvent);
  state.audioLive = false;
  watch("/v1/audio:watch", onAudioEvent, (up) => { state.audioLive = up; });
  loadWakes();
  loadWatches();
}

document.getElementById("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  state.token = document.getElementById("token").value.trim();
  localStorage.setItem("hearth-token", state.token);
  document.getElementById("token").value = "";
  start();
});
document.getElementById("forget").addEventListener("click", () => {
  state.token = "";
  localStorage.removeItem("hearth-token");
  start();
});
setInterval(renderHosts, 10000); // keep "last seen" fresh
start();
