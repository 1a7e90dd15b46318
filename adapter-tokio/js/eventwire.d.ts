/**
 * eventwire: the browser (and Node) client of the eventwire protocol, JSON form
 * (WebSocket subprotocol `eventwire.v1.json`, or HTTP long-polling).
 *
 * For every room the client is subscribed to, the application sees the room's events in order,
 * each at most once, with nothing missing, except events superseded by a newer one with the same
 * coalescing key and ranges announced by a gap (or a reset of the epoch). Every connection
 * resumes each room from the last position delivered. Publishes reach their room exactly once
 * (within the server's deduplication window) or are refused.
 *
 * See README.md for the lifecycle, the bounds and the transports.
 * @module eventwire
 */

// ---- constants

/** The protocol version this client speaks (1). */
export const PROTOCOL_VERSION: 1;
/** The WebSocket subprotocol of the JSON form. */
export const SUBPROTOCOL: 'eventwire.v1.json';
/** Largest integer a frame may carry: 2^53 - 1. */
export const MAX_SAFE_INTEGER: number;
/** Most rooms a hello lists (64); the rest are subscribed after the welcome. */
export const MAX_HELLO_ROOMS: 64;
/** Most events in one batch (1024). */
export const MAX_BATCH_EVENTS: 1024;
/** Most frames one polling request carries (64). */
export const MAX_POLL_FRAMES: 64;
/** Most bytes of frames one polling request carries (256 KiB). */
export const MAX_POLL_BODY: number;
/** The frame kinds, in tag order. */
export const FRAME_KINDS: readonly FrameType[];

/** Close codes (PROTOCOL.md 3.1). */
export const CloseCode: Readonly<{
  NORMAL: 1000;
  GOING_AWAY: 1001;
  PROTOCOL_ERROR: 1002;
  UNSUPPORTED_DATA: 1003;
  INVALID_DATA: 1007;
  POLICY_VIOLATION: 1008;
  MESSAGE_TOO_BIG: 1009;
  INTERNAL_ERROR: 1011;
  TRY_AGAIN_LATER: 1013;
  HANDSHAKE_TIMEOUT: 4000;
  UNAUTHORIZED: 4001;
  UNSUPPORTED_VERSION: 4002;
  HEARTBEAT_TIMEOUT: 4003;
  RATE_LIMITED: 4004;
}>;

/** Error codes of `error` frames (PROTOCOL.md 3.2). */
export const ErrorCode: Readonly<{
  FORBIDDEN_ROOM: 1;
  TOO_MANY_SUBSCRIPTIONS: 2;
  RATE_LIMITED: 3;
  PUBLISH_REJECTED: 4;
  UNKNOWN_KIND: 5;
  UNEXPECTED_FRAME: 6;
  NO_SUCH_ROOM: 7;
}>;

/** The name of an error code (`'RATE_LIMITED'`), `'UNKNOWN'` for codes this version does not know. */
export function errorName(code: number): string;
/** Whether a client that receives close `code` reconnects (all but 1000, 1008, 4001, 4002). */
export function shouldReconnect(code: number): boolean;
/** The code a browser may pass to `WebSocket.close`: `code` if 1000 or 3000-4999, else 1000. */
export function wsCloseCode(code: number): number;
/** Whether `s` is a valid room or kind name: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`. */
export function isValidName(s: unknown): s is string;
/** Bytes of `s` in UTF-8. */
export function utf8Length(s: string): number;

// ---- positions, events, gaps, status

/** A place in a room's log: offsets start at 1; offset 0 is "before the first event of the epoch". */
export interface Position {
  epoch: number;
  offset: number;
}

/** One event delivered to the application. */
export interface RoomEvent<P = unknown> {
  room: string;
  kind: string;
  /** The parsed JSON payload. */
  payload: P;
  position: Position;
}

/** Called with the payload and the whole event. */
export type EventHandler<P = any> = (payload: P, event: RoomEvent<P>) => void;

/** What a gap says was missed. */
export type Missed =
  | { range: { epoch: number; first: number; last: number } }
  | { reset: { position: Position } };

/** Events of a room that will not be delivered. */
export interface Gap {
  room: string;
  missed: Missed;
}

/** The link quality level. */
export type Quality = 'good' | 'degraded' | 'poor';

/** The connection state the application sees. */
export type State = 'connecting' | 'connected' | 'reconnecting' | 'closed';

