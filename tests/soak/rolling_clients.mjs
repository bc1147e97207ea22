// The clients of the rolling-restart soak (tests/soak/rolling.py): N browsers'
// worth of web/pushbridge.js, the real module, in one Node process over the
// `ws` package, each logged in as a user of its own behind a round-robin
// "load balancer" over the bridges. Driven by JSON lines on stdin; answers
// one JSON line on stdout per command.
//
// Why the choices:
//   - The module itself reconnects (its backoff), resumes with its last pos
//     and drops duplicates, so what is measured is what a web app gets. The
//     frames are also recorded as they come off the socket, before the
//     module's dedup: a duplicate or a gap the bridge sends counts even if
//     the module would hide it.
//   - The balancer is the WebSocket class handed to the module: each socket
//     it opens goes to the next node the driver has marked up (a health
//     checked load balancer; the driver marks a node down just before its
//     SIGTERM, up once it is ready again), ignoring the module's URL.
//   - Time to resume is from the close a client saw (the socket's close
//     event, when it had been open) to the welcome of the connection that
//     resumed, the first frame after it.
//
// Commands: {"cmd":"start"} (connect everyone; answers once all are open),
// {"cmd":"down"|"up","node":NAME}, {"cmd":"status"},
// {"cmd":"check","expect":{user:count}}, {"cmd":"report","expect":{...}},
// {"cmd":"quit"}.
import { createInterface } from "node:readline";
import { parseArgs } from "node:util";
import WebSocket from "ws";
import { connect } from "../../web/pushbridge.js";

if (typeof globalThis.CustomEvent === "undefined") {
  // Node 18 has EventTarget but CustomEvent only behind a flag.
  globalThis.CustomEvent = class CustomEvent extends Event {
    constructor(type, init = {}) { super(type, init); this.detail = init.detail ?? null; }
  };
}

const { values: args } = parseArgs({
  options: {
    clients: { type: "string" },
    nodes: { type: "string" }, // "n1=ws://127.0.0.1:P/ws,n2=..."
    prefix: { type: "string", default: "r" },
  },
});
const N = Number(args.clients);
const nodes = new Map(args.nodes.split(",").map((s) => {
  const i = s.indexOf("=");
  return [s.slice(0, i), { name: s.slice(0, i), url: s.slice(i + 1), up: true }];
}));
let rr = 0;

/** The next node marked up, round robin; null when none is. */
function pick() {
  const up = [...nodes.values()].filter((n) => n.up);
  if (!up.length) return null;
  return up[rr++ % up.length];
}

const now = () => performance.now();

class Client {
  constructor(i) {
    this.user = `${args.prefix}${i}`;
    this.node = null; // where its current socket goes
    this.open = false; // welcomed and not closed since
    this.raw = []; // seqs of event frames as they came off the sockets
    this.delivered = []; // seqs the module handed to the app
    this.closedAt = null; // when an open connection was lost
    this.resumeMs = []; // close → welcome (resumed), each time
    this.resumedFalse = 0; // welcomes after a loss that said resumed:false
    this.failedOpens = 0; // sockets that never opened (node down, refused)
    this.welcomes = 0;
    this.resumedAt = null; // wall time of the last resumed welcome
    this.caughtUp = 0; // events produced before that welcome, got after it
    this.caughtUpResumes = 0; // resumes that brought at least one such event
    this.caughtThis = false;
    this.closeCodes = {};
    const client = this;
    class BalancedSocket extends WebSocket {
      constructor(_url) {
        const n = pick();
        // No node up: an address nothing listens on, so the module sees a
        // failed open and backs off, as behind a balancer with no backend.
        super(n ? n.url : "ws://127.0.0.1:1/ws");
        client.node = n ? n.name : null;
        this.wasOpen = false;
        this.addEventListener("open", () => { this.wasOpen = true; });
        this.addEventListener("message", (m) => client.rawFrame(m.data));
        this.addEventListener("close", (e) => client.socketClosed(this.wasOpen, e.code));
      }
    }
    this.conn = connect(nodes.values().next().value.url, {
      user: this.user, WebSocket: BalancedSocket, transport: "websocket",
      share: false, watchNetwork: false,
      onWelcome: (f) => this.welcome(f),
      onEvent: (f) => this.delivered.push(f.data.s),
    });
  }

  rawFrame(text) {
    let f;
    try { f = JSON.parse(text); } catch { return; }
    if (f.type !== "event" || f.snapshot || f.recent) return;
    this.raw.push(f.data.s);
    if (this.resumedAt !== null && f.data.t < this.resumedAt) {
      this.caughtUp++;
      if (!this.caughtThis) { this.caughtThis = true; this.caughtUpResumes++; }
    }
  }

