// The client's lifecycle against a fake WebSocket class and a fake fetch, on a manual clock:
// handshake and resume, the close-code rule, frame limits, fatal codes, backoff, heartbeats,
// the outbox, the polling fallback and the upgrade back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  Client, ValidationError, OutboxFullError, FrameTooLargeError, PublishRejectedError, ClientClosedError, TooManyRoomsError,
} from '../eventwire.js';
import { ManualClock, fakeWebSocketClass, fakeFetch, settle, WELCOME } from '../support/fakes.mjs';

/** A client on fakes; `random: () => 0.999999` makes every backoff delay its base. */
function setup(options = {}) {
  const clock = new ManualClock();
  const { FakeWebSocket, instances } = fakeWebSocketClass();
  const { fetch, calls } = fakeFetch();
  const statuses = [];
  const client = new Client('ws://example.test/', {
    WebSocket: FakeWebSocket,
    fetch,
    clock,
    random: () => 0.999999,
    clientId: 42,
    backoff: { initial: 100, factor: 2, cap: 1000 },
    ...options,
  });
  client.onStatus((s) => statuses.push(s));
  return { client, clock, instances, calls, statuses, last: () => instances[instances.length - 1] };
}

/** Opens the latest socket and answers the hello with a welcome and `subscribed` frames. */
async function open(env, joins = {}) {
  await settle();
  const ws = env.last();
  ws.accept();
  ws.receive(WELCOME);
  for (const [room, position] of Object.entries(joins)) ws.receive({ subscribed: { room, position } });
  await settle();
  return ws;
}

const batch = (room, epoch, offsets, kind = 'k') => ({
  batch: { room, epoch, events: offsets.map((offset) => ({ offset, kind, payload: { n: offset } })) },
});

test('the hello resumes every room; rooms beyond 64 are subscribed after the welcome', async () => {
  const rooms = { a: { epoch: 3, offset: 7 }, b: null };
  for (let i = 0; i < 70; i++) rooms[`r${i}`] = null;
  const env = setup({ rooms, token: 'tok.en' });
  await settle();
  const ws = env.last();
  assert.deepEqual(ws.protocols, ['eventwire.v1.json']);
  ws.accept();
  const [hello] = ws.frames();
  assert.equal(hello.hello.client_id, 42);
  assert.equal(hello.hello.token, 'tok.en');
  assert.equal(hello.hello.max_frame, 65536);
  assert.equal(hello.hello.rooms.length, 64);
  assert.deepEqual(hello.hello.rooms[0], { room: 'a', from: { epoch: 3, offset: 7 } });
  assert.deepEqual(hello.hello.rooms[1], { room: 'b', from: null });
  assert.equal(ws.frames().length, 1, 'nothing but the hello before the welcome');
  ws.receive(WELCOME);
  await settle();
  const subs = ws.frames().slice(1).map((f) => f.subscribe.room);
  assert.deepEqual(subs, ['r62', 'r63', 'r64', 'r65', 'r66', 'r67', 'r68', 'r69']);
  assert.equal(env.client.status.state, 'connected');
  assert.equal(env.client.status.transport, 'websocket');
  env.client.close();
});

test('events reach kind, wildcard and room handlers once; replay overlap is dropped', async () => {
  const env = setup({ rooms: ['tasks', 'agents'] });
  const seen = [];
  env.client.on('k', (p, e) => seen.push(['k', e.room, e.position.offset, p.n]));
  env.client.on('*', (_p, e) => seen.push(['*', e.room, e.position.offset]));
  const off = env.client.room('tasks').on('*', (_p, e) => seen.push(['room', e.position.offset]));
  const ws = await open(env, { tasks: { epoch: 1, offset: 0 }, agents: { epoch: 1, offset: 0 } });
  ws.receive(batch('tasks', 1, [1, 2]));
  ws.receive(batch('tasks', 1, [2, 3])); // 2 again: overlap
  ws.receive({ event: { room: 'agents', position: { epoch: 1, offset: 1 }, kind: 'other', payload: null } });
  off();
  ws.receive(batch('tasks', 1, [4]));
  assert.deepEqual(seen, [
    ['k', 'tasks', 1, 1], ['*', 'tasks', 1], ['room', 1],
    ['k', 'tasks', 2, 2], ['*', 'tasks', 2], ['room', 2],
    ['k', 'tasks', 3, 3], ['*', 'tasks', 3], ['room', 3],
    ['*', 'agents', 1],
    ['k', 'tasks', 4, 4], ['*', 'tasks', 4],
  ]);
  assert.deepEqual(env.client.positions(), { tasks: { epoch: 1, offset: 4 }, agents: { epoch: 1, offset: 1 } });
  assert.equal(env.client.stats().duplicates, 1);
  env.client.close();
});