/** The client's status; a new frozen object on each change. */
export interface Status {
  /** `connecting` until the first session opens, `reconnecting` while waiting for a later one. */
  readonly state: State;
  /** The transport of the current (or last) session. */
  readonly transport: 'websocket' | 'polling' | null;
  /** Smoothed round-trip time of pings in ms (RFC 6298), once measured. */
  readonly rtt: number | null;
  readonly quality: Quality;
  /** Events delivered in the last second (a sliding window of ten 100 ms buckets). */
  readonly eventsPerSecond: number;
  /** Failed attempts since the last stable session. */
  readonly attempt: number;
  /** While waiting to reconnect: the delay chosen, ms. */
  readonly retryInMs: number | null;
  /** The last close: from the server's close frame, or the code this client closed with. */
  readonly lastClose: { readonly code: number; readonly reason: string } | null;
}

/**
 * Reported to `onError` handlers: an error frame of the server (code and name as in
 * {@link ErrorCode}), a publish refusal (with `id` and `room`), or a client-side failure
 * (code 0, name `'HANDLER_FAILED'` or `'STORAGE_FAILED'`, with `error`).
 */
export interface ErrorReport {
  code: number;
  name: string;
  reason: string;
  room?: string;
  id?: number;
  error?: unknown;
}

/** Positions by room. */
export type Positions = Record<string, Position>;

/** Optional persistence of positions (e.g. sessionStorage). */
export interface PositionStorage {
  /** Called once by the constructor; the positions saved before, or null. */
  load(): Positions | null | undefined;
  /** Called at most every 250 ms while positions change, and on close. */
  save(positions: Positions): void;
}

/** Reconnect backoff. */
export interface BackoffOptions {
  /** Base delay after the first failure, ms. Default 250. */
  initial?: number;
  /** Growth per failure. Default 2. */
  factor?: number;
  /** Largest base delay (hence delay, unless the server asks for more), ms. Default 30000. */
  cap?: number;
  /** Give up (state closed) after this many failures in a row. Default: never. */
  maxAttempts?: number | null;
  /** A session open this long resets the attempt count, ms. Default 10000. */
  stableAfter?: number;
}

/** Link quality thresholds. */
export interface QualityOptions {
  /** SRTT above this (ms) is degraded. Default 300. */
  degradedRtt?: number;
  /** SRTT above this (ms) is poor. Default 1000. */
  poorRtt?: number;
  /** Improving needs SRTT below this percentage of a threshold. Default 80. */
  recoverPercent?: number;
  /** This many missed pongs in a row make the link poor. Default 2. */
  poorAfterMissed?: number;
}

/** A clock (for tests): monotonic milliseconds and timers. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** What the client needs of a WebSocket instance. */
export interface WebSocketLike {
  readonly protocol: string;
  binaryType?: string;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code?: number; reason?: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
}

/** A WebSocket constructor (the browser's, Node's, or a test double). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** What the client needs of `fetch`. */
export type FetchLike = (
  url: string,
  init: { method: string; headers: Record<string, string>; body: string; signal: AbortSignal },
) => Promise<Response>;

export interface ClientOptions {
  /** Rooms to join: names (live head, or the stored position) or positions by name. */
  rooms?: string[] | Record<string, Position | null>;
  /** Authentication token sent in the hello (1-1024 of `A-Z a-z 0-9 . _ ~ + = -`). */
  token?: string | null;
  /** Client id (below 2^53); default random. Must be new for every client instance. */
  clientId?: number;
  /** Default `'auto'`: WebSocket, falling back to polling. */
  transports?: 'auto' | 'websocket' | 'polling';
  /** Default: the URL's host over http(s), path `/eventwire/poll`. */
  pollUrl?: string;
  /** Failed WebSocket attempts in a row before polling. Default 3. */
  fallbackAfter?: number;
  /** How often a polling client tries a WebSocket again, ms. Default 30000. */
  upgradeInterval?: number;
  backoff?: BackoffOptions;
  quality?: QualityOptions;
  /** From starting an attempt to the welcome, ms. Default 10000. */
  connectTimeout?: number;
  /** Largest frame accepted (announced in the hello), bytes. Default 65536. */
  maxFrame?: number;
  /** Most events per batch wanted. Default 50. */
  maxBatch?: number;
  /** Most unacknowledged publishes; more are refused at call time. Default 256. */
  outboxLimit?: number;
  /** Most publishes in flight. Default 32. */
  publishWindow?: number;
  /** Most rooms held. Default 1024. */
  maxRooms?: number;
  /** Most frames a polling session queues between requests. Default 1024. */
  maxQueued?: number;
  /** Silent heartbeat intervals before the link is dead. Default 3. */
  deadAfter?: number;
  storage?: PositionStorage | null;
  /** Default `globalThis.WebSocket`. */
  WebSocket?: WebSocketConstructor;
  /** Default `globalThis.fetch`. */
  fetch?: FetchLike;
  /** For tests. Default: `performance.now` and the global timers. */
  clock?: Clock;
  /** Uniform in [0, 1), for backoff jitter. Default `Math.random`. */
  random?: () => number;
}

