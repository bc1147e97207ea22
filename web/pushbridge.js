// pushbridge.js: the browser client of pushbridge (SPEC section 9).
// An ES module with no dependencies, served by the bridge at /pushbridge.js
// (types at /pushbridge.d.ts). It keeps one live connection to the bridge
// for as long as the page wants it: WebSocket first, Server-Sent Events
// (GET /sse) when a WebSocket cannot be opened; reconnects with capped,
// jittered exponential backoff; resumes from the last pos it saw so nothing
// is missed, and drops what it has already delivered.
//
//   import { connect } from "/pushbridge.js";
//   const conn = connect("/", { getToken: () => fetch("/token").then(r => r.text()),
//                               events: ["task.progress"] });
//   conn.addEventListener("task", (e) => render(e.detail));
//
// Why the choices:
//   - getToken() is called for every (re)connect and for every refresh the
//     server asks for, so a short-lived JWT never has to outlive its exp.
//   - Positions are opaque: duplicates are dropped by remembering the last
//     DEDUP_SIZE positions and event ids delivered, not by comparing them.
//   - SSE is one-way: a refresh request there is answered by opening a new
//     stream with the new token and resume=<last pos> (no event is lost or
//     repeated), not by a message.
//   - The browser says when the network comes back (`online`) and when a
//     page is looked at again (`visibilitychange`): the module reconnects at
//     once then instead of waiting out its backoff, and says `offline` while
//     the browser is offline.
//   - Tabs of one origin connected as the same user to the same bridge share
//     one connection (a SharedWorker, else a tab elected through the Web
//     Locks API passing frames on over BroadcastChannel): see "Sharing one
//     connection between tabs" below. `share: false` opts out.

export const VERSION = "1";

/** Default reconnect policy: 0.5 s doubling to 30 s, half of it random. */
export const DEFAULT_BACKOFF = Object.freeze({ initialMs: 500, maxMs: 30000, factor: 2, jitter: 0.5 });

/**
 * Delay before reconnect attempt `attempt` (0 = the first retry): the
 * exponential step capped at maxMs, of which a `jitter` share is random, so
 * clients dropped together (a bridge restart) do not all come back together.
 */
export function backoffDelay(attempt, backoff = DEFAULT_BACKOFF, random = Math.random) {
  const b = { ...DEFAULT_BACKOFF, ...backoff };
  const step = Math.min(b.maxMs, b.initialMs * Math.pow(b.factor, Math.max(0, attempt)));
  const jitter = Math.min(1, Math.max(0, b.jitter));
  return Math.round(step * (1 - jitter) + step * jitter * random());
}

/** Remembers the last `size` keys seen; has() is how duplicates are found. */
export class Dedup {
  constructor(size = 1024) {
    this.size = size;
    this.set = new Set();
    this.order = [];
  }
  /** true when key was seen before; otherwise remembers it and returns false. */
  seen(key) {
    if (key === undefined || key === null || key === "") return false;
    if (this.set.has(key)) return true;
    this.set.add(key);
    this.order.push(key);
    if (this.order.length > this.size) this.set.delete(this.order.shift());
    return false;
  }
}

/**
 * Incremental text/event-stream parser (the WHATWG EventSource rules that
 * matter here): lines end in \n, \r or \r\n; "data:" lines are joined by
 * \n; "id:" sets the last event id; ":" lines are comments; a blank line
 * dispatches. onMessage({ id, event, data }) per message, onComment(text).
 */
export class SSEParser {
  constructor(onMessage, onComment = () => {}) {
    this.onMessage = onMessage;
    this.onComment = onComment;
    this.buf = "";
    this.data = [];
    this.id = undefined;
    this.event = undefined;
    this.sawCR = false;
  }
  feed(text) {
    let s = this.buf + text;
    // A \r at the very end may be the first half of \r\n: decided next time.
    let start = 0;
    for (let i = 0; i < s.length; i++) {
      const ch = s[i];
      if (ch !== "\n" && ch !== "\r") continue;
      if (ch === "\r" && i + 1 === s.length) break;
      this.line(s.slice(start, i));
      if (ch === "\r" && s[i + 1] === "\n") i++;
      start = i + 1;
    }
    this.buf = s.slice(start);
  }
  line(l) {
    if (l === "") {
      if (this.data.length) this.onMessage({ id: this.id, event: this.event, data: this.data.join("\n") });
      this.data = [];
      this.event = undefined;
      return;
    }
    if (l[0] === ":") return this.onComment(l.slice(1).trim());
    const c = l.indexOf(":");
    const field = c < 0 ? l : l.slice(0, c);
    let value = c < 0 ? "" : l.slice(c + 1);
    if (value[0] === " ") value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "id") this.id = value;
    else if (field === "event") this.event = value;
  }
}