test('after a drop the client backs off, reconnects and resumes from its positions', async () => {
  const env = setup({ rooms: ['tasks'] });
  const ws = await open(env, { tasks: { epoch: 1, offset: 10 } });
  ws.receive(batch('tasks', 1, [11, 12]));
  ws.drop(1006);
  await settle();
  assert.equal(env.client.status.state, 'reconnecting');
  assert.equal(env.client.status.retryInMs, 100);
  assert.equal(env.instances.length, 1);
  await env.clock.advance(99);
  assert.equal(env.instances.length, 1, 'not before the backoff delay');
  await env.clock.advance(1);
  assert.equal(env.instances.length, 2);
  const ws2 = env.last();
  ws2.accept();
  assert.deepEqual(ws2.frames()[0].hello.rooms, [{ room: 'tasks', from: { epoch: 1, offset: 12 } }]);
  ws2.receive(WELCOME);
  await settle();
  assert.equal(env.client.status.state, 'connected');
  const states = env.statuses.map((s) => s.state);
  assert.deepEqual(states.filter((s, i) => s !== states[i - 1]), ['connecting', 'connected', 'reconnecting', 'connected']);
  env.client.close();
});

test('close-code rule: a protocol error sends close 1002 in a frame, then WebSocket close 1000', async () => {
  const env = setup({ rooms: ['tasks'] });
  const ws = await open(env);
  ws.receive('{"ping":');
  await settle();
  const sent = ws.frames();
  assert.deepEqual(sent[sent.length - 1], { close: { code: 1002, retry_after_ms: null, reason: 'undecodable frame' } });
  assert.equal(ws.closedWith, 1000);
  assert.equal(env.client.status.state, 'reconnecting');
  assert.equal(env.client.status.lastClose.code, 1002);
  await env.clock.advance(100);
  assert.equal(env.instances.length, 2, 'reconnects with backoff');
  env.client.close();
});

test('close-code rule: a code a browser may send goes out as itself (4003 heartbeat timeout)', async () => {
  const env = setup();
  const ws = await open(env);
  // Heartbeat 1000 ms, dead after 3 silent intervals.
  await env.clock.advance(2999);
  assert.equal(ws.closedWith, null);
  await env.clock.advance(1);
  const sent = ws.frames();
  assert.deepEqual(sent[sent.length - 1].close.code, 4003);
  assert.equal(ws.closedWith, 4003);
  env.client.close();
});

test('a message over maxFrame closes with 1009 (frame) and 1000 (WebSocket), then reconnects', async () => {
  const env = setup({ maxFrame: 200, rooms: ['tasks'] });
  await settle();
  env.last().accept();
  assert.equal(env.last().frames()[0].hello.max_frame, 200);
  const ws = env.last();
  ws.receive(WELCOME);
  ws.receive({ subscribed: { room: 'tasks', position: { epoch: 1, offset: 0 } } });
  ws.receive(batch('tasks', 1, [1, 2, 3, 4, 5, 6, 7, 8]));
  await settle();
  const sent = ws.frames();
  assert.equal(sent[sent.length - 1].close.code, 1009);
  assert.equal(ws.closedWith, 1000);
  assert.deepEqual(env.client.positions(), { tasks: { epoch: 1, offset: 0 } }, 'nothing of the oversize message was delivered');
  await env.clock.advance(100);
  assert.equal(env.instances.length, 2);
  env.client.close();
});

test('binary messages are refused with 1003', async () => {
  const env = setup();
  const ws = await open(env);
  ws.receive(new ArrayBuffer(4));
  await settle();
  assert.equal(ws.frames().at(-1).close.code, 1003);
  assert.equal(ws.closedWith, 1000);
  env.client.close();
});

