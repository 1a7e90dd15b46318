// Shared helpers of the Chromium scenarios: the demo process, the browser, bounded waits and the
// totals oracle. Not a test file itself (node --test only runs `*.test.mjs`).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const REPO_ROOT = resolve(here, '../../..');
export const DEMO_BIN = process.env.EVENTWIRE_DEMO_BIN || join(REPO_ROOT, 'target/debug/examples/dashboard');
export const CHROMIUM = process.env.EVENTWIRE_CHROMIUM || '/usr/bin/chromium';
const IN_CI = process.env.CI === 'true';

/** Every scenario is bounded by this (node:test cancels it and reports a timeout). */
export const SCENARIO_TIMEOUT_MS = 45_000;

/**
 * Chromium flags, and why:
 * --headless=new          the real browser engine without a display (not the old headless shell)
 * --no-sandbox            containers and CI runners usually cannot create the sandbox's namespaces
 * --disable-gpu           no GPU in CI; software rendering is deterministic enough for a screenshot
 * --disable-quic          keep all traffic on plain TCP to 127.0.0.1
 * --no-first-run, --disable-background-networking, --disable-component-update, --disable-sync
 *                         no first-run UI and no traffic to Google's services: the tests work offline
 * a fresh --user-data-dir per test (Playwright's launchPersistentContext passes it): no state, cache
 *                         or sessionStorage leaks from one scenario into another
 */
export const CHROMIUM_ARGS = [
  '--headless=new',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/**
 * Declares a scenario. Without Chromium it fails when CI=true and is skipped (loudly) otherwise;
 * without the demo binary it fails with the command that builds it.
 */
export function scenario(name, fn) {
  if (!existsSync(CHROMIUM)) {
    const why = `Chromium not found at ${CHROMIUM} (install it: apt-get install -y chromium, or set EVENTWIRE_CHROMIUM)`;
    if (IN_CI) {
      test(name, () => {
        throw new Error(`${why}; CI=true, so this is a failure, not a skip`);
      });
    } else {
      console.error(`\n!!! SKIPPING browser scenario "${name}": ${why} !!!\n`);
      test(name, { skip: why }, () => {});
    }
    return;
  }
  test(name, { timeout: SCENARIO_TIMEOUT_MS }, async (t) => {
    if (!existsSync(DEMO_BIN)) {
      throw new Error(
        `demo binary not found at ${DEMO_BIN}: build it with ` +
          '`cargo build -p eventwire-tokio --example dashboard` or set EVENTWIRE_DEMO_BIN',
      );
    }
    const cleanups = [];
    const ctx = {
      t,
      defer: (f) => cleanups.push(f),
    };
    let cleaned = null;
    // Runs once: at the end, or as soon as node:test times the scenario out or cancels it (then
    // the browser and the demo must go, or their handles would keep this file's process alive).
    const cleanup = () =>
      (cleaned ??= (async () => {
        for (const f of cleanups.reverse()) {
          try {
            await f();
          } catch (err) {
            console.error(`cleanup of "${name}" failed: ${err?.stack ?? err}`);
          }
        }
      })());
    t.signal.addEventListener('abort', cleanup, { once: true });
    try {
      await fn(ctx);
    } finally {
      await cleanup();
    }
  });
}

/** A temporary directory for one scenario. */
export async function tempDir(ctx, prefix = 'eventwire-browser-') {
  return mkdtemp(join(tmpdir(), prefix));
}

/**
 * Starts the demo: `--addr 127.0.0.1:<port>` (0: a free port) and `args`. Resolves once the first
 * stdout line names its URL.
 */
export async function startDemo(ctx, args = [], { port = 0 } = {}) {
  const startedAt = Date.now();
  const proc = spawn(DEMO_BIN, ['--addr', `127.0.0.1:${port}`, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const stderr = [];
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (chunk) => {
    stderr.push(chunk);
    if (stderr.length > 200) stderr.splice(0, stderr.length - 200);
  });
  const exited = new Promise((res) => proc.once('exit', (code, signal) => res({ code, signal })));
  const demo = {
    proc,
    startedAt,
    exited,
    stderrTail: () => stderr.join('').split('\n').slice(-30).join('\n'),
    async stop(signal = 'SIGTERM', waitMs = 5000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return exited;
      proc.kill(signal);
      let timer;
      const timeout = new Promise((res) => {
        timer = setTimeout(() => res(null), waitMs);
      });
      const result = await Promise.race([exited, timeout]);
      clearTimeout(timer);
      if (result === null) {
        proc.kill('SIGKILL');
        throw new Error(`demo pid ${proc.pid} did not exit within ${waitMs} ms of ${signal}`);
      }
      return result;
    },
  };
  ctx.defer(() => demo.stop('SIGTERM').catch(() => proc.kill('SIGKILL')));
  const lines = createInterface({ input: proc.stdout });
  let timer;
  let started = false;
  const first = await Promise.race([
    new Promise((res) => lines.once('line', res)),
    exited.then(({ code, signal }) => {
      if (!started) throw new Error(`demo exited before printing its URL (code ${code}, signal ${signal}):\n${demo.stderrTail()}`);
    }),
    new Promise((_, rej) => {
      timer = setTimeout(() => rej(new Error(`demo printed no URL within 15 s:\n${demo.stderrTail()}`)), 15_000);
    }),
  ]).finally(() => {
    started = true;
    clearTimeout(timer);
  });
  lines.on('line', () => {}); // keep draining stdout
  const m = /eventwire dashboard at (http:\/\/[^\s/]+:(\d+)\/)/.exec(first);
  if (!m) throw new Error(`unexpected first stdout line of the demo: ${JSON.stringify(first)}`);
  demo.url = m[1];
  demo.port = Number(m[2]);
  demo.origin = demo.url.replace(/\/$/, '');
  return demo;
}

/** Launches Chromium with a fresh profile; closed (and the profile removed) by the scenario's cleanup. */
export async function launch(ctx, { viewport = { width: 1280, height: 900 } } = {}) {
  const profile = await mkdtemp(join(tmpdir(), 'eventwire-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    viewport,
    timeout: 20_000,
  });
  ctx.defer(async () => {
    await context.close().catch(() => {});
    await rm(profile, { recursive: true, force: true });
  });
  const page = context.pages()[0] ?? (await context.newPage());
  const problems = [];
  page.on('pageerror', (err) => problems.push(`pageerror: ${err.message}`));
  // Network failures (a refused WebSocket upgrade, a 404 of a forgotten polling session) are
  // expected in the fault scenarios and Chromium logs them as console errors; anything else
  // logged as an error, and every uncaught exception, is a problem.
  const expected = /WebSocket connection to|Failed to load resource|net::ERR_|eventwire error/;
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !expected.test(msg.text())) problems.push(`console.error: ${msg.text()}`);
  });
  return { context, page, problems };
}

