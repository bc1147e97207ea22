// Unit tests of the sharing in web/pushbridge.js: the Web Locks election,
// the hand-over when the holding tab goes (abruptly or by close()), the
// sync of a late tab, and the network nudges. Tabs are SharedConnections
// in one process with fake locks, a fake BroadcastChannel and a fake
// bridge (node --test; run from tests/integration/test_53_browser.py).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, jwtSubject } from "../../../web/pushbridge.js";

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what, ms = 2000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await tick(2);
  }
}

// Web Locks as a browser grants them: one holder per name, the others wait
// in order; a tab that dies releases what it held.
class FakeLocks {
  constructor() { this.queues = new Map(); }
  forTab(tab) {
    return { request: (name, cb) => new Promise((resolve) => {
      const q = this.queues.get(name) || [];
      this.queues.set(name, q);
      q.push({ tab, cb, resolve });
      if (q.length === 1) this.grant(name);
    }) };
  }
  grant(name) {
    const q = this.queues.get(name);
    const w = q && q[0];
    if (!w) return;
    w.done = Promise.resolve(w.cb()).then(w.resolve, w.resolve).then(() => this.drop(name, w));
  }
  drop(name, w) {
    const q = this.queues.get(name);
    const i = q.indexOf(w);
    if (i < 0) return;
    q.splice(i, 1);
    if (i === 0) this.grant(name);
  }
  killTab(tab) {
    for (const [name, q] of this.queues) for (const w of q.filter((w) => w.tab === tab)) this.drop(name, w);
  }
}

// BroadcastChannel between the fake tabs: to every other open instance of
// the name, in order, as a structured clone.
function fakeBC(tab, registry) {
  return class {
    constructor(name) {
      this.name = name; this.tab = tab; this.open = true;
      (registry[name] ||= []).push(this);
    }
    postMessage(m) {
      if (!this.open || tab.dead) return;
      const copy = structuredClone(m);
      for (const o of registry[this.name]) if (o !== this && o.open && !o.tab.dead)
        setTimeout(() => o.open && !o.tab.dead && o.onmessage && o.onmessage({ data: copy }), 0);
    }
    close() { this.open = false; }
  };
}

// The bridge: native logins, a log of events with pos "p<n>", resume,
// recent notifications, and the sockets open now.
class FakeBridge {
  constructor() {
    this.log = [];
    this.sockets = new Set();
    this.logins = [];
    const bridge = this;
    this.WS = class {
      constructor(url) {
        this.url = url; this.readyState = 0;
        setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 0);
      }
      send(t) { bridge.login(this, JSON.parse(t)); }
      close() { this.readyState = 3; bridge.sockets.delete(this); }
      recv(o) { if (this.readyState === 1) this.onmessage({ data: JSON.stringify(o) }); }
    };
  }
  login(ws, m) {
    if (m.type !== "auth") return;
    this.logins.push(m);
    this.sockets.add(ws);
    const at = this.log.length;
    if (m.resume) {
      const i = this.log.findIndex((e) => e.pos === m.resume);
      ws.recv({ type: "welcome", user: m.token, conn_id: "c", pos: "w" + at, resumed: i >= 0 });
      for (const e of this.log.slice(i + 1)) ws.recv(e);
      return;
    }
    ws.recv({ type: "welcome", user: m.token, conn_id: "c", pos: at ? this.log[at - 1].pos : "p0" });
    const tasks = new Map();
    for (const e of this.log) if (e.task) tasks.set(e.task, e);
    for (const e of tasks.values()) ws.recv({ ...e, pos: undefined, snapshot: true });
    if (m.recent) for (const e of this.log.filter((e) => !e.task).slice(-m.recent))
      ws.recv({ ...e, pos: undefined, recent: true });
  }
  publish(data, task) {
    const e = { type: "event", event: "note", pos: "p" + (this.log.length + 1), data };
    if (task) e.task = task;
    this.log.push(e);
    for (const ws of this.sockets) ws.recv(e);
  }
}