/** Counters. */
export interface ClientStats {
  /** Events delivered. */
  events: number;
  /** Replayed events dropped as already delivered. */
  duplicates: number;
  /** Gaps received. */
  gaps: number;
  /** Sessions opened. */
  sessions: number;
  /** Publishes awaiting acknowledgement. */
  outbox: number;
}

/** A handle on one room. */
export class RoomHandle {
  private constructor(client: Client, name: string);
  /** The room's name. */
  readonly name: string;
  /** Calls `handler` for events of `kind` (`'*'`: all) in this room. Returns an unsubscribe function. */
  on<P = any>(kind: string, handler: EventHandler<P>): () => void;
  /** The last position delivered in this room. */
  position(): Position | null;
  /** Leaves the room; returns whether it was held. */
  unsubscribe(): boolean;
}

/**
 * The client. It starts connecting in the microtask after construction.
 * @throws {ValidationError} for a bad URL or option.
 */
export class Client {
  /**
   * @param url `ws://` or `wss://` URL of the server (`http(s)://` is taken for `ws(s)://`; in a
   *   browser a relative URL is resolved against the page).
   */
  constructor(url: string, options?: ClientOptions);
  /** The latest status. */
  readonly status: Status;
  /** The client id sent in every hello. */
  readonly clientId: number;
  /** Counters. */
  stats(): ClientStats;
  /** The last position delivered in each room held. */
  positions(): Positions;
  /** Calls `handler` for events of `kind` (`'*'`: every event) in every room. */
  on<P = any>(kind: string, handler: EventHandler<P>): () => void;
  /** A handle on `name`, subscribing to it if needed. */
  room(name: string): RoomHandle;
  onGap(handler: (gap: Gap) => void): () => void;
  onStatus(handler: (status: Status) => void): () => void;
  onError(handler: (error: ErrorReport) => void): () => void;
  /**
   * Joins `room` after `from` (else the stored position, else the live head).
   * @throws {ValidationError | TooManyRoomsError | ClientClosedError}
   */
  subscribe(room: string, from?: Position | null): void;
  /** Leaves `room`; returns whether it was held. */
  unsubscribe(room: string): boolean;
  /**
   * Publishes upstream; resolves with the position it landed at.
   * Throws {@link ValidationError} synchronously for a bad name or a non-JSON payload; rejects
   * at once with {@link OutboxFullError}, {@link FrameTooLargeError} or {@link ClientClosedError},
   * later with {@link PublishRejectedError} or {@link ClientClosedError}.
   */
  publish(room: string, kind: string, payload: unknown): Promise<Position>;
  /** Sends close 1000 and stops for good. */
  close(): void;
}

// ---- errors

export class EventwireError extends Error {}
/** A received message is not a valid frame; the connection closes with `closeCode`. */
export class ProtocolError extends EventwireError {
  constructor(message: string, closeCode: number);
  readonly closeCode: number;
}
/** An argument or field breaks a rule. */
export class ValidationError extends TypeError {
  constructor(field: string, message: string);
  readonly field: string;
}
export class OutboxFullError extends EventwireError {
  constructor(limit: number);
  readonly limit: number;
}
export class FrameTooLargeError extends EventwireError {
  constructor(size: number, limit: number);
  readonly size: number;
  readonly limit: number;
}
export class TooManyRoomsError extends EventwireError {
  constructor(limit: number);
  readonly limit: number;
}
export class ClientClosedError extends EventwireError {
  constructor();
}
export class PublishRejectedError extends EventwireError {
  constructor(id: number, code: number, reason: string);
  readonly id: number;
  readonly code: number;
  readonly errorName: string;
  readonly reason: string;
}

