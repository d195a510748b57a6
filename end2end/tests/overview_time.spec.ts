// The overview over time: a range picker in the URL, four charts with
// titles, axis units and a table each, the latest failures linking to their
// task, all live; and the navigation's count of approvals the signed-in
// user may decide, live when a run asks for one.
import { expect, Page, test } from '@playwright/test';
import { api, baseURL, readState, users, waitFor } from '../stack';
import { live, markPage, shot, signIn, stillSamePage } from './helpers';

/** The sum of a chart table's column `col` (0: the first figure). */
async function columnSum(page: Page, key: string, col: number): Promise<number> {
  return page.getByTestId(`${key}-row`).evaluateAll(
    (rows, c) => rows.reduce((sum, r) => sum + (Number(r.querySelectorAll('td')[c]?.textContent) || 0), 0),
    col,
  );
}

async function finished(id: number) {
  await waitFor(`task ${id} to finish`, async () =>
    ['succeeded', 'failed'].includes((await api<{ status: string }>('GET', `/tasks/${id}`)).status));
}

test('the overview charts a range and lists the latest failures, live', async ({ page }, info) => {
  // Work in the last minutes: three successes, two failures, and three
  // tasks held back for an hour, which stay queued.
  const ids: number[] = [];
  for (let i = 0; i < 3; i++) ids.push((await api<{ id: number }>('POST', '/tasks', { task_type: 'echo', payload: { i } })).id);
  for (let i = 0; i < 2; i++) {
    ids.push((await api<{ id: number }>('POST', '/tasks', {
      task_type: 'fail', payload: { error: `overview failure ${i}`, retryable: false }, max_attempts: 1,
    })).id);
  }
  const later = (Date.now() + 3_600_000) * 1000;
  const held: number[] = [];
  for (let i = 0; i < 3; i++) {
    held.push((await api<{ id: number }>('POST', '/tasks', { task_type: 'sleep', payload: { ms: 1 }, run_after_us: later })).id);
  }
  for (const id of ids) await finished(id);

  await signIn(page, users.admin);
  await page.goto('/?range=15m');
  await live(page);
  await expect(page.getByTestId('range-15m')).toHaveAttribute('aria-current', 'page');
  await expect(page.getByTestId('overview-charts')).toHaveAttribute('data-range', '15m');

  // Each chart: its title, what its axes measure, and a summary for screen readers.
  const charts = [
    ['throughput', 'Throughput', 'tasks per 15 s'],
    ['failure-rate', 'Failure rate', '% of finished tasks'],
    ['queue-wait', 'Queue wait', /^wait \((milliseconds|seconds)\)$/],
    ['queue-depth', 'Queue depth by type', 'tasks queued'],
  ] as const;
  for (const [key, title, unit] of charts) {
    const chart = page.getByTestId(`chart-${key}`);
    await expect(chart.getByRole('heading', { level: 2 })).toHaveText(title);
    await expect(chart.getByTestId(`${key}-y-axis`)).toHaveText(unit);
    await expect(chart.getByTestId(`${key}-x-axis`)).toHaveText('time (UTC)');
    await expect(chart.getByRole('img')).toHaveAttribute('aria-label', /over the last 15 min/);
  }
  await expect(page.getByTestId('throughput-legend')).toHaveText(/succeeded.*failed/);
  await expect(page.getByTestId('queue-wait-legend')).toHaveText(/p50.*p99/);

  // The tables hold the figures: at least this test's finishes.
  const table = page.getByTestId('throughput-table');
  await table.locator('summary').click();
  await expect(table.locator('summary')).toHaveText(/Throughput as a table \(\d+ buckets? with figures\)/);
  await expect(table.getByTestId('throughput-row').first()).toBeVisible();
  // Only buckets with figures are listed, each within the range.
  const rows = await table.getByTestId('throughput-row').count();
  expect(rows).toBeGreaterThan(0);
  expect(rows).toBeLessThanOrEqual(60);
  expect(await columnSum(page, 'throughput', 0)).toBeGreaterThanOrEqual(3);
  const failedBefore = await columnSum(page, 'throughput', 1);
  expect(failedBefore).toBeGreaterThanOrEqual(2);
  const rates = page.getByTestId('failure-rate-row').filter({ hasText: '%' });
  expect(await rates.count()).toBeGreaterThan(0);
  const waits = page.getByTestId('queue-wait-row').filter({ hasText: /\d+ (µs|ms|s)/ });
  expect(await waits.count()).toBeGreaterThan(0);
  // The held tasks appear at the leader's next depth sample.
  await expect(page.getByTestId('queue-depth-legend')).toContainText('sleep', { timeout: 20_000 });

  // A new failure shows up without a reload: in the list and in the chart.
  await markPage(page);
  const marker = `overview live failure ${Date.now()}`;
  const late = await api<{ id: number }>('POST', '/tasks', {
    task_type: 'fail', payload: { error: marker, retryable: false }, max_attempts: 1,
  });
  const row = page.getByTestId('recent-failure').first();
  await expect(row).toContainText(marker);
  await expect(row).toContainText('fail');
  await expect.poll(() => columnSum(page, 'throughput', 1)).toBeGreaterThan(failedBefore);
  await stillSamePage(page);
  await shot(page, info, 'overview-15m');

  // Another range: the picker moves the URL, the buckets widen.
  await page.getByTestId('range-24h').click();
  await expect(page).toHaveURL(/\/\?range=24h$/);
  await expect(page.getByTestId('range-24h')).toHaveAttribute('aria-current', 'page');
  await expect(page.getByTestId('throughput-y-axis')).toHaveText('tasks per 24 min');
  await expect(page.getByTestId('chart-throughput').getByRole('img')).toHaveAttribute('aria-label', /over the last 24 h/);

  // The failure links to its task.
  await page.getByTestId('recent-failure').first().getByRole('link', { name: `Task ${late.id}` }).click();
  await expect(page).toHaveURL(new RegExp(`/tasks/${late.id}$`));

  for (const id of held) await api('POST', `/tasks/${id}/cancel`, {});
});