/** Maps a bridge address to its WebSocket and SSE endpoints. */
export function endpoints(url, base) {
  const loc = base || (typeof location !== "undefined" ? location.href : "http://localhost/");
  const u = new URL(url || "/", loc);
  let path = u.pathname;
  if (u.protocol === "ws:" || u.protocol === "wss:") {
    const http = new URL(u.href);
    http.protocol = u.protocol === "wss:" ? "https:" : "http:";
    http.pathname = path.replace(/\/ws$/, "") + "/sse";
    http.search = "";
    return { ws: u.href, sse: http.href.replace(/\/\/sse$/, "/sse") };
  }
  const root = path.endsWith("/") ? path.slice(0, -1) : path.replace(/\/(ws|sse)$/, "");
  const ws = new URL(u.href);
  ws.protocol = u.protocol === "https:" ? "wss:" : "ws:";
  ws.pathname = root + "/ws";
  ws.search = "";
  const sse = new URL(u.href);
  sse.pathname = root + "/sse";
  sse.search = "";
  return { ws: ws.href, sse: sse.href };
}

const DEDUP_SIZE = 1024;

/**
 * Calls cb("offline"), cb("online") and cb("visible") (the page is shown
 * again) as the browser reports them; returns what stops it. Nothing
 * outside a page (node, a worker: the pages tell the holder).
 */
function watchNetwork(cb) {
  if (typeof window === "undefined" || typeof document === "undefined" ||
      typeof window.addEventListener !== "function") return null;
  const on = () => cb("online"), off = () => cb("offline");
  const vis = () => { if (document.visibilityState === "visible") cb("visible"); };
  window.addEventListener("online", on);
  window.addEventListener("offline", off);
  document.addEventListener("visibilitychange", vis);
  return () => {
    window.removeEventListener("online", on);
    window.removeEventListener("offline", off);
    document.removeEventListener("visibilitychange", vis);
  };
}
// Close codes after which reconnecting with the same credentials is useless
// unless getToken() can fetch new ones (README, "Errors and close codes").
const AUTH_REFUSED = 4003;
const TOKEN_EXPIRED = 4004;

/**
 * A live connection. An EventTarget: "event" (live events), "snapshot"
 * (task snapshot frames after login), "task" (both, for frames with a task),
 * "welcome", "state", "refresh", "error". Each CustomEvent's detail is the
 * frame (or, for "state", { state, transport, code, reason, attempt }).
 */
export class Connection extends EventTarget {
  constructor(url, options = {}) {
    super();
    this.options = options;
    this.urls = endpoints(url, options.base);
    if (options.sseUrl) this.urls.sse = options.sseUrl;
    this.backoff = { ...DEFAULT_BACKOFF, ...(options.backoff || {}) };
    this.events = options.events || [];
    this.pos = options.resume || null;
    this.user = null;
    this.tasks = new Map();
    this.state = "idle";
    this.transport = null;
    this.attempt = 0;
    this.closed = false;
    this.dedup = new Dedup(options.dedupSize || DEDUP_SIZE);
    this.mode = options.transport || "auto"; // "auto" | "websocket" | "sse"
    this.sseSticky = false; // a WebSocket could not open but SSE could
    this.WS = options.WebSocket || (typeof WebSocket !== "undefined" ? WebSocket : null);
    this.fetch = options.fetch || (typeof fetch !== "undefined" ? fetch.bind(globalThis) : null);
    this.timer = null;
    this.gen = 0; // which attempt the callbacks belong to
    // Recent notifications are asked for on the first login only: a
    // reconnect resumes, and one that cannot would show them twice.
    this.recent = Math.max(0, Math.min(100, Number(options.recent) || 0));
    for (const [name, cb] of Object.entries({
      event: options.onEvent, snapshot: options.onSnapshot, task: options.onTask,
      recent: options.onRecent,
      welcome: options.onWelcome, state: options.onState, refresh: options.onRefresh,
      error: options.onError,
    })) if (typeof cb === "function") this.addEventListener(name, (e) => cb(e.detail));
    if (options.watchNetwork !== false) this.unwatch = watchNetwork((why) => this.nudge(why));
    queueMicrotask(() => this.open());
  }