// ---- frames (the JSON form)

export interface Resume {
  room: string;
  from: Position | null;
}
export interface BatchEvent {
  offset: number;
  kind: string;
  payload: unknown;
  /** The payload's exact JSON text (set by the decoder; used by the encoder when present). */
  payloadText?: string;
}

export type Frame =
  | { type: 'hello'; version: number; client_id: number; token: string | null; max_frame: number; max_batch: number; rooms: Resume[] }
  | { type: 'welcome'; version: number; session_id: number; heartbeat_ms: number; max_frame: number; max_subscriptions: number; publish_rate: number }
  | { type: 'subscribe'; room: string; from: Position | null }
  | { type: 'subscribed'; room: string; position: Position }
  | { type: 'unsubscribe'; room: string }
  | { type: 'event'; room: string; position: Position; kind: string; payload: unknown; payloadText?: string }
  | { type: 'batch'; room: string; epoch: number; events: BatchEvent[] }
  | { type: 'publish'; room: string; id: number; kind: string; payload: unknown; payloadText?: string }
  | { type: 'publish_ack'; id: number; position: Position }
  | { type: 'ping'; nonce: number }
  | { type: 'pong'; nonce: number }
  | { type: 'gap'; room: string; missed: Missed }
  | { type: 'error'; code: number; id: number | null; room: string | null; retry_after_ms: number | null; reason: string }
  | { type: 'close'; code: number; retry_after_ms: number | null; reason: string };

export type FrameType = Frame['type'];

/** A frame kind this version does not know (ignored by a peer). */
export interface UnknownFrame {
  type: 'unknown';
  name: string;
}

/**
 * Decodes the JSON text of one message.
 * @throws {ProtocolError} with closeCode 1002 (malformed), 1007 (a field rule) or 1009 (over `maxFrame`).
 */
export function decodeFrame(text: string, options?: { maxFrame?: number }): Frame | UnknownFrame;
/**
 * Encodes a frame as JSON text, byte for byte as the Rust encoder.
 * @throws {ValidationError}
 */
export function encodeFrame(frame: Frame): string;

// ---- the machine's parts, exported for tests and tools

/** Exponential backoff with full jitter after the cap; `retryAfterMs` is a lower bound. */
export class Backoff {
  constructor(policy?: BackoffOptions, random?: () => number);
  readonly policy: Required<{ [K in keyof BackoffOptions]-?: number }>;
  /** Failures since the last reset. */
  attempts: number;
  baseDelay(failures: number): number;
  /** The next delay in ms, or null once `maxAttempts` failures happened in a row. */
  nextDelay(retryAfterMs?: number | null): number | null;
  /** A session ended after `openForMs`: resets the count if it was stable. */
  connectionEnded(openForMs: number): void;
  reset(): void;
}

/** RFC 6298 smoothing in integer microseconds. */
export class RttEstimator {
  readonly srttUs: number;
  readonly rttvarUs: number;
  readonly samples: number;
  sample(rttMs: number): void;
  /** ms, or null before a sample. */
  readonly srtt: number | null;
  readonly rttvar: number | null;
}

/** Quality levels with hysteresis. */
export class LinkQuality {
  constructor(config?: QualityOptions);
  readonly config: Required<QualityOptions>;
  readonly rtt: RttEstimator;
  readonly level: Quality;
  readonly missed: number;
  /** The new level if it changed. */
  onPong(rttMs: number): Quality | null;
  onMissedPong(): Quality | null;
}

/** The bounded outbox: ids 1, 2, 3, ..., a send window, refusal when full. */
export class Outbox<T> {
  constructor(limit: number);
  readonly limit: number;
  readonly size: number;
  readonly inFlight: number;
  /** @throws {OutboxFullError} */
  push(data: T): number;
  nextToSend(now: number, window: number): { id: number; data: T } | null;
  take(id: number): T | undefined;
  defer(id: number, at: number): boolean;
  requeue(): void;
  nextDeadline(): number | null;
  drain(): T[];
}

/** Events per second over a sliding one-second window of ten 100 ms buckets. */
export class RateMeter {
  add(now: number, n?: number): void;
  rate(now: number): number;
}