export function sleep(ms) {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `probe` until it returns a truthy value (returned), or throws after `timeout` ms with
 * `message` and the last value seen.
 */
export async function waitFor(probe, { timeout = 15_000, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  let lastErr;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      const detail = lastErr ? `last error: ${lastErr.message}` : `last value: ${JSON.stringify(last)}`;
      throw new Error(`timed out after ${timeout} ms waiting for ${message} (${detail})`);
    }
    await sleep(interval);
  }
}

export async function getJson(url, init) {
  const res = await fetch(url, init);
  if (!res.ok) throw new Error(`${init?.method ?? 'GET'} ${url}: HTTP ${res.status}`);
  return res.json();
}

/** The task counters as the page shows them (the DOM, not only the model). */
export async function pageCounters(page) {
  return page.evaluate(() => {
    const read = (id) => Number(document.querySelector(`[data-testid="${id}"]`).textContent.replace(/[^0-9-]/g, ''));
    return {
      queued: read('tasks-queued'),
      running: read('tasks-running'),
      completed: read('tasks-completed'),
      failed: read('tasks-failed'),
    };
  });
}

export async function dashboardInfo(page) {
  return page.evaluate(() => {
    const d = window.dashboard;
    if (!d) return null;
    return {
      tasks: d.state.tasks,
      epoch: d.state.epoch,
      agents: d.state.agents.length,
      paused: d.state.paused,
      status: d.status,
      gaps: d.gaps,
      snapshots: d.snapshots,
      positions: d.positions(),
      restored: d.restored,
      recovering: d.recovering,
      offsets: d.offsets,
      lastGap: d.lastGap,
      ready: d.ready,
      lastError: d.lastError,
    };
  });
}