  /**
   * The browser went offline ("offline"), came back ("online"), or showed
   * the page again ("visible"). Offline drops the connection and waits;
   * online, and visible while dropped, reconnect at once, not after the
   * backoff.
   */
  nudge(why) {
    if (this.closed) return;
    if (why === "offline") {
      if (this.state === "offline") return;
      clearTimeout(this.timer);
      this.gen++;
      this.teardown(1000, "the browser is offline");
      return this.setState("offline", { code: 1006, reason: "the browser is offline" });
    }
    if (this.state !== "offline" && this.state !== "reconnecting") return; // not dropped
    if (why === "visible" && typeof navigator !== "undefined" && navigator.onLine === false) return;
    clearTimeout(this.timer);
    this.attempt = Math.max(1, this.attempt);
    this.open();
  }

  /** Ends the connection for good (no reconnect). */
  close() {
    if (this.closed && this.state === "closed") return;
    this.closed = true;
    if (this.unwatch) this.unwatch();
    clearTimeout(this.timer);
    this.gen++;
    this.teardown(1000, "closed by the page");
    this.setState("closed", { code: 1000, reason: "closed by the page" });
  }

  emit(type, detail) {
    this.dispatchEvent(new CustomEvent(type, { detail }));
  }

  setState(state, extra = {}) {
    this.state = state;
    this.emit("state", { state, transport: this.transport, attempt: this.attempt, ...extra });
  }

  /** Can a new token be had (getToken), or is the one given all there is? */
  renewable() {
    const o = this.options;
    return o.renewable !== undefined ? o.renewable : typeof o.getToken === "function";
  }

  async token() {
    const o = this.options;
    if (typeof o.getToken === "function") return String(await o.getToken());
    if (o.token !== undefined) return String(o.token);
    if (o.user !== undefined) return String(o.user); // auth.mode none: the token is the user
    throw new Error("pushbridge: connect() needs a token, a getToken() function or a user");
  }

  async open() {
    if (this.closed) return;
    const gen = ++this.gen;
    this.setState(this.attempt ? "reconnecting" : "connecting");
    let token;
    try {
      token = await this.token();
    } catch (err) {
      if (gen !== this.gen) return;
      this.emit("error", { code: "token", message: String(err && err.message || err) });
      return this.retry();
    }
    if (gen !== this.gen || this.closed) return;
    const useSSE = this.mode === "sse" || (this.mode === "auto" && (this.sseSticky || !this.WS));
    if (useSSE) this.openSSE(token, gen, false);
    else this.openWS(token, gen);
  }

  // ---- WebSocket ----

