/**
 * # eventwire: the browser (and Node) client
 *
 * One ES module, no dependencies, no build step: load it with
 * `<script type="module">import { Client } from './eventwire.js'</script>` or install the package
 * and `import { Client } from 'eventwire'`. It speaks the JSON form of the eventwire protocol
 * (WebSocket subprotocol `eventwire.v1.json`, or HTTP long-polling with JSON bodies) as
 * described in `docs/PROTOCOL.md`, and mirrors the decisions of the Rust client machine
 * (`core/src/client.rs`).
 *
 * ## The guarantee
 * For every room the client is subscribed to, the application sees the room's events in order,
 * each at most once, with nothing missing, except events superseded by a newer one with the same
 * coalescing key and ranges announced by a `gap` (or a `reset` of the epoch), which are handed to
 * {@link Client#onGap} handlers. Per room the client keeps the last position delivered; every
 * connection (first, reconnect, switch of transport) begins with a hello listing each room with
 * that position, so the server continues exactly where delivery stopped. Deliveries at or before
 * the position are replay overlap and dropped; an event of an epoch the server did not announce
 * with a `reset` gap makes the client reconnect rather than deliver it. Publishes carry ids
 * 1, 2, 3, ... that, with the hello's `client_id`, make retries idempotent: a publish reaches
 * its room exactly once (within the server's deduplication window) or is refused.
 *
 * ## Lifecycle
 * ```text
 * new Client --(next microtask)--> connecting --welcome--> connected
 *                                      ^                       |
 *                                      |   loss / timeout / retryable close
 *                                      +---- reconnecting <----+
 * any --close() / close code 1000, 1008, 4001, 4002 / maxAttempts failures--> closed
 * ```
 * `status.state` is `connecting` until the first session opens, `reconnecting` while waiting
 * for (or attempting) a later one. Reconnects wait an exponential backoff with full jitter
 * applied after the cap (`min(cap, initial * factor^n)`, then uniform in `[0, base]`), at least
 * the server's `retry_after_ms`; the attempt count resets once a session stayed open 10 s.
 *
 * ## Transports
 * `transports: 'auto'` (the default) tries WebSocket; after `fallbackAfter` failed WebSocket
 * attempts in a row it uses HTTP long-polling (`POST` JSON arrays of frames to `pollUrl`) and
 * tries a WebSocket in the background every `upgradeInterval` ms; when one opens, the polling
 * session is ended and the client reconnects over WebSocket. Every switch is a reconnect with
 * resume, so it loses nothing.
 *
 * ## Close codes from a browser
 * Browsers may only close a WebSocket with 1000 or 3000-4999. The client therefore sends the
 * eventwire `close` frame carrying the real code, then closes the WebSocket with that code if it
 * is 1000 or 3000-4999, else with 1000. The `close` frame is authoritative.
 *
 * ## Bounds (all memory is bounded; what happens on overflow)
 * - Outbox: at most `outboxLimit` (256) unacknowledged publishes, each at most the server's
 *   `max_frame` encoded; a publish beyond either is refused when it is made (the promise rejects
 *   at once with {@link OutboxFullError} or {@link FrameTooLargeError}). At most 32 are in
 *   flight; the rest wait in the outbox.
 * - Frames queued for sending: while disconnected nothing is queued (subscriptions and the
 *   outbox are state, turned into frames when a session opens). On a WebSocket frames go to the
 *   socket at once. A polling session queues frames between requests, at most `maxQueued`
 *   (1024) of them; a session whose queue overflows is abandoned and the client reconnects with
 *   resume, so nothing is lost.
 * - Received messages: at most `maxFrame` bytes (65536, announced in the hello). A larger
 *   message closes the connection with 1009 and the client reconnects with backoff. (A browser
 *   WebSocket has buffered the message before the client sees it; the check comes before any
 *   parsing.) A polling response is at most `64 * maxFrame` bytes, each frame in it at most
 *   `maxFrame`.
 * - Rooms: at most `maxRooms` (1024); handlers: as many as the application registers.
 * - Pongs owed to the server: the 4 newest.
 *
 * @module eventwire
 */

// ---------------------------------------------------------------------------------------------
// Constants

/** The protocol version this client speaks. */
export const PROTOCOL_VERSION = 1;
/** The WebSocket subprotocol of the JSON form. */
export const SUBPROTOCOL = 'eventwire.v1.json';
/** Largest integer a frame may carry (2^53 - 1). */
export const MAX_SAFE_INTEGER = Number.MAX_SAFE_INTEGER;
/** Most rooms a hello lists; the rest are subscribed after the welcome. */
export const MAX_HELLO_ROOMS = 64;
/** Most events in one batch. */
export const MAX_BATCH_EVENTS = 1024;
/** Most frames one polling request may carry (the server answers more with 400). */
export const MAX_POLL_FRAMES = 64;
/** Most bytes of frames one polling request carries (the server's default body limit). */
export const MAX_POLL_BODY = 256 * 1024;

const U16 = 0xffff;
const U32 = 0xffffffff;

/**
 * Close codes (PROTOCOL.md 3.1).
 * @readonly
 */
export const CloseCode = Object.freeze({
  NORMAL: 1000,
  GOING_AWAY: 1001,
  PROTOCOL_ERROR: 1002,
  UNSUPPORTED_DATA: 1003,
  INVALID_DATA: 1007,
  POLICY_VIOLATION: 1008,
  MESSAGE_TOO_BIG: 1009,
  INTERNAL_ERROR: 1011,
  TRY_AGAIN_LATER: 1013,
  HANDSHAKE_TIMEOUT: 4000,
  UNAUTHORIZED: 4001,
  UNSUPPORTED_VERSION: 4002,
  HEARTBEAT_TIMEOUT: 4003,
  RATE_LIMITED: 4004,
});

/**
 * Error codes of `error` frames (PROTOCOL.md 3.2).
 * @readonly
 */
export const ErrorCode = Object.freeze({
  FORBIDDEN_ROOM: 1,
  TOO_MANY_SUBSCRIPTIONS: 2,
  RATE_LIMITED: 3,
  PUBLISH_REJECTED: 4,
  UNKNOWN_KIND: 5,
  UNEXPECTED_FRAME: 6,
  NO_SUCH_ROOM: 7,
});

/** Error codes that refuse a join: the room is no longer held. */
const JOIN_REFUSALS = new Set([ErrorCode.FORBIDDEN_ROOM, ErrorCode.TOO_MANY_SUBSCRIPTIONS, ErrorCode.NO_SUCH_ROOM]);

/** @type {Map<number, string>} */
const ERROR_NAMES = new Map(Object.entries(ErrorCode).map(([k, v]) => [v, k]));

/**
 * The name of an error code (`'RATE_LIMITED'`), or `'UNKNOWN'` for codes this version does not
 * know; client-side reports use code 0 and their own names (`'HANDLER_FAILED'`,
 * `'STORAGE_FAILED'`).
 * @param {number} code
 * @returns {string}
 */
export function errorName(code) {
  return ERROR_NAMES.get(code) ?? 'UNKNOWN';
}

/**
 * Whether a client that receives close `code` reconnects. 1000, 1008, 4001 and 4002 end the
 * client for good; every other code, known or not, is transient.
 * @param {number} code
 * @returns {boolean}
 */
export function shouldReconnect(code) {
  return !(code === 1000 || code === 1008 || code === 4001 || code === 4002);
}

/**
 * The code a browser may pass to `WebSocket.close` for eventwire close `code`: the code itself
 * if it is 1000 or in 3000-4999, else 1000 (the `close` frame sent before it carries the real
 * one).
 * @param {number} code
 * @returns {number}
 */
export function wsCloseCode(code) {
  return code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
}

// ---------------------------------------------------------------------------------------------
// Errors

/** Base class of the errors this module raises itself. */
export class EventwireError extends Error {
  /** @param {string} message */
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * A received message is not a valid frame. `closeCode` is what the connection closes with:
 * 1002 (malformed), 1007 (a field breaks its rule) or 1009 (too large).
 */
export class ProtocolError extends EventwireError {
  /**
   * @param {string} message
   * @param {number} closeCode
   */
  constructor(message, closeCode) {
    super(message);
    /** @type {number} */
    this.closeCode = closeCode;
  }
}

/**
 * An argument or frame field breaks a rule (a room or kind name, a token, an integer above
 * 2^53 - 1, a payload that is not JSON). A `TypeError`, thrown at call time.
 */
export class ValidationError extends TypeError {
  /**
   * @param {string} field
   * @param {string} message
   */
  constructor(field, message) {
    super(message);
    this.name = 'ValidationError';
    /** @type {string} */
    this.field = field;
  }
}

/** The outbox holds `limit` unacknowledged publishes: the publish was refused. */
export class OutboxFullError extends EventwireError {
  /** @param {number} limit */
  constructor(limit) {
    super(`outbox full: ${limit} publishes await acknowledgement`);
    /** @type {number} */
    this.limit = limit;
  }
}

/** A publish's frame would exceed the server's `max_frame`: refused. */
export class FrameTooLargeError extends EventwireError {
  /**
   * @param {number} size
   * @param {number} limit
   */
  constructor(size, limit) {
    super(`publish frame of ${size} bytes exceeds the limit of ${limit}`);
    /** @type {number} */
    this.size = size;
    /** @type {number} */
    this.limit = limit;
  }
}

/** The client holds `maxRooms` rooms already. */
export class TooManyRoomsError extends EventwireError {
  /** @param {number} limit */
  constructor(limit) {
    super(`the client holds ${limit} rooms already`);
    /** @type {number} */
    this.limit = limit;
  }
}

/** The client is closed: the call was refused, or a pending publish was abandoned. */
export class ClientClosedError extends EventwireError {
  constructor() {
    super('client closed');
  }
}

/** The server refused a publish for good (an `error` frame naming its id). */
export class PublishRejectedError extends EventwireError {
  /**
   * @param {number} id
   * @param {number} code
   * @param {string} reason
   */
  constructor(id, code, reason) {
    super(`publish ${id} refused: ${errorName(code)} (${code})${reason ? `: ${reason}` : ''}`);
    /** @type {number} */
    this.id = id;
    /** @type {number} */
    this.code = code;
    /** @type {string} */
    this.errorName = errorName(code);
    /** @type {string} */
    this.reason = reason;
  }
}

// ---------------------------------------------------------------------------------------------
// Field rules (PROTOCOL.md 4)

const NAME_RE = /^[A-Za-z0-9._:-]{1,64}$/;
const TOKEN_RE = /^[A-Za-z0-9._~+=-]{1,1024}$/;
// Printable ASCII without " \ / < > &.
const REASON_RE = /^[ !#-%'-.0-;=?-[\]-~]{0,123}$/;

/**
 * Whether `s` is a valid room or event-kind name: 1 to 64 characters of `A-Z a-z 0-9 . _ : -`.
 * @param {unknown} s
 * @returns {s is string}
 */
export function isValidName(s) {
  return typeof s === 'string' && NAME_RE.test(s);
}

/**
 * Throws a {@link ValidationError} unless `s` is a valid name.
 * @param {unknown} s
 * @param {string} field
 * @returns {string}
 */
function checkName(s, field) {
  if (!isValidName(s)) {
    throw new ValidationError(field, `\`${field}\` must be 1 to 64 characters of A-Z a-z 0-9 . _ : - (got ${describe(s)})`);
  }
  return s;
}

/** @param {unknown} v */
function describe(v) {
  if (typeof v === 'string') return JSON.stringify(v.length > 80 ? `${v.slice(0, 80)}...` : v);
  return typeof v;
}

/** @param {unknown} s @param {string} field */
function checkToken(s, field) {
  if (typeof s !== 'string' || !TOKEN_RE.test(s)) {
    throw new ValidationError(field, `\`${field}\` must be 1 to 1024 characters of A-Z a-z 0-9 . _ ~ + = -`);
  }
  return s;
}

/** @param {unknown} s @param {string} field */
function checkReason(s, field) {
  if (typeof s !== 'string' || !REASON_RE.test(s)) {
    throw new ValidationError(field, `\`${field}\` must be at most 123 characters of printable ASCII without " \\ / < > &`);
  }
  return s;
}

/**
 * Throws unless `n` is an integer in `[0, max]`.
 * @param {unknown} n @param {number} max @param {string} field
 * @returns {number}
 */
function checkInt(n, max, field) {
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0 || n > max) {
    throw new ValidationError(field, `\`${field}\` must be an integer from 0 to ${max}`);
  }
  return n;
}

/**
 * A valid position, or throws.
 * @param {unknown} p @param {string} field
 * @returns {Position}
 */
function checkPosition(p, field) {
  if (p === null || typeof p !== 'object') {
    throw new ValidationError(field, `\`${field}\` must be {epoch, offset}`);
  }
  const { epoch, offset } = /** @type {any} */ (p);
  return { epoch: checkInt(epoch, U32, `${field}.epoch`), offset: checkInt(offset, MAX_SAFE_INTEGER, `${field}.offset`) };
}

/**
 * Bytes of `s` in UTF-8.
 * @param {string} s
 * @returns {number}
 */
export function utf8Length(s) {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        // A surrogate pair: 4 bytes for 2 units.
        n += 2;
        i++;
      } else n += 2;
    } else n += 2;
  }
  return n;
}

