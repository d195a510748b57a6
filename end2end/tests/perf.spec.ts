// The dashboard's speed figures (run by scripts/bench-dashboard.sh, not by
// the test suite): first render and time to interactive of the run page of
// a 200-step workflow, what a cold visit to the task list transfers, and the
// delay from a change to the screen.
import { expect, Page, test } from '@playwright/test';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { api, dataDir, users, waitFor } from '../stack';
import { signIn } from './helpers';

const STEPS = 200;

/** 20 columns of 10: each step after the first column waits for one or two of the previous. */
function bigWorkflow(): string {
  const lines = ['name: perf-200', 'description: 200 echo steps in 20 columns', 'steps:'];
  for (let i = 0; i < STEPS; i++) {
    const deps = i < 10 ? [] : [i - 10, ...(i % 10 > 0 ? [i - 11] : [])];
    lines.push(`  - id: s${i}`, '    type: task', '    task_type: echo', `    payload: { n: ${i} }`);
    if (deps.length) lines.push(`    depends_on: [${deps.map((d) => `s${d}`).join(', ')}]`);
  }
  return lines.join('\n') + '\n';
}

const pct = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.round((s.length - 1) * p))];
};

/** A first visit to `path` by a signed-in browser with nothing cached: the
 *  requests it makes and the bytes it receives (headers and bodies as sent,
 *  so compressed where the server compressed), and the bodies' decoded
 *  size (what the same visit moved before the server compressed). The
 *  event stream never finishes; it counts as a request, its bytes do not. */
async function coldLoad(signedIn: Page, path: string) {
  const context = await signedIn.context().browser()!.newContext({ baseURL: test.info().project.use.baseURL });
  await context.addCookies(await signedIn.context().cookies());
  const page = await context.newPage();
  let requests = 0;
  let htmlBytes = 0;
  let htmlDecoded = 0;
  const sizes: Promise<[number, number]>[] = [];
  // Bytes on the wire by kind of file (wasm, script, stylesheet, document, fetch).
  const byKind: Record<string, { requests: number; bytes: number }> = {};
  page.on('request', () => requests++);
  page.on('requestfinished', (r) => {
    sizes.push((async () => {
      const s = await r.sizes();
      const decoded = (await (await r.response())?.body())?.length ?? 0;
      if (r.resourceType() === 'document') [htmlBytes, htmlDecoded] = [s.responseBodySize, decoded];
      const wire = s.responseBodySize + s.responseHeadersSize;
      const kind = new URL(r.url()).pathname.endsWith('.wasm') ? 'wasm' : r.resourceType();
      byKind[kind] ??= { requests: 0, bytes: 0 };
      byKind[kind].requests++;
      byKind[kind].bytes += wire;
      return [wire, decoded] as [number, number];
    })());
  });
  await page.goto(path);
  await expect(page.locator('body[data-hydrated=true]')).toHaveCount(1, { timeout: 30_000 });
  await expect(page.locator('body[data-page]')).toHaveCount(1, { timeout: 30_000 });
  await page.waitForLoadState('networkidle');
  const all = await Promise.all(sizes);
  await context.close();
  const sum = (i: number) => all.reduce((a, b) => a + b[i], 0);
  return { path, requests, bytes: sum(0), html_bytes: htmlBytes, decoded_bytes: sum(1), html_decoded_bytes: htmlDecoded, by_kind: byKind };
}