  openWS(token, gen) {
    let ws;
    this.transport = "websocket";
    try {
      ws = new this.WS(this.urls.ws);
    } catch (err) {
      return this.wsFailed(token, gen, 1006, String(err && err.message || err));
    }
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      if (gen !== this.gen) return;
      opened = true;
      const login = { type: "auth", token };
      if (this.events.length) login.events = this.events;
      if (this.pos) login.resume = this.pos;
      else if (this.recent) login.recent = this.recent;
      ws.send(JSON.stringify(login));
    };
    ws.onmessage = (m) => {
      if (gen !== this.gen) return;
      let f;
      try { f = JSON.parse(m.data); } catch { return; }
      this.frame(f, gen);
    };
    ws.onclose = (e) => {
      if (gen !== this.gen) return;
      this.ws = null;
      if (!opened) return this.wsFailed(token, gen, e.code, e.reason);
      this.dropped(e.code, e.reason);
    };
    ws.onerror = () => {}; // onclose follows and says what happened
  }

  // The WebSocket never opened: try SSE at once (auto mode), else back off.
  wsFailed(token, gen, code, reason) {
    if (this.mode === "auto") return this.openSSE(token, gen, true);
    this.dropped(code || 1006, reason || "cannot open a WebSocket");
  }

  sendWS(obj) {
    if (this.ws && this.ws.readyState === 1) this.ws.send(JSON.stringify(obj));
  }

  // ---- Server-Sent Events ----

  async openSSE(token, gen, fallback) {
    this.transport = "sse";
    if (!this.fetch) return this.dropped(1006, "neither WebSocket nor fetch is available");
    const u = new URL(this.urls.sse);
    u.searchParams.set("token", token);
    if (this.events.length) u.searchParams.set("events", this.events.join(","));
    if (this.pos) u.searchParams.set("resume", this.pos);
    else if (this.recent) u.searchParams.set("recent", String(this.recent));
    const abort = typeof AbortController !== "undefined" ? new AbortController() : null;
    this.sse = abort;
    let res;
    try {
      res = await this.fetch(u.href, { headers: { accept: "text/event-stream" }, cache: "no-store",
                                       signal: abort && abort.signal });
    } catch (err) {
      if (gen !== this.gen) return;
      return this.dropped(1006, "cannot reach " + this.urls.sse);
    }
    if (gen !== this.gen) return abort && abort.abort();
    if (!res.ok) {
      let body = {};
      try { body = await res.json(); } catch { /* not JSON */ }
      if (gen !== this.gen) return;
      this.emit("error", { code: body.error || "http_" + res.status, message: body.message || res.statusText, status: res.status });
      // 401: the login was refused, as 4003 is for a WebSocket.
      return this.dropped(res.status === 401 ? AUTH_REFUSED : 1013, body.message || "HTTP " + res.status);
    }
    let closeFrame = null;
    const parser = new SSEParser((msg) => {
      if (gen !== this.gen) return;
      let f;
      try { f = JSON.parse(msg.data); } catch { return; }
      if (f.type === "close") { closeFrame = f; return; }
      if (f.type === "welcome" && fallback) this.sseSticky = true;
      this.frame(f, gen);
    });
    try {
      const reader = res.body.getReader();
      const dec = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (gen !== this.gen) { reader.cancel().catch(() => {}); return; }
        if (done) break;
        parser.feed(dec.decode(value, { stream: true }));
      }
    } catch (err) {
      if (gen !== this.gen) return;
    }
    if (gen !== this.gen) return;
    this.sse = null;
    this.dropped(closeFrame ? closeFrame.code : 1006, closeFrame ? closeFrame.reason : "stream ended");
  }

  // ---- frames (both transports) ----

  frame(f, gen) {
    switch (f.type) {
    case "welcome":
      this.user = f.user;
      this.attempt = 0;
      if (f.pos && f.resumed !== true) this.pos = f.pos;
      this.setState("open", { resumed: f.resumed });
      this.emit("welcome", f);
      return;
    case "event":
      if (f.snapshot) {
        if (f.task !== undefined) this.tasks.set(f.task, f);
        this.emit("snapshot", f);
        if (f.task !== undefined) this.emit("task", f);
        return;
      }
      if (f.recent) { // from before the login: no pos, not live
        if (!this.dedup.seen(f.id !== undefined ? "i:" + f.event + ":" + f.id : undefined))
          this.emit("recent", f);
        return;
      }
      if (this.dedup.seen(f.pos ? "p:" + f.pos : undefined) ||
          this.dedup.seen(f.id !== undefined ? "i:" + f.event + ":" + f.id : undefined))
        return; // already delivered (a resume overlapping what arrived)
      if (f.pos) this.pos = f.pos;
      if (f.task !== undefined) this.tasks.set(f.task, f);
      this.emit("event", f);
      if (f.task !== undefined) this.emit("task", f);
      return;
    case "refresh":
      this.emit("refresh", f);
      return this.refresh(gen);
    case "refreshed":
      this.emit("refresh", f);
      return;
    case "error":
      this.emit("error", f);
      return;
    default:
      return; // pong and anything newer: nothing to do
    }
  }

  // The server asks for a new token before the current one expires.
  async refresh(gen) {
    if (!this.renewable()) return; // closed at exp, then retried
    let token;
    try { token = await this.token(); } catch (err) {
      this.emit("error", { code: "token", message: String(err && err.message || err) });
      return;
    }
    if (gen !== this.gen || this.closed) return;
    if (this.transport === "websocket") return this.sendWS({ type: "refresh", token });
    // SSE cannot answer: a new stream with the new token, resumed.
    this.teardown();
    this.gen++;
    this.openSSE(token, this.gen, false);
  }

  // ---- losing the connection ----

  teardown(code = 1000, reason = "") {
    if (this.ws) { try { this.ws.close(code, reason); } catch { /* already closed */ } }
    this.ws = null;
    if (this.sse) this.sse.abort();
    this.sse = null;
  }

  dropped(code, reason) {
    this.teardown();
    if (this.closed) return;
    this.emit("close", { code, reason });
    const canRenew = this.renewable();
    if ((code === AUTH_REFUSED || code === TOKEN_EXPIRED) && !canRenew) {
      this.closed = true;
      return this.setState("closed", { code, reason });
    }
    // An expired token with getToken: at once, with a fresh one.
    if (code === TOKEN_EXPIRED) return this.retry(0);
    this.retry();
  }

  retry(delay) {
    if (this.closed) return;
    const d = delay !== undefined ? delay : backoffDelay(this.attempt, this.backoff);
    this.attempt++;
    this.setState("reconnecting", { delayMs: d });
    clearTimeout(this.timer);
    this.timer = setTimeout(() => this.open(), d);
  }
}

