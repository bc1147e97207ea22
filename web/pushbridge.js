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
//     Locks API passing frames on over BroadcastChannel): see
//     pushbridge-share.js. `share: false` opts out.
//
// Split by concern so that no file grows past ~800 lines; the bridge serves
// the files side by side and the npm package holds them all:
//   pushbridge.js             this entry: the public names (pushbridge.d.ts)
//                             and connect(), which decides whether to share
//   pushbridge-connection.js  one connection: transports, backoff, resume, dedup
//   pushbridge-share.js       sharing it between tabs (SharedWorker, Web Locks)
// A SharedWorker holding a shared connection runs this file (its URL is the
// one a page knows, and workerUrl names it); importing pushbridge-share.js
// there is what starts the holder. Neither module imports this one, so there
// is no import cycle (a class would otherwise extend one not yet defined).

import { Connection } from "./pushbridge-connection.js";
import { SharedConnection } from "./pushbridge-share.js";

export const VERSION = "1";

export { DEFAULT_BACKOFF, backoffDelay, Dedup, SSEParser, endpoints, Connection } from "./pushbridge-connection.js";
export { jwtSubject, SharedConnection } from "./pushbridge-share.js";

// What sharing can use here; null: a connection of its own. A SharedWorker
// runs this module's own URL (its import of pushbridge-share.js serves the
// group), so only when it is loaded as itself (not inlined in a bundle) or
// options.workerUrl names it.
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
