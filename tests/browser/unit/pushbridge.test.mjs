// Unit tests of web/pushbridge.js: backoff, dedup, resume, the SSE parser
// and the fallback, with fake WebSocket and fetch (node --test; run from
// tests/integration/test_53_browser.py, so they are part of the suite).
import { test } from "node:test";
import assert from "node:assert/strict";
import { backoffDelay, Dedup, SSEParser, connect, endpoints } from "../../../web/pushbridge.js";

const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms));
// Polls instead of guessing a delay: the machine may be loaded.
async function until(cond, what, ms = 3000) {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("timed out waiting for " + what);
    await tick(2);
  }
}
const loggedIn = (sockets, i = 0) => until(() => sockets[i] && sockets[i].sent.length > 0, `socket ${i} login`);

test("backoff grows exponentially and is capped", () => {
  const b = { initialMs: 100, maxMs: 1000, factor: 2, jitter: 0 };
  assert.deepEqual([0, 1, 2, 3, 4, 10].map((a) => backoffDelay(a, b)), [100, 200, 400, 800, 1000, 1000]);
});

test("backoff jitter stays within the step and varies", () => {
  const b = { initialMs: 1000, maxMs: 8000, factor: 2, jitter: 0.5 };
  assert.equal(backoffDelay(3, b, () => 0), 4000);
  assert.equal(backoffDelay(3, b, () => 1), 8000);
  const seen = new Set();
  for (let i = 0; i < 50; i++) {
    const d = backoffDelay(20, b);
    assert.ok(d >= 4000 && d <= 8000, `delay ${d} within [4000, 8000]`);
    seen.add(d);
  }
  assert.ok(seen.size > 5, "delays differ (jitter)");
});

test("dedup remembers a bounded window", () => {
  const d = new Dedup(3);
  assert.equal(d.seen("a"), false);
  assert.equal(d.seen("a"), true);
  d.seen("b"); d.seen("c"); d.seen("d"); // "a" falls out
  assert.equal(d.seen("a"), false);
  assert.equal(d.seen(undefined), false);
  assert.equal(d.seen(undefined), false);
});

test("SSE parser: ids, multi-line data, CRLF split across chunks, comments", () => {
  const got = [], comments = [];
  const p = new SSEParser((m) => got.push(m), (c) => comments.push(c));
  p.feed("id: 7\ndata: {\"a\":\ndata: 1}\r");
  p.feed("\n\r\n: keep-alive\n\ndata: x\n");
  assert.deepEqual(got, [{ id: "7", event: undefined, data: "{\"a\":\n1}" }]);
  p.feed("\n");
  assert.equal(got[1].data, "x");
  assert.equal(got[1].id, "7", "the last id carries on, as EventSource does");
  assert.deepEqual(comments, ["keep-alive"]);
});

test("endpoints from a base URL or a ws URL", () => {
  assert.deepEqual(endpoints("/", "http://h:8080/app/"), { ws: "ws://h:8080/ws", sse: "http://h:8080/sse" });
  assert.deepEqual(endpoints("wss://h/ws"), { ws: "wss://h/ws", sse: "https://h/sse" });
  assert.deepEqual(endpoints("https://h/push/"), { ws: "wss://h/push/ws", sse: "https://h/push/sse" });
});

// A scripted WebSocket: the test plays the server.
function fakeWS() {
  const sockets = [];
  class WS {
    constructor(url) {
      this.url = url; this.sent = []; this.readyState = 0;
      sockets.push(this);
      setTimeout(() => { this.readyState = 1; this.onopen && this.onopen(); }, 0);
    }
    send(t) { this.sent.push(JSON.parse(t)); }
    close() { this.readyState = 3; }
    recv(obj) { this.onmessage({ data: JSON.stringify(obj) }); }
    drop(code = 1006) { this.readyState = 3; this.onclose({ code, reason: "" }); }
  }
  return { WS, sockets };
}

const fast = { initialMs: 1, maxMs: 5, factor: 2, jitter: 0 };