/**
 * Whether `s` takes more than `limit` bytes in UTF-8, without counting when the answer is clear
 * from its length (each UTF-16 unit is 1 to 3 bytes).
 * @param {string} s @param {number} limit
 */
function exceeds(s, limit) {
  if (s.length > limit) return true;
  if (s.length * 3 <= limit) return false;
  return utf8Length(s) > limit;
}

// ---------------------------------------------------------------------------------------------
// The JSON form: decoding

/**
 * @typedef {{epoch: number, offset: number}} Position
 */

const WS = new Set([0x20, 0x09, 0x0a, 0x0d]);

/**
 * A strict JSON reader over one message. Strings of frame fields are refused if they contain an
 * escape (PROTOCOL.md 1.2); payloads are taken as raw text and parsed by `JSON.parse`.
 */
class Reader {
  /** @param {string} s */
  constructor(s) {
    this.s = s;
    this.i = 0;
  }

  /** @param {string} what @returns {never} */
  fail(what) {
    throw new ProtocolError(`malformed frame: ${what} at ${this.i}`, CloseCode.PROTOCOL_ERROR);
  }

  ws() {
    const s = this.s;
    while (this.i < s.length && WS.has(s.charCodeAt(this.i))) this.i++;
  }

  /** @param {string} c */
  expect(c) {
    this.ws();
    if (this.s[this.i] !== c) this.fail(this.i >= this.s.length ? 'unexpected end' : `expected '${c}'`);
    this.i++;
  }

  /** @param {string} c */
  peekIs(c) {
    this.ws();
    return this.s[this.i] === c;
  }

  /**
   * A string; with `raw` false an escape is refused.
   * @param {boolean} allowEscapes
   * @returns {string}
   */
  string(allowEscapes) {
    this.ws();
    const s = this.s;
    if (s[this.i] !== '"') this.fail('expected a string');
    const start = ++this.i;
    let escaped = false;
    for (;;) {
      if (this.i >= s.length) this.fail('unterminated string');
      const c = s.charCodeAt(this.i);
      if (c === 0x22) break;
      if (c < 0x20) this.fail('control character in a string');
      if (c === 0x5c) {
        if (!allowEscapes) this.fail('escape sequence in a frame string');
        escaped = true;
        const e = s[this.i + 1];
        if (e === 'u') {
          if (!/^[0-9a-fA-F]{4}$/.test(s.slice(this.i + 2, this.i + 6))) this.fail('bad \\u escape');
          this.i += 6;
          continue;
        }
        if (e === undefined || !'"\\/bfnrt'.includes(e)) this.fail('bad escape');
        this.i += 2;
        continue;
      }
      this.i++;
    }
    const text = s.slice(start, this.i);
    this.i++;
    return escaped ? JSON.parse(`"${text}"`) : text;
  }

  /**
   * The text of a JSON number.
   * @returns {string}
   */
  numberText() {
    this.ws();
    const m = /^-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/.exec(this.s.slice(this.i, this.i + 400));
    if (!m || m[0].length === 0) this.fail('expected a number');
    this.i += m[0].length;
    return m[0];
  }

  /**
   * An unsigned integer of at most `max` (u16/u32) or 2^53 - 1 (u64, refused with 1007 above).
   * @param {number} max @param {string} field
   * @returns {number}
   */
  uint(max, field) {
    const t = this.numberText();
    if (!/^(?:0|[1-9][0-9]*)$/.test(t)) this.fail(`\`${field}\` must be an unsigned integer`);
    const n = Number(t);
    if (max === MAX_SAFE_INTEGER) {
      if (t.length > 16 || n > MAX_SAFE_INTEGER) {
        throw new ProtocolError(`invalid frame: \`${field}\` is above 2^53 - 1`, CloseCode.INVALID_DATA);
      }
    } else if (n > max) {
      this.fail(`\`${field}\` is above ${max}`);
    }
    return n;
  }

  /** Whether the next value is `null` (consumed if so). */
  nullNext() {
    this.ws();
    if (this.s.startsWith('null', this.i)) {
      this.i += 4;
      return true;
    }
    return false;
  }

  /**
   * Skips one JSON value, checking its syntax fully.
   * @param {number} depth
   */
  skip(depth = 0) {
    if (depth > 128) this.fail('nesting too deep');
    this.ws();
    const c = this.s[this.i];
    if (c === '{') {
      this.i++;
      if (this.peekIs('}')) {
        this.i++;
        return;
      }
      for (;;) {
        this.string(true);
        this.expect(':');
        this.skip(depth + 1);
        this.ws();
        if (this.s[this.i] === ',') { this.i++; continue; }
        this.expect('}');
        return;
      }
    }
    if (c === '[') {
      this.i++;
      if (this.peekIs(']')) {
        this.i++;
        return;
      }
      for (;;) {
        this.skip(depth + 1);
        this.ws();
        if (this.s[this.i] === ',') { this.i++; continue; }
        this.expect(']');
        return;
      }
    }
    if (c === '"') {
      this.string(true);
      return;
    }
    for (const lit of ['true', 'false', 'null']) {
      if (this.s.startsWith(lit, this.i)) {
        this.i += lit.length;
        return;
      }
    }
    this.numberText();
  }

  /**
   * One JSON value as raw text (no white space around it) and its parsed value.
   * @returns {{text: string, value: unknown}}
   */
  payload() {
    this.ws();
    const start = this.i;
    this.skip();
    const text = this.s.slice(start, this.i);
    return { text, value: JSON.parse(text) };
  }

  /**
   * Reads an object whose known fields are read by `fields[name]()`; unknown ones are skipped.
   * A known field twice is malformed; a missing one is `undefined` in the result.
   * @param {Record<string, () => unknown>} fields
   * @returns {Record<string, any>}
   */
  object(fields) {
    this.expect('{');
    /** @type {Record<string, any>} */
    const out = {};
    if (this.peekIs('}')) {
      this.i++;
      return out;
    }
    for (;;) {
      const key = this.string(true);
      this.expect(':');
      if (Object.prototype.hasOwnProperty.call(fields, key)) {
        if (Object.prototype.hasOwnProperty.call(out, key)) this.fail(`duplicate field \`${key}\``);
        out[key] = fields[key]();
      } else {
        this.skip();
      }
      this.ws();
      if (this.s[this.i] === ',') {
        this.i++;
        continue;
      }
      this.expect('}');
      return out;
    }
  }

  /**
   * A JSON array, each element read by `item`.
   * @template T
   * @param {() => T} item
   * @returns {T[]}
   */
  array(item) {
    this.expect('[');
    /** @type {T[]} */
    const out = [];
    if (this.peekIs(']')) {
      this.i++;
      return out;
    }
    for (;;) {
      out.push(item());
      this.ws();
      if (this.s[this.i] === ',') {
        this.i++;
        continue;
      }
      this.expect(']');
      return out;
    }
  }
}

/** @param {string} field @param {string} what @returns {never} */
function invalid(field, what) {
  throw new ProtocolError(`invalid frame: \`${field}\` ${what}`, CloseCode.INVALID_DATA);
}

/**
 * @template T
 * @param {T} v @param {string} field
 * @returns {Exclude<T, undefined>}
 */
function need(v, field) {
  if (v === undefined) throw new ProtocolError(`malformed frame: missing field \`${field}\``, CloseCode.PROTOCOL_ERROR);
  return /** @type {Exclude<T, undefined>} */ (v);
}

/** @param {Reader} r @param {string} field */
function rName(r, field) {
  const s = r.string(false);
  if (!NAME_RE.test(s)) invalid(field, 'must be 1 to 64 characters of A-Z a-z 0-9 . _ : -');
  return s;
}

/** @param {Reader} r @param {string} field @returns {Position} */
function rPosition(r, field) {
  const o = r.object({
    epoch: () => r.uint(U32, `${field}.epoch`),
    offset: () => r.uint(MAX_SAFE_INTEGER, `${field}.offset`),
  });
  return { epoch: need(o.epoch, 'epoch'), offset: need(o.offset, 'offset') };
}

/**
 * @template T
 * @param {Reader} r @param {() => T} read
 * @returns {T | null}
 */
function rOpt(r, read) {
  return r.nullNext() ? null : read();
}

/** Readers of each frame kind's body, by name. @type {Record<string, (r: Reader) => any>} */
const BODY = {
  hello(r) {
    const o = r.object({
      version: () => r.uint(U16, 'version'),
      client_id: () => r.uint(MAX_SAFE_INTEGER, 'client_id'),
      token: () => rOpt(r, () => {
        const t = r.string(false);
        if (!TOKEN_RE.test(t)) invalid('token', 'must be 1 to 1024 characters of A-Z a-z 0-9 . _ ~ + = -');
        return t;
      }),
      max_frame: () => r.uint(U32, 'max_frame'),
      max_batch: () => r.uint(U16, 'max_batch'),
      rooms: () => r.array(() => {
        const e = r.object({ room: () => rName(r, 'room'), from: () => rOpt(r, () => rPosition(r, 'from')) });
        return { room: need(e.room, 'room'), from: e.from ?? null };
      }),
    });
    const rooms = need(o.rooms, 'rooms');
    if (rooms.length > MAX_HELLO_ROOMS) invalid('rooms', `holds more than ${MAX_HELLO_ROOMS} elements`);
    return {
      version: need(o.version, 'version'),
      client_id: need(o.client_id, 'client_id'),
      token: o.token ?? null,
      max_frame: need(o.max_frame, 'max_frame'),
      max_batch: need(o.max_batch, 'max_batch'),
      rooms,
    };
  },
  welcome(r) {
    const o = r.object({
      version: () => r.uint(U16, 'version'),
      session_id: () => r.uint(MAX_SAFE_INTEGER, 'session_id'),
      heartbeat_ms: () => r.uint(U32, 'heartbeat_ms'),
      max_frame: () => r.uint(U32, 'max_frame'),
      max_subscriptions: () => r.uint(U16, 'max_subscriptions'),
      publish_rate: () => r.uint(U16, 'publish_rate'),
    });
    return {
      version: need(o.version, 'version'),
      session_id: need(o.session_id, 'session_id'),
      heartbeat_ms: need(o.heartbeat_ms, 'heartbeat_ms'),
      max_frame: need(o.max_frame, 'max_frame'),
      max_subscriptions: need(o.max_subscriptions, 'max_subscriptions'),
      publish_rate: need(o.publish_rate, 'publish_rate'),
    };
  },
  subscribe(r) {
    const o = r.object({ room: () => rName(r, 'room'), from: () => rOpt(r, () => rPosition(r, 'from')) });
    return { room: need(o.room, 'room'), from: o.from ?? null };
  },
  subscribed(r) {
    const o = r.object({ room: () => rName(r, 'room'), position: () => rPosition(r, 'position') });
    return { room: need(o.room, 'room'), position: need(o.position, 'position') };
  },
  unsubscribe(r) {
    const o = r.object({ room: () => rName(r, 'room') });
    return { room: need(o.room, 'room') };
  },
  event(r) {
    const o = r.object({
      room: () => rName(r, 'room'),
      position: () => rPosition(r, 'position'),
      kind: () => rName(r, 'kind'),
      payload: () => r.payload(),
    });
    const p = need(o.payload, 'payload');
    return {
      room: need(o.room, 'room'),
      position: need(o.position, 'position'),
      kind: need(o.kind, 'kind'),
      payload: p.value,
      payloadText: p.text,
    };
  },
  batch(r) {
    const o = r.object({
      room: () => rName(r, 'room'),
      epoch: () => r.uint(U32, 'epoch'),
      events: () => r.array(() => {
        const e = r.object({
          offset: () => r.uint(MAX_SAFE_INTEGER, 'offset'),
          kind: () => rName(r, 'kind'),
          payload: () => r.payload(),
        });
        const p = need(e.payload, 'payload');
        return { offset: need(e.offset, 'offset'), kind: need(e.kind, 'kind'), payload: p.value, payloadText: p.text };
      }),
    });
    const events = need(o.events, 'events');
    if (events.length > MAX_BATCH_EVENTS) invalid('events', `holds more than ${MAX_BATCH_EVENTS} elements`);
    for (let i = 1; i < events.length; i++) {
      if (events[i].offset <= events[i - 1].offset) invalid('events', 'offsets must strictly increase');
    }
    return { room: need(o.room, 'room'), epoch: need(o.epoch, 'epoch'), events };
  },
  publish(r) {
    const o = r.object({
      room: () => rName(r, 'room'),
      id: () => r.uint(MAX_SAFE_INTEGER, 'id'),
      kind: () => rName(r, 'kind'),
      payload: () => r.payload(),
    });
    const p = need(o.payload, 'payload');
    return { room: need(o.room, 'room'), id: need(o.id, 'id'), kind: need(o.kind, 'kind'), payload: p.value, payloadText: p.text };
  },
  publish_ack(r) {
    const o = r.object({ id: () => r.uint(MAX_SAFE_INTEGER, 'id'), position: () => rPosition(r, 'position') });
    return { id: need(o.id, 'id'), position: need(o.position, 'position') };
  },
  ping(r) {
    const o = r.object({ nonce: () => r.uint(MAX_SAFE_INTEGER, 'nonce') });
    return { nonce: need(o.nonce, 'nonce') };
  },
  pong(r) {
    return BODY.ping(r);
  },
  gap(r) {
    const o = r.object({
      room: () => rName(r, 'room'),
      missed: () => {
        const m = r.object({
          range: () => {
            const g = r.object({
              epoch: () => r.uint(U32, 'epoch'),
              first: () => r.uint(MAX_SAFE_INTEGER, 'first'),
              last: () => r.uint(MAX_SAFE_INTEGER, 'last'),
            });
            const range = { epoch: need(g.epoch, 'epoch'), first: need(g.first, 'first'), last: need(g.last, 'last') };
            if (range.first > range.last) {
              throw new ProtocolError('invalid frame: gap range ends before it starts', CloseCode.INVALID_DATA);
            }
            return range;
          },
          reset: () => {
            const g = r.object({ position: () => rPosition(r, 'position') });
            return { position: need(g.position, 'position') };
          },
        });
        const keys = Object.keys(m);
        if (keys.length !== 1) r.fail('`missed` must be {range} or {reset}');
        return keys[0] === 'range' ? { range: m.range } : { reset: m.reset };
      },
    });
    return { room: need(o.room, 'room'), missed: need(o.missed, 'missed') };
  },
  error(r) {
    const o = r.object({
      code: () => r.uint(U16, 'code'),
      id: () => rOpt(r, () => r.uint(MAX_SAFE_INTEGER, 'id')),
      room: () => rOpt(r, () => rName(r, 'room')),
      retry_after_ms: () => rOpt(r, () => r.uint(U32, 'retry_after_ms')),
      reason: () => rReason(r),
    });
    return {
      code: need(o.code, 'code'),
      id: o.id ?? null,
      room: o.room ?? null,
      retry_after_ms: o.retry_after_ms ?? null,
      reason: need(o.reason, 'reason'),
    };
  },
  close(r) {
    const o = r.object({
      code: () => r.uint(U16, 'code'),
      retry_after_ms: () => rOpt(r, () => r.uint(U32, 'retry_after_ms')),
      reason: () => rReason(r),
    });
    return { code: need(o.code, 'code'), retry_after_ms: o.retry_after_ms ?? null, reason: need(o.reason, 'reason') };
  },
};