  socketClosed(wasOpen, code) {
    if (!wasOpen) { this.failedOpens++; return; }
    this.closeCodes[code] = (this.closeCodes[code] || 0) + 1;
    this.open = false;
    if (this.closedAt === null) this.closedAt = now();
  }

  welcome(f) {
    this.welcomes++;
    this.open = true;
    if (this.closedAt === null) return; // the first login
    if (f.resumed === true) {
      this.resumeMs.push(now() - this.closedAt);
      this.resumedAt = Date.now();
      this.caughtThis = false;
    } else this.resumedFalse++;
    this.closedAt = null;
  }
}

/** lost / duplicated / out-of-order of seqs against 0..want-1. */
function judge(seqs, want) {
  const seen = new Set();
  let dup = 0, ooo = 0, max = -1, beyond = 0;
  for (const s of seqs) {
    if (seen.has(s)) { dup++; continue; }
    seen.add(s);
    if (s >= want) beyond++;
    if (s < max) ooo++;
    max = Math.max(max, s);
  }
  let lost = 0;
  for (let s = 0; s < want; s++) if (!seen.has(s)) lost++;
  return { lost, dup, ooo, beyond };
}

function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

const clients = [];

function status() {
  const perNode = {};
  let open = 0, events = 0;
  for (const c of clients) {
    if (c.open) { open++; perNode[c.node] = (perNode[c.node] || 0) + 1; }
    events += c.raw.length;
  }
  return { open, of: clients.length, per_node: perNode, events };
}

function report(expect) {
  const sum = (k) => clients.reduce((a, c) => a + k(c), 0);
  const raw = { lost: 0, dup: 0, ooo: 0, beyond: 0 }, app = { lost: 0, dup: 0, ooo: 0, beyond: 0 };
  const bad = [];
  let wanted = 0;
  for (const c of clients) {
    const want = expect[c.user] || 0;
    wanted += want;
    const r = judge(c.raw, want), a = judge(c.delivered, want);
    for (const k of Object.keys(raw)) { raw[k] += r[k]; app[k] += a[k]; }
    if ((r.lost || r.dup || r.ooo || r.beyond || a.lost || a.dup || a.ooo) && bad.length < 10)
      bad.push({ user: c.user, node: c.node, want, raw: r, app: a, tail: c.raw.slice(-12) });
  }
  const times = clients.flatMap((c) => c.resumeMs).sort((x, y) => x - y);
  const codes = {};
  for (const c of clients) for (const [k, v] of Object.entries(c.closeCodes)) codes[k] = (codes[k] || 0) + v;
  return {
    clients: clients.length, expected: wanted, frames: sum((c) => c.raw.length),
    delivered: sum((c) => c.delivered.length), raw, app, bad,
    caught_up: sum((c) => c.caughtUp), caught_up_resumes: sum((c) => c.caughtUpResumes),
    reconnected: clients.filter((c) => c.resumeMs.length).length,
    resumes: times.length, resumed_false: sum((c) => c.resumedFalse),
    not_open: clients.filter((c) => !c.open).length,
    failed_opens: sum((c) => c.failedOpens), close_codes: codes,
    resume_ms: { p50: pct(times, 50), p90: pct(times, 90), p99: pct(times, 99),
                 max: times.length ? times[times.length - 1] : null },
    per_node: status().per_node,
  };
}

async function until(cond, ms) {
  const end = now() + ms;
  while (!cond()) {
    if (now() > end) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
  return true;
}

const out = (obj) => process.stdout.write(JSON.stringify(obj) + "\n");

async function handle(msg) {
  switch (msg.cmd) {
  case "start": {
    // Connect in slices, so that 2,000 logins do not all hit the bridges in
    // one tick (the soak measures restarts, not a thundering first start).
    for (let i = 0; i < N; i++) {
      clients.push(new Client(i));
      if (i % 100 === 99) await new Promise((r) => setTimeout(r, 20));
    }
    const ok = await until(() => clients.every((c) => c.open), 120000);
    return out({ ok, ...status() });
  }
  case "down":
  case "up":
    nodes.get(msg.node).up = msg.cmd === "up";
    return out({ ok: true });
  case "status":
    return out(status());
  case "check": {
    let complete = 0;
    for (const c of clients) if (c.raw.length >= (msg.expect[c.user] || 0)) complete++;
    return out({ complete, of: clients.length, ...status() });
  }
  case "report":
    return out(report(msg.expect));
  case "quit":
    for (const c of clients) c.conn.close();
    out({ ok: true });
    return process.exit(0);
  default:
    return out({ error: `unknown command ${msg.cmd}` });
  }
}

// One command at a time, in order.
let chain = Promise.resolve();
createInterface({ input: process.stdin }).on("line", (line) => {
  chain = chain.then(() => handle(JSON.parse(line))).catch((e) => out({ error: String(e && e.stack || e) }));
}).on("close", () => process.exit(0));
