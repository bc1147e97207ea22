// pushbridge-connection.js: one live connection to the bridge, the part of
// pushbridge.js (the entry, which re-exports it) that talks to the bridge:
// WebSocket or SSE, backoff, resume, dedup, token refresh, the network.

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