test('run page of a 200-step workflow, and event-to-screen delay', async ({ page }) => {
  test.setTimeout(300_000);
  await api('POST', '/workflows', bigWorkflow());
  const run = await api('POST', '/runs', { workflow: 'perf-200', inputs: {} });
  await waitFor('the 200-step run to finish', async () => (await api('GET', `/runs/${run.id}`)).status === 'succeeded', 120_000);
  await signIn(page, users.admin);
  // Time (since navigation start) at which the wasm marks the page hydrated.
  await page.addInitScript(() => {
    new MutationObserver((_, obs) => {
      if (document.body?.dataset.hydrated) {
        (window as any).__hydratedAt = performance.now();
        obs.disconnect();
      }
    }).observe(document, { subtree: true, attributes: true, attributeFilter: ['data-hydrated'] });
  });

  const renders: number[] = [];
  const interactive: number[] = [];
  for (let i = 0; i < 7; i++) {
    await page.goto('/');
    await page.goto(`/runs/${run.id}`, { waitUntil: 'commit' });
    await expect(page.getByTestId(`step-s${STEPS - 1}`)).toBeVisible();
    await expect(page.locator('body[data-hydrated=true]')).toHaveCount(1, { timeout: 30_000 });
    const t = await page.evaluate(() => {
      const nav = performance.getEntriesByType('navigation')[0] as PerformanceNavigationTiming;
      const fcp = performance.getEntriesByName('first-contentful-paint')[0];
      return { fcp: fcp ? fcp.startTime : nav.responseEnd, ready: (window as any).__hydratedAt ?? 0, nav: nav.startTime };
    });
    renders.push(t.fcp);
    interactive.push(t.ready);
  }
  // The wasm a first visit to the run page downloads: the main module plus
  // the chunks of the pages split out with `--split` that it needs.
  const fresh = await page.context().browser()!.newContext({ baseURL: test.info().project.use.baseURL });
  await fresh.addCookies(await page.context().cookies());
  const visitor = await fresh.newPage();
  const wasm: Record<string, number> = {};
  visitor.on('response', async (r) => {
    const name = new URL(r.url()).pathname;
    if (name.endsWith('.wasm')) wasm[name.split('/').pop()!] = (await r.body()).length;
  });
  await visitor.goto(`/runs/${run.id}`);
  await expect(visitor.locator('body[data-hydrated=true]')).toHaveCount(1, { timeout: 30_000 });
  await visitor.waitForLoadState('networkidle');
  await fresh.close();
  const runPageWasm = { bytes: Object.values(wasm).reduce((a, b) => a + b, 0), files: wasm };
  const coldTasks = await coldLoad(page, '/tasks');

  // Clicking a step shows its panel: the page is interactive.
  await page.getByTestId('step-s150').click();
  await expect(page.getByTestId('step-panel')).toContainText('s150');

  // Event to screen: drain / re-enable an agent through the API and time
  // until the agents page shows it.
  await page.goto('/agents');
  await expect(page.getByTestId('live')).toHaveAttribute('data-connected', 'true');
  const agent = (await api('GET', '/agents')).agents[0];
  const delays: number[] = [];
  for (let i = 0; i < 30; i++) {
    const want = i % 2 === 0 ? 'draining' : 'online';
    const row = page.locator(`[data-testid=agent-row][data-agent="${agent.name}"]`);
    const seen = page.evaluate((want) => new Promise<number>((resolve) => {
      const check = () => {
        const el = document.querySelector(`[data-testid=agent-row][data-status="${want}"]`);
        if (el) { resolve(Date.now()); return true; }
        return false;
      };
      if (check()) return;
      const obs = new MutationObserver(() => { if (check()) obs.disconnect(); });
      obs.observe(document.body, { subtree: true, childList: true, attributes: true });
    }), want);
    const t0 = Date.now();
    await api('POST', `/agents/${agent.id}/${i % 2 === 0 ? 'drain' : 'enable'}`, {});
    delays.push((await seen) - t0);
    await expect(row).toHaveAttribute('data-status', want);
  }
  const figures = {
    steps: STEPS,
    run_page_wasm: runPageWasm,
    cold_tasks: coldTasks,
    first_render_ms: { p50: pct(renders, 0.5), max: Math.max(...renders) },
    interactive_ms: { p50: pct(interactive, 0.5), max: Math.max(...interactive) },
    event_to_screen_ms: { p50: pct(delays, 0.5), p99: pct(delays, 0.99), max: Math.max(...delays), samples: delays.length },
  };
  console.log('DASHBOARD-FIGURES ' + JSON.stringify(figures));
  fs.writeFileSync(path.join(dataDir, 'dashboard-figures.json'), JSON.stringify(figures, null, 2));
});

test('change to screen on a task list with 10,000 tasks in its range', async ({ page }) => {
  test.setTimeout(600_000);
  const marker = `perf-list-${Date.now().toString(36)}`;
  for (let batch = 0; batch < 10; batch++) {
    const tasks = Array.from({ length: 1000 }, (_, i) => ({ task_type: 'echo', payload: { marker, n: batch * 1000 + i } }));
    await api('POST', '/tasks', { tasks });
  }
  await waitFor('the 10,000 tasks to finish', async () => {
    const queued = await api('GET', `/tasks?status=queued,running&limit=1`);
    return queued.total === 0;
  }, 540_000);
  await signIn(page, users.admin);
  await page.goto('/tasks');
  await expect(page.getByTestId('live')).toHaveAttribute('data-connected', 'true');
  const range = await page.getByTestId('list-range').innerText();
  const delays: number[] = [];
  for (let i = 0; i < 30; i++) {
    const t0 = Date.now();
    const { id } = await api('POST', '/tasks', { task_type: 'echo', payload: { marker, probe: i } });
    await page.waitForFunction(
      (id) => document.querySelector('[data-testid=tasks] tbody tr td:nth-child(2)')?.textContent?.trim() === String(id)
        || document.querySelector('[data-testid=tasks] tbody tr')?.textContent?.includes(String(id)),
      id,
      { polling: 'raf' },
    );
    delays.push(Date.now() - t0);
  }
  const figures = { range, change_to_screen_ms: { p50: pct(delays, 0.5), p99: pct(delays, 0.99), max: Math.max(...delays), samples: delays.length } };
  console.log('DASHBOARD-LIST-FIGURES ' + JSON.stringify(figures));
  fs.writeFileSync(path.join(dataDir, 'dashboard-list-figures.json'), JSON.stringify(figures, null, 2));
});
