// The page loads over WebSocket, shows one card per agent, its counters move, and after pausing
// the swarm its totals equal the server's.
import assert from 'node:assert/strict';
import {
  assertNoPageProblems, assertTotalsMatch, dashboardInfo, launch, openDashboard, pauseSwarm, scenario,
  startDemo, waitFor, waitForProgress,
} from './harness.mjs';

const AGENTS = 16;

scenario('load: agent cards, live counters, totals match after pause', async (ctx) => {
  const demo = await startDemo(ctx, ['--agents', String(AGENTS), '--rate', '2']);
  const { page, problems } = await launch(ctx);
  await openDashboard(page, demo, { agents: AGENTS });
  await waitFor(async () => (await page.getByTestId('conn-state').textContent()) === 'connected', {
    message: 'conn-state "connected"',
  });
  assert.equal(await page.getByTestId('conn-transport').textContent(), 'websocket');
  await waitForProgress(page, { min: 10 });

  // Agent cards carry live status and metrics.
  await waitFor(
    async () => (await page.locator('[data-testid="agent-card"] .cpu-value').allTextContents()).some((t) => t.endsWith('%')),
    { message: 'agent metrics on the cards' },
  );
  const statuses = await page.locator('[data-testid="agent-card"]').evaluateAll((cards) => cards.map((c) => c.dataset.status));
  assert.equal(statuses.length, AGENTS);
  for (const s of statuses) assert.match(s, /^(idle|busy|offline|error|starting|stopping)$/, `agent status ${s}`);

  await pauseSwarm(page, demo);
  const { info } = await assertTotalsMatch(page, demo);
  assert.equal(info.agents, AGENTS);
  assert.equal(info.gaps, 0, `no gap expected on a clean run, saw ${JSON.stringify(info.lastGap)}`);
  assert.equal(info.snapshots, 1);
  assert.ok(info.tasks.completed + info.tasks.failed > 0, 'some tasks finished');
  assert.equal((await dashboardInfo(page)).status.display, 'connected');
  assertNoPageProblems(problems);
});
