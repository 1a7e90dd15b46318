// A page from another origin imports the client from the demo's URL and, with WebSockets refused,
// receives events over cross-origin long-polling (CORS: preflight, Access-Control-Allow-Origin,
// the Eventwire-Session header exposed).
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { assertNoPageProblems, launch, scenario, startDemo, waitFor } from './harness.mjs';

function pageFor(demo) {
  return `<!doctype html>
<html><head><meta charset="utf-8"><title>cross-origin eventwire</title><link rel="icon" href="data:,"></head>
<body><pre id="log"></pre>
<script type="module">
import { Client } from '${demo.origin}/eventwire.js';
window.received = [];
window.statuses = [];
const client = new Client('ws://127.0.0.1:${demo.port}/', { rooms: ['tasks', 'system'] });
client.on('*', (payload, event) => {
  if (window.received.length < 1000) {
    window.received.push({ room: event.room, kind: event.kind, offset: event.position.offset, payload });
  }
});
client.onStatus((s) => window.statuses.push({ state: s.state, transport: s.transport }));
window.client = client;
</script></body></html>`;
}

scenario('cross-origin polling: a page of another origin receives events', async (ctx) => {
  // The page's server listens first: its origin is what the demo is told to allow (a server
  // admits only its own pages unless told otherwise).
  let demo;
  const other = createServer((req, res) => {
    if (req.url === '/') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-store' });
      res.end(pageFor(demo));
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise((r) => other.listen(0, '127.0.0.1', r));
  ctx.defer(() => new Promise((r) => other.close(r)));
  const otherOrigin = `http://127.0.0.1:${other.address().port}`;
  demo = await startDemo(ctx, ['--agents', '8', '--no-websocket', '--rate', '2', '--allow-origin', otherOrigin]);
  assert.notEqual(otherOrigin, demo.origin);

  const { page, problems } = await launch(ctx);
  const polls = [];
  page.on('response', async (r) => {
    if (r.url() !== `${demo.origin}/eventwire/poll`) return;
    const req = r.request();
    polls.push({
      method: req.method(),
      status: r.status(),
      origin: (await req.allHeaders()).origin,
      allowOrigin: (await r.allHeaders())['access-control-allow-origin'],
      exposed: (await r.allHeaders())['access-control-expose-headers'] ?? '',
    });
  });
  await page.goto(`${otherOrigin}/`, { waitUntil: 'domcontentloaded' });
  await waitFor(() => page.evaluate(() => typeof window.client === 'object'), {
    message: `the client module to load from ${demo.origin}/eventwire.js (problems: ${problems.join('; ')})`,
  });

  const received = await waitFor(
    async () => {
      const r = await page.evaluate(() => window.received);
      return r.filter((e) => e.room === 'tasks').length >= 5 ? r : null;
    },
    { timeout: 25_000, message: 'task events over cross-origin polling' },
  );
  assert.ok(received.every((e) => typeof e.kind === 'string' && e.payload && typeof e.payload === 'object'));
  const tasks = received.filter((e) => e.room === 'tasks').map((e) => e.offset);
  for (let i = 1; i < tasks.length; i++) assert.equal(tasks[i], tasks[i - 1] + 1, `contiguous task offsets ${tasks}`);

  const status = await page.evaluate(() => window.client.status);
  assert.equal(status.transport, 'polling');
  assert.equal(status.state, 'connected');
  const posts = polls.filter((p) => p.method === 'POST' && p.status === 200);
  assert.ok(posts.length >= 2, `successful POST /eventwire/poll responses: ${JSON.stringify(polls)}`);
  for (const p of posts) {
    assert.equal(p.origin, otherOrigin, 'the poll requests are cross-origin');
    assert.ok(p.allowOrigin === otherOrigin || p.allowOrigin === '*', `Access-Control-Allow-Origin ${p.allowOrigin}`);
    assert.match(p.exposed, /eventwire-session/i, 'Access-Control-Expose-Headers names Eventwire-Session');
  }
  assertNoPageProblems(problems);
});