for (const code of [1000, 1008, 4001, 4002]) {
  test(`a close frame with ${code} ends the client for good`, async () => {
    const env = setup();
    const ws = await open(env);
    const publish = assert.rejects(env.client.publish('notes', 'note', { x: 1 }), ClientClosedError);
    ws.receive({ close: { code, retry_after_ms: null, reason: 'bye' } });
    ws.drop(code);
    await settle();
    assert.equal(env.client.status.state, 'closed');
    assert.deepEqual(env.client.status.lastClose, { code, reason: 'bye' });
    await publish;
    await env.clock.advance(60000);
    assert.equal(env.instances.length, 1, 'never reconnects');
    assert.equal(env.clock.timers.size, 0, 'no timer left running');
  });
}

test('a fatal WebSocket close code without a close frame also ends the client', async () => {
  const env = setup();
  const ws = await open(env);
  ws.drop(4001, 'unauthorized');
  await settle();
  assert.equal(env.client.status.state, 'closed');
  await env.clock.advance(60000);
  assert.equal(env.instances.length, 1);
});

test('retry_after_ms is a lower bound of the reconnect delay (close 1001)', async () => {
  const env = setup();
  const ws = await open(env);
  ws.receive({ close: { code: 1001, retry_after_ms: 2000, reason: 'server shutting down' } });
  await settle();
  assert.equal(env.client.status.state, 'reconnecting');
  assert.equal(env.client.status.retryInMs, 2000);
  await env.clock.advance(1999);
  assert.equal(env.instances.length, 1);
  await env.clock.advance(1);
  assert.equal(env.instances.length, 2);
  env.client.close();
});

test('a welcome of an unknown version closes with 4002 for good', async () => {
  const env = setup();
  await settle();
  const ws = env.last();
  ws.accept();
  ws.receive({ welcome: { ...WELCOME.welcome, version: 2 } });
  await settle();
  assert.equal(ws.frames().at(-1).close.code, 4002);
  assert.equal(ws.closedWith, 4002);
  assert.equal(env.client.status.state, 'closed');
});

test('no subprotocol from the server is a failed attempt', async () => {
  const env = setup({ transports: 'websocket' });
  await settle();
  env.last().accept('');
  await settle();
  assert.equal(env.last().closedWith, 1000);
  assert.equal(env.client.status.state, 'connecting');
  assert.equal(env.client.status.attempt, 1);
  await env.clock.advance(100);
  assert.equal(env.instances.length, 2);
  env.client.close();
});

test('the connect timeout abandons a stalled attempt', async () => {
  const env = setup({ connectTimeout: 500, transports: 'websocket' });
  await env.clock.advance(500);
  assert.equal(env.instances[0].closedWith, 4000, 'a connecting socket is closed with 4000');
  assert.equal(env.client.status.lastClose.code, 4000);
  await env.clock.advance(100);
  env.last().accept();
  await env.clock.advance(500);
  assert.equal(env.instances[1].frames().at(-1).close.code, 4000, 'no welcome: close frame 4000');
  env.client.close();
});

test('server pings are answered; pings every heartbeat measure the RTT; missed pongs degrade', async () => {
  const env = setup();
  const ws = await open(env);
  ws.receive({ ping: { nonce: 77 } });
  await settle();
  assert.deepEqual(ws.frames().at(-1), { pong: { nonce: 77 } });
  await env.clock.advance(1000);
  const ping = ws.frames().at(-1).ping;
  assert.ok(ping, 'a ping after one heartbeat');
  await env.clock.advance(40);
  ws.receive({ pong: { nonce: ping.nonce } });
  await settle();
  assert.equal(env.client.status.rtt, 40);
  assert.equal(env.client.status.quality, 'good');
  // Two unanswered pings (frames still arrive, so the link is not dead).
  for (let i = 0; i < 3; i++) {
    await env.clock.advance(960);
    ws.receive({ ping: { nonce: i } });
    await env.clock.advance(40);
  }
  assert.equal(env.client.status.quality, 'poor');
  const nonce = ws.frames().filter((f) => f.ping).at(-1).ping.nonce;
  ws.receive({ pong: { nonce } });
  await settle();
  assert.equal(env.client.status.quality, 'good');
  env.client.close();
});

