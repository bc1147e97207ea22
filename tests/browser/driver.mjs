// Headless Chromium driven by puppeteer-core, one command per stdin line,
// one JSON answer per stdout line, so that a pytest test can interleave
// browser steps with Kafka produces and bridge restarts
// (tests/integration/test_53_browser.py holds the page objects).
//
// Commands: {"cmd":"open","url":U,"blockWebSocket":bool,"token":{secret,sub,lifetime},
//                   "noSharedWorker":bool}
//           {"cmd":"eval","js":EXPR}  {"cmd":"waitFor","js":EXPR,"timeout":MS}
//           {"cmd":"type","selector":S,"text":T}  {"cmd":"click","selector":S}
//           {"cmd":"reload"}  {"cmd":"screenshot","path":P}  {"cmd":"quit"}
//           {"cmd":"offline","offline":bool}  {"cmd":"closeTab"}
// Every page command takes an optional "tab" (a name; default "main"):
// "open" with a new name opens another tab of the same browser (one
// origin, so they share SharedWorkers, Web Locks and BroadcastChannels).
// Answers: {"ok":true,"value":...} or {"ok":false,"error":...,"log":[...]}.
// The first line out is {"ready":true} or {"ready":false,"error":...} (for
// example when Chromium cannot start here: the test then skips, saying why).
import { createHmac } from "node:crypto";
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const log = []; // the page's console and errors, for failure messages
let browser;
const pages = new Map(); // tab name -> page

function pageOf(tab) {
  const p = pages.get(tab || "main");
  if (!p) throw new Error(`no tab ${tab || "main"} is open`);
  return p;
}
let tokens = 0;

function b64url(s) {
  return Buffer.from(s).toString("base64url");
}

// An HS256 JWT, as tests/integration/jwtutil.py makes them.
function jwt({ secret, sub, lifetime }) {
  const now = Math.floor(Date.now() / 1000);
  const head = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const body = b64url(JSON.stringify({ sub, iat: now, exp: now + lifetime, jti: String(++tokens) }));
  const sig = createHmac("sha256", secret).update(`${head}.${body}`).digest("base64url");
  return `${head}.${body}.${sig}`;
}

async function open({ url, blockWebSocket, token, noSharedWorker, tab = "main" }) {
  if (pages.has(tab)) await pages.get(tab).close();
  const page = await browser.newPage();
  pages.set(tab, page);
  await page.setViewport({ width: 1000, height: 700 });
  page.on("console", (m) => log.push(`${tab}: console.${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => log.push(`${tab}: pageerror: ${e.message}`));
  if (blockWebSocket || noSharedWorker) {
    // A browser without SharedWorker: tabs elect a holder with Web Locks.
    // Blocking WebSocket implies it: a stub in the page cannot reach a
    // worker's WebSocket, as a proxy refusing upgrades would.
    await page.evaluateOnNewDocument(() => { delete window.SharedWorker; });
  }
  if (blockWebSocket) {
    // What a proxy that refuses upgrades looks like to the page.
    await page.evaluateOnNewDocument(() => {
      window.WebSocket = function () { throw new Error("WebSocket blocked by the test"); };
    });
  }
  if (token) {
    await page.exposeFunction("pushbridgeTestToken", () => jwt(token));
    await page.evaluateOnNewDocument(() => {
      window.pushbridgeTokenCalls = 0;
      window.pushbridgeGetToken = () => { window.pushbridgeTokenCalls++; return window.pushbridgeTestToken(); };
    });
  }
  await page.goto(url, { waitUntil: "load" });
  return page.url();
}

const commands = {
  open,
  eval: ({ js, tab }) => pageOf(tab).evaluate(js),
  waitFor: async ({ js, timeout, tab }) => {
    await pageOf(tab).waitForFunction(js, { timeout: timeout || 10000, polling: 50 });
    return pageOf(tab).evaluate(js);
  },
  type: async ({ selector, text, tab }) => { await pageOf(tab).type(selector, text); },
  click: async ({ selector, tab }) => { await pageOf(tab).click(selector); },
  reload: async ({ tab }) => { await pageOf(tab).reload({ waitUntil: "load" }); },
  screenshot: async ({ path, tab }) => { await pageOf(tab).screenshot({ path, fullPage: true }); return path; },
  offline: async ({ offline, tab }) => { await pageOf(tab).setOfflineMode(Boolean(offline)); },
  // As a user closes a tab: unload handlers run, the page goes.
  closeTab: async ({ tab }) => {
    await pageOf(tab).close();
    pages.delete(tab || "main");
  },
  quit: async () => { await browser.close(); process.exit(0); },
};

try {
  browser = await puppeteer.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--headless=new", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  out({ ready: true, version: await browser.version() });
} catch (err) {
  out({ ready: false, error: String(err && err.message || err) });
  process.exit(0);
}

const rl = createInterface({ input: process.stdin });
for await (const line of rl) {
  let msg;
  try {
    msg = JSON.parse(line);
    const value = await commands[msg.cmd](msg);
    out({ ok: true, value: value === undefined ? null : value });
  } catch (err) {
    out({ ok: false, error: String(err && err.stack || err), log: log.slice(-30) });
  }
}
await browser.close();