/** @param {Reader} r */
function rReason(r) {
  const s = r.string(false);
  if (!REASON_RE.test(s)) invalid('reason', 'must be at most 123 characters of printable ASCII without " \\ / < > &');
  return s;
}

/** The frame kinds, in tag order. */
export const FRAME_KINDS = Object.freeze(Object.keys(BODY));

/**
 * Decodes one frame from the JSON text of one message.
 *
 * The result is `{type, ...fields}` with the protocol's field names (`{type: 'gap', room,
 * missed}`); an `event`, `publish` or batch event carries `payload` (the parsed JSON value) and
 * `payloadText` (its exact text, which {@link encodeFrame} writes back). A frame kind this
 * version does not know gives `{type: 'unknown', name}`, which a peer ignores (PROTOCOL.md 6).
 *
 * @param {string} text
 * @param {{maxFrame?: number}} [options] `maxFrame`: a larger message (in UTF-8 bytes) is
 *   refused with close code 1009 before any parsing.
 * @returns {Frame}
 * @throws {ProtocolError} with `closeCode` 1002 (malformed: bad JSON, escapes in frame strings,
 *   wrong shape), 1007 (a field rule: names, integers above 2^53 - 1, ...) or 1009 (too large).
 */
export function decodeFrame(text, options = {}) {
  if (typeof text !== 'string') throw new ProtocolError('a JSON frame is text', CloseCode.UNSUPPORTED_DATA);
  const max = options.maxFrame;
  if (max !== undefined && exceeds(text, max)) {
    throw new ProtocolError(`message of ${utf8Length(text)} bytes exceeds the limit of ${max}`, CloseCode.MESSAGE_TOO_BIG);
  }
  const r = new Reader(text);
  r.ws();
  if (r.i >= text.length) throw new ProtocolError('empty message', CloseCode.PROTOCOL_ERROR);
  r.expect('{');
  const name = r.string(true);
  r.expect(':');
  /** @type {any} */
  let frame;
  const body = Object.prototype.hasOwnProperty.call(BODY, name) ? BODY[name] : undefined;
  if (body) {
    frame = { type: name, ...body(r) };
  } else {
    r.skip();
    frame = { type: 'unknown', name };
  }
  r.expect('}');
  r.ws();
  if (r.i !== text.length) r.fail('trailing characters after the frame');
  return frame;
}

// ---------------------------------------------------------------------------------------------
// The JSON form: encoding

/** @param {unknown} v @param {string} field */
function ePos(v, field) {
  const p = checkPosition(v, field);
  return `{"epoch":${p.epoch},"offset":${p.offset}}`;
}

/** @param {unknown} v @param {string} field */
function eOptPos(v, field) {
  return v === null || v === undefined ? 'null' : ePos(v, field);
}

/** @param {unknown} v @param {number} max @param {string} field */
function eOptInt(v, max, field) {
  return v === null || v === undefined ? 'null' : String(checkInt(v, max, field));
}

/**
 * The JSON text of a payload: `payloadText` when given (checked to be one JSON value), else
 * `JSON.stringify(payload)`.
 * @param {{payload?: unknown, payloadText?: string}} f
 * @returns {string}
 */
function ePayload(f) {
  if (typeof f.payloadText === 'string') {
    const r = new Reader(f.payloadText);
    try {
      r.skip();
    } catch {
      throw new ValidationError('payload', 'payloadText is not JSON text');
    }
    if (r.i !== f.payloadText.length || f.payloadText.length === 0) {
      throw new ValidationError('payload', 'payloadText must be one JSON value without surrounding white space');
    }
    return f.payloadText;
  }
  let text;
  try {
    text = JSON.stringify(f.payload);
  } catch (e) {
    throw new ValidationError('payload', `payload is not JSON: ${/** @type {Error} */ (e).message}`);
  }
  if (typeof text !== 'string') throw new ValidationError('payload', 'payload is not JSON (undefined, a function or a symbol)');
  return text;
}

/** Writers of each frame kind's body. @type {Record<string, (f: any) => string>} */
const WRITE = {
  hello: (f) => {
    if (!Array.isArray(f.rooms)) throw new ValidationError('rooms', '`rooms` must be an array');
    if (f.rooms.length > MAX_HELLO_ROOMS) throw new ValidationError('rooms', `a hello lists at most ${MAX_HELLO_ROOMS} rooms`);
    const rooms = f.rooms.map((/** @type {any} */ e) => `{"room":"${checkName(e.room, 'room')}","from":${eOptPos(e.from, 'from')}}`);
    const token = f.token === null || f.token === undefined ? 'null' : `"${checkToken(f.token, 'token')}"`;
    return `{"version":${checkInt(f.version, U16, 'version')},"client_id":${checkInt(f.client_id, MAX_SAFE_INTEGER, 'client_id')},"token":${token},"max_frame":${checkInt(f.max_frame, U32, 'max_frame')},"max_batch":${checkInt(f.max_batch, U16, 'max_batch')},"rooms":[${rooms.join(',')}]}`;
  },
  welcome: (f) =>
    `{"version":${checkInt(f.version, U16, 'version')},"session_id":${checkInt(f.session_id, MAX_SAFE_INTEGER, 'session_id')},"heartbeat_ms":${checkInt(f.heartbeat_ms, U32, 'heartbeat_ms')},"max_frame":${checkInt(f.max_frame, U32, 'max_frame')},"max_subscriptions":${checkInt(f.max_subscriptions, U16, 'max_subscriptions')},"publish_rate":${checkInt(f.publish_rate, U16, 'publish_rate')}}`,
  subscribe: (f) => `{"room":"${checkName(f.room, 'room')}","from":${eOptPos(f.from, 'from')}}`,
  subscribed: (f) => `{"room":"${checkName(f.room, 'room')}","position":${ePos(f.position, 'position')}}`,
  unsubscribe: (f) => `{"room":"${checkName(f.room, 'room')}"}`,
  event: (f) =>
    `{"room":"${checkName(f.room, 'room')}","position":${ePos(f.position, 'position')},"kind":"${checkName(f.kind, 'kind')}","payload":${ePayload(f)}}`,
  batch: (f) => {
    if (!Array.isArray(f.events)) throw new ValidationError('events', '`events` must be an array');
    if (f.events.length > MAX_BATCH_EVENTS) throw new ValidationError('events', `a batch holds at most ${MAX_BATCH_EVENTS} events`);
    let prev = -1;
    const events = f.events.map((/** @type {any} */ e) => {
      const offset = checkInt(e.offset, MAX_SAFE_INTEGER, 'offset');
      if (offset <= prev) throw new ValidationError('events', 'batch offsets must strictly increase');
      prev = offset;
      return `{"offset":${offset},"kind":"${checkName(e.kind, 'kind')}","payload":${ePayload(e)}}`;
    });
    return `{"room":"${checkName(f.room, 'room')}","epoch":${checkInt(f.epoch, U32, 'epoch')},"events":[${events.join(',')}]}`;
  },
  publish: (f) =>
    `{"room":"${checkName(f.room, 'room')}","id":${checkInt(f.id, MAX_SAFE_INTEGER, 'id')},"kind":"${checkName(f.kind, 'kind')}","payload":${ePayload(f)}}`,
  publish_ack: (f) => `{"id":${checkInt(f.id, MAX_SAFE_INTEGER, 'id')},"position":${ePos(f.position, 'position')}}`,
  ping: (f) => `{"nonce":${checkInt(f.nonce, MAX_SAFE_INTEGER, 'nonce')}}`,
  pong: (f) => `{"nonce":${checkInt(f.nonce, MAX_SAFE_INTEGER, 'nonce')}}`,
  gap: (f) => {
    const m = f.missed ?? {};
    let missed;
    if (m.range) {
      const first = checkInt(m.range.first, MAX_SAFE_INTEGER, 'first');
      const last = checkInt(m.range.last, MAX_SAFE_INTEGER, 'last');
      if (first > last) throw new ValidationError('missed', 'a gap range ends before it starts');
      missed = `{"range":{"epoch":${checkInt(m.range.epoch, U32, 'epoch')},"first":${first},"last":${last}}}`;
    } else if (m.reset) {
      missed = `{"reset":{"position":${ePos(m.reset.position, 'position')}}}`;
    } else {
      throw new ValidationError('missed', '`missed` must be {range} or {reset}');
    }
    return `{"room":"${checkName(f.room, 'room')}","missed":${missed}}`;
  },
  error: (f) =>
    `{"code":${checkInt(f.code, U16, 'code')},"id":${eOptInt(f.id, MAX_SAFE_INTEGER, 'id')},"room":${f.room === null || f.room === undefined ? 'null' : `"${checkName(f.room, 'room')}"`},"retry_after_ms":${eOptInt(f.retry_after_ms, U32, 'retry_after_ms')},"reason":"${checkReason(f.reason ?? '', 'reason')}"}`,
  close: (f) =>
    `{"code":${checkInt(f.code, U16, 'code')},"retry_after_ms":${eOptInt(f.retry_after_ms, U32, 'retry_after_ms')},"reason":"${checkReason(f.reason ?? '', 'reason')}"}`,
};

/**
 * Encodes a frame (`{type, ...fields}`, as {@link decodeFrame} gives) as JSON text, fields in
 * protocol order, exactly as the Rust encoder writes it. Missing optional fields are `null`.
 * @param {Frame} frame
 * @returns {string}
 * @throws {ValidationError} if a field breaks its rule or the kind is unknown.
 */