test('gaps are surfaced; a reset moves to the new epoch; an unannounced epoch reconnects', async () => {
  const env = setup({ rooms: ['tasks'] });
  const gaps = [];
  env.client.onGap((g) => gaps.push(g));
  const ws = await open(env, { tasks: { epoch: 1, offset: 0 } });
  ws.receive(batch('tasks', 1, [1]));
  ws.receive({ gap: { room: 'tasks', missed: { range: { epoch: 1, first: 2, last: 5 } } } });
  ws.receive(batch('tasks', 1, [6]));
  ws.receive({ gap: { room: 'tasks', missed: { reset: { position: { epoch: 2, offset: 0 } } } } });
  ws.receive(batch('tasks', 2, [1]));
  assert.deepEqual(gaps, [
    { room: 'tasks', missed: { range: { epoch: 1, first: 2, last: 5 } } },
    { room: 'tasks', missed: { reset: { position: { epoch: 2, offset: 0 } } } },
  ]);
  assert.deepEqual(env.client.positions(), { tasks: { epoch: 2, offset: 1 } });
  ws.receive(batch('tasks', 3, [1]));
  await settle();
  assert.equal(ws.frames().at(-1).close.code, 1002);
  assert.deepEqual(env.client.positions(), { tasks: { epoch: 2, offset: 1 } }, 'not delivered');
  env.client.close();
});

test('publish: ids 1, 2, 3, acks resolve, at most 32 in flight, resent in id order after a reconnect', async () => {
  const env = setup({ outboxLimit: 40 });
  const ws = await open(env);
  const promises = Array.from({ length: 40 }, (_, i) => env.client.publish('notes', 'note', { i }));
  await settle();
  const sent = ws.frames().filter((f) => f.publish).map((f) => f.publish.id);
  assert.deepEqual(sent, Array.from({ length: 32 }, (_, i) => i + 1));
  await assert.rejects(env.client.publish('notes', 'note', {}), OutboxFullError);
  ws.receive({ publish_ack: { id: 1, position: { epoch: 9, offset: 100 } } });
  ws.receive({ publish_ack: { id: 2, position: { epoch: 9, offset: 101 } } });
  await settle();
  assert.deepEqual(await promises[0], { epoch: 9, offset: 100 });
  assert.deepEqual(ws.frames().filter((f) => f.publish).map((f) => f.publish.id).slice(32), [33, 34]);
  ws.drop();
  await env.clock.advance(100);
  const ws2 = await open(env);
  const resent = ws2.frames().filter((f) => f.publish).map((f) => f.publish.id);
  assert.deepEqual(resent, Array.from({ length: 32 }, (_, i) => i + 3), 'unacked ones again, in id order');
  assert.deepEqual(ws2.frames().find((f) => f.publish).publish, { room: 'notes', id: 3, kind: 'note', payload: { i: 2 } });
  for (let id = 3; id <= 40; id++) ws2.receive({ publish_ack: { id, position: { epoch: 9, offset: 99 + id } } });
  const results = await Promise.all(promises);
  assert.deepEqual(results.map((p) => p.offset), Array.from({ length: 40 }, (_, i) => 100 + i));
  env.client.close();
});

test('RATE_LIMITED defers a publish; PUBLISH_REJECTED rejects it and reports', async () => {
  const env = setup();
  const errors = [];
  env.client.onError((e) => errors.push(e));
  const ws = await open(env);
  const a = env.client.publish('notes', 'note', 1);
  const b = env.client.publish('notes', 'note', 2);
  await settle();
  ws.receive({ error: { code: 3, id: 1, room: 'notes', retry_after_ms: 250, reason: 'slow down' } });
  ws.receive({ error: { code: 4, id: 2, room: 'notes', retry_after_ms: null, reason: 'no' } });
  await assert.rejects(b, (e) => e instanceof PublishRejectedError && e.code === 4 && e.id === 2 && e.reason === 'no');
  assert.deepEqual(errors, [{ code: 4, name: 'PUBLISH_REJECTED', reason: 'no', room: 'notes', id: 2 }]);
  const count = () => ws.frames().filter((f) => f.publish && f.publish.id === 1).length;
  await env.clock.advance(249);
  assert.equal(count(), 1);
  await env.clock.advance(1);
  assert.equal(count(), 2, 'sent again after retry_after_ms');
  ws.receive({ publish_ack: { id: 1, position: { epoch: 1, offset: 5 } } });
  assert.deepEqual(await a, { epoch: 1, offset: 5 });
  env.client.close();
});

