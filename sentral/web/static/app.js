// The live switchboard: sign in, read the state from the REST API, follow /api/events.
//
// The feed is connected first and its events are held until the REST state has been read, so
// nothing that happens in between is lost; events are then applied in seq order. On a dropped
// connection the page reconnects with ?since=<last seq> and gets what it missed, or
// {"type": "reload"}, on which it reads the state again.
"use strict";

const state = {
  me: null,            // {domain, extension, csrf_token}
  colleagues: new Map(), // extension -> {extension, name, status}
  queues: new Map(),     // call id -> {call, group, caller, caller_name, acute, since}
  parked: new Map(),     // call id -> {call, slot, caller, caller_name, acute, since}
  calls: new Map(),      // call id -> call event body (the latest)
  groups: [],            // [{name, kind, number, members: [{extension, logged_in}]}]
  seq: null,
  socket: null,
  held: null,            // events received while the REST state is being read
  retry: 1000,
};

const STATUS_TEXT = { "available": "available", "ringing": "ringing", "in-call": "in a call", "off": "off" };

function $(id) { return document.getElementById(id); }

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  const { dataset, ...rest } = props || {};
  Object.assign(node, rest);
  if (dataset) Object.assign(node.dataset, dataset);
  for (const child of children) node.append(child);
  return node;
}