export function encodeFrame(frame) {
  const type = /** @type {any} */ (frame)?.type;
  const write = typeof type === 'string' && Object.prototype.hasOwnProperty.call(WRITE, type) ? WRITE[type] : undefined;
  if (!write) throw new ValidationError('type', `cannot encode a frame of type ${describe(type)}`);
  return `{"${type}":${write(frame)}}`;
}

// ---------------------------------------------------------------------------------------------
// Backoff

/**
 * Reconnect delays: exponential backoff with full jitter, as in `core/src/backoff.rs`.
 *
 * The `n`th failure in a row (from 0) has the base delay `min(cap, initial * factor^n)`; the
 * delay is uniform in `[0, base]` (jitter applied after the cap, so no delay exceeds the cap),
 * and at least the server's `retry_after_ms` when it gave one (which may exceed the cap on
 * purpose). The attempt count resets only through {@link Backoff#reset} or a session that
 * stayed open `stableAfter` ms ({@link Backoff#connectionEnded}). After `maxAttempts` failures
 * in a row {@link Backoff#nextDelay} returns `null` (give up).
 */
export class Backoff {
  /**
   * @param {BackoffOptions} [policy]
   * @param {() => number} [random] uniform in `[0, 1)`; default `Math.random`.
   */
  constructor(policy = {}, random = Math.random) {
    /** @type {{initial: number, factor: number, cap: number, maxAttempts: number, stableAfter: number}} */
    this.policy = {
      initial: positive(policy.initial, 250, 'backoff.initial'),
      factor: positive(policy.factor, 2, 'backoff.factor'),
      cap: positive(policy.cap, 30000, 'backoff.cap'),
      maxAttempts: policy.maxAttempts === undefined || policy.maxAttempts === null ? Infinity : positive(policy.maxAttempts, 0, 'backoff.maxAttempts'),
      stableAfter: positive(policy.stableAfter, 10000, 'backoff.stableAfter'),
    };
    this.random = random;
    /** Failures since the last reset. */
    this.attempts = 0;
  }

  /**
   * The delay before jitter after `failures` failures in a row.
   * @param {number} failures
   */
  baseDelay(failures) {
    const { initial, factor, cap } = this.policy;
    const growth = factor <= 1 ? 1 : Math.pow(factor, failures);
    return Math.min(cap, Math.floor(initial * growth));
  }

  /**
   * A connection attempt failed or a session was lost: the delay (ms) before the next attempt,
   * or `null` once `maxAttempts` failures happened in a row.
   * @param {number | null} [retryAfterMs] the server's hint; a lower bound.
   * @returns {number | null}
   */
  nextDelay(retryAfterMs = null) {
    const failures = this.attempts;
    this.attempts += 1;
    if (this.attempts >= this.policy.maxAttempts) return null;
    const base = this.baseDelay(failures);
    const r = this.random();
    const jittered = Math.min(base, Math.floor((Number.isFinite(r) && r >= 0 && r < 1 ? r : 0) * (base + 1)));
    return retryAfterMs === null || retryAfterMs === undefined ? jittered : Math.max(jittered, retryAfterMs);
  }

  /**
   * A session ended after being open `openForMs`: resets the attempt count if it was stable.
   * Call before {@link Backoff#nextDelay} for the same loss.
   * @param {number} openForMs
   */
  connectionEnded(openForMs) {
    if (openForMs >= this.policy.stableAfter) this.attempts = 0;
  }

  /** Forgets all failures. */
  reset() {
    this.attempts = 0;
  }
}

/**
 * @param {unknown} v @param {number} dflt @param {string} field
 * @returns {number}
 */
