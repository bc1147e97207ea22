// Types of pushbridge.js (served beside it at /pushbridge.d.ts).

/** A frame as the bridge sends it (README, "WebSocket clients"). */
export interface PushEvent<D = unknown> {
  type: "event";
  event: string;
  /** The producer's id, when it gave one. */
  id?: string;
  /** The unit of work this event updates (SPEC 7). */
  task?: string;
  /** The task's last update. */
  final?: boolean;
  /** Where the event stands in the user's stream (absent on snapshots). */
  pos?: string;
  /** A task snapshot sent after login, not a live event. */
  snapshot?: boolean;
  /** A recent notification sent after login (options.recent), not a live event. */
  recent?: boolean;
  data: D;
}

export interface Welcome {
  type: "welcome";
  user: string;
  conn_id: string;
  pos?: string;
  /** true: every missed event follows; false: the history could not cover the gap. */
  resumed?: boolean;
}

/** "offline": the browser says it is offline; the connection waits for "online". */
export type State = "idle" | "connecting" | "open" | "reconnecting" | "offline" | "closed";
export type Transport = "websocket" | "sse";

export interface StateDetail {
  state: State;
  transport: Transport | null;
  attempt: number;
  code?: number;
  reason?: string;
  delayMs?: number;
  resumed?: boolean;
}

export interface ErrorDetail {
  code: string;
  message: string;
  status?: number;
}

export interface Backoff {
  /** First retry delay (default 500). */
  initialMs?: number;
  /** Cap (default 30000). */
  maxMs?: number;
  /** Growth per attempt (default 2). */
  factor?: number;
  /** Share of each delay that is random, 0..1 (default 0.5). */
  jitter?: number;
}

export interface ConnectOptions {
  /** A token (auth.mode jwt), used for every connect. */
  token?: string;
  /** Called on every (re)connect and on every refresh the server asks for. */
  getToken?: () => string | Promise<string>;
  /** auth.mode none: the user to sign in as. */
  user?: string;
  /** Only these events (default: all of the user's). */
  events?: string[];
  /** A pos to resume from on the first connect. */
  resume?: string;
  /** "auto" (WebSocket, SSE when it cannot open), "websocket" or "sse". */
  transport?: "auto" | "websocket" | "sse";
  backoff?: Backoff;
  /** Override the SSE URL (default: the WebSocket URL's /ws replaced by /sse). */
  sseUrl?: string;
  /** How many positions and ids are remembered to drop duplicates (default 1024). */
  dedupSize?: number;
  /**
   * Recent notifications to get after the snapshot on the first login
   * (0-100, default 0): the user's latest events without a task, oldest
   * first, as "recent" events. A tab that joins a shared connection gets
   * the holder's latest ones the same way.
   */
  recent?: number;
  /**
   * Share one connection with this browser's other tabs that connect to the
   * same bridge as the same user with the same events (default true where
   * the browser has a SharedWorker or Web Locks and BroadcastChannel).
   */
  share?: boolean;
  /** The group's identity when sharing (default: user, or the token's sub). */
  shareKey?: string;
  /**
   * The URL of this module for the SharedWorker that holds a shared
   * connection (default: the module's own URL when it is loaded as
   * pushbridge.js; a bundle has none, and tabs elect a holder instead). It
   * imports pushbridge-connection.js and pushbridge-share.js from beside it.
   */
  workerUrl?: string | URL;
  /** Reconnect at once on "online" and when the page is shown again (default true). */
  watchNetwork?: boolean;
  onEvent?: (ev: PushEvent) => void;
  onSnapshot?: (ev: PushEvent) => void;
  /** Recent notifications after login (options.recent). */
  onRecent?: (ev: PushEvent) => void;
  /** Live events and snapshots that carry a task. */
  onTask?: (ev: PushEvent) => void;
  onWelcome?: (w: Welcome) => void;
  onState?: (s: StateDetail) => void;
  onRefresh?: (f: { type: "refresh" | "refreshed"; expires_in_ms: number | null }) => void;
  onError?: (e: ErrorDetail) => void;
  /** For tests: replacements for the globals. */
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
  BroadcastChannel?: typeof BroadcastChannel;
  locks?: Pick<LockManager, "request">;
  SharedWorker?: typeof SharedWorker | null;
}

export interface ConnectionEventMap {
  event: CustomEvent<PushEvent>;
  snapshot: CustomEvent<PushEvent>;
  recent: CustomEvent<PushEvent>;
  task: CustomEvent<PushEvent>;
  welcome: CustomEvent<Welcome>;
  state: CustomEvent<StateDetail>;
  refresh: CustomEvent<{ type: "refresh" | "refreshed"; expires_in_ms: number | null }>;
  error: CustomEvent<ErrorDetail>;
  close: CustomEvent<{ code: number; reason: string }>;
}

export declare class Connection extends EventTarget {
  readonly state: State;
  readonly transport: Transport | null;
  /** The last pos seen: what a reconnect resumes from. */
  readonly pos: string | null;
  readonly user: string | null;
  /** The latest frame of each task seen (snapshot or live). */
  readonly tasks: Map<string, PushEvent>;
  /**
   * How a shared connection is held: "worker" (a SharedWorker), "leader"
   * (this tab), "follower" (another tab), "direct" (sharing was not
   * possible); undefined for share: false.
   */
  readonly role?: "joining" | "worker" | "leader" | "follower" | "direct" | null;
  /** The browser went "offline", came back "online", or showed the page ("visible"). */
  nudge(why: "offline" | "online" | "visible"): void;
  close(): void;
  addEventListener<K extends keyof ConnectionEventMap>(
    type: K, listener: (ev: ConnectionEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
                   options?: boolean | AddEventListenerOptions): void;
}

/** url: the bridge's /ws URL, or its base URL ("/" = this page's origin). */
export declare function connect(url: string, options?: ConnectOptions): Connection;
export default connect;

/** What connect() returns when the connection is shared with other tabs. */
export declare class SharedConnection extends Connection {}

export declare const DEFAULT_BACKOFF: Readonly<Required<Backoff>>;
export declare function backoffDelay(attempt: number, backoff?: Backoff, random?: () => number): number;
export declare class Dedup {
  constructor(size?: number);
  seen(key: string | undefined | null): boolean;
}
export declare class SSEParser {
  constructor(onMessage: (m: { id?: string; event?: string; data: string }) => void,
              onComment?: (text: string) => void);
  feed(text: string): void;
}
export declare function endpoints(url: string, base?: string): { ws: string; sse: string };
export declare const VERSION: string;
/** The sub claim of a JWT, read without verifying it. */
export declare function jwtSubject(token: string): string | undefined;
