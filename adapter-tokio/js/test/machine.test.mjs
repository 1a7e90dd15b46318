// Unit tests of the pure parts: backoff, RTT smoothing and link quality, outbox, rate meter.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Backoff, RttEstimator, LinkQuality, Outbox, OutboxFullError, RateMeter, shouldReconnect, wsCloseCode } from '../eventwire.js';
import { sequence } from '../support/fakes.mjs';

test('backoff without jitter grows exactly and stops at the cap', () => {
  // random() just below 1 picks the top of [0, base]: the base delay itself.
  const b = new Backoff({ initial: 100, factor: 3, cap: 5000 }, () => 0.999999999);
  const got = Array.from({ length: 7 }, () => b.nextDelay());
  assert.deepEqual(got, [100, 300, 900, 2700, 5000, 5000, 5000]);
  assert.equal(b.attempts, 7);
});

test('full jitter is applied after the cap: no delay above the cap', () => {
  let x = 12345;
  const lcg = () => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648;
  };
  const b = new Backoff({ initial: 250, factor: 2, cap: 30000 }, lcg);
  const delays = Array.from({ length: 2000 }, () => b.nextDelay());
  assert.ok(delays.every((d) => d !== null && d >= 0 && d <= 30000));
  // Jitter spreads them: the late ones (base = cap) are not all the cap.
  const late = delays.slice(100);
  assert.ok(Math.min(...late) < 3000 && Math.max(...late) > 27000, `${Math.min(...late)}..${Math.max(...late)}`);
  // A random source at its extremes gives exactly 0 and exactly the base.
  assert.equal(new Backoff({}, () => 0).nextDelay(), 0);
  assert.equal(new Backoff({ initial: 250 }, () => 0.9999999999).nextDelay(), 250);
});

test('retry_after is a lower bound, even above the cap', () => {
  const b = new Backoff({ initial: 100, cap: 1000 }, sequence(0, 0.5));
  assert.equal(b.nextDelay(2000), 2000);
  assert.equal(b.nextDelay(5000), 5000);
  assert.equal(b.nextDelay(10), Math.max(10, Math.floor(0 * 401)));
  const c = new Backoff({ initial: 1000, cap: 1000 }, () => 0.9999999);
  assert.equal(c.nextDelay(300), 1000, 'the jittered delay wins when larger');
});

test('the attempt count resets only after a stable session', () => {
  const b = new Backoff({ initial: 100, stableAfter: 10000 }, () => 0.99999999);
  b.nextDelay();
  b.nextDelay();
  b.nextDelay();
  assert.equal(b.attempts, 3);
  b.connectionEnded(9999);
  assert.equal(b.attempts, 3, 'a session that drops at once keeps backing off');
  assert.equal(b.nextDelay(), 800);
  b.connectionEnded(10000);
  assert.equal(b.attempts, 0);
  assert.equal(b.nextDelay(), 100);
});

test('maxAttempts gives up', () => {
  const b = new Backoff({ maxAttempts: 3 }, () => 0);
  assert.equal(b.nextDelay(), 0);
  assert.equal(b.nextDelay(), 0);
  assert.equal(b.nextDelay(), null);
  b.reset();
  assert.equal(b.nextDelay(), 0);
});

test('RTT smoothing follows RFC 6298 in integer microseconds', () => {
  const r = new RttEstimator();
  assert.equal(r.srtt, null);
  r.sample(100);
  assert.equal(r.srtt, 100);
  assert.equal(r.rttvar, 50);
  r.sample(200);
  assert.equal(r.srtt, 112.5);
  assert.equal(r.rttvar, 62.5);
  r.sample(0.0015); // 1 microsecond, truncated
  assert.equal(r.srttUs, Math.floor((7 * 112500 + 1) / 8));
});