function positive(v, dflt, field) {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== 'number' || !Number.isFinite(v) || v < 0) {
    throw new ValidationError(field, `\`${field}\` must be a finite number >= 0`);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Round trips and link quality

/**
 * Smoothed round-trip time per RFC 6298 (alpha 1/8, beta 1/4) in integer microseconds, as in
 * `core/src/rtt.rs`: the first sample `r` gives `srtt = r, rttvar = r / 2`; later ones
 * `rttvar = (3 rttvar + |srtt - r|) / 4`, then `srtt = (7 srtt + r) / 8`, truncating.
 */
export class RttEstimator {
  constructor() {
    this.srttUs = 0;
    this.rttvarUs = 0;
    this.samples = 0;
  }

  /** @param {number} rttMs a measured round trip, in (fractional) milliseconds */
  sample(rttMs) {
    const r = Math.max(0, Math.floor(rttMs * 1000));
    if (this.samples === 0) {
      this.srttUs = r;
      this.rttvarUs = Math.floor(r / 2);
    } else {
      const deviation = Math.abs(this.srttUs - r);
      this.rttvarUs = Math.floor((3 * this.rttvarUs + deviation) / 4);
      this.srttUs = Math.floor((7 * this.srttUs + r) / 8);
    }
    this.samples += 1;
  }

  /** The smoothed RTT in milliseconds, or `null` before the first sample. */
  get srtt() {
    return this.samples === 0 ? null : this.srttUs / 1000;
  }

  /** The RTT variation in milliseconds, or `null` before the first sample. */
  get rttvar() {
    return this.samples === 0 ? null : this.rttvarUs / 1000;
  }
}

const LEVELS = /** @type {const} */ (['good', 'degraded', 'poor']);

/**
 * A three-level link quality with hysteresis, as in `core/src/rtt.rs`. Getting worse is
 * immediate (`srtt > degradedRtt` → at least degraded, `srtt > poorRtt` → poor; one missed pong
 * → at least degraded, `poorAfterMissed` in a row → poor); getting better needs srtt strictly
 * below `threshold * recoverPercent / 100`, so a link hovering at a threshold does not flap.
 */
export class LinkQuality {
  /** @param {QualityOptions} [config] */
  constructor(config = {}) {
    this.config = {
      degradedRtt: positive(config.degradedRtt, 300, 'quality.degradedRtt'),
      poorRtt: positive(config.poorRtt, 1000, 'quality.poorRtt'),
      recoverPercent: Math.min(100, positive(config.recoverPercent, 80, 'quality.recoverPercent')),
      poorAfterMissed: positive(config.poorAfterMissed, 2, 'quality.poorAfterMissed'),
    };
    this.rtt = new RttEstimator();
    /** @type {Quality} */
    this.level = 'good';
    /** Pongs missed in a row. */
    this.missed = 0;
  }

  /**
   * A pong arrived after `rttMs`: the new level if it changed, else `null`.
   * @param {number} rttMs
   * @returns {Quality | null}
   */
  onPong(rttMs) {
    this.missed = 0;
    this.rtt.sample(rttMs);
    const srtt = this.rtt.srttUs;
    const c = this.config;
    const worse = srtt > c.poorRtt * 1000 ? 2 : srtt > c.degradedRtt * 1000 ? 1 : 0;
    const current = LEVELS.indexOf(this.level);
    let next;
    if (worse >= current) {
      next = worse;
    } else {
      const recover = (/** @type {number} */ t) => Math.floor((t * 1000 * c.recoverPercent) / 100);
      const allowed = srtt >= recover(c.poorRtt) ? 2 : srtt >= recover(c.degradedRtt) ? 1 : 0;
      next = Math.min(current, allowed);
    }
    return this.set(LEVELS[next]);
  }

  /**
   * A ping went unanswered for a heartbeat interval: the new level if it changed, else `null`.
   * @returns {Quality | null}
   */
  onMissedPong() {
    this.missed += 1;
    const floor = this.missed >= this.config.poorAfterMissed ? 2 : 1;
    return this.set(LEVELS[Math.max(LEVELS.indexOf(this.level), floor)]);
  }

  /** @param {Quality} next */
  set(next) {
    if (next === this.level) return null;
    this.level = next;
    return next;
  }
}

// ---------------------------------------------------------------------------------------------
// Outbox

/**
 * The bounded queue of publishes awaiting acknowledgement, as in `core/src/outbox.rs`.
 *
 * Publishes get ids 1, 2, 3, ...; at most `limit` are held and a publish that does not fit is
 * refused when it is made ({@link OutboxFullError}). Only ids below the lowest unanswered id plus
 * `window` are sent (the server's deduplication window is a span of ids, so a deferred publish
 * holds the window as a sent one does). After a lost connection every sent, unanswered one is
 * sent again, in id order ({@link Outbox#requeue}).
 *
 * @template T the data kept with each publish (the client keeps the frame text and the promise)
 */
export class Outbox {
  /** @param {number} limit */
  constructor(limit) {
    this.limit = limit;
    /** @type {{id: number, data: T, state: 'unsent' | 'sent' | 'deferred', at: number}[]} */
    this.slots = [];
    this.nextId = 1;
  }

  /** Publishes held (sent or not). */
  get size() {
    return this.slots.length;
  }

  /** Publishes sent and not yet answered. */
  get inFlight() {
    return this.slots.filter((s) => s.state === 'sent').length;
  }

  /**
   * Queues a publish; returns its id.
   * @param {T} data
   * @returns {number}
   * @throws {OutboxFullError}
   */
  push(data) {
    if (this.slots.length >= this.limit) throw new OutboxFullError(this.limit);
    if (this.nextId > MAX_SAFE_INTEGER) throw new OutboxFullError(this.limit);
    const id = this.nextId++;
    this.slots.push({ id, data, state: 'unsent', at: 0 });
    return id;
  }

  /**
   * The next publish to send at `now` within `window`, marked sent; or `null`.
   * @param {number} now @param {number} window
   * @returns {{id: number, data: T} | null}
   */
  nextToSend(now, window) {
    if (this.slots.length === 0) return null;
    const limit = this.slots[0].id + window;
    for (const slot of this.slots) {
      if (slot.id >= limit) break;
      if (slot.state === 'unsent' || (slot.state === 'deferred' && slot.at <= now)) {
        slot.state = 'sent';
        return { id: slot.id, data: slot.data };
      }
    }
    return null;
  }

  /**
   * Removes publish `id` (acknowledged or refused for good); its data, or `undefined` if it was
   * not held (a repeated ack).
   * @param {number} id
   * @returns {T | undefined}
   */
  take(id) {
    const i = this.slots.findIndex((s) => s.id === id);
    if (i < 0) return undefined;
    return this.slots.splice(i, 1)[0].data;
  }

  /**
   * The server asked to send publish `id` again no earlier than `at`. Whether it was in flight.
   * @param {number} id @param {number} at
   */
  defer(id, at) {
    const slot = this.slots.find((s) => s.id === id);
    if (!slot || slot.state !== 'sent') return false;
    slot.state = 'deferred';
    slot.at = at;
    return true;
  }

  /** The connection was lost: everything sent but unanswered goes out again. */
  requeue() {
    for (const slot of this.slots) if (slot.state === 'sent') slot.state = 'unsent';
  }

  /** The earliest time a deferred publish becomes sendable, or `null`. */
  nextDeadline() {
    let at = null;
    for (const s of this.slots) if (s.state === 'deferred' && (at === null || s.at < at)) at = s.at;
    return at;
  }

  /**
   * Removes everything; returns the data of what was held, in id order.
   * @returns {T[]}
   */
  drain() {
    const all = this.slots.map((s) => s.data);
    this.slots = [];
    return all;
  }
}

// ---------------------------------------------------------------------------------------------
// Events per second

/**
 * Events per second over a sliding one-second window, counted in ten 100 ms buckets: the rate
 * is the number of events in the buckets of the last second (the current, partial bucket
 * included), so it lags real changes by at most 100 ms and needs ten numbers of memory.
 */
export class RateMeter {
  constructor() {
    this.buckets = new Array(10).fill(0);
    /** Index of the 100 ms period the last bucket counts. */
    this.period = 0;
  }

  /** @param {number} now ms */
  advance(now) {
    const period = Math.floor(now / 100);
    if (period <= this.period) return;
    const steps = Math.min(10, period - this.period);
    for (let k = 1; k <= steps; k++) this.buckets[(this.period + k) % 10] = 0;
    this.period = period;
  }

  /** @param {number} now @param {number} [n] */
  add(now, n = 1) {
    this.advance(now);
    this.buckets[this.period % 10] += n;
  }

  /** @param {number} now @returns {number} events in the last second */
  rate(now) {
    this.advance(now);
    return this.buckets.reduce((a, b) => a + b, 0);
  }
}

// ---------------------------------------------------------------------------------------------
// The client

/** How long a closing transport may take to send its last frames. */
const CLOSE_GRACE_MS = 1000;
/** How long one polling request may take at most (well beyond the server's 25 s long-poll). */
const POLL_REQUEST_TIMEOUT_MS = 60000;
/** Pongs owed to the server that are kept (the newest). */
const MAX_PONGS = 4;
/** How often the status is refreshed for `eventsPerSecond`. */
const STATUS_TICK_MS = 1000;
/** Positions are saved to the storage hook at most this often (and on close). */
const SAVE_INTERVAL_MS = 250;

/** @returns {Clock} */
function defaultClock() {
  const perf = globalThis.performance;
  return {
    now: perf && typeof perf.now === 'function' ? () => perf.now() : () => Date.now(),
    setTimeout: (fn, ms) => globalThis.setTimeout(fn, ms),
    clearTimeout: (h) => globalThis.clearTimeout(/** @type {any} */ (h)),
  };
}

/**
 * A random client id below 2^53 (from `crypto.getRandomValues` when available).
 * @param {() => number} random
 */
function randomClientId(random) {
  const c = globalThis.crypto;
  if (c && typeof c.getRandomValues === 'function') {
    const a = c.getRandomValues(new Uint32Array(2));
    return (a[0] & 0x1fffff) * 0x100000000 + a[1];
  }
  return Math.floor(random() * 0x20000000000000);
}

/**
 * A valid stored position, or `null`.
 * @param {unknown} p
 * @returns {Position | null}
 */
function storedPosition(p) {
  try {
    return checkPosition(p, 'position');
  } catch {
    return null;
  }
}

/**
 * The client: keeps a session to an eventwire server open, resumes every room after each
 * reconnect, and hands events, gaps, errors and status changes to handlers.
 *
 * It starts connecting in the microtask after construction, so handlers registered right after
 * `new Client(...)` see everything, the first status included.
 */
export class Client {
  /**
   * @param {string} url `ws://` or `wss://` URL of the server (`http(s)://` is taken for
   *   `ws(s)://`; in a browser a relative URL is resolved against the page).
   * @param {ClientOptions} [options]
   */
  constructor(url, options = {}) {
    let parsed;
    try {
      // Relative to the page in a browser; http(s) is taken for ws(s) on the same host.
      const base = globalThis.location?.href;
      parsed = base ? new URL(url, base) : new URL(url);
    } catch {
      throw new ValidationError('url', `not a URL: ${describe(url)}`);
    }
    if (parsed.protocol === 'http:') parsed.protocol = 'ws:';
    else if (parsed.protocol === 'https:') parsed.protocol = 'wss:';
    if (parsed.protocol !== 'ws:' && parsed.protocol !== 'wss:') {
      throw new ValidationError('url', 'the URL must be ws://, wss://, http:// or https://');
    }
    /** @private */ this._url = parsed.href;
    const o = options ?? {};
    /** @private */ this._clock = o.clock ?? defaultClock();
    /** @private */ this._random = o.random ?? Math.random;
    /** @private */ this._WebSocket = o.WebSocket ?? globalThis.WebSocket;
    /** @private */ this._fetch = o.fetch ?? (typeof globalThis.fetch === 'function' ? globalThis.fetch.bind(globalThis) : undefined);
    const transports = o.transports ?? 'auto';
    if (!['auto', 'websocket', 'polling'].includes(transports)) {
      throw new ValidationError('transports', "`transports` must be 'auto', 'websocket' or 'polling'");
    }
    if (transports === 'websocket' && typeof this._WebSocket !== 'function') {
      throw new ValidationError('WebSocket', 'no WebSocket constructor: pass options.WebSocket');
    }
    if (transports === 'polling' && typeof this._fetch !== 'function') {
      throw new ValidationError('fetch', 'no fetch function: pass options.fetch');
    }
    /** @private */ this._transports = transports;
    let pollUrl = o.pollUrl;
    if (pollUrl === undefined) {
      const p = new URL(parsed.href);
      p.protocol = parsed.protocol === 'wss:' ? 'https:' : 'http:';
      p.pathname = '/eventwire/poll';
      p.search = '';
      p.hash = '';
      pollUrl = p.href;
    } else {
      try {
        pollUrl = new URL(pollUrl).href;
      } catch {
        throw new ValidationError('pollUrl', `not a URL: ${describe(pollUrl)}`);
      }
    }
    /** @private */ this._pollUrl = pollUrl;
    /** @private */ this._token = o.token === undefined || o.token === null ? null : checkToken(o.token, 'token');
    /** @private */ this._clientId = o.clientId === undefined ? randomClientId(this._random) : checkInt(o.clientId, MAX_SAFE_INTEGER, 'clientId');
    /** @private */ this._fallbackAfter = Math.max(1, Math.floor(positive(o.fallbackAfter, 3, 'fallbackAfter')));
    /** @private */ this._upgradeInterval = positive(o.upgradeInterval, 30000, 'upgradeInterval');
    /** @private */ this._connectTimeout = positive(o.connectTimeout, 10000, 'connectTimeout');
    /** @private */ this._maxFrame = checkInt(o.maxFrame ?? 65536, U32, 'maxFrame');
    /** @private */ this._maxBatch = Math.max(1, checkInt(o.maxBatch ?? 50, U16, 'maxBatch'));
    /** @private */ this._maxRooms = Math.max(1, checkInt(o.maxRooms ?? 1024, MAX_SAFE_INTEGER, 'maxRooms'));
    /** @private */ this._maxQueued = Math.max(MAX_POLL_FRAMES, checkInt(o.maxQueued ?? 1024, MAX_SAFE_INTEGER, 'maxQueued'));
    /** @private */ this._publishWindow = Math.max(1, checkInt(o.publishWindow ?? 32, U16, 'publishWindow'));
    /** @private */ this._deadAfter = Math.max(1, checkInt(o.deadAfter ?? 3, U16, 'deadAfter'));
    /** @private */ this._backoff = new Backoff(o.backoff ?? {}, this._random);
    /** @private */ this._quality = new LinkQuality(o.quality ?? {});
    /** @private @type {Outbox<PendingPublish>} */ this._outbox = new Outbox(Math.max(1, checkInt(o.outboxLimit ?? 256, MAX_SAFE_INTEGER, 'outboxLimit')));
    /** @private */ this._storage = o.storage ?? null;
    if (this._storage !== null && (typeof this._storage.load !== 'function' || typeof this._storage.save !== 'function')) {
      throw new ValidationError('storage', '`storage` must be {load(), save(positions)}');
    }

    /** @private @type {Map<string, Sub>} */ this._subs = new Map();
    /** @private @type {Map<string, Set<EventHandler>>} */ this._handlers = new Map();
    /** @private @type {Map<string, Map<string, Set<EventHandler>>>} */ this._roomHandlers = new Map();
    /** @private @type {Set<(gap: Gap) => void>} */ this._gapHandlers = new Set();
    /** @private @type {Set<(status: Status) => void>} */ this._statusHandlers = new Set();
    /** @private @type {Set<(error: ErrorReport) => void>} */ this._errorHandlers = new Set();
    /** @private @type {Map<string, RoomHandle>} */ this._rooms = new Map();

    /** @private @type {'idle' | 'connecting' | 'handshaking' | 'open' | 'backoff' | 'closed'} */
    this._state = 'idle';
    /** @private @type {Conn | null} */ this._conn = null;
    /** @private @type {Record<string, unknown>} */ this._timers = {};
    /** @private */ this._wsFailures = 0;
    /** @private */ this._everOpen = false;
    /** @private */ this._openedAt = 0;
    /** @private @type {number | null} */ this._serverMaxFrame = null;
    /** @private */ this._heartbeatMs = 15000;
    /** @private @type {number[]} */ this._pongs = [];
    /** @private */ this._pingDue = false;
    /** @private @type {{nonce: number, sent: number} | null} */ this._outstandingPing = null;
    /** @private */ this._nextNonce = 1;
    /** @private @type {WebSocketLike | null} */ this._probe = null;
    /** @private */ this._rate = new RateMeter();
    /** @private */ this._dirty = false;
    /** @private */ this._stats = { events: 0, duplicates: 0, gaps: 0, sessions: 0 };

    /** @private @type {Record<string, Position>} */
    this._stored = {};
    if (this._storage) {
      try {
        const loaded = this._storage.load();
        if (loaded && typeof loaded === 'object') {
          for (const [room, p] of Object.entries(loaded)) {
            const pos = storedPosition(p);
            if (isValidName(room) && pos) this._stored[room] = pos;
          }
        }
      } catch (e) {
        this._report({ code: 0, name: 'STORAGE_FAILED', reason: `storage.load failed: ${errorText(e)}`, error: e });
      }
    }

    /** @private @type {Status} */
    this._status = Object.freeze({
      state: 'connecting',
      transport: null,
      rtt: null,
      quality: 'good',
      eventsPerSecond: 0,
      attempt: 0,
      retryInMs: null,
      lastClose: null,
    });

    const rooms = o.rooms ?? [];
    if (Array.isArray(rooms)) {
      for (const room of rooms) this.subscribe(room);
    } else if (typeof rooms === 'object') {
      for (const [room, from] of Object.entries(rooms)) this.subscribe(room, from ?? undefined);
    } else {
      throw new ValidationError('rooms', '`rooms` must be an array of names or an object of positions');
    }

    queueMicrotask(() => {
      if (this._state === 'idle') {
        this._startConnect();
        this._arm('tick', STATUS_TICK_MS, () => this._tick());
      }
    });
  }

  // ---- getters

  /** The latest status object (frozen; a new object on each change). @returns {Status} */
  get status() {
    return this._status;
  }

  /** The client id sent in every hello. */
  get clientId() {
    return this._clientId;
  }

  /** Counters: events delivered, replay duplicates dropped, gaps, sessions opened. */
  stats() {
    return { ...this._stats, outbox: this._outbox.size };
  }

  /**
   * The last position delivered in each room held (rooms without one yet are left out).
   * @returns {Record<string, Position>}
   */
  positions() {
    /** @type {Record<string, Position>} */
    const out = {};
    for (const [room, sub] of this._subs) {
      if (!sub.leaving && sub.last) out[room] = { epoch: sub.last.epoch, offset: sub.last.offset };
    }
    return out;
  }

  // ---- handlers

  /**
   * Calls `handler(payload, event)` for every event of `kind` (`'*'`: every event) in every room.
   * @param {string} kind
   * @param {EventHandler} handler
   * @returns {() => void} removes the handler
   */
  on(kind, handler) {
    return addHandler(this._handlers, kind, handler);
  }

  /**
   * A handle on one room; subscribes to it (at the stored position or the live head) if the
   * client does not hold it.
   * @param {string} name
   * @returns {RoomHandle}
   */
  room(name) {
    checkName(name, 'room');
    if (!this._subs.has(name) || this._subs.get(name)?.leaving) this.subscribe(name);
    let handle = this._rooms.get(name);
    if (!handle) {
      handle = new RoomHandle(this, name);
      this._rooms.set(name, handle);
    }
    return handle;
  }

  /**
   * Calls `handler(gap)` when events of a room will not be delivered.
   * @param {(gap: Gap) => void} handler
   * @returns {() => void}
   */
  onGap(handler) {
    return addSimple(this._gapHandlers, handler);
  }

  /**
   * Calls `handler(status)` on every status change.
   * @param {(status: Status) => void} handler
   * @returns {() => void}
   */
  onStatus(handler) {
    return addSimple(this._statusHandlers, handler);
  }

  /**
   * Calls `handler(error)` for error frames and publish refusals from the server, and for
   * client-side failures (code 0: a handler threw, the storage hook failed).
   * @param {(error: ErrorReport) => void} handler
   * @returns {() => void}
   */
  onError(handler) {
    return addSimple(this._errorHandlers, handler);
  }

  // ---- commands

  /**
   * Joins `room`, resuming after `from` (else after the stored position, else at the live head).
   * Joining a room already held keeps its position. Sent at once when a session is open, else
   * with the next hello.
   * @param {string} room
   * @param {Position | null} [from]
   * @throws {ValidationError | TooManyRoomsError | ClientClosedError}
   */
  subscribe(room, from) {
    checkName(room, 'room');
    const pos = from === undefined || from === null ? null : checkPosition(from, 'from');
    if (this._state === 'closed') throw new ClientClosedError();
    const sub = this._subs.get(room);
    if (sub) {
      if (sub.leaving) {
        sub.leaving = false;
        if (sub.state === 'active') sub.state = 'pending';
      } else if (pos && sub.state === 'pending') {
        sub.last = pos;
      }
    } else {
      if (this._subs.size >= this._maxRooms) throw new TooManyRoomsError(this._maxRooms);
      this._subs.set(room, { last: pos ?? this._stored[room] ?? null, state: 'pending', leaving: false });
    }
    this._pump();
  }

  /**
   * Leaves `room`: nothing more of it is delivered. Returns whether it was held.
   * @param {string} room
   * @returns {boolean}
   */
  unsubscribe(room) {
    checkName(room, 'room');
    const sub = this._subs.get(room);
    if (!sub || sub.leaving) return false;
    if (sub.state === 'pending') this._subs.delete(room);
    else sub.leaving = true;
    this._markDirty();
    this._pump();
    return true;
  }

  /**
   * Publishes an event upstream. Resolves with the position it landed at (on `publish_ack`),
   * exactly once per call even across reconnects.
   *
   * Throws at once (synchronously) a {@link ValidationError} for an invalid room or kind or a
   * payload that is not JSON. Returns a promise that rejects at once with
   * {@link OutboxFullError} (outbox full), {@link FrameTooLargeError} (the frame would exceed the
   * server's `max_frame`, or the client's `maxFrame` before any welcome) or
   * {@link ClientClosedError}; and later with {@link PublishRejectedError} when the server
   * refuses it for good, or {@link ClientClosedError} if the client closes first.
   * @param {string} room
   * @param {string} kind
   * @param {unknown} payload any JSON value
   * @returns {Promise<Position>}
   */
  publish(room, kind, payload) {
    checkName(room, 'room');
    checkName(kind, 'kind');
    const payloadText = ePayload({ payload });
    if (this._state === 'closed') return Promise.reject(new ClientClosedError());
    const limit = this._serverMaxFrame ?? this._maxFrame;
    const size = utf8Length(`{"publish":{"room":"${room}","id":${MAX_SAFE_INTEGER},"kind":"${kind}","payload":${payloadText}}}`);
    if (size > limit) return Promise.reject(new FrameTooLargeError(size, limit));
    /** @type {(p: Position) => void} */
    let resolve = () => {};
    /** @type {(e: Error) => void} */
    let reject = () => {};
    /** @type {Promise<Position>} */
    const promise = new Promise((res, rej) => {
      resolve = res;
      reject = rej;
    });
    try {
      this._outbox.push({ room, kind, payloadText, size, resolve, reject });
    } catch (e) {
      return Promise.reject(e);
    }
    this._pump();
    return promise;
  }

  /**
   * Ends the session for good: sends close 1000, stops reconnecting, rejects pending publishes
   * with {@link ClientClosedError}, saves positions to the storage hook. State `closed`.
   */
  close() {
    if (this._state === 'closed') return;
    if (this._state === 'handshaking' || this._state === 'open') {
      this._sendFrame({ type: 'close', code: CloseCode.NORMAL, retry_after_ms: null, reason: '' });
    }
    this._detach(CloseCode.NORMAL);
    this._enterClosed(CloseCode.NORMAL, 'closed by the client');
  }

  // ---- the machine (private)

  /** @private @param {string} name @param {number} ms @param {() => void} fn */
  _arm(name, ms, fn) {
    this._disarm(name);
    this._timers[name] = this._clock.setTimeout(() => {
      delete this._timers[name];
      fn();
    }, Math.max(0, ms));
  }

  /** @private @param {string} name */
  _disarm(name) {
    if (name in this._timers) {
      this._clock.clearTimeout(this._timers[name]);
      delete this._timers[name];
    }
  }

  /** @private */
  _usePolling() {
    if (this._transports === 'polling') return true;
    if (this._transports === 'websocket') return false;
    if (typeof this._fetch !== 'function') return false;
    return typeof this._WebSocket !== 'function' || this._wsFailures >= this._fallbackAfter;
  }

  /** @private */
  _startConnect() {
    if (this._state === 'closed') return;
    this._state = 'connecting';
    this._arm('connect', this._connectTimeout, () => this._connectTimedOut());
    this._setStatus({
      state: this._everOpen ? 'reconnecting' : 'connecting',
      attempt: this._backoff.attempts,
      retryInMs: null,
    });
    if (this._usePolling()) {
      const conn = new PollConn(this);
      this._conn = conn;
      if (this._transports === 'auto' && typeof this._WebSocket === 'function' && !('probe' in this._timers) && !this._probe) {
        this._arm('probe', this._upgradeInterval, () => this._startProbe());
      }
      this._setStatus({ transport: 'polling' });
      this._connected();
    } else {
      this._openWebSocket();
    }
  }

  /** @private */
  _openWebSocket() {
    /** @type {WebSocketLike} */
    let ws;
    try {
      ws = new /** @type {any} */ (this._WebSocket)(this._url, [SUBPROTOCOL]);
    } catch (e) {
      this._wsFailures += 1;
      this._lost(null, null, '');
      return;
    }
    /** @type {WsConn} */
    const conn = { kind: 'websocket', ws, open: false };
    this._conn = conn;
    try {
      ws.binaryType = 'arraybuffer';
    } catch {
      // Not every implementation lets it be set; binary messages are refused either way.
    }
    ws.onopen = () => {
      if (this._conn !== conn) return;
      if (ws.protocol !== SUBPROTOCOL) {
        // The server picked no subprotocol (or another one): a failed attempt.
        this._wsFailures += 1;
        this._conn = null;
        safeClose(ws, CloseCode.NORMAL);
        this._lost(null, null, '');
        return;
      }
      conn.open = true;
      this._wsFailures = 0;
      this._disarm('probe');
      this._setStatus({ transport: 'websocket' });
      this._connected();
    };
    ws.onmessage = (/** @type {{data: unknown}} */ ev) => {
      if (this._conn !== conn) return;
      this._onMessage(ev.data);
    };
    /** The socket ended (close event, or an error: some implementations fire no close after it). */
    const ended = (/** @type {number} */ code, /** @type {string} */ reason) => {
      if (this._conn !== conn) return;
      this._conn = null;
      if (!conn.open) this._wsFailures += 1;
      const known = conn.open && code !== 1005 && code !== 1006;
      if (known && !shouldReconnect(code)) {
        // A fatal code without an eventwire close frame before it: the same table applies.
        this._enterClosed(code, reason);
        return;
      }
      this._lost(null, known ? code : null, reason);
    };
    ws.onclose = (/** @type {{code?: number, reason?: string}} */ ev) => {
      ended(typeof ev?.code === 'number' ? ev.code : 1006, typeof ev?.reason === 'string' ? ev.reason : '');
    };
    ws.onerror = () => {
      // Browsers fire a close event after every error; Node's WebSocket (undici, Node 20) fires
      // none after a refused upgrade. Either way the connection is over.
      if (this._conn !== conn) return;
      ended(1006, '');
      // After `ended` (closing may fire another error synchronously).
      safeClose(ws, CloseCode.NORMAL);
    };
  }

  /** @private The transport is open: say hello. */
  _connected() {
    if (this._state !== 'connecting') return;
    this._state = 'handshaking';
    /** @type {{room: string, from: Position | null}[]} */
    const rooms = [];
    for (const [room, sub] of this._subs) {
      if (rooms.length < MAX_HELLO_ROOMS) {
        sub.state = 'requested';
        rooms.push({ room, from: sub.last });
      } else {
        sub.state = 'pending';
      }
    }
    this._sendFrame({
      type: 'hello',
      version: PROTOCOL_VERSION,
      client_id: this._clientId,
      token: this._token,
      max_frame: this._maxFrame,
      max_batch: this._maxBatch,
      rooms,
    });
    this._flushConn();
  }

  /** @private */
  _connectTimedOut() {
    if (this._state === 'connecting') {
      if (this._conn && this._conn.kind === 'websocket') this._wsFailures += 1;
      this._detach(CloseCode.HANDSHAKE_TIMEOUT);
      this._lost(null, CloseCode.HANDSHAKE_TIMEOUT, 'connect timeout');
    } else if (this._state === 'handshaking') {
      this._fail(CloseCode.HANDSHAKE_TIMEOUT, 'no welcome in time');
    }
  }

  /**
   * One message of the current transport.
   * @private @param {unknown} data
   */
  _onMessage(data) {
    if (typeof data !== 'string') {
      this._fail(CloseCode.UNSUPPORTED_DATA, 'binary message on the JSON subprotocol');
      return;
    }
    this._onText(data);
    this._pump();
  }

  /**
   * One frame's text, from a WebSocket message or a polling response.
   * @private @param {string} text
   */
  _onText(text) {
    if (this._state !== 'handshaking' && this._state !== 'open') return;
    /** @type {Frame} */
    let frame;
    try {
      frame = decodeFrame(text, { maxFrame: this._maxFrame });
    } catch (e) {
      const code = e instanceof ProtocolError ? e.closeCode : CloseCode.PROTOCOL_ERROR;
      this._fail(code, code === CloseCode.MESSAGE_TOO_BIG ? 'message too big' : 'undecodable frame');
      return;
    }
    this._armDeadLink();
    this._handleFrame(frame);
  }

  /** @private */
  _armDeadLink() {
    if (this._state === 'open') {
      this._arm('deadLink', this._heartbeatMs * this._deadAfter, () => {
        if (this._state === 'open') this._fail(CloseCode.HEARTBEAT_TIMEOUT, 'heartbeat timeout');
      });
    }
  }

  /** @private @param {Frame} f */
  _handleFrame(f) {
    if (f.type === 'unknown') return;
    if (f.type === 'close') {
      this._handleClose(f);
      return;
    }
    if (f.type === 'ping') {
      if (this._pongs.length >= MAX_PONGS) this._pongs.shift();
      this._pongs.push(f.nonce);
      return;
    }
    if (this._state === 'handshaking') {
      if (f.type === 'welcome') this._handleWelcome(f);
      else this._fail(CloseCode.PROTOCOL_ERROR, 'expected a welcome');
      return;
    }
    switch (f.type) {
      case 'pong':
        if (this._outstandingPing && this._outstandingPing.nonce === f.nonce) {
          const rtt = this._clock.now() - this._outstandingPing.sent;
          this._outstandingPing = null;
          const changed = this._quality.onPong(rtt);
          this._setStatus({ rtt: this._quality.rtt.srtt, ...(changed ? { quality: changed } : {}) });
        }
        return;
      case 'event':
        this._deliver(f.room, f.position, f.kind, f.payload);
        return;
      case 'batch':
        for (const e of f.events) {
          if (!this._deliver(f.room, { epoch: f.epoch, offset: e.offset }, e.kind, e.payload)) return;
        }
        return;
      case 'subscribed': {
        const sub = this._subs.get(f.room);
        if (sub && sub.state === 'requested') {
          sub.state = 'active';
          sub.last = resumePoint(sub.last, f.position);
          this._markDirty();
        }
        return;
      }
      case 'gap': {
        const sub = this._subs.get(f.room);
        if (sub && sub.state === 'active') {
          sub.last = 'range' in f.missed
            ? resumePoint(sub.last, { epoch: f.missed.range.epoch, offset: f.missed.range.last })
            : { ...f.missed.reset.position };
          this._markDirty();
          if (!sub.leaving) {
            this._stats.gaps += 1;
            const gap = { room: f.room, missed: f.missed };
            for (const h of [...this._gapHandlers]) this._call(h, gap);
          }
        }
        return;
      }
      case 'publish_ack': {
        const p = this._outbox.take(f.id);
        if (p) p.resolve({ epoch: f.position.epoch, offset: f.position.offset });
        return;
      }
      case 'error':
        this._handleError(f);
        return;
      default:
        this._fail(CloseCode.PROTOCOL_ERROR, 'unexpected frame');
    }
  }

  /** @private @param {WelcomeFrame} w */
  _handleWelcome(w) {
    if (w.version === 0 || w.version > PROTOCOL_VERSION) {
      this._sendFrame({ type: 'close', code: CloseCode.UNSUPPORTED_VERSION, retry_after_ms: null, reason: '' });
      this._detach(CloseCode.UNSUPPORTED_VERSION);
      this._enterClosed(CloseCode.UNSUPPORTED_VERSION, 'unsupported version');
      return;
    }
    this._state = 'open';
    this._everOpen = true;
    this._openedAt = this._clock.now();
    this._stats.sessions += 1;
    this._serverMaxFrame = w.max_frame;
    this._heartbeatMs = Math.max(10, w.heartbeat_ms);
    this._disarm('connect');
    this._armHeartbeat();
    this._armDeadLink();
    this._setStatus({ state: 'connected', attempt: this._backoff.attempts, retryInMs: null });
  }

  /** @private */
  _armHeartbeat() {
    this._arm('heartbeat', this._heartbeatMs, () => {
      if (this._state !== 'open') return;
      if (this._outstandingPing) {
        this._outstandingPing = null;
        const changed = this._quality.onMissedPong();
        if (changed) this._setStatus({ quality: changed });
      }
      this._pingDue = true;
      this._armHeartbeat();
      this._pump();
    });
  }

  /**
   * Delivers one event if it is new; false if the connection was failed instead.
   * @private
   * @param {string} room @param {Position} position @param {string} kind @param {unknown} payload
   */
  _deliver(room, position, kind, payload) {
    const sub = this._subs.get(room);
    // Left, or not answered yet: these belong to an earlier subscription.
    if (!sub || sub.state !== 'active') return true;
    const last = sub.last;
    if (last && last.epoch === position.epoch && position.offset <= last.offset) {
      this._stats.duplicates += 1;
      return true;
    }
    if (last && last.epoch !== position.epoch) {
      // A new epoch must be announced by a reset gap first: resume instead of hiding a loss.
      this._fail(CloseCode.PROTOCOL_ERROR, 'event of an unannounced epoch');
      return false;
    }
    sub.last = { epoch: position.epoch, offset: position.offset };
    this._markDirty();
    if (sub.leaving) return true;
    this._stats.events += 1;
    this._rate.add(this._clock.now());
    const event = { room, kind, payload, position: { epoch: position.epoch, offset: position.offset } };
    for (const map of [this._handlers, this._roomHandlers.get(room)]) {
      if (!map) continue;
      for (const key of [kind, '*']) {
        const set = map.get(key);
        if (set) for (const h of [...set]) this._call(h, payload, event);
      }
    }
    return true;
  }

  /** @private @param {ErrorFrame} e */
  _handleError(e) {
    const name = errorName(e.code);
    if (e.id !== null && e.code === ErrorCode.RATE_LIMITED) {
      const at = this._clock.now() + (e.retry_after_ms ?? 1000);
      if (this._outbox.defer(e.id, at)) this._armOutbox();
      return;
    }
    if (e.id !== null) {
      const p = this._outbox.take(e.id);
      if (p) {
        p.reject(new PublishRejectedError(e.id, e.code, e.reason));
        this._report({ code: e.code, name, reason: e.reason, room: p.room, id: e.id });
      }
      return;
    }
    if (e.room !== null && JOIN_REFUSALS.has(e.code)) {
      const sub = this._subs.get(e.room);
      if (sub && sub.state === 'requested') {
        this._subs.delete(e.room);
        if (!sub.leaving) this._report({ code: e.code, name, reason: e.reason, room: e.room });
      }
      return;
    }
    /** @type {ErrorReport} */
    const report = { code: e.code, name, reason: e.reason };
    if (e.room !== null) report.room = e.room;
    this._report(report);
  }

  /** @private */
  _armOutbox() {
    const at = this._outbox.nextDeadline();
    if (at === null) {
      this._disarm('outbox');
      return;
    }
    this._arm('outbox', at - this._clock.now(), () => this._pump());
  }

  /** @private @param {CloseFrame} c */
  _handleClose(c) {
    this._detach(c.code);
    if (shouldReconnect(c.code)) this._lost(c.retry_after_ms, c.code, c.reason);
    else this._enterClosed(c.code, c.reason);
  }

  /**
   * This side ends the connection with `code` (sent in a close frame first) and reconnects.
   * @private @param {number} code @param {string} reason
   */
  _fail(code, reason) {
    if (this._state === 'handshaking' || this._state === 'open') {
      this._sendFrame({ type: 'close', code, retry_after_ms: null, reason });
    }
    this._detach(code);
    this._lost(null, code, reason);
  }

  /**
   * Lets go of the current transport: a WebSocket is closed with `code` (or 1000 where a
   * browser cannot send it); a polling session sends what it queued (a close frame) in a last
   * request.
   * @private @param {number} code
   */
  _detach(code) {
    const conn = this._conn;
    this._conn = null;
    if (!conn) return;
    if (conn.kind === 'websocket') safeClose(conn.ws, code);
    else conn.end();
  }

  /**
   * The connection was lost or failed: back off and reconnect (or give up).
   * @private
   * @param {number | null} retryAfterMs @param {number | null} code @param {string} reason
   */
  _lost(retryAfterMs, code, reason) {
    switch (this._state) {
      case 'connecting':
      case 'handshaking':
        break;
      case 'open':
        this._backoff.connectionEnded(this._clock.now() - this._openedAt);
        break;
      default:
        return;
    }
    this._conn = null;
    this._resetSession();
    const delay = this._backoff.nextDelay(retryAfterMs);
    if (delay === null) {
      this._enterClosed(null, 'attempts exhausted');
      return;
    }
    this._state = 'backoff';
    this._arm('reconnect', delay, () => {
      if (this._state === 'backoff') this._startConnect();
    });
    /** @type {Partial<Status>} */
    const patch = { state: this._everOpen ? 'reconnecting' : 'connecting', attempt: this._backoff.attempts, retryInMs: delay };
    if (code !== null) patch.lastClose = { code, reason };
    this._setStatus(patch);
  }

  /** @private */
  _resetSession() {
    for (const t of ['connect', 'heartbeat', 'deadLink', 'outbox']) this._disarm(t);
    this._outbox.requeue();
    for (const [room, sub] of [...this._subs]) {
      if (sub.leaving) this._subs.delete(room);
      else sub.state = 'pending';
    }
    this._pongs = [];
    this._pingDue = false;
    this._outstandingPing = null;
  }

  /**
   * @private @param {number | null} code @param {string} reason
   */
  _enterClosed(code, reason) {
    if (this._state === 'closed') return;
    this._resetSession();
    this._state = 'closed';
    for (const t of Object.keys(this._timers)) this._disarm(t);
    if (this._probe) {
      safeClose(this._probe, CloseCode.NORMAL);
      this._probe = null;
    }
    for (const p of this._outbox.drain()) p.reject(new ClientClosedError());
    this._save();
    /** @type {Partial<Status>} */
    const patch = { state: 'closed', retryInMs: null, eventsPerSecond: 0 };
    if (code !== null) patch.lastClose = { code, reason };
    this._setStatus(patch);
  }

  /**
   * Sends what the session has to send, in the machine's order: pongs, a due ping,
   * unsubscribes, subscribes, publishes within the window.
   * @private
   */
  _pump() {
    if (this._state !== 'open' || !this._conn) return;
    while (this._pongs.length > 0) {
      this._sendFrame({ type: 'pong', nonce: /** @type {number} */ (this._pongs.shift()) });
    }
    if (this._pingDue) {
      this._pingDue = false;
      const nonce = this._nextNonce;
      this._nextNonce = this._nextNonce >= MAX_SAFE_INTEGER ? 1 : this._nextNonce + 1;
      this._outstandingPing = { nonce, sent: this._clock.now() };
      this._sendFrame({ type: 'ping', nonce });
    }
    for (const [room, sub] of [...this._subs]) {
      if (this._state !== 'open') return;
      if (sub.leaving && sub.state === 'active') {
        this._subs.delete(room);
        this._sendFrame({ type: 'unsubscribe', room });
      } else if (sub.state === 'pending') {
        sub.state = 'requested';
        this._sendFrame({ type: 'subscribe', room, from: sub.last });
      }
    }
    const now = this._clock.now();
    for (;;) {
      if (this._state !== 'open') return;
      const next = this._outbox.nextToSend(now, this._publishWindow);
      if (!next) break;
      const p = next.data;
      const limit = this._serverMaxFrame ?? this._maxFrame;
      if (p.size > limit) {
        // Queued before this server's welcome, whose max_frame is smaller: sending it would
        // get the connection closed with 1009 after every reconnect. Refused instead.
        this._outbox.take(next.id);
        p.reject(new FrameTooLargeError(p.size, limit));
        continue;
      }
      this._sendFrame({ type: 'publish', room: p.room, id: next.id, kind: p.kind, payload: null, payloadText: p.payloadText });
    }
    this._armOutbox();
    this._flushConn();
  }

  /** @private */
  _flushConn() {
    const conn = this._conn;
    if (conn && conn.kind === 'polling') conn.flush();
  }

  /**
   * Encodes and sends (or, polling, queues) one frame.
   * @private @param {Frame} frame
   */
  _sendFrame(frame) {
    const conn = this._conn;
    if (!conn) return;
    const text = encodeFrame(frame);
    if (conn.kind === 'websocket') {
      try {
        conn.ws.send(text);
      } catch {
        // The socket is closing; its close event reports the loss.
      }
    } else {
      conn.queue(text);
    }
  }

  // ---- polling (private)

  /**
   * A response of polling session `conn` (handled in request order).
   * @private @param {PollConn} conn @param {PollReply} reply
   */
  _onPollReply(conn, reply) {
    if (this._conn !== conn) return;
    if (reply.error !== undefined || reply.status !== 200) {
      const retry = reply.status === 503 && reply.retryAfter !== null ? reply.retryAfter * 1000 : null;
      this._pollLost(retry);
      return;
    }
    if (reply.token) conn.token = reply.token;
    /** @type {string[]} */
    let texts;
    try {
      texts = splitArray(reply.text ?? '');
    } catch {
      this._pollLost(null);
      return;
    }
    if (!conn.token) {
      // No session without a token (cross-origin, the server must expose the header with
      // Access-Control-Expose-Headers). A server refusing the session (at capacity) answers
      // with a close frame and no token: that close is honoured, retry-after included.
      for (const text of texts) {
        let frame = null;
        try {
          frame = decodeFrame(text, { maxFrame: this._maxFrame });
        } catch {
          break;
        }
        if (frame.type === 'close') {
          this._handleClose(frame);
          return;
        }
      }
      this._pollLost(null);
      return;
    }
    for (const text of texts) {
      if (this._conn !== conn) return;
      this._onText(text);
    }
    if (this._conn !== conn) return;
    this._pump();
    conn.flush();
  }

  /** @private @param {number | null} retryAfterMs */
  _pollLost(retryAfterMs) {
    const conn = this._conn;
    this._conn = null;
    if (conn && conn.kind === 'polling') conn.abort();
    this._lost(retryAfterMs, null, '');
  }

  /** @private A WebSocket attempt in the background while polling. */
  _startProbe() {
    if (this._state === 'closed' || this._probe) return;
    /** @type {WebSocketLike} */
    let ws;
    const retry = () => {
      this._probe = null;
      this._disarm('probeTimeout');
      if (this._state !== 'closed' && this._wsFailures >= this._fallbackAfter) {
        this._arm('probe', this._upgradeInterval, () => this._startProbe());
      }
    };
    try {
      ws = new /** @type {any} */ (this._WebSocket)(this._url, [SUBPROTOCOL]);
    } catch {
      retry();
      return;
    }
    this._probe = ws;
    this._arm('probeTimeout', this._connectTimeout, () => {
      if (this._probe === ws) {
        safeClose(ws, CloseCode.NORMAL);
        retry();
      }
    });
    ws.onopen = () => {
      if (this._probe !== ws) return;
      this._probe = null;
      this._disarm('probeTimeout');
      safeClose(ws, CloseCode.NORMAL);
      if (ws.protocol !== SUBPROTOCOL) {
        retry();
        return;
      }
      this._upgrade();
    };
    ws.onclose = () => {
      if (this._probe === ws) retry();
    };
    ws.onerror = () => {
      if (this._probe !== ws) return;
      retry();
      safeClose(ws, CloseCode.NORMAL);
    };
    ws.onmessage = () => {};
  }

  /**
   * A WebSocket opens again: leave polling. The session (if any) is ended with close 1000 and
   * the client reconnects at once over WebSocket with resume. A voluntary switch is no failure:
   * it adds no backoff attempt.
   * @private
   */
  _upgrade() {
    this._wsFailures = 0;
    if (this._state === 'closed') return;
    const conn = this._conn;
    if (!conn || conn.kind !== 'polling') return;
    if (this._state === 'handshaking' || this._state === 'open') {
      this._sendFrame({ type: 'close', code: CloseCode.NORMAL, retry_after_ms: null, reason: 'upgrading to WebSocket' });
    }
    if (this._state === 'open') this._backoff.connectionEnded(this._clock.now() - this._openedAt);
    this._detach(CloseCode.NORMAL);
    this._resetSession();
    this._disarm('reconnect');
    this._startConnect();
  }

  // ---- reporting (private)

  /** @private @param {Partial<Status>} patch */
  _setStatus(patch) {
    const next = { ...this._status, ...patch };
    let changed = false;
    for (const k of /** @type {(keyof Status)[]} */ (Object.keys(next))) {
      const a = next[k];
      const b = this._status[k];
      if (a !== b && !(a && b && typeof a === 'object' && JSON.stringify(a) === JSON.stringify(b))) changed = true;
    }
    if (!changed) return;
    this._status = Object.freeze(next);
    for (const h of [...this._statusHandlers]) this._call(h, this._status);
  }

  /** @private */
  _tick() {
    if (this._state === 'closed') return;
    this._setStatus({ eventsPerSecond: this._rate.rate(this._clock.now()) });
    this._arm('tick', STATUS_TICK_MS, () => this._tick());
  }

  /** @private @param {ErrorReport} report */
  _report(report) {
    if (this._errorHandlers.size === 0) {
      if (report.code === 0 && typeof console !== 'undefined') console.error('eventwire:', report.reason, report.error ?? '');
      return;
    }
    for (const h of [...this._errorHandlers]) {
      try {
        h(report);
      } catch (e) {
        if (typeof console !== 'undefined') console.error('eventwire: an onError handler threw', e);
      }
    }
  }

  /**
   * Calls an application handler; what it throws is reported, never breaks the client.
   * @private @param {Function} h @param {...unknown} args
   */
  _call(h, ...args) {
    try {
      h(...args);
    } catch (e) {
      this._report({ code: 0, name: 'HANDLER_FAILED', reason: `a handler threw: ${errorText(e)}`, error: e });
    }
  }

  /** @private */
  _markDirty() {
    if (!this._storage) return;
    this._dirty = true;
    if (!('save' in this._timers)) this._arm('save', SAVE_INTERVAL_MS, () => this._save());
  }

  /** @private */
  _save() {
    this._disarm('save');
    if (!this._storage || !this._dirty) return;
    this._dirty = false;
    try {
      this._storage.save(this.positions());
    } catch (e) {
      this._report({ code: 0, name: 'STORAGE_FAILED', reason: `storage.save failed: ${errorText(e)}`, error: e });
    }
  }
}

/**
 * Where a room's delivery continues after a join answer or a range gap at `to`, given the last
 * position held: never back within its epoch, never to another epoch (only a reset gap does).
 * @param {Position | null} last @param {Position} to
 * @returns {Position}
 */
function resumePoint(last, to) {
  if (last && (last.epoch !== to.epoch || last.offset > to.offset)) return last;
  return { epoch: to.epoch, offset: to.offset };
}

/** @param {unknown} e */
function errorText(e) {
  return e instanceof Error ? e.message : String(e);
}

/**
 * @param {WebSocketLike} ws @param {number} code
 */
function safeClose(ws, code) {
  try {
    ws.close(wsCloseCode(code));
  } catch {
    // Already closed, or still connecting in an implementation that refuses: nothing to do.
  }
}

/**
 * @param {Map<string, Set<EventHandler>>} map @param {string} kind @param {EventHandler} handler
 */
function addHandler(map, kind, handler) {
  if (kind !== '*') checkName(kind, 'kind');
  if (typeof handler !== 'function') throw new ValidationError('handler', 'a handler must be a function');
  let set = map.get(kind);
  if (!set) {
    set = new Set();
    map.set(kind, set);
  }
  set.add(handler);
  return () => {
    const s = map.get(kind);
    if (s) {
      s.delete(handler);
      if (s.size === 0) map.delete(kind);
    }
  };
}

/**
 * @template T
 * @param {Set<T>} set @param {T} handler
 */
function addSimple(set, handler) {
  if (typeof handler !== 'function') throw new ValidationError('handler', 'a handler must be a function');
  set.add(handler);
  return () => {
    set.delete(handler);
  };
}

/**
 * Splits the JSON array of a polling response into the texts of its frames.
 * @param {string} text
 * @returns {string[]}
 */
function splitArray(text) {
  const r = new Reader(text);
  /** @type {string[]} */
  const out = [];
  r.array(() => {
    r.ws();
    const start = r.i;
    r.skip();
    out.push(text.slice(start, r.i));
  });
  r.ws();
  if (r.i !== text.length) r.fail('trailing characters after the array');
  return out;
}

/**
 * A handle on one room of a client: per-room handlers and the room's position.
 */
export class RoomHandle {
  /** @param {Client} client @param {string} name */
  constructor(client, name) {
    /** @private */ this._client = client;
    /** The room's name. */
    this.name = name;
  }

  /**
   * Calls `handler(payload, event)` for events of `kind` (`'*'`: all) in this room.
   * @param {string} kind @param {EventHandler} handler
   * @returns {() => void}
   */
  on(kind, handler) {
    const c = /** @type {any} */ (this._client);
    let map = c._roomHandlers.get(this.name);
    if (!map) {
      map = new Map();
      c._roomHandlers.set(this.name, map);
    }
    return addHandler(map, kind, handler);
  }

  /** The last position delivered in this room, or `null`. @returns {Position | null} */
  position() {
    return this._client.positions()[this.name] ?? null;
  }

  /** Leaves the room (handlers stay registered for a later join). */
  unsubscribe() {
    return this._client.unsubscribe(this.name);
  }
}

/**
 * One HTTP long-polling session (PROTOCOL.md 1.4), playing the part of a connection.
 *
 * Frames queue between requests (at most the client's `maxQueued`; an overflow abandons the
 * session and the client reconnects with resume). One request is held by the server at all
 * times; frames to send go out in a second request at once (the server then returns the held
 * one). A session's first request is answered before any other goes out: it brings the token.
 * Responses are handled in the order of their requests. Each request carries its number in the
 * session (`Eventwire-Seq`: 1, 2, 3 ... in the order sent): when two overtake each other on the
 * way, the server goes by the numbers and gives frames only to requests of increasing numbers,
 * so reading the responses in the order sent reads the frames in order.
 */
class PollConn {
  /** @param {Client} client */
  constructor(client) {
    /** @type {'polling'} */
    this.kind = 'polling';
    this.client = client;
    const c = /** @type {any} */ (client);
    this.url = c._pollUrl;
    this.fetch = c._fetch;
    this.clock = c._clock;
    this.maxQueued = c._maxQueued;
    this.bodyLimit = c._maxFrame * 64;
    /** @type {string | null} */
    this.token = null;
    /** @type {string[]} */
    this.pending = [];
    this.requests = 0;
    /** Requests sent so far: the last one's number (`Eventwire-Seq`). */
    this.seq = 0;
    /** @type {Promise<void>} */
    this.chain = Promise.resolve();
    /** @type {Set<AbortController>} */
    this.controllers = new Set();
    this.ended = false;
  }

  /** @param {string} text */
  queue(text) {
    if (this.ended) return;
    if (this.pending.length >= this.maxQueued) {
      // Overflow: abandon the session; the reconnect's resume loses nothing.
      const c = /** @type {any} */ (this.client);
      queueMicrotask(() => {
        if (c._conn === this) c._pollLost(null);
      });
      this.ended = true;
      return;
    }
    this.pending.push(text);
  }

  /** Sends queued frames and keeps one request held. */
  flush() {
    while (!this.ended) {
      const limit = this.token ? 2 : 1;
      if (this.requests >= limit) return;
      if (this.requests > 0 && this.pending.length === 0) return;
      this.request(false);
    }
  }

  /** @param {boolean} last a final request (close frame) that is not aborted with the session */
  request(last) {
    /** @type {string[]} */
    const frames = [];
    let bytes = 2;
    while (this.pending.length > 0 && frames.length < MAX_POLL_FRAMES) {
      const next = /** @type {string} */ (this.pending[0]);
      if (frames.length > 0 && bytes + next.length + 1 > MAX_POLL_BODY) break;
      frames.push(next);
      bytes += next.length + 1;
      this.pending.shift();
    }
    const body = `[${frames.join(',')}]`;
    /** @type {Record<string, string>} */
    const headers = { 'Content-Type': 'application/json' };
    if (this.token) headers['Eventwire-Session'] = this.token;
    this.seq += 1;
    headers['Eventwire-Seq'] = String(this.seq);
    const controller = new AbortController();
    if (!last) this.controllers.add(controller);
    const timer = this.clock.setTimeout(() => controller.abort(), last ? CLOSE_GRACE_MS : POLL_REQUEST_TIMEOUT_MS);
    this.requests += 1;
    const limit = this.bodyLimit;
    /** @type {Promise<PollReply>} */
    const reply = (async () => {
      try {
        const res = await this.fetch(this.url, { method: 'POST', headers, body, signal: controller.signal });
        if (res.status !== 200) {
          const ra = res.headers.get('Retry-After');
          const seconds = ra !== null && /^[0-9]{1,9}$/.test(ra.trim()) ? Number(ra.trim()) : null;
          try {
            await res.body?.cancel();
          } catch {
            // Nothing more is read from it.
          }
          return { status: res.status, retryAfter: seconds };
        }
        const length = res.headers.get('Content-Length');
        if (length !== null && Number(length) > limit) {
          controller.abort();
          return { status: 200, error: new ProtocolError('polling response too large', CloseCode.MESSAGE_TOO_BIG), retryAfter: null };
        }
        const text = await res.text();
        if (exceeds(text, limit)) {
          return { status: 200, error: new ProtocolError('polling response too large', CloseCode.MESSAGE_TOO_BIG), retryAfter: null };
        }
        return { status: 200, token: res.headers.get('Eventwire-Session'), text, retryAfter: null };
      } catch (e) {
        return { status: 0, error: e, retryAfter: null };
      } finally {
        this.clock.clearTimeout(timer);
        this.controllers.delete(controller);
      }
    })();
    if (last) return;
    this.chain = this.chain
      .then(() => reply)
      .then((r) => {
        this.requests -= 1;
        if (this.ended) return;
        const c = /** @type {any} */ (this.client);
        try {
          c._onPollReply(this, r);
        } catch (e) {
          c._report({ code: 0, name: 'INTERNAL', reason: `polling reply failed: ${errorText(e)}`, error: e });
          if (c._conn === this) c._pollLost(null);
        }
      });
  }

  /** The client lets go of the session: queued frames (a close) go out in a last request. */
  end() {
    if (this.ended) return;
    this.ended = true;
    if (this.pending.length > 0 && this.token) this.request(true);
    this.pending = [];
    this.abort();
  }

  /** Aborts every request under way. */
  abort() {
    this.ended = true;
    for (const c of this.controllers) c.abort();
    this.controllers.clear();
  }
}

/**
 * @typedef {Object} BackoffOptions
 * @property {number} [initial] base delay after the first failure, ms (250)
 * @property {number} [factor] growth per failure (2)
 * @property {number} [cap] largest base delay, ms (30000)
 * @property {number | null} [maxAttempts] give up after this many failures in a row (never)
 * @property {number} [stableAfter] a session open this long resets the count, ms (10000)
 */
/**
 * @typedef {Object} QualityOptions
 * @property {number} [degradedRtt] ms (300) @property {number} [poorRtt] ms (1000)
 * @property {number} [recoverPercent] (80) @property {number} [poorAfterMissed] (2)
 */
/** @typedef {'good' | 'degraded' | 'poor'} Quality */
/**
 * @typedef {Object} Clock
 * @property {() => number} now monotonic milliseconds
 * @property {(fn: () => void, ms: number) => unknown} setTimeout
 * @property {(handle: unknown) => void} clearTimeout
 */
/**
 * @typedef {Object} Status
 * @property {'connecting' | 'connected' | 'reconnecting' | 'closed'} state
 * @property {'websocket' | 'polling' | null} transport
 * @property {number | null} rtt @property {Quality} quality @property {number} eventsPerSecond
 * @property {number} attempt @property {number | null} retryInMs
 * @property {{code: number, reason: string} | null} lastClose
 */
/**
 * @typedef {Object} ErrorReport
 * @property {number} code @property {string} name @property {string} reason
 * @property {string} [room] @property {number} [id] @property {unknown} [error]
 */
/** @typedef {{room: string, missed: {range: {epoch: number, first: number, last: number}} | {reset: {position: Position}}}} Gap */
/** @typedef {{room: string, kind: string, payload: unknown, position: Position}} RoomEvent */
/** @typedef {(payload: any, event: RoomEvent) => void} EventHandler */
/** @typedef {{last: Position | null, state: 'pending' | 'requested' | 'active', leaving: boolean}} Sub */
/** @typedef {{room: string, kind: string, payloadText: string, size: number, resolve: (p: Position) => void, reject: (e: Error) => void}} PendingPublish */
/** @typedef {{status: number, retryAfter: number | null, token?: string | null, text?: string, error?: unknown}} PollReply */
/** @typedef {{send(data: string): void, close(code?: number, reason?: string): void, protocol: string, binaryType?: string, onopen: any, onmessage: any, onclose: any, onerror: any}} WebSocketLike */
/** @typedef {{kind: 'websocket', ws: WebSocketLike, open: boolean}} WsConn */
/** @typedef {WsConn | PollConn} Conn */
/** @typedef {any} Frame */
/** @typedef {any} WelcomeFrame */
/** @typedef {any} ErrorFrame */
/** @typedef {any} CloseFrame */
/** @typedef {Record<string, any>} ClientOptions */