test("login, events, then resume from the last pos after a drop, duplicates dropped", async () => {
  const { WS, sockets } = fakeWS();
  const events = [], states = [];
  let tokens = 0;
  const c = connect("ws://x/ws", { WebSocket: WS, getToken: () => `t${++tokens}`, events: ["p"],
                                    backoff: fast, onEvent: (e) => events.push(e),
                                    onState: (s) => states.push(s.state) });
  await loggedIn(sockets);
  const a = sockets[0];
  assert.deepEqual(a.sent[0], { type: "auth", token: "t1", events: ["p"] });
  a.recv({ type: "welcome", user: "u", conn_id: "1", pos: "w0" });
  a.recv({ type: "event", event: "p", pos: "p1", data: 1 });
  a.recv({ type: "event", event: "p", pos: "p2", data: 2 });
  assert.equal(c.pos, "p2");
  a.drop();
  await loggedIn(sockets, 1);
  const b = sockets[1];
  assert.ok(b, "reconnected by itself");
  assert.deepEqual(b.sent[0], { type: "auth", token: "t2", events: ["p"], resume: "p2" },
                   "getToken called again and the last pos resumed");
  b.recv({ type: "welcome", user: "u", conn_id: "2", pos: "w1", resumed: true });
  b.recv({ type: "event", event: "p", pos: "p2", data: 2 }); // overlap: dropped
  b.recv({ type: "event", event: "p", pos: "p3", data: 3 });
  b.recv({ type: "event", event: "p", id: "x", data: 4 });
  b.recv({ type: "event", event: "p", id: "x", data: 4 }); // same producer id: dropped
  assert.deepEqual(events.map((e) => e.data), [1, 2, 3, 4]);
  assert.equal(c.pos, "p3");
  assert.ok(states.includes("reconnecting") && states.at(-1) === "open");
  c.close();
  assert.equal(c.state, "closed");
});

test("snapshot frames reach onSnapshot and the task map, not onEvent", async () => {
  const { WS, sockets } = fakeWS();
  const snaps = [], events = [];
  const c = connect("ws://x/ws", { WebSocket: WS, user: "u", onSnapshot: (e) => snaps.push(e),
                                    onEvent: (e) => events.push(e) });
  await loggedIn(sockets);
  sockets[0].recv({ type: "welcome", user: "u", conn_id: "1", pos: "w0" });
  sockets[0].recv({ type: "event", event: "p", task: "a", snapshot: true, data: { progress: 40 } });
  assert.equal(snaps.length, 1);
  assert.equal(events.length, 0);
  assert.equal(c.tasks.get("a").data.progress, 40);
  c.close();
});

test("a refresh request is answered with getToken() on the same socket", async () => {
  const { WS, sockets } = fakeWS();
  let n = 0;
  const c = connect("ws://x/ws", { WebSocket: WS, getToken: async () => `tok${++n}` });
  await loggedIn(sockets);
  sockets[0].recv({ type: "welcome", user: "u", conn_id: "1" });
  sockets[0].recv({ type: "refresh", expires_in_ms: 1000 });
  await until(() => sockets[0].sent.length > 1, "the refresh answer");
  assert.deepEqual(sockets[0].sent[1], { type: "refresh", token: "tok2" });
  assert.equal(sockets.length, 1, "no reconnect");
  c.close();
});

test("login refused (4003) with a fixed token stops retrying", async () => {
  const { WS, sockets } = fakeWS();
  const c = connect("ws://x/ws", { WebSocket: WS, token: "bad", backoff: fast });
  await loggedIn(sockets);
  sockets[0].recv({ type: "error", code: "bad_token", message: "no" });
  sockets[0].drop(4003);
  await tick(20);
  assert.equal(sockets.length, 1);
  assert.equal(c.state, "closed");
});

function sseResponse(chunks, status = 200) {
  const enc = new TextEncoder();
  const body = new ReadableStream({
    async start(ctl) { for (const ch of chunks) { ctl.enqueue(enc.encode(ch)); await tick(1); } ctl.close(); },
  });
  return { ok: status < 300, status, body, json: async () => JSON.parse(chunks.join("")) };
}

