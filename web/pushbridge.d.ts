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

export type State = "idle" | "connecting" | "open" | "reconnecting" | "closed";
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
  onEvent?: (ev: PushEvent) => void;
  onSnapshot?: (ev: PushEvent) => void;
  /** Live events and snapshots that carry a task. */
  onTask?: (ev: PushEvent) => void;
  onWelcome?: (w: Welcome) => void;
  onState?: (s: StateDetail) => void;
  onRefresh?: (f: { type: "refresh" | "refreshed"; expires_in_ms: number | null }) => void;
  onError?: (e: ErrorDetail) => void;
  /** For tests: replacements for the globals. */
  WebSocket?: typeof WebSocket;
  fetch?: typeof fetch;
}

export interface ConnectionEventMap {
  event: CustomEvent<PushEvent>;
  snapshot: CustomEvent<PushEvent>;
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
  close(): void;
  addEventListener<K extends keyof ConnectionEventMap>(
    type: K, listener: (ev: ConnectionEventMap[K]) => void, options?: boolean | AddEventListenerOptions): void;
  addEventListener(type: string, listener: EventListenerOrEventListenerObject | null,
                   options?: boolean | AddEventListenerOptions): void;
}

/** url: the bridge's /ws URL, or its base URL ("/" = this page's origin). */
export declare function connect(url: string, options?: ConnectOptions): Connection;
export default connect;

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