function world() {
  const locks = new FakeLocks(), registry = {}, bridge = new FakeBridge();
  const tabs = [];
  const open = (extra = {}) => {
    const tab = { dead: false, events: [], recent: [], snaps: [], states: [] };
    tab.conn = connect("ws://bridge/ws", {
      user: "u", WebSocket: bridge.WS, locks: locks.forTab(tab), BroadcastChannel: fakeBC(tab, registry),
      SharedWorker: null, backoff: { initialMs: 1, maxMs: 5, jitter: 0 }, recent: 5,
      onEvent: (f) => tab.events.push(f.data), onRecent: (f) => tab.recent.push(f.data),
      onSnapshot: (f) => tab.snaps.push(f.task), onState: (s) => tab.states.push(s.state), ...extra });
    tabs.push(tab);
    return tab;
  };
  // A tab closed without a word: its lock goes, its channel and socket die.
  const kill = (tab) => {
    tab.dead = true;
    const c = tab.conn;
    c.closed = true;
    if (c.holder) { c.holder.closed = true; c.holder.conn.closed = true; c.holder.conn.teardown(); }
    locks.killTab(tab);
  };
  return { bridge, tabs, open, kill };
}

const leaders = (tabs) => tabs.filter((t) => !t.dead && t.conn.role === "leader");

test("four tabs of one user share one connection and each gets every frame", async () => {
  const w = world();
  const tabs = [w.open(), w.open(), w.open(), w.open()];
  await until(() => tabs.every((t) => t.conn.state === "open"), "every tab open");
  assert.equal(w.bridge.sockets.size, 1, "one connection to the bridge");
  assert.equal(leaders(tabs).length, 1, "one leader");
  for (let i = 1; i <= 5; i++) w.bridge.publish(i);
  await until(() => tabs.every((t) => t.events.length === 5), "five events everywhere");
  for (const t of tabs) assert.deepEqual(t.events, [1, 2, 3, 4, 5]);
  for (const t of tabs) assert.equal(t.conn.pos, "p5");
  for (const t of tabs) t.conn.close();
  await until(() => w.bridge.sockets.size === 0, "no connection once all are closed");
});

test("the holder vanishes while events flow: another takes over, resumes, nobody misses or repeats", async () => {
  const w = world();
  const tabs = [w.open(), w.open(), w.open()];
  await until(() => tabs.every((t) => t.conn.state === "open"), "open");
  let n = 0;
  const flow = setInterval(() => w.bridge.publish(++n), 1);
  for (let round = 0; round < 2; round++) {
    await tick(15);
    const [holder] = leaders(tabs);
    w.kill(holder); // its socket closes: events published now reach nobody until the next holder resumes
    await until(() => leaders(tabs).length === 1 && w.bridge.sockets.size === 1, "a new holder");
    const login = w.bridge.logins.at(-1);
    assert.ok(login.resume, "the new holder resumed from the last pos");
    assert.equal(login.recent, undefined, "and asked for no recent notifications again");
  }
  await tick(15);
  clearInterval(flow);
  const alive = tabs.filter((t) => !t.dead);
  assert.equal(alive.length, 1);
  await until(() => alive[0].events.length === n, `all ${n} events`);
  assert.deepEqual(alive[0].events, Array.from({ length: n }, (_, i) => i + 1), "each event once, in order");
  assert.equal(w.bridge.sockets.size, 1, "the user holds one connection again");
  alive[0].conn.close();
});

test("close() on the holding tab hands over too; the others keep their state", async () => {
  const w = world();
  const tabs = [w.open(), w.open()];
  await until(() => tabs.every((t) => t.conn.state === "open"), "open");
  w.bridge.publish("a");
  await until(() => tabs.every((t) => t.events.length === 1), "a");
  const [holder] = leaders(tabs);
  const other = tabs.find((t) => t !== holder);
  holder.conn.close();
  assert.equal(holder.conn.state, "closed");
  await until(() => other.conn.role === "leader" && w.bridge.sockets.size === 1, "the other holds it");
  w.bridge.publish("b");
  await until(() => other.events.length === 2, "b");
  assert.deepEqual(other.events, ["a", "b"]);
  assert.equal(holder.events.length, 1, "a closed tab gets nothing more");
  other.conn.close();
});

test("a tab that joins late gets the tasks and the recent notifications", async () => {
  const w = world();
  w.bridge.publish("old-1");
  w.bridge.publish({ progress: 10 }, "build");
  w.bridge.publish("old-2");
  const first = w.open();
  await until(() => first.conn.state === "open" && first.recent.length === 2, "first open");
  assert.deepEqual(first.recent, ["old-1", "old-2"], "recent notifications from the bridge");
  assert.deepEqual(first.snaps, ["build"]);
  w.bridge.publish("live-3");
  await until(() => first.events.length === 1, "live");
  const late = w.open();
  await until(() => late.conn.state === "open" && late.recent.length === 3, "late tab synced");
  assert.deepEqual(late.recent, ["old-1", "old-2", "live-3"], "the holder's recent notifications");
  assert.deepEqual(late.snaps, ["build"]);
  assert.equal(late.conn.tasks.get("build").data.progress, 10);
  assert.equal(w.bridge.sockets.size, 1);
  w.bridge.publish("live-4");
  await until(() => late.events.length === 1, "live to the late tab");
  assert.deepEqual(late.events, ["live-4"]);
  for (const t of [first, late]) t.conn.close();
});

