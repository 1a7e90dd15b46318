// End-to-end scenarios against the real Rust demo server (`dashboard` example): events,
// reconnects under chaos, the polling fallback, a server restart, publishes, the upgrade back to
// WebSocket. Each scenario is bounded in time and kills what it spawned.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { Client, ErrorCode, PublishRejectedError } from '../eventwire.js';
import { ensureDemoBuilt, startDemo, waitFor, sleep, RoomOracle } from '../support/demo.mjs';

const FAST = { backoff: { initial: 50, factor: 2, cap: 500 } };

before(() => {
  assert.equal(typeof globalThis.WebSocket, 'function', 'run node with --experimental-websocket');
  ensureDemoBuilt();
}, { timeout: 900000 });

/** A client with oracles for the three swarm rooms and a record of statuses. */
function watch(url, options = {}) {
  const oracles = {
    tasks: new RoomOracle('tasks', true),
    agents: new RoomOracle('agents', false),
    system: new RoomOracle('system', false),
  };
  const client = new Client(url, { rooms: ['agents', 'tasks', 'system'], ...FAST, ...options });
  const statuses = [];
  const errors = [];
  client.on('*', (_p, e) => oracles[e.room]?.event(e));
  client.onGap((g) => oracles[g.room]?.gap(g));
  client.onStatus((s) => statuses.push({ ...s, at: Date.now() }));
  client.onError((e) => errors.push(e));
  const violations = () => Object.values(oracles).flatMap((o) => o.violations);
  return { client, oracles, statuses, errors, violations };
}

/** How many times the state went from connected to reconnecting. */
const reconnects = (statuses) => statuses.filter((s, i) => i > 0 && s.state === 'reconnecting' && statuses[i - 1].state === 'connected').length;

test('(a) events of agents, tasks and system arrive; task offsets are contiguous', { timeout: 20000 }, async () => {
  const demo = await startDemo(['--agents', '20', '--rate', '4']);
  const w = watch(demo.ws);
  try {
    await waitFor(() => w.oracles.tasks.events >= 30 && w.oracles.agents.events >= 10 && w.oracles.system.events >= 2, 15000, 'events in every room');
    assert.deepEqual(w.violations(), []);
    assert.equal(w.client.status.state, 'connected');
    assert.equal(w.client.status.transport, 'websocket');
    const kinds = new Set();
    w.client.on('*', (_p, e) => kinds.add(e.kind));
    await sleep(1500);
    assert.ok(kinds.has('agent.metrics'), [...kinds].join());
    assert.ok(w.client.status.eventsPerSecond > 0);
  } finally {
    w.client.close();
    await demo.stop();
  }
});

test('(b) chaos: many reconnects, each resumed; every task offset exactly once, in order', { timeout: 20000 }, async () => {
  const demo = await startDemo(['--agents', '10', '--rate', '4', '--chaos', '0.7']);
  const w = watch(demo.ws);
  try {
    await sleep(6000);
    assert.ok(reconnects(w.statuses) >= 2, `only ${reconnects(w.statuses)} reconnects`);
    await waitFor(() => w.client.status.state === 'connected', 5000, 'connected again');
    assert.ok(w.oracles.tasks.events >= 20, `${w.oracles.tasks.events} task events`);
    assert.deepEqual(w.violations(), []);
    assert.ok(w.client.stats().sessions >= 3);
  } finally {
    w.client.close();
    await demo.stop();
  }
});

test('(c) no WebSocket: the client falls back to polling and receives contiguous offsets', { timeout: 20000 }, async () => {
  const demo = await startDemo(['--agents', '10', '--rate', '4', '--no-websocket']);
  const w = watch(demo.ws);
  try {
    await waitFor(() => w.client.status.transport === 'polling' && w.client.status.state === 'connected', 8000, 'a polling session');
    const start = w.oracles.tasks.events;
    await waitFor(() => w.oracles.tasks.events >= start + 20, 10000, 'task events over polling');
    assert.deepEqual(w.violations(), []);
    const p = await w.client.publish('notes', 'note', { over: 'polling' });
    assert.ok(p.offset >= 1);
  } finally {
    w.client.close();
    await demo.stop();
  }
});

test('(c) polling under chaos: sessions forgotten (404) are resumed without loss', { timeout: 20000 }, async () => {
  const demo = await startDemo(['--agents', '10', '--rate', '4', '--no-websocket', '--chaos', '0.5']);
  const w = watch(demo.ws, { transports: 'polling' });
  try {
    await sleep(6000);
    assert.ok(w.client.stats().sessions >= 2, `${w.client.stats().sessions} sessions`);
    await waitFor(() => w.client.status.state === 'connected', 5000, 'connected again');
    assert.ok(w.oracles.tasks.events >= 20, `${w.oracles.tasks.events} task events`);
    assert.deepEqual(w.violations(), []);
  } finally {
    w.client.close();
    await demo.stop();
  }
});