test("falls back to SSE when a WebSocket cannot be opened, and resumes there", async () => {
  class Blocked { constructor() { throw new Error("blocked"); } }
  const urls = [];
  const fetchFake = async (url) => {
    urls.push(new URL(url));
    if (urls.length === 1)
      return sseResponse(["id: w\ndata: {\"type\":\"welcome\",\"user\":\"u\",\"conn_id\":\"1\",\"pos\":\"w\"}\n\n",
                          "id: p1\ndata: {\"type\":\"event\",\"event\":\"e\",\"pos\":\"p1\",\"data\":1}\n\n"]);
    return sseResponse(["data: {\"type\":\"welcome\",\"user\":\"u\",\"conn_id\":\"2\",\"pos\":\"w2\",\"resumed\":true}\n\n"]);
  };
  const events = [];
  const c = connect("http://h/", { WebSocket: Blocked, fetch: fetchFake, user: "u", backoff: fast,
                                   onEvent: (e) => events.push(e.data) });
  await until(() => urls.length >= 2 && events.length === 1, "the SSE stream and its resume");
  assert.equal(c.transport, "sse");
  assert.equal(urls[0].pathname, "/sse");
  assert.equal(urls[0].searchParams.get("token"), "u");
  assert.ok(urls.length >= 2, "reconnected after the stream ended");
  assert.equal(urls[1].searchParams.get("resume"), "p1");
  assert.deepEqual(events, [1]);
  c.close();
});

test("an SSE refusal (401) surfaces the JSON error", async () => {
  const errors = [];
  const c = connect("http://h/", { transport: "sse", token: "x", backoff: fast,
    fetch: async () => sseResponse(['{"error":"bad_token","message":"nope"}'], 401),
    onError: (e) => errors.push(e) });
  await until(() => c.state === "closed", "closed");
  assert.equal(errors[0].code, "bad_token");
  assert.equal(c.state, "closed");
});

test("recent: asked on the first login only; recent frames reach onRecent and leave pos alone", async () => {
  const { WS, sockets } = fakeWS();
  const recent = [], events = [];
  const c = connect("ws://x/ws", { WebSocket: WS, user: "u", recent: 500, backoff: fast,
                                   onRecent: (f) => recent.push(f.data), onEvent: (f) => events.push(f.data) });
  await loggedIn(sockets);
  assert.deepEqual(sockets[0].sent[0], { type: "auth", token: "u", recent: 100 }, "capped at 100");
  sockets[0].recv({ type: "welcome", user: "u", conn_id: "1", pos: "w0" });
  sockets[0].recv({ type: "event", event: "n", recent: true, data: "earlier" });
  sockets[0].recv({ type: "event", event: "n", pos: "p1", data: "live" });
  assert.deepEqual(recent, ["earlier"]);
  assert.deepEqual(events, ["live"]);
  assert.equal(c.pos, "p1");
  sockets[0].drop();
  await loggedIn(sockets, 1);
  assert.deepEqual(sockets[1].sent[0], { type: "auth", token: "u", resume: "p1" }, "a reconnect resumes instead");
  c.close();
});

// The module is split in files behind pushbridge.js: what it exports is
// still exactly what pushbridge.d.ts declares, no more, no less.
test("pushbridge.js exports exactly the names its types declare", async () => {
  const { readFile } = await import("node:fs/promises");
  const dts = await readFile(new URL("../../../web/pushbridge.d.ts", import.meta.url), "utf8");
  const typed = [...dts.matchAll(/^export declare (?:function|class|const) (\w+)/gm)].map((m) => m[1]);
  if (/^export default \w+;/m.test(dts)) typed.push("default");
  const mod = await import("../../../web/pushbridge.js");
  assert.deepEqual(Object.keys(mod).sort(), typed.sort());
  assert.equal(mod.default, mod.connect);
});