test('publish refusals at call time: bad names throw, oversize frames and a closed client reject', async () => {
  const env = setup({ maxFrame: 300 });
  assert.throws(() => env.client.publish('bad room', 'k', 1), ValidationError);
  assert.throws(() => env.client.publish('r', '', 1), ValidationError);
  assert.throws(() => env.client.publish('r', 'k', undefined), ValidationError);
  assert.throws(() => env.client.subscribe('x'.repeat(65)), ValidationError);
  assert.throws(() => env.client.on('no spaces', () => {}), ValidationError);
  assert.throws(() => env.client.subscribe('r', { epoch: 1, offset: 2 ** 53 }), ValidationError);
  await assert.rejects(env.client.publish('r', 'k', 'x'.repeat(300)), FrameTooLargeError);
  // After the welcome the server's max_frame is the bound.
  await settle();
  env.last().accept();
  env.last().receive({ welcome: { ...WELCOME.welcome, max_frame: 100 } });
  await assert.rejects(env.client.publish('r', 'k', 'x'.repeat(60)), (e) => e instanceof FrameTooLargeError && e.limit === 100);
  env.client.close();
  await assert.rejects(env.client.publish('r', 'k', 1), ClientClosedError);
  assert.throws(() => env.client.subscribe('r'), ClientClosedError);
});

test('a publish queued before a welcome with a smaller max_frame is refused, not sent', async () => {
  const env = setup();
  const big = env.client.publish('notes', 'note', 'x'.repeat(500));
  const small = env.client.publish('notes', 'note', 1);
  await settle();
  env.last().accept();
  env.last().receive({ welcome: { ...WELCOME.welcome, max_frame: 300 } });
  await assert.rejects(big, (e) => e instanceof FrameTooLargeError && e.limit === 300);
  await settle();
  assert.deepEqual(env.last().frames().filter((f) => f.publish).map((f) => f.publish.id), [2]);
  env.last().receive({ publish_ack: { id: 2, position: { epoch: 1, offset: 1 } } });
  assert.deepEqual(await small, { epoch: 1, offset: 1 });
  env.client.close();
});

test('maxRooms bounds the rooms held', async () => {
  const env = setup({ maxRooms: 2, rooms: ['a', 'b'] });
  assert.throws(() => env.client.subscribe('c'), TooManyRoomsError);
  env.client.close();
});

test('refused joins are reported; a room left while its join is unanswered is unsubscribed after the answer', async () => {
  const env = setup({ rooms: ['secret', 'tasks'] });
  const errors = [];
  env.client.onError((e) => errors.push(e));
  const ws = await open(env);
  ws.receive({ error: { code: 1, id: null, room: 'secret', retry_after_ms: null, reason: 'forbidden' } });
  assert.deepEqual(errors, [{ code: 1, name: 'FORBIDDEN_ROOM', reason: 'forbidden', room: 'secret' }]);
  assert.equal(env.client.unsubscribe('tasks'), true);
  await settle();
  assert.equal(ws.frames().filter((f) => f.unsubscribe).length, 0, 'waits for the join answer');
  ws.receive({ subscribed: { room: 'tasks', position: { epoch: 1, offset: 3 } } });
  await settle();
  assert.deepEqual(ws.frames().filter((f) => f.unsubscribe), [{ unsubscribe: { room: 'tasks' } }]);
  ws.receive(batch('tasks', 1, [4]));
  assert.deepEqual(env.client.positions(), {});
  env.client.close();
});

test('a join of a room that does not exist (NO_SUCH_ROOM) is reported and the room is no longer held', async () => {
  const env = setup({ rooms: ['ghost', 'tasks'] });
  const errors = [];
  env.client.onError((e) => errors.push(e));
  const ws = await open(env);
  ws.receive({ error: { code: 7, id: null, room: 'ghost', retry_after_ms: null, reason: 'no such room' } });
  ws.receive({ subscribed: { room: 'tasks', position: { epoch: 1, offset: 0 } } });
  await settle();
  assert.deepEqual(errors, [{ code: 7, name: 'NO_SUCH_ROOM', reason: 'no such room', room: 'ghost' }]);
  assert.deepEqual(Object.keys(env.client.positions()), ['tasks']);
  env.client.close();
});

test('a throwing handler is reported and does not break delivery', async () => {
  const env = setup({ rooms: ['tasks'] });
  const errors = [];
  env.client.onError((e) => errors.push(e.name));
  let n = 0;
  env.client.on('k', () => {
    n += 1;
    throw new Error('boom');
  });
  const ws = await open(env, { tasks: { epoch: 1, offset: 0 } });
  ws.receive(batch('tasks', 1, [1, 2]));
  assert.equal(n, 2);
  assert.deepEqual(errors, ['HANDLER_FAILED', 'HANDLER_FAILED']);
  env.client.close();
});

