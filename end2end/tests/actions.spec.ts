// Issue 17, defects 7 and 8: Cancel, Retry, Drain, Cancel run and Reject
// ask before they act (like Revoke); the task and run lists can be paused
// so rows stop moving under the pointer; the tasks list's rows keep their
// height; the start-run form marks required inputs and names every bad
// input at once.
import { expect, Locator, Page, test } from '@playwright/test';
import { api, users, waitFor } from '../stack';
import { live, signIn } from './helpers';

/** No agent carries the label, so the task stays queued until cancelled. */
async function queuedTask(): Promise<number> {
  const task = { task_type: 'wc', payload: { probe: true }, required_labels: ['actions-probe-nobody'] };
  return (await api<{ id: number }>('POST', '/tasks', task)).id;
}

async function cancelQuietly(id: number) {
  await api('POST', `/tasks/${id}/cancel`, {}).catch(() => undefined);
}

function taskRow(page: Page, id: number): Locator {
  return page.getByTestId('task-row').filter({ has: page.locator(`a[href="/tasks/${id}"]`) });
}

const taskStatus = async (id: number) => (await api('GET', `/tasks/${id}`)).status as string;

const ASKING = `
name: actions-asks
steps:
  - id: actions_sign_off
    type: approval
    approvers: { roles: [approver] }
    message: "Decide the confirmation test"
`;

async function runAskingForApproval(): Promise<number> {
  await api('POST', '/workflows', ASKING);
  const run = await api<{ id: number }>('POST', '/runs', { workflow: 'actions-asks' });
  await waitFor('the run to ask for approval', async () =>
    (await api('GET', `/runs/${run.id}`)).status === 'waiting_approval', 30_000);
  return run.id;
}

test('Cancel and Retry on the tasks list ask first; Keep changes nothing', async ({ page }) => {
  const id = await queuedTask();
  try {
    await signIn(page, users.alice);
    await page.goto('/tasks?type=wc');
    await live(page);
    const row = taskRow(page, id);
    await row.getByTestId('cancel').click();
    await expect(row.getByTestId('confirm-question')).toContainText(`Cancel task ${id}?`);
    await row.getByTestId('keep').click();
    await expect(row.getByTestId('cancel')).toBeVisible();
    expect(await taskStatus(id)).toBe('queued');

    await row.getByTestId('cancel').click();
    await row.getByTestId('confirm-cancel').click();
    await expect(row).toHaveAttribute('data-status', 'cancelled');

    await row.getByTestId('retry').click();
    expect(await taskStatus(id)).toBe('cancelled');
    await row.getByTestId('confirm-retry').click();
    await expect(row).toHaveAttribute('data-status', 'queued');
  } finally {
    await cancelQuietly(id);
  }
});

test("a task's own page asks before cancelling", async ({ page }) => {
  const id = await queuedTask();
  try {
    await signIn(page, users.alice);
    await page.goto(`/tasks/${id}`);
    await live(page);
    await page.getByTestId('cancel').click();
    await expect(page.getByTestId('confirm-question')).toBeVisible();
    expect(await taskStatus(id)).toBe('queued');
    await page.getByTestId('confirm-cancel').click();
    await expect(page.locator('.task-detail h1 .badge')).toHaveText('cancelled');
  } finally {
    await cancelQuietly(id);
  }
});

test('Drain asks first', async ({ page }) => {
  await signIn(page, users.admin);
  await page.goto('/agents');
  await live(page);
  const row = page.locator('[data-testid=agent-row][data-agent=steady]');
  const agent = (await api('GET', '/agents')).agents.find((a: any) => a.name === 'steady');
  try {
    await row.getByTestId('drain').click();
    await expect(row.getByTestId('confirm-question')).toContainText('Drain steady?');
    await row.getByTestId('keep').click();
    await expect(row).toHaveAttribute('data-status', 'online');
    await row.getByTestId('drain').click();
    await row.getByTestId('confirm-drain').click();
    await expect(row).toHaveAttribute('data-status', 'draining');
  } finally {
    await api('POST', `/agents/${agent.id}/enable`, {}).catch(() => undefined);
  }
});

test('Cancel run asks first', async ({ page }) => {
  const id = await runAskingForApproval();
  await signIn(page, users.alice);
  await page.goto(`/runs/${id}`);
  await live(page);
  await page.getByTestId('cancel-run').click();
  await expect(page.getByTestId('confirm-question')).toContainText('Cancel this run?');
  expect((await api('GET', `/runs/${id}`)).status).toBe('waiting_approval');
  await page.getByTestId('confirm-cancel-run').click();
  await expect(page.getByTestId('run-status')).toContainText('cancelled');
});

test('Reject asks first, and keeps the comment typed', async ({ page }) => {
  const id = await runAskingForApproval();
  await signIn(page, users.bob);
  await page.goto('/approvals');
  await live(page);
  const card = page.getByTestId('inbox').locator('[data-testid=approval-actions_sign_off]').filter({
    has: page.locator(`a[href="/runs/${id}"]`),
  });
  await card.getByTestId('comment').fill('Not this quarter');
  await card.getByTestId('reject').click();
  await expect(card.getByTestId('confirm-question')).toBeVisible();
  expect((await api('GET', `/runs/${id}`)).status).toBe('waiting_approval');
  await card.getByTestId('confirm-reject').click();
  await waitFor('the run to be rejected', async () => (await api('GET', `/runs/${id}`)).status !== 'waiting_approval');
  const run = await api('GET', `/runs/${id}`);
  expect(run.approvals[0].status).toBe('rejected');
  expect(run.approvals[0].comment).toBe('Not this quarter');
});

