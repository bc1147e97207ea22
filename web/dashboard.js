// The dashboard at / on the public listener: one progress bar per task,
// a feed of the other events, and the connection state; all from
// pushbridge.js. The sign-in is kept in sessionStorage so that a reload
// connects again at once: the task snapshot brings every bar back and the
// recent notifications (marked "earlier") the feed. Tabs of one user share
// one connection (the module's default).
import { connect } from "/pushbridge.js";

const $ = (id) => document.getElementById(id);
const KEY = "pushbridge.dashboard";
const FEED_MAX = 50;
const RECENT = 20; // notifications asked for at sign-in (SPEC 9: at most 100)
let conn = null;

// data.progress or data.pct, 0-100; anything else is not a bar value.
function percent(data) {
  const v = data && typeof data === "object" ? (data.progress ?? data.pct) : undefined;
  const n = typeof v === "string" ? Number(v) : v;
  return typeof n === "number" && isFinite(n) ? Math.max(0, Math.min(100, n)) : null;
}

function taskRow(task) {
  const id = "task-" + encodeURIComponent(task);
  let li = document.getElementById(id);
  if (li) return li;
  li = document.createElement("li");
  li.id = id;
  li.dataset.task = task;
  li.innerHTML = '<div class="task-head"><span class="task-name"></span><span class="task-pct"></span></div>' +
                 '<div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100"><div></div></div>' +
                 '<div class="task-msg"></div>';
  li.querySelector(".task-name").textContent = task;
  $("tasks").appendChild(li);
  $("notasks").hidden = true;
  return li;
}

function showTask(f) {
  const li = taskRow(String(f.task));
  const pct = percent(f.data);
  const data = f.data && typeof f.data === "object" ? f.data : {};
  const done = f.final === true;
  const shown = done && pct === null ? 100 : pct;
  if (shown !== null) {
    li.querySelector(".bar > div").style.width = shown + "%";
    li.querySelector(".bar").setAttribute("aria-valuenow", String(shown));
    li.dataset.value = String(shown);
  }
  li.querySelector(".task-pct").textContent = done ? "done" : shown !== null ? Math.round(shown) + "%" : "";
  li.querySelector(".task-msg").textContent = typeof data.message === "string" ? data.message : "";
  li.classList.toggle("done", done);
  li.dataset.done = String(done);
}

// earlier: a recent notification from before this page connected.
function notify(f, earlier = false) {
  const li = document.createElement("li");
  const t = document.createElement("time");
  t.textContent = earlier ? "earlier" : new Date().toLocaleTimeString();
  if (earlier) li.classList.add("earlier");
  li.dataset.earlier = String(earlier);
  const text = typeof f.data === "string" ? f.data
             : f.data && typeof f.data.message === "string" ? f.data.message : JSON.stringify(f.data);
  li.append(t, document.createTextNode(f.event + ": " + text));
  li.dataset.event = f.event;
  $("feed").prepend(li);
  while ($("feed").children.length > FEED_MAX) $("feed").lastChild.remove();
}

function setState(s) {
  const el = $("state");
  el.className = "state " + s.state;
  const via = s.transport ? " (" + (s.transport === "sse" ? "SSE" : "WebSocket") + ")" : "";
  const text = { connecting: "connecting…", open: "live" + via, offline: "offline: waiting for the network",
                 reconnecting: "reconnecting…", closed: "disconnected", idle: "not connected" }[s.state];
  el.textContent = s.state === "closed" && s.reason ? text + ": " + s.reason : text;
  el.dataset.state = s.state;
  el.dataset.transport = s.transport || "";
}

// getToken for jwt mode: a page that embeds the dashboard may supply one
// (window.pushbridgeGetToken), else the token typed in is used as it is.
function start(login) {
  $("signin").hidden = true;
  $("board").hidden = false;
  $("signout").hidden = false;
  $("who").textContent = login.user ? "user " + login.user : "token sign-in";
  const opts = { events: login.events ? login.events.split(",").map((e) => e.trim()).filter(Boolean) : [],
                 transport: new URLSearchParams(location.search).get("transport") || "auto",
                 onState: setState,
                 onTask: showTask,
                 share: new URLSearchParams(location.search).get("share") !== "false",
                 recent: RECENT,
                 onEvent: (f) => { if (f.task === undefined) notify(f); },
                 onRecent: (f) => notify(f, true),
                 onWelcome: (w) => { $("who").textContent = "user " + w.user; },
                 onError: (e) => console.warn("pushbridge:", e.code, e.message) };
  if (typeof window.pushbridgeGetToken === "function") opts.getToken = window.pushbridgeGetToken;
  else if (login.token) opts.token = login.token;
  else opts.user = login.user;
  conn = connect("/", opts);
  window.pushbridgeConnection = conn; // for the console (and the browser tests)
}

$("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  const login = { user: $("user").value.trim(), token: $("token").value.trim(), events: $("events").value.trim() };
  if (!login.user && !login.token) return;
  sessionStorage.setItem(KEY, JSON.stringify(login));
  start(login);
});

$("signout").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  if (conn) conn.close();
  location.reload();
});

const params = new URLSearchParams(location.search);
const saved = sessionStorage.getItem(KEY);
if (params.get("user")) start({ user: params.get("user"), events: params.get("events") || "" });
else if (saved) start(JSON.parse(saved));