// ---- Sharing one connection between tabs -----------------------------------
//
// Tabs connecting to one bridge as one user with one filter (the share key)
// are members of a group; one holder keeps the group's connection. The
// holder is a SharedWorker running this module when the browser has one and
// the module is loaded from its own URL (a bundle is not: then the holder
// is a tab, elected as the owner of a Web Lock named after the key, passing
// frames on over a BroadcastChannel of the same name).
//
//   holder -> members  {t:"frame", f}        every frame the bridge sent, in order
//                      {t:"state"|"error"|"close", detail}
//                      {t:"sync", to, snap}  to a member that joined: state,
//                                            tasks and recent notifications so far
//                      {t:"token?", rid, to} the holder needs a token from that member
//                      {t:"holder"}          a new holder: members not synced join again
//   members -> holder  {t:"join", id, cfg}  {t:"leave", id}  {t:"nudge", why}
//                      {t:"token", rid, token | error}
//
// Hand-over (Web Locks): when the holding tab goes, the browser releases its
// lock and the next tab waiting for it becomes the holder. It connects with
// resume = the last pos it received, which every member received too (one
// sender, one ordered channel), so the replay brings exactly what nobody
// got; members drop by pos or id anything they already had all the same.
// A member that joins late gets the holder's tasks and recent
// notifications as snapshot and recent frames, so a reloaded tab shows them.

/** The `sub` of a JWT, read without verifying it (the bridge verifies). */
export function jwtSubject(token) {
  const parts = String(token).split(".");
  if (parts.length !== 3) return undefined;
  try {
    const b64 = parts[1].replace(/-/g, "+").replace(/_/g, "/");
    const json = decodeURIComponent(Array.from(atob(b64), (c) =>
      "%" + c.charCodeAt(0).toString(16).padStart(2, "0")).join(""));
    const sub = JSON.parse(json).sub;
    return typeof sub === "string" ? sub : undefined;
  } catch {
    return undefined;
  }
}

// The options a holder needs, structured-cloneable (a SharedWorker gets them
// by postMessage); tokens come from the members on request.
function holderConfig(url, o, recent) {
  const cfg = { url, options: { renewable: typeof o.getToken === "function", recent } };
  for (const k of ["events", "transport", "backoff", "sseUrl", "dedupSize"])
    if (o[k] !== undefined) cfg.options[k] = o[k];
  return cfg;
}

/** The connection a holder keeps: a Connection that also tells its members. */
class HeldConnection extends Connection {
  constructor(url, options, tell) {
    super(url, options);
    this.tell = tell;
  }
  frame(f, gen) {
    this.tell({ t: "frame", f });
    super.frame(f, gen);
  }
  setState(state, extra = {}) {
    super.setState(state, extra);
    if (this.tell) this.tell({ t: "state", detail: { ...extra, state, transport: this.transport, attempt: this.attempt } });
  }
  emit(type, detail) {
    super.emit(type, detail);
    if (type === "error" || type === "close") this.tell({ t: type, detail });
  }
}

