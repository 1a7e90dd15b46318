// With `--no-websocket` every upgrade is refused: the page falls back to long-polling, says so,
// and its totals match after pausing.
import assert from 'node:assert/strict';
import {
  assertNoPageProblems, assertTotalsMatch, dashboardInfo, launch, openDashboard, pauseSwarm, scenario,
  startDemo, waitFor, waitForProgress,
} from './harness.mjs';

scenario('no websocket: works over long-polling, indicator says polling', async (ctx) => {
  const demo = await startDemo(ctx, ['--agents', '10', '--no-websocket', '--rate', '2']);
  const { page, problems } = await launch(ctx);
  const polls = [];
  page.on('request', (r) => {
    if (r.url() === `${demo.origin}/eventwire/poll`) polls.push(r.method());
  });
  await openDashboard(page, demo, { agents: 10 });
  await waitFor(async () => (await page.getByTestId('conn-state').textContent()) === 'polling', {
    timeout: 20_000,
    message: 'conn-state "polling"',
  });
  assert.equal(await page.getByTestId('conn-transport').textContent(), 'polling');
  await waitForProgress(page, { min: 10 });
  assert.ok(polls.length >= 2 && polls.every((m) => m === 'POST'), `POST /eventwire/poll requests (${polls.length})`);

  await pauseSwarm(page, demo);
  await assertTotalsMatch(page, demo);
  const info = await dashboardInfo(page);
  assert.equal(info.status.transport, 'polling');
  assert.equal(info.status.display, 'polling');
  assertNoPageProblems(problems);
});
