// pushbridge-share.js: sharing one connection between tabs, the part of
// pushbridge.js (the entry, which re-exports it and whose connect() picks
// SharedConnection) that elects a holder and passes its frames on.
//
// Tabs connecting to one bridge as one user with one filter (the share key)
// are members of a group; one holder keeps the group's connection. The
// holder is a SharedWorker running pushbridge.js (which imports this file)
// when the browser has one and the module is loaded from its own URL (a
// bundle is not: then the holder is a tab, elected as the owner of a Web
// Lock named after the key, passing frames on over a BroadcastChannel of
// the same name).
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

import { Connection } from "./pushbridge-connection.js";

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

// The worker runs pushbridge.js, the URL the page knows; this module is
// what it imports to hold the group, so the holder starts here.
if (typeof SharedWorkerGlobalScope !== "undefined" && globalThis instanceof SharedWorkerGlobalScope)
  serveSharedWorker(globalThis);
