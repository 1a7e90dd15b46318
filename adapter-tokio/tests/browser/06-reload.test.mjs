// A reload resumes from sessionStorage (state + positions saved together): no snapshot fetch, and
// after pausing the totals still match (nothing counted twice or missed across the reload).
import assert from 'node:assert/strict';
import {
  assertNoPageProblems, assertTotalsMatch, dashboardInfo, launch, openDashboard, pauseSwarm, scenario,
  sleep, startDemo, waitFor, waitForProgress,
} from './harness.mjs';

scenario('reload: resumes from sessionStorage without a snapshot fetch', async (ctx) => {
  const demo = await startDemo(ctx, ['--agents', '10', '--rate', '2']);
  const { page, problems } = await launch(ctx);
  let snapshotRequests = 0;
  page.on('request', (r) => {
    if (r.url() === `${demo.origin}/api/snapshot`) snapshotRequests += 1;
  });
  await openDashboard(page, demo, { agents: 10 });
  await waitForProgress(page, { min: 10 });
  await sleep(700); // at least one periodic save
  assert.equal(snapshotRequests, 1, 'the first load fetches the snapshot once');
  const before = await dashboardInfo(page);

  snapshotRequests = 0;
  await page.reload({ waitUntil: 'domcontentloaded' });
  const after = await waitFor(
    async () => {
      const i = await dashboardInfo(page);
      return i?.ready ? i : null;
    },
    { message: 'the reloaded dashboard to start' },
  );
  assert.equal(after.restored, true, 'the reloaded page restored its state from sessionStorage');
  assert.ok(
    after.tasks.completed + after.tasks.failed >= before.tasks.completed + before.tasks.failed,
    `restored counters ${JSON.stringify(after.tasks)} are not behind ${JSON.stringify(before.tasks)}`,
  );
  await waitFor(async () => (await page.getByTestId('agent-card').count()) === 10, { message: '10 agent cards' });
  await waitForProgress(page, { min: 5 });
  await pauseSwarm(page, demo);
  const { info } = await assertTotalsMatch(page, demo);
  assert.equal(snapshotRequests, 0, 'no /api/snapshot request after the reload');
  assert.equal(info.snapshots, 0);
  assert.equal(info.gaps, 0, `no gap across the reload: ${JSON.stringify(info.lastGap)}`);
  assertNoPageProblems(problems);
});