test('(d) restart: close 1001 with a 2 s retry, a reset gap per room, delivery continues in the new epoch', { timeout: 20000 }, async () => {
  let demo = await startDemo(['--agents', '10', '--rate', '4']);
  const w = watch(demo.ws);
  try {
    await waitFor(() => w.oracles.tasks.events >= 5, 8000, 'first events');
    const epoch = w.oracles.tasks.epoch;
    const port = demo.port;
    assert.equal(await demo.stop('SIGTERM'), 0, 'graceful exit');
    await waitFor(() => w.client.status.lastClose?.code === 1001, 2000, 'close 1001');
    const closing = w.statuses.find((s) => s.lastClose?.code === 1001);
    assert.equal(closing.state, 'reconnecting');
    assert.ok(closing.retryInMs >= 2000, `retry in ${closing.retryInMs}`);
    await sleep(1100);
    demo = await startDemo(['--agents', '10', '--rate', '4'], port);
    await waitFor(() => w.oracles.tasks.gaps.some((g) => 'reset' in g), 8000, 'a reset gap');
    const i = w.statuses.indexOf(closing);
    const attempt = w.statuses.slice(i + 1).find((s) => s.retryInMs === null);
    const reconnected = w.statuses.slice(i + 1).find((s) => s.state === 'connected');
    assert.ok(attempt && reconnected, 'reconnected');
    assert.ok(attempt.at - closing.at >= 1990, `first attempt ${attempt.at - closing.at} ms after the close`);
    for (const room of ['agents', 'tasks', 'system']) {
      const resets = w.oracles[room].gaps.filter((g) => 'reset' in g);
      assert.equal(resets.length, 1, `one reset gap in ${room}`);
      assert.notEqual(resets[0].reset.position.epoch, epoch);
    }
    const after = w.oracles.tasks.events;
    await waitFor(() => w.oracles.tasks.events >= after + 5, 8000, 'events in the new epoch');
    assert.notEqual(w.oracles.tasks.epoch, epoch);
    assert.deepEqual(w.violations(), []);
  } finally {
    w.client.close();
    await demo.stop();
  }
});

/** Publishes `n` notes from one client while another watches room `notes`. */
async function publishScenario(args, n, spacingMs) {
  const demo = await startDemo(args);
  const seen = [];
  const notes = new RoomOracle('notes', true);
  const publisher = new Client(demo.ws, { ...FAST });
  const reader = new Client(demo.ws, { rooms: ['notes'], ...FAST });
  reader.on('note', (payload, e) => {
    seen.push(payload.n);
    notes.event(e);
  });
  reader.onGap((g) => notes.gap(g));
  try {
    await waitFor(() => reader.status.state === 'connected' && publisher.status.state === 'connected', 8000, 'both connected');
    await sleep(200);
    const promises = [];
    for (let i = 0; i < n; i++) {
      promises.push(publisher.publish('notes', 'note', { n: i }));
      if (spacingMs) await sleep(spacingMs);
    }
    const positions = await Promise.all(promises);
    const offsets = positions.map((p) => p.offset);
    for (let i = 1; i < offsets.length; i++) assert.ok(offsets[i] > offsets[i - 1], `offsets increase: ${offsets}`);
    assert.equal(new Set(positions.map((p) => `${p.epoch}:${p.offset}`)).size, n, 'distinct positions');
    await waitFor(() => seen.length >= n, 10000, `${n} notes seen (saw ${seen.length})`);
    await sleep(300);
    assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: n }, (_, i) => i), 'each note exactly once');
    assert.deepEqual(notes.violations, []);
    assert.deepEqual(notes.gaps, []);
    return { publisher, reader };
  } finally {
    publisher.close();
    reader.close();
    await demo.stop();
  }
}

test('(e) publish: 20 notes land at distinct increasing positions, seen exactly once by another client', { timeout: 20000 }, async () => {
  await publishScenario(['--agents', '5'], 20, 0);
});

test('(e) publish under chaos: every note still lands exactly once', { timeout: 20000 }, async () => {
  const { publisher } = await publishScenario(['--agents', '5', '--chaos', '0.6'], 20, 200);
  assert.ok(publisher.stats().sessions >= 2, 'the publisher reconnected at least once');
});

test('(e) the demo grants notes only: a publish into a swarm room is refused with FORBIDDEN_ROOM', { timeout: 20000 }, async () => {
  const demo = await startDemo(['--agents', '5']);
  const publisher = new Client(demo.ws, { ...FAST });
  try {
    await waitFor(() => publisher.status.state === 'connected', 8000, 'connected');
    for (const room of ['agents', 'tasks', 'system']) {
      await assert.rejects(publisher.publish(room, 'agent.status_changed', { agent_id: 'forged' }), (e) => {
        assert.ok(e instanceof PublishRejectedError, `${room}: ${e}`);
        assert.equal(e.code, ErrorCode.FORBIDDEN_ROOM, room);
        return true;
      });
    }
    const position = await publisher.publish('notes', 'note', { text: 'allowed' });
    assert.ok(position.offset >= 1);
  } finally {
    publisher.close();
    await demo.stop();
  }
});

test('(f) upgrade back: a polling client moves to WebSocket once the server accepts it', { timeout: 20000 }, async () => {
  let demo = await startDemo(['--agents', '10', '--rate', '4', '--no-websocket']);
  const w = watch(demo.ws, { fallbackAfter: 2, upgradeInterval: 1000 });
  try {
    await waitFor(() => w.client.status.transport === 'polling' && w.client.status.state === 'connected', 8000, 'polling');
    const port = demo.port;
    await demo.stop('SIGTERM');
    await sleep(1100);
    demo = await startDemo(['--agents', '10', '--rate', '4'], port);
    await waitFor(() => w.client.status.transport === 'websocket' && w.client.status.state === 'connected', 8000, 'back on WebSocket');
    const after = w.oracles.tasks.events;
    await waitFor(() => w.oracles.tasks.events >= after + 5, 8000, 'events over WebSocket');
    assert.deepEqual(w.violations(), []);
  } finally {
    w.client.close();
    await demo.stop();
  }
});