test('storage: loaded positions resume rooms; saves are throttled to 250 ms and made on close', async () => {
  const saves = [];
  const storage = {
    load: () => ({ tasks: { epoch: 4, offset: 40 }, bogus: { epoch: -1, offset: 0 } }),
    save: (p) => saves.push(p),
  };
  const env = setup({ rooms: ['tasks', 'agents'], storage });
  await settle();
  env.last().accept();
  assert.deepEqual(env.last().frames()[0].hello.rooms, [
    { room: 'tasks', from: { epoch: 4, offset: 40 } },
    { room: 'agents', from: null },
  ]);
  const ws = env.last();
  ws.receive(WELCOME);
  ws.receive({ subscribed: { room: 'tasks', position: { epoch: 4, offset: 40 } } });
  for (let i = 41; i <= 60; i++) ws.receive(batch('tasks', 4, [i]));
  assert.equal(saves.length, 0);
  await env.clock.advance(250);
  assert.deepEqual(saves, [{ tasks: { epoch: 4, offset: 60 } }]);
  ws.receive(batch('tasks', 4, [61]));
  env.client.close();
  assert.deepEqual(saves.at(-1), { tasks: { epoch: 4, offset: 61 } });
  assert.equal(saves.length, 2);
});

test('close() sends close 1000 and stops; state closed', async () => {
  const env = setup();
  const ws = await open(env);
  env.client.close();
  assert.deepEqual(ws.frames().at(-1), { close: { code: 1000, retry_after_ms: null, reason: '' } });
  assert.equal(ws.closedWith, 1000);
  assert.equal(env.client.status.state, 'closed');
  env.client.close();
  assert.equal(env.clock.timers.size, 0);
});

test('fallback: after 3 failed WebSocket attempts the client polls, then upgrades back', async () => {
  const env = setup({ rooms: ['tasks'], upgradeInterval: 5000 });
  for (let i = 0; i < 3; i++) {
    await settle();
    env.last().drop(1006);
    await env.clock.advance(1000);
  }
  assert.equal(env.instances.length, 3, 'no fourth WebSocket attempt');
  assert.equal(env.calls.length, 1);
  const first = env.calls[0];
  assert.equal(first.url, 'http://example.test/eventwire/poll');
  assert.equal(first.init.method, 'POST');
  assert.equal(first.headers['Content-Type'], 'application/json');
  assert.equal(first.headers['Eventwire-Session'], undefined);
  assert.equal(first.headers['Eventwire-Seq'], '1', 'a session numbers its requests from 1');
  assert.equal(first.frames.length, 1);
  assert.equal(first.frames[0].hello.rooms[0].room, 'tasks');
  assert.equal(env.client.status.transport, 'polling');
  const slow = { welcome: { ...WELCOME.welcome, heartbeat_ms: 60000 } };
  first.reply(200, [slow, { subscribed: { room: 'tasks', position: { epoch: 1, offset: 0 } } }], { 'Eventwire-Session': 's1' });
  await settle();
  assert.equal(env.client.status.state, 'connected');
  // One request is held at all times.
  assert.equal(env.calls.length, 2);
  assert.equal(env.calls[1].headers['Eventwire-Session'], 's1');
  assert.equal(env.calls[1].headers['Eventwire-Seq'], '2');
  assert.deepEqual(env.calls[1].frames, []);
  // Frames to send go in a new request at once; a server ping is answered there.
  const p = env.client.publish('notes', 'note', { a: 1 });
  await settle();
  assert.equal(env.calls.length, 3);
  assert.equal(env.calls[2].frames[0].publish.id, 1);
  assert.equal(env.calls[2].headers['Eventwire-Seq'], '3', 'the second request under way: the next number');
  env.calls[1].reply(200, [{ ping: { nonce: 5 } }, batch('tasks', 1, [1, 2])], { 'Eventwire-Session': 's1' });
  env.calls[2].reply(200, [{ publish_ack: { id: 1, position: { epoch: 1, offset: 9 } } }], { 'Eventwire-Session': 's1' });
  assert.deepEqual(await p, { epoch: 1, offset: 9 });
  await settle();
  assert.ok(env.calls.some((c) => c.frames.some((f) => f.pong && f.pong.nonce === 5)), 'pong sent');
  assert.deepEqual(env.client.positions(), { tasks: { epoch: 1, offset: 2 } });
  // The upgrade probe: a WebSocket in the background after upgradeInterval.
  assert.equal(env.instances.length, 3);
  await env.clock.advance(5000);
  assert.equal(env.instances.length, 4);
  const probe = env.last();
  probe.accept();
  await settle();
  assert.equal(probe.closedWith, 1000, 'the probe is closed again');
  assert.ok(env.calls.some((c) => c.frames.some((f) => f.close && f.close.code === 1000)), 'the polling session is ended');
  assert.equal(env.instances.length, 5, 'reconnected over WebSocket at once');
  const ws = env.last();
  ws.accept();
  assert.deepEqual(ws.frames()[0].hello.rooms, [{ room: 'tasks', from: { epoch: 1, offset: 2 } }]);
  ws.receive(WELCOME);
  await settle();
  assert.equal(env.client.status.transport, 'websocket');
  assert.equal(env.client.status.state, 'connected');
  env.client.close();
});