test('"Pause live updates" freezes the tasks list while the stream stays open', async ({ page }) => {
  const made: number[] = [];
  try {
    await signIn(page, users.alice);
    await page.goto('/tasks?type=wc');
    await live(page);
    const pause = page.getByTestId('pause-live');
    await pause.click();
    await expect(pause).toHaveAttribute('aria-pressed', 'true');
    made.push(await queuedTask());
    // Changes reach a live list within a second; a paused one stays put.
    await page.waitForTimeout(2_000);
    await expect(taskRow(page, made[0])).toHaveCount(0);
    await expect(page.getByTestId('live')).toHaveAttribute('data-connected', 'true');
    await pause.click();
    await expect(pause).toHaveAttribute('aria-pressed', 'false');
    await expect(taskRow(page, made[0])).toHaveCount(1);
    // Live again: the next task appears by itself.
    made.push(await queuedTask());
    await expect(taskRow(page, made[1])).toHaveCount(1);
  } finally {
    for (const id of made) await cancelQuietly(id);
  }
});

test('"Pause live updates" freezes the runs list too', async ({ page }) => {
  await api('POST', '/workflows', 'name: actions-quick\nsteps:\n  - id: hi\n    type: task\n    task_type: echo\n    payload: {}\n');
  await signIn(page, users.alice);
  await page.goto('/runs?workflow=actions-quick');
  await live(page);
  await page.getByTestId('pause-live').click();
  const run = await api<{ id: number }>('POST', '/runs', { workflow: 'actions-quick' });
  const link = page.getByTestId('runs').locator(`a[href="/runs/${run.id}"]`);
  await page.waitForTimeout(2_000);
  await expect(link).toHaveCount(0);
  await page.getByTestId('pause-live').click();
  await expect(link).toHaveCount(1);
});

test("the tasks list's action cells are table cells: rows keep their height and borders line up", async ({ page }) => {
  const id = await queuedTask();
  try {
    await signIn(page, users.alice);
    await page.goto('/tasks?type=wc');
    await live(page);
    const row = taskRow(page, id);
    await expect(row.getByTestId('cancel')).toBeVisible();
    const cells = await row.locator('td').evaluateAll((tds) =>
      tds.map((td) => {
        const r = td.getBoundingClientRect();
        return { display: getComputedStyle(td).display, top: r.top, bottom: r.bottom };
      }));
    for (const c of cells) {
      expect(c.display).toBe('table-cell');
      expect(c.top).toBeCloseTo(cells[0].top, 0);
      expect(c.bottom).toBeCloseTo(cells[0].bottom, 0);
    }
    const height = await row.evaluate((tr) => tr.getBoundingClientRect().height);
    expect(height).toBeLessThan(48);
  } finally {
    await cancelQuietly(id);
  }
});

const FORM = `
name: actions-form
inputs:
  amount: { type: number, required: true }
  count: { type: number, required: true }
  note: { type: string }
steps:
  - id: hi
    type: task
    task_type: echo
    payload: { amount: "{{ inputs.amount }}" }
`;

test('the start form marks required inputs and names every bad input at once', async ({ page }) => {
  await api('POST', '/workflows', FORM);
  await signIn(page, users.alice);
  await page.goto('/workflows/actions-form');
  await live(page);
  await expect(page.getByTestId('input-amount')).toHaveAttribute('required', '');
  await expect(page.getByTestId('input-count')).toHaveAttribute('required', '');
  await expect(page.getByTestId('input-note')).not.toHaveAttribute('required', /.*/);
  // An empty required input stops the submit in the browser.
  await page.getByTestId('start').click();
  await expect(page).toHaveURL(/\/workflows\/actions-form$/);
  expect(await page.getByTestId('input-amount').evaluate((i: HTMLInputElement) => i.validity.valueMissing)).toBe(true);

  await page.getByTestId('input-amount').fill('lots');
  await page.getByTestId('input-count').fill('many');
  await page.getByTestId('start').click();
  await expect(page.getByTestId('error-amount')).toContainText('must be a number');
  await expect(page.getByTestId('error-count')).toContainText('must be a number');
  await expect(page.getByTestId('error-note')).toHaveCount(0);
});

const ORDERED = `
name: actions-form-order
inputs:
  zeta: { type: string }
  alpha: { type: number }
  mid: { type: boolean }
steps:
  - id: hi
    type: task
    task_type: echo
`;

test('the start form lists inputs in the order the definition declares them', async ({ page }) => {
  await api('POST', '/workflows', ORDERED);
  await signIn(page, users.alice);
  await page.goto('/workflows/actions-form-order');
  await live(page);
  const names = await page
    .locator('[data-testid^="input-"]')
    .evaluateAll((inputs) => inputs.map((i) => i.getAttribute('data-testid')));
  expect(names).toEqual(['input-zeta', 'input-alpha', 'input-mid']);
});