test("share: false and other users get connections of their own", async () => {
  const w = world();
  const a = w.open(), b = w.open({ share: false }), c = w.open({ user: "v" });
  await until(() => [a, b, c].every((t) => t.conn.state === "open"), "open");
  assert.equal(w.bridge.sockets.size, 3);
  assert.equal(b.conn.role, undefined, "a plain Connection");
  for (const t of [a, b, c]) t.conn.close();
});

test("offline drops the connection; online reconnects at once and resumes", async () => {
  const bridge = new FakeBridge();
  const states = [];
  const c = connect("ws://bridge/ws", { user: "u", WebSocket: bridge.WS, share: false,
    backoff: { initialMs: 60000, maxMs: 60000, jitter: 0 }, onState: (s) => states.push(s.state) });
  await until(() => c.state === "open", "open");
  bridge.publish(1);
  c.nudge("offline");
  assert.equal(c.state, "offline");
  assert.equal(bridge.sockets.size, 0, "the socket is closed while offline");
  bridge.publish(2);
  const t0 = Date.now();
  c.nudge("online");
  await until(() => c.state === "open", "reopened");
  assert.ok(Date.now() - t0 < 500, "no backoff wait (60 s here)");
  assert.equal(bridge.logins.at(-1).resume, "p1");
  assert.equal(states.filter((s) => s === "offline").length, 1);
  c.nudge("online"); // already open: nothing
  c.nudge("visible");
  await tick(10);
  assert.equal(bridge.logins.length, 2, "no reconnect of an open connection");
  c.close();
});

test("a page shown again while its connection is down reconnects at once", async () => {
  const bridge = new FakeBridge();
  const c = connect("ws://bridge/ws", { user: "u", WebSocket: bridge.WS, share: false,
    backoff: { initialMs: 60000, maxMs: 60000, jitter: 0 } });
  await until(() => c.state === "open", "open");
  for (const ws of bridge.sockets) { ws.close(); ws.onclose({ code: 1006, reason: "" }); }
  assert.equal(c.state, "reconnecting", "waiting out a 60 s backoff");
  c.nudge("visible");
  await until(() => c.state === "open", "reopened at once");
  assert.equal(bridge.logins.length, 2);
  c.close();
});

test("jwtSubject reads sub without verifying", () => {
  const b64 = (o) => Buffer.from(JSON.stringify(o)).toString("base64url");
  assert.equal(jwtSubject(`${b64({ alg: "HS256" })}.${b64({ sub: "ünïcode-7" })}.sig`), "ünïcode-7");
  assert.equal(jwtSubject("not-a-jwt"), undefined);
  assert.equal(jwtSubject("a.b.c"), undefined);
});

// The module is split in files (pushbridge.js imports the others): the
// worker must still be started on pushbridge.js itself, as a module, and
// loading that URL in a SharedWorker must start the holder.
test("the SharedWorker runs pushbridge.js itself, as a module, and it serves there", async () => {
  const started = [];
  class FakeSharedWorker {
    constructor(url, opts) {
      started.push({ url: String(url), opts });
      this.port = { start() {}, close() {}, postMessage() {} };
    }
  }
  const c = connect("ws://bridge/ws", { user: "u", locks: {}, SharedWorker: FakeSharedWorker });
  await until(() => c.role === "worker", "the worker role");
  assert.equal(started.length, 1);
  assert.equal(new URL(started[0].url).href, new URL("../../../web/pushbridge.js", import.meta.url).href);
  assert.equal(started[0].opts.type, "module");
  c.close();

  const { Worker } = await import("node:worker_threads");
  const w = new Worker(`
    globalThis.SharedWorkerGlobalScope = { [Symbol.hasInstance]: (o) => o === globalThis };
    import(${JSON.stringify(started[0].url)}).then(
      () => require("node:worker_threads").parentPort.postMessage(typeof globalThis.onconnect),
      (err) => require("node:worker_threads").parentPort.postMessage("import failed: " + err));
  `, { eval: true });
  const answer = await new Promise((resolve, reject) => { w.once("message", resolve); w.once("error", reject); });
  await w.terminate();
  assert.equal(answer, "function", "loading the worker URL set onconnect (serveSharedWorker)");
});