test('polling: a 404 or a 503 ends the session; a 503 Retry-After is the retry delay', async () => {
  const env = setup({ transports: 'polling' });
  await settle();
  env.calls[0].reply(200, [WELCOME], { 'Eventwire-Session': 's1' });
  await settle();
  env.calls[1].reply(404, 'unknown session');
  await settle();
  assert.equal(env.client.status.state, 'reconnecting');
  await env.clock.advance(100);
  assert.equal(env.calls.length, 3);
  assert.equal(env.calls[2].headers['Eventwire-Session'], undefined, 'a new session');
  assert.ok(env.calls[2].frames[0].hello);
  env.calls[2].reply(503, 'shutting down', { 'Retry-After': '3' });
  await settle();
  assert.equal(env.client.status.retryInMs, 3000);
  await env.clock.advance(2999);
  assert.equal(env.calls.length, 3);
  await env.clock.advance(1);
  assert.equal(env.calls.length, 4);
  env.calls[3].fail();
  await settle();
  assert.equal(env.client.status.state, 'reconnecting');
  env.client.close();
});

test('polling: each request carries its number in the session (Eventwire-Seq), from 1 in each session', async () => {
  const env = setup({ transports: 'polling', rooms: ['tasks'] });
  await settle();
  const seqs = () => env.calls.map((c) => c.headers['Eventwire-Seq']);
  assert.deepEqual(seqs(), ['1']);
  env.calls[0].reply(200, [WELCOME], { 'Eventwire-Session': 's1' });
  await settle();
  assert.deepEqual(seqs(), ['1', '2'], 'the held request');
  const p = env.client.publish('notes', 'note', { a: 1 });
  await settle();
  assert.deepEqual(seqs(), ['1', '2', '3'], 'frames go in a second request, numbered next');
  // The server answered 3 first (2 overtaken, answered empty): handled in request order.
  env.calls[2].reply(200, [{ publish_ack: { id: 1, position: { epoch: 1, offset: 9 } } }], { 'Eventwire-Session': 's1' });
  env.calls[1].reply(200, [], { 'Eventwire-Session': 's1' });
  assert.deepEqual(await p, { epoch: 1, offset: 9 });
  await settle();
  assert.deepEqual(seqs(), ['1', '2', '3', '4']);
  // A new session numbers from 1 again.
  env.calls[3].reply(404, 'unknown session');
  await settle();
  await env.clock.advance(1000);
  assert.equal(env.calls.length, 5);
  assert.equal(env.calls[4].headers['Eventwire-Session'], undefined);
  assert.equal(env.calls[4].headers['Eventwire-Seq'], '1');
  env.calls[4].reply(200, [WELCOME], { 'Eventwire-Session': 's2' });
  await settle();
  assert.equal(env.calls[5].headers['Eventwire-Seq'], '2');
  // The last request, carrying the close, is numbered too.
  env.client.close();
  const last = env.calls.at(-1);
  assert.ok(last.frames.some((f) => f.close && f.close.code === 1000));
  assert.equal(last.headers['Eventwire-Seq'], '3');
});