/**
 * The holder's side: one HeldConnection for the group, what a late member
 * needs (state, welcome, tasks, the last `recent` notifications), and the
 * members' requests. seed: what the new holder of a hand-over had seen.
 */
class Holder {
  constructor(cfg, post, getToken, seed = null, local = {}) {
    this.post = post;
    this.keep = cfg.options.recent || 0;
    this.recent = seed ? seed.recent.slice(-this.keep) : [];
    this.lastState = null;
    this.welcome = seed ? seed.welcome : null;
    const options = { ...cfg.options, ...local, getToken, share: false, watchNetwork: false };
    if (seed && seed.pos) {
      options.resume = seed.pos;
      options.recent = 0;
    }
    this.conn = new HeldConnection(cfg.url, options, (m) => { if (!this.closed) this.post(m); });
    if (seed) {
      for (const f of seed.tasks) this.conn.tasks.set(f.task, f);
      this.conn.user = seed.user;
    }
    const note = (e) => {
      if (e.detail.task !== undefined) return;
      this.recent.push(e.detail);
      if (this.recent.length > this.keep) this.recent.shift();
    };
    this.conn.addEventListener("event", note);
    this.conn.addEventListener("recent", note);
    this.conn.addEventListener("welcome", (e) => { this.welcome = e.detail; });
    this.conn.addEventListener("state", (e) => { this.lastState = e.detail; });
  }
  snapshot() {
    const c = this.conn;
    return { state: this.lastState, welcome: this.welcome, user: c.user, pos: c.pos,
             tasks: [...c.tasks.values()], recent: this.recent.slice() };
  }
  /** A member's message (join, nudge); the transport handles the rest. */
  handle(msg) {
    if (msg.t === "join") this.post({ t: "sync", to: msg.id, snap: this.snapshot() });
    else if (msg.t === "nudge") this.conn.nudge(msg.why);
  }
  /** Ends the group's connection without telling the members it closed. */
  close() {
    this.closed = true;
    this.conn.close();
  }
}

let memberIds = 0;

/**
 * What connect() returns when the connection is shared: the same API as a
 * Connection, fed by the holder. `role` says how: "worker" (a SharedWorker
 * holds it), "leader" (this tab holds it), "follower" (another tab does) or
 * "direct" (sharing was not possible: a connection of its own).
 */
export class SharedConnection extends Connection {
  constructor(url, options, env) {
    super(url, options);
    this.env = env;
    this.id = Date.now().toString(36) + "-" + Math.random().toString(36).slice(2) + "-" + ++memberIds;
    this.role = null;
    this.synced = false;
    this.holder = null;
    this.seenRecent = [];
  }

  async open() {
    if (this.role === "direct") return super.open();
    if (this.role) return; // the holder reconnects, not the members
    this.role = "joining";
    this.setState("connecting");
    let who = this.options.shareKey !== undefined ? this.options.shareKey : this.options.user;
    try {
      if (who === undefined) {
        const o = this.options;
        const token = o.token !== undefined ? String(o.token) : (this.firstToken = await super.token());
        who = jwtSubject(token) || "t:" + token;
      }
    } catch (err) {
      return this.direct(); // getToken failed: the direct path retries it
    }
    if (this.closed) return;
    this.key = "pushbridge:" + JSON.stringify([this.urls.ws, String(who), [...this.events].sort(), this.mode]);
    this.cfg = holderConfig(this.urls.ws, this.options, this.recent);
    if (this.env.workerUrl && this.env.SharedWorker) {
      try { return this.viaWorker(); } catch { /* fall through to the lock */ }
    }
    if (this.env.locks && this.env.BroadcastChannel) return this.viaLocks();
    this.direct();
  }

  direct() {
    this.role = "direct";
    this.open();
  }

  async token() {
    if (this.firstToken !== undefined) {
      const t = this.firstToken;
      this.firstToken = undefined;
      return t;
    }
    return super.token();
  }

  // ---- a SharedWorker holds it ----

