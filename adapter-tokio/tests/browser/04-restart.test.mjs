// The demo is stopped (SIGTERM) and a new one starts on the same port in a new epoch: the page
// sees a reset gap, re-fetches the snapshot, and its totals match the new run after pausing it.
// The snapshots of the new run reach the page 1.5 s after the server made them, so events newer
// than the snapshot arrive while it is in flight: the page must buffer them and re-apply them.
import assert from 'node:assert/strict';
import {
  assertNoPageProblems, assertTotalsMatch, dashboardInfo, getJson, launch, openDashboard, pauseSwarm,
  scenario, sleep, startDemo, waitFor, waitForProgress,
} from './harness.mjs';

scenario('restart: reset gap, snapshot re-fetched, totals match the new run', async (ctx) => {
  const first = await startDemo(ctx, ['--agents', '10', '--rate', '2']);
  const { page, problems } = await launch(ctx);
  await openDashboard(page, first, { agents: 10 });
  await waitForProgress(page, { min: 10 });
  const before = await dashboardInfo(page);
  assert.equal(before.snapshots, 1);
  assert.equal(before.gaps, 0);

  const { code } = await first.stop('SIGTERM');
  assert.equal(code, 0, `the demo exits 0 on SIGTERM:\n${first.stderrTail()}`);
  await sleep(1100);
  let delayed = 0;
  await page.route(`${first.origin}/api/snapshot`, async (route) => {
    const response = await route.fetch(); // the server's snapshot, taken now
    delayed += 1;
    await sleep(1500);
    await route.fulfill({ response });
  });
  const second = await startDemo(ctx, ['--agents', '10', '--rate', '2'], { port: first.port });
  const snap = await getJson(`${second.origin}/api/snapshot`);
  assert.notEqual(snap.epoch, before.epoch, 'the new run has a new epoch');

  const after = await waitFor(
    async () => {
      const i = await dashboardInfo(page);
      return i.gaps > 0 && i.snapshots > before.snapshots && !i.recovering && i.epoch === snap.epoch ? i : null;
    },
    { timeout: 20_000, message: 'a gap and a re-fetched snapshot of the new epoch' },
  );
  assert.ok(after.lastGap?.missed?.reset, `the gap is a reset: ${JSON.stringify(after.lastGap)}`);
  const gapText = await page.getByTestId('last-gap').textContent();
  assert.match(gapText, /reset/, 'the indicator shows the reset');
  assert.match(await page.getByTestId('gap-action').textContent(), /re-fetched snapshot at offset \d+/);
  assert.ok(delayed >= 1, 'the page fetched the snapshot of the new run');
  assert.ok(
    after.offsets.reapplied > 0,
    `events newer than the delayed snapshot were buffered and re-applied: ${JSON.stringify(after.offsets)}`,
  );

  await waitForProgress(page, { min: 5 });
  await pauseSwarm(page, second);
  const { server } = await assertTotalsMatch(page, second);
  assert.equal(server.epoch, snap.epoch);
  assertNoPageProblems(problems);
});