const sameTasks = (a, b) =>
  a.queued === b.queued && a.running === b.running && a.completed === b.completed && a.failed === b.failed;

/** Opens the dashboard and waits until it runs (client created, agent cards shown). */
export async function openDashboard(page, demo, { agents } = {}) {
  await page.goto(demo.url, { waitUntil: 'domcontentloaded', timeout: 15_000 });
  await waitFor(async () => (await dashboardInfo(page))?.ready, { message: 'the dashboard to create its client' });
  if (agents !== undefined) {
    await waitFor(async () => (await page.getByTestId('agent-card').count()) === agents, {
      message: `${agents} agent cards`,
    });
  }
}

/** Waits until the page's task counters moved by at least `min` events (completed + failed + queued). */
export async function waitForProgress(page, { min = 5, timeout = 15_000 } = {}) {
  const sum = (c) => c.queued + c.running + 2 * (c.completed + c.failed);
  const start = sum(await pageCounters(page));
  await waitFor(async () => sum(await pageCounters(page)) >= start + min, {
    timeout,
    message: `the task counters to move (from ${start})`,
  });
}

/** Clicks the page's pause button and checks the server reports the swarm paused. */
export async function pauseSwarm(page, demo) {
  const button = page.getByTestId('pause-button');
  await waitFor(async () => button.isEnabled(), { message: 'the pause button to be enabled' });
  const [response] = await Promise.all([
    page.waitForResponse((r) => r.url() === `${demo.origin}/api/swarm/pause`, { timeout: 10_000 }),
    button.click(),
  ]);
  if (!response.ok()) throw new Error(`POST /api/swarm/pause answered HTTP ${response.status()}`);
  const body = await response.json();
  if (body.paused !== true) throw new Error(`POST /api/swarm/pause answered ${JSON.stringify(body)}`);
  await waitFor(async () => (await button.textContent()).includes('Resume'), {
    message: 'the pause button to offer "Resume swarm"',
  });
}

/**
 * The oracle after pausing: the page's counters (DOM and model) and its `tasks` position equal
 * the server's snapshot, and stay equal for `stableMs`; the client delivered no task offset twice
 * and skipped none.
 */
export async function assertTotalsMatch(page, demo, { timeout = 25_000, stableMs = 1500 } = {}) {
  let server;
  let info;
  let dom;
  const equal = async () => {
    server = await getJson(`${demo.origin}/api/snapshot`);
    info = await dashboardInfo(page);
    dom = await pageCounters(page);
    return (
      server.paused === true &&
      info &&
      !info.recovering &&
      sameTasks(info.tasks, server.tasks) &&
      sameTasks(dom, server.tasks) &&
      info.positions.tasks?.epoch === server.positions.tasks.epoch &&
      info.positions.tasks?.offset === server.positions.tasks.offset
    );
  };
  try {
    await waitFor(equal, { timeout, interval: 200, message: 'the page counters to equal the server snapshot' });
    const until = Date.now() + stableMs;
    while (Date.now() < until) {
      await sleep(250);
      if (!(await equal())) throw new Error('the page counters equalled the server snapshot, then changed');
    }
  } catch (err) {
    err.message +=
      `\n  server tasks ${JSON.stringify(server?.tasks)} at ${JSON.stringify(server?.positions?.tasks)}` +
      `\n  page model   ${JSON.stringify(info?.tasks)} at ${JSON.stringify(info?.positions?.tasks)}` +
      `\n  page DOM     ${JSON.stringify(dom)}` +
      `\n  page status  ${JSON.stringify(info?.status)} gaps=${info?.gaps} snapshots=${info?.snapshots} recovering=${info?.recovering}`;
    throw err;
  }
  if (info.offsets.duplicates !== 0 || info.offsets.missing !== 0) {
    throw new Error(`the client delivered task offsets wrongly: ${JSON.stringify(info.offsets)}`);
  }
  return { server, info };
}

export function assertNoPageProblems(problems) {
  if (problems.length) throw new Error(`the page reported errors:\n  ${problems.join('\n  ')}`);
}