  viaWorker() {
    const w = new this.env.SharedWorker(this.env.workerUrl, { type: "module", name: this.key });
    this.role = "worker";
    this.port = w.port;
    this.port.onmessage = (e) => this.fromHolder(e.data);
    w.onerror = () => { // the worker could not start: a tab holds it instead
      if (this.closed || this.synced) return;
      this.port = null;
      if (this.env.locks && this.env.BroadcastChannel) this.viaLocks(); else this.direct();
    };
    this.port.start();
    this.send = (m) => this.port && this.port.postMessage(m);
    this.send({ t: "join", id: this.id, cfg: this.cfg });
    if (typeof addEventListener === "function") {
      this.onHide = () => this.send({ t: "leave", id: this.id });
      this.onShow = (e) => { if (e.persisted) { this.synced = false; this.send({ t: "join", id: this.id, cfg: this.cfg }); } };
      addEventListener("pagehide", this.onHide);
      addEventListener("pageshow", this.onShow);
    }
  }

  // ---- a tab holds it (Web Locks + BroadcastChannel) ----

  viaLocks() {
    this.role = "follower";
    this.bus = new this.env.BroadcastChannel(this.key);
    this.bus.onmessage = (e) => {
      const m = e.data;
      if (m.t === "join" || m.t === "nudge") { if (this.holder) this.holder.handle(m); }
      else if (m.t !== "leave") this.fromHolder(m);
    };
    this.send = (m) => { if (this.holder) this.holder.handle(m); else this.bus.postMessage(m); };
    this.env.locks.request(this.key, () => new Promise((release) => {
      this.release = release;
      this.lead();
    })).catch(() => {});
    this.send({ t: "join", id: this.id });
  }

  lead() {
    if (this.closed) return this.release();
    const seed = this.synced ? { pos: this.pos, user: this.user, welcome: null,
                                 tasks: [...this.tasks.values()], recent: this.seenRecent } : null;
    this.synced = true;
    this.role = "leader";
    const local = {};
    for (const k of ["WebSocket", "fetch", "base"]) if (this.options[k]) local[k] = this.options[k];
    this.holder = new Holder(this.cfg, (m) => { this.bus.postMessage(m); this.fromHolder(m); },
                             () => this.token(), seed, local);
    this.bus.postMessage({ t: "holder" });
  }

  // ---- what the holder says ----

  fromHolder(m) {
    if (this.closed) return;
    switch (m.t) {
    case "sync":
      if (m.to === this.id && !this.synced) this.sync(m.snap);
      return;
    case "holder":
      if (!this.synced) this.send({ t: "join", id: this.id, cfg: this.cfg });
      return;
    case "token?":
      if (m.to === this.id) this.token().then((token) => this.send({ t: "token", rid: m.rid, token }),
        (err) => this.send({ t: "token", rid: m.rid, error: String(err && err.message || err) }));
      return;
    }
    if (!this.synced) return; // what the sync will hold
    if (m.t === "state") {
      this.state = m.detail.state;
      this.transport = m.detail.transport;
      this.attempt = m.detail.attempt;
      this.emit("state", m.detail);
    } else if (m.t === "error" || m.t === "close") {
      this.emit(m.t, m.detail);
    } else if (m.t === "frame") {
      this.memberFrame(m.f);
    }
  }

  memberFrame(f) {
    if (f.type === "welcome") {
      this.user = f.user;
      if (f.pos && f.resumed !== true) this.pos = f.pos;
      return this.emit("welcome", f);
    }
    if (f.type === "refresh" || f.type === "refreshed") return this.emit("refresh", f);
    if (f.type === "error") return this.emit("error", f);
    if (f.type === "event" && f.task === undefined && !f.snapshot) this.noteRecent(f);
    this.frame(f, this.gen);
  }

  noteRecent(f) {
    this.seenRecent.push(f);
    if (this.seenRecent.length > this.recent) this.seenRecent.shift();
  }

  sync(snap) {
    this.synced = true;
    this.user = snap.user;
    if (snap.pos) this.pos = snap.pos;
    if (snap.state) {
      this.state = snap.state.state;
      this.transport = snap.state.transport;
      this.emit("state", snap.state);
    }
    if (snap.welcome) this.emit("welcome", snap.welcome);
    for (const f of snap.tasks) {
      const s = { ...f, snapshot: true };
      this.tasks.set(f.task, s);
      this.emit("snapshot", s);
      this.emit("task", s);
    }
    for (const f of snap.recent) {
      if (f.pos) this.dedup.seen("p:" + f.pos);
      if (f.id !== undefined) this.dedup.seen("i:" + f.event + ":" + f.id);
      const r = { ...f, recent: true };
      this.noteRecent(r);
      this.emit("recent", r);
    }
  }

