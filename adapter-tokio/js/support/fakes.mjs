// Test doubles: a manual clock, a fake WebSocket class and a fake fetch, injected through the
// client's options so that lifecycle tests are deterministic and need no server.

/** Lets pending promise callbacks and microtasks run. */
export function settle() {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A clock whose time moves only when `advance` is called; timers fire in time order. */
export class ManualClock {
  constructor() {
    this.t = 0;
    this.seq = 0;
    /** @type {Map<number, {at: number, fn: () => void}>} */
    this.timers = new Map();
  }

  now() {
    return this.t;
  }

  setTimeout(fn, ms) {
    const id = ++this.seq;
    this.timers.set(id, { at: this.t + Math.max(0, ms), fn });
    return id;
  }

  clearTimeout(id) {
    this.timers.delete(id);
  }

  /** Moves time forward by `ms`, firing due timers in order (settling promises after each). */
  async advance(ms) {
    const end = this.t + ms;
    await settle();
    for (;;) {
      let best = null;
      for (const [id, timer] of this.timers) {
        if (timer.at <= end && (best === null || timer.at < best[1].at || (timer.at === best[1].at && id < best[0]))) {
          best = [id, timer];
        }
      }
      if (best === null) break;
      this.timers.delete(best[0]);
      this.t = best[1].at;
      best[1].fn();
      await settle();
    }
    this.t = end;
    await settle();
  }
}

/**
 * A fake WebSocket class. Each instance records what the client sent and how it closed; the
 * test plays the server with `accept`, `receive` and `drop`. `close` enforces the browser rule:
 * only 1000 and 3000-4999 may be sent.
 */
export function fakeWebSocketClass() {
  const instances = [];
  class FakeWebSocket {
    constructor(url, protocols) {
      this.url = url;
      this.protocols = protocols;
      this.protocol = '';
      this.readyState = 0;
      this.sent = [];
      this.closedWith = null;
      this.onopen = null;
      this.onmessage = null;
      this.onclose = null;
      this.onerror = null;
      instances.push(this);
    }

    send(text) {
      if (this.readyState === 0) throw new Error('InvalidStateError: still connecting');
      if (this.readyState !== 1) return;
      this.sent.push(text);
    }

    close(code, reason) {
      if (code !== undefined && code !== 1000 && !(code >= 3000 && code <= 4999)) {
        throw new Error(`InvalidAccessError: close code ${code} is not allowed`);
      }
      this.closedWith = code ?? 1005;
      this.readyState = 3;
    }

    /** Frames the client sent, decoded as plain JSON objects. */
    frames() {
      return this.sent.map((t) => JSON.parse(t));
    }

    /** The server accepts the upgrade with `protocol`. */
    accept(protocol = 'eventwire.v1.json') {
      this.protocol = protocol;
      this.readyState = 1;
      this.onopen?.({});
    }

    /** The server sends one message. */
    receive(data) {
      this.onmessage?.({ data: typeof data === 'string' || data instanceof ArrayBuffer ? data : JSON.stringify(data) });
    }

    /** The connection ends with `code` (1006: dropped, no close handshake). */
    drop(code = 1006, reason = '') {
      this.readyState = 3;
      this.onclose?.({ code, reason, wasClean: code !== 1006 });
    }
  }
  return { FakeWebSocket, instances };
}

/**
 * A fake fetch: each call is recorded with its parsed body and waits until the test answers it
 * with `reply(status, frames, headers)`.
 */
export function fakeFetch() {
  const calls = [];
  function fetch(url, init) {
    return new Promise((resolve, reject) => {
      const call = {
        url,
        init,
        headers: init.headers,
        frames: JSON.parse(init.body),
        answered: false,
        reply(status, frames = [], headers = {}) {
          call.answered = true;
          const body = typeof frames === 'string' ? frames : JSON.stringify(frames);
          resolve(new Response(status === 204 ? null : body, { status, headers: { 'Content-Type': 'application/json', ...headers } }));
        },
        fail(message = 'network error') {
          call.answered = true;
          reject(new TypeError(message));
        },
      };
      init.signal?.addEventListener('abort', () => {
        if (!call.answered) {
          call.answered = true;
          reject(new DOMException('aborted', 'AbortError'));
        }
      });
      calls.push(call);
    });
  }
  return { fetch, calls };
}

/** A deterministic random source: a fixed sequence, repeated. */
export function sequence(...values) {
  let i = 0;
  return () => values[i++ % values.length];
}

export const WELCOME = { welcome: { version: 1, session_id: 1, heartbeat_ms: 1000, max_frame: 65536, max_subscriptions: 64, publish_rate: 100 } };
