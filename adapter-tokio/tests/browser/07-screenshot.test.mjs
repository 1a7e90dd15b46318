// A 1400x900 screenshot of the running dashboard after ~6 s of live data: kept in the test's temporary directory, and
// written to docs/dashboard.png with EVENTWIRE_UPDATE_SCREENSHOT=1.
import assert from 'node:assert/strict';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import {
  REPO_ROOT, assertNoPageProblems, launch, openDashboard, scenario, sleep, startDemo, tempDir, waitFor,
} from './harness.mjs';

// 32 agents fill the 1400x900 viewport; at rate 2 the charts get two points a second.
const AGENTS = 32;

scenario('screenshot of the running dashboard (1400x900)', async (ctx) => {
  const demo = await startDemo(ctx, ['--agents', String(AGENTS), '--rate', '2', '--seed', '7']);
  const { page, problems } = await launch(ctx, { viewport: { width: 1400, height: 900 } });
  await openDashboard(page, demo, { agents: AGENTS });
  await waitFor(async () => (await page.getByTestId('conn-state').textContent()) === 'connected', {
    message: 'conn-state "connected"',
  });
  await sleep(6000);
  await waitFor(async () => (await page.getByTestId('system-health').textContent()) !== 'unknown', {
    message: 'a system status',
  });
  const dir = await tempDir(ctx, 'eventwire-screenshot-');
  const file = join(dir, 'dashboard.png');
  await page.screenshot({ path: file, fullPage: false });
  const png = await readFile(file);
  assert.equal(png.subarray(1, 4).toString('latin1'), 'PNG');
  assert.equal(png.readUInt32BE(16), 1400);
  assert.equal(png.readUInt32BE(20), 900);
  assert.ok(png.length > 20_000, `a screenshot with content (${png.length} bytes)`);
  console.log(`screenshot: ${file}`);
  if (process.env.EVENTWIRE_UPDATE_SCREENSHOT === '1') {
    const target = join(REPO_ROOT, 'docs/dashboard.png');
    await copyFile(file, target);
    console.log(`screenshot written to ${target}`);
  }
  assertNoPageProblems(problems);
});