  nudge(why) {
    if (this.role === "direct") return super.nudge(why);
    if (!this.closed && this.send) this.send({ t: "nudge", why });
  }

  refresh() {} // the holder answers refresh requests

  close() {
    if (this.closed) return;
    if (this.role === "direct") return super.close();
    if (this.send) this.send({ t: "leave", id: this.id });
    this.closed = true;
    if (this.unwatch) this.unwatch();
    if (this.holder) this.holder.close();
    this.holder = null;
    if (this.release) this.release(); // the next tab waiting for the lock takes over
    if (this.bus) this.bus.close();
    if (this.port) this.port.close();
    if (this.onHide) { removeEventListener("pagehide", this.onHide); removeEventListener("pageshow", this.onShow); }
    this.send = null;
    this.setState("closed", { code: 1000, reason: "closed by the page" });
  }
}

/** In a SharedWorker started by SharedConnection: hold the group's connection. */
function serveSharedWorker(scope) {
  const ports = new Map(); // member id -> port, the last joined last
  const waiting = new Map(); // token request id -> { resolve, reject, timer }
  let holder = null;
  let rids = 0;
  const tell = (m) => { for (const p of new Set(ports.values())) p.postMessage(m); };
  // A token from the member that joined last; one that does not answer
  // within 5 s is gone (closed without a word): the next one is asked.
  const getToken = () => new Promise((resolve, reject) => {
    const ask = () => {
      const ids = [...ports.keys()];
      if (!ids.length) return reject(new Error("no tab left to ask for a token"));
      const id = ids[ids.length - 1], rid = ++rids;
      const timer = setTimeout(() => { waiting.delete(rid); ports.delete(id); ask(); }, 5000);
      waiting.set(rid, { resolve, reject, timer });
      ports.get(id).postMessage({ t: "token?", rid, to: id });
    };
    ask();
  });
  const leave = (id) => {
    ports.delete(id);
    if (!ports.size && holder) { holder.close(); holder = null; } // nobody left: the user holds none
  };
  scope.onconnect = (e) => {
    const port = e.ports[0];
    port.onmessage = ({ data: m }) => {
      if (m.t === "join") {
        ports.delete(m.id);
        ports.set(m.id, port);
        if (!holder) holder = new Holder(m.cfg, tell, getToken);
        holder.handle(m);
      } else if (m.t === "leave") {
        leave(m.id);
      } else if (m.t === "token") {
        const w = waiting.get(m.rid);
        if (!w) return;
        waiting.delete(m.rid);
        clearTimeout(w.timer);
        if (m.error !== undefined) w.reject(new Error(m.error)); else w.resolve(m.token);
      } else if (holder) {
        holder.handle(m);
      }
    };
    port.start();
  };
}

if (typeof SharedWorkerGlobalScope !== "undefined" && globalThis instanceof SharedWorkerGlobalScope)
  serveSharedWorker(globalThis);

// What sharing can use here; null: a connection of its own. A SharedWorker
// runs this module's own URL, so only when it is loaded as itself (not
// inlined in a bundle) or options.workerUrl names it.
function shareEnv(o) {
  if (o.share === false) return null;
  const g = globalThis;
  const BC = o.BroadcastChannel || g.BroadcastChannel;
  const locks = o.locks || (g.navigator && g.navigator.locks);
  const SW = o.SharedWorker !== undefined ? o.SharedWorker : g.SharedWorker;
  if (typeof document === "undefined" && !o.locks) return null; // not a page
  let workerUrl = o.workerUrl || null;
  try {
    if (!workerUrl && /\/pushbridge(\.min)?\.m?js$/.test(new URL(import.meta.url).pathname))
      workerUrl = import.meta.url;
  } catch { /* no import.meta.url: no worker */ }
  if (!(SW && workerUrl) && !(BC && locks)) return null;
  return { BroadcastChannel: BC, locks, SharedWorker: SW, workerUrl };
}

/** Opens a connection to the bridge at url (its /ws URL or its base URL);
 * shared with this browser's other tabs unless options.share is false. */
export function connect(url, options = {}) {
  const env = shareEnv(options);
  return env ? new SharedConnection(url, options, env) : new Connection(url, options);
}

export default connect;
