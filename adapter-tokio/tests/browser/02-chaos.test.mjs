// With `--chaos 0.5` the demo cuts every connection with probability 0.5 each second: the
// indicator goes reconnecting -> connected again and again, and the totals still match.
import assert from 'node:assert/strict';
import {
  assertNoPageProblems, assertTotalsMatch, launch, openDashboard, pauseSwarm, scenario, startDemo, waitFor,
  waitForProgress,
} from './harness.mjs';

scenario('chaos 0.5: reconnects at least twice, totals match after pause', async (ctx) => {
  const demo = await startDemo(ctx, ['--agents', '12', '--chaos', '0.5', '--rate', '2']);
  const { page, problems } = await launch(ctx);
  const transitions = [];
  await page.exposeFunction('__ewRecordStatus', (t) => transitions.push(t));
  await page.addInitScript(() => {
    window.addEventListener('dashboard:status', (e) => window.__ewRecordStatus(e.detail));
  });
  await openDashboard(page, demo, { agents: 12 });
  await waitForProgress(page, { min: 5 });

  const recoveries = () =>
    transitions.filter((t) => t.from === 'reconnecting' && (t.to === 'connected' || t.to === 'polling'));
  await waitFor(() => recoveries().length >= 2, {
    timeout: 20_000,
    message: `two reconnecting -> connected transitions (seen: ${JSON.stringify(transitions.map((t) => `${t.from}->${t.to}`))})`,
  });
  assert.ok(recoveries().some((t) => t.to === 'connected'), 'recovered over WebSocket at least once');
  const shown = Number(await page.getByTestId('conn-reconnects').textContent());
  assert.ok(shown >= 2, `the indicator counts reconnects (shows ${shown})`);

  await pauseSwarm(page, demo);
  await assertTotalsMatch(page, demo, { timeout: 20_000 });
  assertNoPageProblems(problems);
});