test('polling: a close frame in a response is authoritative; a response without a token fails', async () => {
  const env = setup({ transports: 'polling' });
  await settle();
  env.calls[0].reply(200, [WELCOME]);
  await settle();
  assert.equal(env.client.status.state, 'connecting', 'no session token: the session is abandoned');
  await env.clock.advance(100);
  // A refusal at capacity: a close frame without a token; its retry-after is honoured.
  env.calls[1].reply(200, [{ close: { code: 1013, retry_after_ms: 5000, reason: 'at capacity' } }]);
  await settle();
  assert.equal(env.client.status.retryInMs, 5000);
  assert.deepEqual(env.client.status.lastClose, { code: 1013, reason: 'at capacity' });
  await env.clock.advance(5000);
  env.calls.splice(1, 1);
  env.calls[1].reply(200, [WELCOME], { 'Eventwire-Session': 's2' });
  await settle();
  env.calls[2].reply(200, [{ close: { code: 4001, retry_after_ms: null, reason: 'unauthorized' } }], { 'Eventwire-Session': 's2' });
  await settle();
  assert.equal(env.client.status.state, 'closed');
  assert.deepEqual(env.client.status.lastClose, { code: 4001, reason: 'unauthorized' });
});

test('polling: a frame over maxFrame in a response closes with 1009 in the next request', async () => {
  const env = setup({ transports: 'polling', maxFrame: 300 });
  await settle();
  env.calls[0].reply(200, [WELCOME], { 'Eventwire-Session': 's' });
  await settle();
  env.calls[1].reply(200, [{ ping: { nonce: 1 } }, { event: { room: 'r', position: { epoch: 1, offset: 1 }, kind: 'k', payload: 'x'.repeat(400) } }], { 'Eventwire-Session': 's' });
  await settle();
  assert.ok(env.calls.some((c) => c.frames.some((f) => f.close && f.close.code === 1009)));
  assert.equal(env.client.status.state, 'reconnecting');
  env.client.close();
});

test('an unknown frame kind is ignored and the connection kept (PROTOCOL.md 6)', async () => {
  const env = setup({ rooms: ['tasks'] });
  const ws = await open(env, { tasks: { epoch: 1, offset: 0 } });
  ws.receive('{"telemetry":{"future":[1,{"x":"\\u0041"}]}}');
  ws.receive(batch('tasks', 1, [1]));
  await settle();
  assert.equal(ws.closedWith, null);
  assert.equal(ws.frames().filter((f) => f.close).length, 0);
  assert.deepEqual(env.client.positions(), { tasks: { epoch: 1, offset: 1 } });
  assert.equal(env.client.status.state, 'connected');
  env.client.close();
});

test('polling: a silent session is dead after 3 heartbeat intervals (close 4003 in a last request)', async () => {
  const env = setup({ transports: 'polling' });
  await settle();
  env.calls[0].reply(200, [WELCOME], { 'Eventwire-Session': 's' });
  await settle();
  await env.clock.advance(2999);
  assert.equal(env.client.status.state, 'connected');
  await env.clock.advance(1);
  assert.ok(env.calls.some((c) => c.headers['Eventwire-Session'] === 's' && c.frames.some((f) => f.close && f.close.code === 4003)));
  assert.equal(env.client.status.state, 'reconnecting');
  assert.equal(env.client.status.lastClose.code, 4003);
  env.client.close();
});

test('URLs: ws(s) as given, http(s) taken for ws(s), the poll URL derived; others refused', async () => {
  const { FakeWebSocket, instances } = fakeWebSocketClass();
  const { fetch, calls } = fakeFetch();
  const clock = new ManualClock();
  const a = new Client('https://example.test:8443/feed?x=1', { WebSocket: FakeWebSocket, fetch, clock, fallbackAfter: 1 });
  await settle();
  assert.equal(instances[0].url, 'wss://example.test:8443/feed?x=1');
  instances[0].drop();
  await clock.advance(1000);
  assert.equal(calls[0].url, 'https://example.test:8443/eventwire/poll');
  a.close();
  assert.throws(() => new Client('ftp://example.test/'), ValidationError);
  assert.throws(() => new Client('not a url'), ValidationError);
  assert.throws(() => new Client('ws://example.test/', { transports: 'carrier-pigeon' }), ValidationError);
  assert.throws(() => new Client('ws://example.test/', { token: 'has space' }), ValidationError);
  assert.throws(() => new Client('ws://example.test/', { rooms: ['ok', 'not ok'] }), ValidationError);
});