test('quality worsens at once and recovers only below 80% of a threshold', () => {
  const q = new LinkQuality();
  assert.equal(q.level, 'good');
  assert.equal(q.onPong(400), 'degraded');
  // srtt moves toward 290 ms: below 300 but not below 240: stays degraded (hysteresis).
  for (let i = 0; i < 30; i++) assert.equal(q.onPong(290), null);
  assert.equal(q.level, 'degraded');
  assert.ok(q.rtt.srtt < 300 && q.rtt.srtt >= 240);
  // Hovering just around the threshold never flaps.
  const changes = [];
  for (let i = 0; i < 50; i++) changes.push(q.onPong(i % 2 ? 310 : 280));
  assert.ok(changes.every((c) => c === null));
  // Well below 240 ms: good again.
  let level = null;
  for (let i = 0; i < 40 && level === null; i++) level = q.onPong(50);
  assert.equal(level, 'good');
  assert.ok(q.rtt.srtt < 240);
  // Above 1 s: poor.
  const p = new LinkQuality();
  assert.equal(p.onPong(1500), 'poor');
});

test('missed pongs: one degrades, two in a row make it poor, a pong recovers', () => {
  const q = new LinkQuality();
  assert.equal(q.onPong(50), null);
  assert.equal(q.onMissedPong(), 'degraded');
  assert.equal(q.onMissedPong(), 'poor');
  assert.equal(q.onMissedPong(), null);
  assert.equal(q.onPong(50), 'good');
  assert.equal(q.missed, 0);
});

test('outbox: ids 1, 2, 3, a window of in-flight publishes, refusal when full', () => {
  const ob = new Outbox(4);
  assert.deepEqual([ob.push('a'), ob.push('b'), ob.push('c'), ob.push('d')], [1, 2, 3, 4]);
  assert.throws(() => ob.push('e'), (e) => e instanceof OutboxFullError && e.limit === 4);
  const sent = [];
  for (let p; (p = ob.nextToSend(0, 2)); ) sent.push(p.id);
  assert.deepEqual(sent, [1, 2], 'a window of two');
  assert.equal(ob.inFlight, 2);
  assert.equal(ob.take(2), 'b');
  assert.equal(ob.take(2), undefined, 'a repeated ack is not held');
  // The window is anchored at the lowest unanswered id (1): id 3 waits until 1 is answered.
  assert.equal(ob.nextToSend(0, 2), null);
  assert.equal(ob.take(1), 'a');
  assert.equal(ob.nextToSend(0, 2)?.id, 3);
  assert.equal(ob.nextToSend(0, 2)?.id, 4);
  assert.equal(ob.push('e'), 5, 'acks freed room');
});

test('outbox: resend after loss in id order; deferral by retry-after', () => {
  const ob = new Outbox(8);
  for (const x of ['a', 'b', 'c', 'd']) ob.push(x);
  while (ob.nextToSend(0, 8));
  ob.take(2);
  ob.requeue();
  const again = [];
  for (let p; (p = ob.nextToSend(0, 8)); ) again.push([p.id, p.data]);
  assert.deepEqual(again, [[1, 'a'], [3, 'c'], [4, 'd']]);
  assert.ok(ob.defer(3, 250));
  assert.ok(!ob.defer(3, 250), 'only an in-flight publish is deferred');
  assert.equal(ob.nextDeadline(), 250);
  ob.requeue();
  const early = [];
  for (let p; (p = ob.nextToSend(100, 8)); ) early.push(p.id);
  assert.deepEqual(early, [1, 4]);
  assert.equal(ob.nextToSend(250, 8)?.id, 3);
  assert.deepEqual(ob.drain(), ['a', 'c', 'd']);
  assert.equal(ob.size, 0);
});

test('events per second: a sliding one-second window', () => {
  const m = new RateMeter();
  for (let t = 0; t < 1000; t += 10) m.add(t);
  assert.equal(m.rate(999), 100);
  assert.equal(m.rate(1550), 40, 'the buckets of 0-599 ms left the window');
  assert.equal(m.rate(5000), 0);
});

test('close codes: which end the client, which a browser may send', () => {
  for (const code of [1000, 1008, 4001, 4002]) assert.equal(shouldReconnect(code), false, String(code));
  for (const code of [1001, 1002, 1003, 1007, 1009, 1011, 1013, 4000, 4003, 4004, 4999, 3000, 1234]) {
    assert.equal(shouldReconnect(code), true, String(code));
  }
  assert.equal(wsCloseCode(1002), 1000);
  assert.equal(wsCloseCode(1009), 1000);
  assert.equal(wsCloseCode(4003), 4003);
  assert.equal(wsCloseCode(1000), 1000);
  assert.equal(wsCloseCode(3000), 3000);
});