async function api(method, path, body) {
  const headers = { "Accept": "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.me && state.me.csrf_token) headers["X-CSRF-Token"] = state.me.csrf_token;
  const response = await fetch(path, {
    method, headers, credentials: "same-origin",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let json = null;
  try { json = await response.json(); } catch (e) { json = null; }
  if (!response.ok) {
    const error = new Error((json && json.error) || `${method} ${path}: HTTP ${response.status}`);
    error.status = response.status;
    throw error;
  }
  return json;
}

// A REST answer may be a list, or an object holding it under a name.
function listOf(json, ...keys) {
  if (Array.isArray(json)) return json;
  if (json && typeof json === "object") {
    for (const key of keys) if (Array.isArray(json[key])) return json[key];
  }
  return [];
}

// A colleague's colour from /api/presence: their line first (ringing, busy), then whether
// their phone is on and registered.
function statusOf(entry) {
  if (entry.status in STATUS_TEXT) return entry.status;
  if (entry.line === "busy") return "in-call";
  if (entry.line === "ringing") return "ringing";
  return entry.phone_on && entry.registered ? "available" : "off";
}

// -- signing in ---------------------------------------------------------------------------------

async function start() {
  $("sign-in").addEventListener("submit", signIn);
  $("sign-out").addEventListener("click", signOut);
  $("click-to-call").addEventListener("submit", clickToCall);
  $("phone-start").addEventListener("click", startPhone);
  $("phone-dial").addEventListener("submit", dial);
  $("phone-pick-up").addEventListener("click", () => phoneSend({ type: "pick-up" }));
  $("phone-decline").addEventListener("click", () => phoneSend({ type: "decline" }));
  $("phone-hang-up").addEventListener("click", () => phoneSend({ type: "hang-up" }));
  $("phone-hold").addEventListener("click", () => phoneSend({ type: phone.held ? "resume" : "hold" }));
  $("phone-transfer").addEventListener("submit", transfer);
  for (const key of "123456789*0#") {
    $("phone-keypad").append(el("button", {
      type: "button", textContent: key, dataset: { key },
      onclick: () => phoneSend({ type: "dtmf", key }),
    }));
  }
  try {
    state.me = await api("GET", "/api/session");
  } catch (e) {
    showSignIn();
    return;
  }
  showBoard();
}

function showSignIn() {
  $("board").hidden = true;
  $("sign-out").hidden = true;
  $("sign-in-view").hidden = false;
  $("me").textContent = "";
}

async function signIn(event) {
  event.preventDefault();
  const form = event.target;
  const body = { extension: form.extension.value.trim(), password: form.password.value };
  if (form.domain.value.trim()) body.domain = form.domain.value.trim();
  $("sign-in-error").textContent = "";
  try {
    state.me = await api("POST", "/api/session", body);
  } catch (e) {
    $("sign-in-error").textContent = e.message;
    return;
  }
  form.password.value = "";
  showBoard();
}

async function signOut() {
  stopPhone();
  try { await api("DELETE", "/api/session"); } catch (e) { /* signed out anyway */ }
  if (state.socket) { state.socket.onclose = null; state.socket.close(); state.socket = null; }
  state.me = null;
  state.seq = null;
  showSignIn();
}

function showBoard() {
  $("sign-in-view").hidden = true;
  $("board").hidden = false;
  $("sign-out").hidden = false;
  $("me").textContent = `${state.me.extension || state.me.token} @ ${state.me.domain}`;
  $("click-to-call").hidden = !state.me.extension;  // a token has no phone of its own to ring
  $("browser-phone").hidden = !state.me.extension || !window.RTCPeerConnection;
  connect();
  reload();
}

// -- the state from the REST API ----------------------------------------------------------------

async function reload() {
  state.held = state.held || [];
  const get = (path) => api("GET", path).catch(() => null);
  const [presence, queues, parked, calls, groups] = await Promise.all(
    ["/api/presence", "/api/queues", "/api/parked", "/api/calls", "/api/groups"].map(get));
  state.colleagues.clear();
  for (const p of listOf(presence, "staff")) {
    state.colleagues.set(p.extension, { extension: p.extension, name: p.name || "", status: statusOf(p) });
  }
  const now = Date.now() / 1000;
  state.queues.clear();
  for (const q of listOf(queues, "queues")) {
    for (const w of q.waiting || []) {
      state.queues.set(w.call_id, {
        call: w.call_id, group: q.group, caller: w.caller || "", caller_name: "", acute: !!w.acute,
        since: now - (w.waited || 0),
      });
    }
  }
  state.parked.clear();
  for (const p of listOf(parked, "parked")) {
    state.parked.set(p.call_id, { call: p.call_id, slot: p.slot, caller: p.caller || "", caller_name: "", since: now });
  }
  state.calls.clear();
  for (const c of listOf(calls, "calls")) {
    state.calls.set(c.call_id, { call: c.call_id, caller: c.caller, callee: c.callee, type: c.state, lines: {} });
  }
  state.groups = listOf(groups, "groups");
  const held = state.held;
  state.held = null;
  for (const event of held) apply(event);
  render();
}

// -- the feed -----------------------------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const since = state.seq === null ? "" : `?since=${state.seq}`;
  const socket = new WebSocket(`${scheme}://${location.host}/api/events${since}`);
  state.socket = socket;
  socket.onopen = () => { state.retry = 1000; $("link").textContent = "live"; $("link").classList.add("live"); };
  socket.onmessage = (message) => {
    const event = JSON.parse(message.data);
    if (event.type === "reload") { reload(); return; }
    if (state.held) { state.held.push(event); return; }
    apply(event);
    render();
  };
  socket.onclose = () => {
    $("link").textContent = "offline";
    $("link").classList.remove("live");
    if (state.socket !== socket || !state.me) return;
    setTimeout(() => { if (state.me) connect(); }, state.retry);
    state.retry = Math.min(state.retry * 2, 30000);
  };
}

function apply(event) {
  if (typeof event.seq === "number") {
    if (state.seq !== null && event.seq <= state.seq) return; // had it already
    state.seq = event.seq;
  }
  switch (event.type) {
    case "presence":
      if (event.removed) state.colleagues.delete(event.extension);
      else state.colleagues.set(event.extension, { extension: event.extension, name: event.name || "", status: event.status });
      break;
    case "queue.entered":
      state.queues.set(event.call, event);
      break;
    case "queue.left":
      state.queues.delete(event.call);
      break;
    case "park.parked":
      state.parked.set(event.call, event);
      break;
    case "park.retrieved":
      state.parked.delete(event.call);
      break;
    case "call.started": case "call.ringing": case "call.answered": case "call.transferred":
      state.calls.set(event.call, event);
      break;
    case "call.identified":  // the clinic's records named the caller after the call began
      state.calls.set(event.call, event);
      if (state.queues.has(event.call)) state.queues.get(event.call).caller_name = event.caller_name;
      break;
    case "call.ended":
      state.calls.delete(event.call);
      state.queues.delete(event.call);
      state.parked.delete(event.call);
      break;
    case "groups":
      state.groups = event.groups;
      break;
  }
}

// -- showing it ---------------------------------------------------------------------------------

function waited(since) {
  const seconds = Math.max(0, Math.floor(Date.now() / 1000 - since));
  const m = Math.floor(seconds / 60), s = seconds % 60;
  return `${m}:${String(s).padStart(2, "0")}`;
}

function who(number, name) { return name ? `${name} (${number})` : number; }

function fill(list, items, empty) {
  list.replaceChildren(...(items.length ? items : [el("li", { className: "empty", textContent: empty })]));
}

function render() {
  const colleagues = [...state.colleagues.values()]
    .filter((c) => !state.me || c.extension !== state.me.extension)
    .sort((a, b) => a.extension.localeCompare(b.extension, undefined, { numeric: true }));
  fill($("colleagues"), colleagues.map((c) => el("li",
    { className: `colleague ${c.status}`, id: `colleague-${c.extension}`, title: STATUS_TEXT[c.status] || c.status },
    el("span", { className: "dot" }),
    el("span", { className: "name", textContent: who(c.extension, c.name) }),
    el("span", { className: "status", textContent: STATUS_TEXT[c.status] || c.status }))), "nobody");

  const queues = $("queues");
  const byGroup = new Map();
  for (const w of state.queues.values()) {
    if (!byGroup.has(w.group)) byGroup.set(w.group, []);
    byGroup.get(w.group).push(w);
  }
  const sections = [];
  for (const [group, waiting] of [...byGroup.entries()].sort()) {
    // Acute callers first, then whoever has waited longest.
    waiting.sort((a, b) => (b.acute - a.acute) || (a.since - b.since));
    const list = el("ul", { className: "list" });
    fill(list, waiting.map((w) => el("li",
      { className: `caller${w.acute ? " acute" : ""}`, id: `waiting-${w.call}`, dataset: { since: w.since } },
      el("span", { textContent: (w.acute ? "ACUTE " : "") + who(w.caller, w.caller_name) }),
      el("span", { className: "wait", textContent: waited(w.since) }))), "");
    sections.push(el("div", { className: "queue", id: `queue-${group}` }, el("h3", { textContent: group }), list));
  }
  queues.replaceChildren(...(sections.length ? sections : [el("p", { className: "empty", textContent: "no callers waiting" })]));

  const parked = [...state.parked.values()].sort((a, b) => String(a.slot).localeCompare(String(b.slot)));
  fill($("parked"), parked.map((p) => el("li",
    { className: `parked${p.acute ? " acute" : ""}`, id: `parked-${p.slot}`, dataset: { since: p.since } },
    el("span", { textContent: `${p.slot}: ${who(p.caller, p.caller_name)}` }),
    el("span", { className: "wait", textContent: waited(p.since) }))), "none");

  const mine = state.me ? state.me.extension : null;
  const calls = [...state.calls.values()].filter((c) =>
    mine && (c.caller === mine || c.callee === mine || (c.lines && c.lines[mine] && c.lines[mine] !== "terminated")));
  fill($("my-calls"), calls.map((c) => el("li",
    { className: `call${c.acute ? " acute" : ""}`, id: `call-${c.call}` },
    el("span", { textContent: c.caller === mine ? `to ${who(c.callee, c.callee_name)}` : `from ${who(c.caller, c.caller_name)}` }),
    el("span", { className: "status", textContent: (c.type || c.state || "").replace("call.", "") }))), "no calls");

  const groups = state.groups.filter((g) => mine && (g.members || []).some((m) => m.extension === mine));
  fill($("groups"), groups.map((g) => {
    const member = g.members.find((m) => m.extension === mine);
    const button = el("button", {
      type: "button", className: "toggle", textContent: member.logged_in ? "Log out" : "Log in",
    });
    button.addEventListener("click", () => logIn(g, !member.logged_in));
    return el("li", { className: `group${member.logged_in ? " logged-in" : ""}`, id: `group-${g.name}` },
      el("span", { className: "dot" }),
      el("span", { textContent: `${g.name}${g.kind === "function" ? " (function)" : ""}` }),
      el("span", { className: "status", textContent: member.logged_in ? "logged in" : "logged out" }),
      button);
  }), "none");
}

// Log in to (or out of) a group or function: the REST action, then the state it answers with.
async function logIn(group, login) {
  $("action-error").textContent = "";
  const path = `/api/staff/${encodeURIComponent(state.me.extension)}/groups/${encodeURIComponent(group.name)}`;
  try {
    await api("POST", path, { logged_in: login });
    const groups = await api("GET", "/api/groups");
    state.groups = listOf(groups, "groups");
    render();
  } catch (e) {
    $("action-error").textContent = e.message;
  }
}

// Click-to-call: Sentral rings this member of staff's phone, then connects it to the number.
async function clickToCall(event) {
  event.preventDefault();
  $("call-error").textContent = "";
  const number = $("call-number").value.trim();
  const path = `/api/staff/${encodeURIComponent(state.me.extension)}/call`;
  try {
    await api("POST", path, { number });
    $("call-number").value = "";
  } catch (e) {
    $("call-error").textContent = e.message;
  }
}

// -- the browser phone -------------------------------------------------------------------------
//
// The page as one of this member of staff's phones: its microphone and speaker over WebRTC to
// Sentral (/api/browser-phone), which registers it with their extension. The offer is sent once
// every ICE candidate is gathered; the socket then carries what the buttons ask and what the
// call does.

const phone = { ws: null, pc: null, stream: null, peer: "", held: false };

// What the panel shows: the status line, and the controls that fit it. Calling shows only Hang
// up; a call that is up also Hold (or Resume) and Transfer.
function phoneShow(status, { dial = false, incoming = null, hangUp = false, inCall = false } = {}) {
  $("phone-status").textContent = status;
  $("phone-dial").hidden = !dial;
  $("phone-incoming").hidden = !incoming;
  if (incoming) $("phone-caller").textContent = incoming;
  $("phone-in-call").hidden = !(hangUp || inCall);
  $("phone-hold").hidden = !inCall;
  $("phone-transfer").hidden = !inCall;
  $("phone-keypad").hidden = !inCall;
  $("phone-hold").textContent = phone.held ? "Resume" : "Hold";
}

function phoneSend(message) {
  $("phone-error").textContent = "";
  if (phone.ws && phone.ws.readyState === WebSocket.OPEN) phone.ws.send(JSON.stringify(message));
}

async function startPhone() {
  $("phone-error").textContent = "";
  $("phone-start").disabled = true;
  phoneShow("connecting…");
  try {
    phone.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
    const pc = phone.pc = new RTCPeerConnection();
    for (const track of phone.stream.getAudioTracks()) pc.addTrack(track, phone.stream);
    pc.ontrack = (event) => { $("phone-audio").srcObject = event.streams[0] || new MediaStream([event.track]); };
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {
      if (pc.iceGatheringState === "complete") return resolve();
      const timer = setTimeout(resolve, 3000);  // what is gathered by then is enough on a LAN
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const ws = phone.ws = new WebSocket(`${scheme}//${location.host}/api/browser-phone`);
    ws.onopen = () => ws.send(JSON.stringify({ type: "offer", sdp: pc.localDescription.sdp }));
    ws.onmessage = (event) => phoneMessage(JSON.parse(event.data));
    ws.onclose = () => { stopPhone(); phoneShow("off"); };
  } catch (e) {
    stopPhone();
    phoneShow("off");
    $("phone-error").textContent = `The browser phone could not start: ${e.message}`;
  }
}

function stopPhone() {
  if (phone.ws) { phone.ws.onclose = null; phone.ws.close(); phone.ws = null; }
  if (phone.pc) { phone.pc.close(); phone.pc = null; }
  if (phone.stream) { for (const track of phone.stream.getTracks()) track.stop(); phone.stream = null; }
  $("phone-start").disabled = false;
  $("phone-start").hidden = false;
}

async function phoneMessage(message) {
  switch (message.type) {
    case "sdp":
      await phone.pc.setRemoteDescription({ type: "answer", sdp: message.sdp });
      break;
    case "registered":
      $("phone-start").hidden = true;
      phoneShow(`ready: ${message.extension} rings here too`, { dial: true });
      break;
    case "incoming":
      phone.peer = who(message.from, message.name);
      phoneShow("ringing", { incoming: phone.peer });
      break;
    case "ringing":
      phoneShow("calling…", { hangUp: true });
      break;
    case "connected":
      phone.held = false;
      phoneShow(`in a call with ${phone.peer}`, { inCall: true });
      break;
    case "held":
      phone.held = true;
      phoneShow(`${phone.peer} is on hold`, { inCall: true });
      break;
    case "ended":
      phone.held = false;
      phoneShow(`ready (call ended: ${message.reason})`, { dial: true });
      break;
    case "error":
      $("phone-error").textContent = message.error;
      break;
  }
}

// A number typed into the box `input` goes to the phone as a `type` message; the box is emptied.
function sendNumber(event, input, type) {
  event.preventDefault();
  const number = $(input).value.trim();
  if (number) {
    phoneSend({ type, number });
    $(input).value = "";
  }
  return number;
}

function dial(event) {
  const number = sendNumber(event, "phone-number", "dial");
  if (!number) return;
  phone.peer = number;
  phoneShow("calling…", { hangUp: true });
}

function transfer(event) {
  sendNumber(event, "phone-transfer-number", "transfer");
}

// How long callers have waited, every second.
setInterval(() => {
  for (const node of document.querySelectorAll("[data-since] .wait")) {
    node.textContent = waited(Number(node.parentElement.dataset.since));
  }
}, 1000);

start();