test('an unknown range is refused by name', async () => {
  const res = await fetch(`${baseURL}/api/v1/overview?range=2h`, {
    headers: { authorization: `Bearer ${readState().apiToken}` },
  });
  expect(res.status).toBe(422);
  expect((await res.json()).error.field).toBe('range');
});

const FLOW = `
name: overview-count
steps:
  - id: sign_off
    type: approval
    approvers: { roles: [approver] }
    message: "Sign off for the navigation count"
`;

/** The count beside "Approvals" in the navigation; 0 when none is shown. */
async function navCount(page: Page): Promise<number> {
  const badge = page.getByTestId('approvals-count');
  return (await badge.count()) ? Number(await badge.getAttribute('data-count')) : 0;
}

test('the navigation counts the approvals the user may decide, live', async ({ browser }) => {
  await api('POST', '/workflows', FLOW);
  // What the admin (the API token's user) may decide now.
  const adminMay = (await api<{ approvals: unknown[] }>('GET', '/approvals?status=pending')).approvals.length;

  const bobs = await browser.newContext();
  const bob = await bobs.newPage();
  await signIn(bob, users.bob);
  await bob.goto('/');
  await live(bob);
  const before = await navCount(bob);

  const admins = await browser.newContext();
  const admin = await admins.newPage();
  await signIn(admin, users.admin);
  await admin.goto('/');
  await live(admin);
  await markPage(bob);
  await markPage(admin);

  // The admin starts a run that asks approvers: bob's count grows at
  // once; the admin's does not (they may not approve their own run).
  const run = await api<{ id: number }>('POST', '/runs', { workflow: 'overview-count' });
  await waitFor('the run to ask for approval', async () =>
    (await api<{ status: string }>('GET', `/runs/${run.id}`)).status === 'waiting_approval');
  const badge = bob.getByTestId('approvals-count');
  await expect(badge).toHaveAttribute('data-count', String(before + 1));
  await expect(bob.getByRole('link', { name: new RegExp(`^Approvals.*${before + 1} to decide`) })).toBeVisible();
  await stillSamePage(bob);
  expect(await navCount(admin)).toBe(adminMay);
  if (adminMay === 0) {
    await expect(admin.getByTestId('approvals-count')).toHaveCount(0);
  }
  await stillSamePage(admin);

  // Cancelled, it leaves bob's count, again live.
  await api('POST', `/runs/${run.id}/cancel`, {});
  if (before === 0) {
    await expect(badge).toHaveCount(0);
  } else {
    await expect(badge).toHaveAttribute('data-count', String(before));
  }
  await stillSamePage(bob);
  await bobs.close();
  await admins.close();
});
