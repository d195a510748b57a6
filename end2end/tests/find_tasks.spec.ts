// Finding tasks (issue 17, defect 6): the list pages with a total, the
// oldest of 1,000 tasks is reached by following "Next page", a search by
// payload text or id narrows it, several statuses are chosen at once, and
// every filter lives in the URL; an empty result offers a way back.
import { expect, test } from '@playwright/test';
import { api, users } from '../stack';
import { live, shot, signIn } from './helpers';

test.describe.configure({ mode: 'serial' });

/** A word only this run's tasks carry in their payload. */
const marker = `paging-${Date.now().toString(36)}`;
const ids: number[] = [];

test.beforeAll(async () => {
  for (let batch = 0; batch < 10; batch++) {
    const tasks = Array.from({ length: 100 }, (_, i) => ({
      task_type: 'echo',
      payload: { tag: marker, item: `${marker}-item-${batch * 100 + i}` },
    }));
    const answer = await api<{ tasks: { id: number }[] }>('POST', '/tasks', { tasks });
    ids.push(...answer.tasks.map((t) => t.id));
  }
  expect(ids).toHaveLength(1000);
});

test('paging reaches the oldest of 1,000 tasks, with the total above the list', async ({ page }, info) => {
  await signIn(page, users.vera);
  await page.goto(`/tasks?q=${marker}`);
  await live(page);
  await expect(page.getByTestId('list-range')).toHaveText('1–50 of 1,000');
  await expect(page.getByTestId('filter-q')).toHaveValue(marker);
  await expect(page.getByTestId('tasks').locator('tbody tr').first()).toContainText(`${ids[999]}`);
  await shot(page, info, 'tasks-page-1');

  for (let p = 2; p <= 20; p++) {
    await page.getByTestId('older').click();
    await expect(page.getByTestId('list-range')).toHaveText(`${(p - 1) * 50 + 1}–${p * 50} of 1,000`);
    await expect(page).toHaveURL(/before=\d+/);
  }
  const rows = page.getByTestId('tasks').locator('tbody tr');
  await expect(rows).toHaveCount(50);
  await expect(rows.last().locator('td').first()).toHaveText(`${ids[0]}`);
  await expect(page.getByTestId('older')).toHaveCount(0);
  await page.getByTestId('newest').click();
  await expect(page.getByTestId('list-range')).toHaveText('1–50 of 1,000');
});

test('a search by id or payload and several statuses narrow the list, in the URL', async ({ page }) => {
  await signIn(page, users.vera);
  await page.goto('/tasks');
  await live(page);
  const one = ids[500];
  // Payload text in another case, typed in the form: the URL carries it.
  await page.getByTestId('filter-q').fill(`${marker}-ITEM-500`.toUpperCase());
  await page.getByTestId('filter').click();
  await expect(page).toHaveURL(/q=/);
  await expect(page.getByTestId('list-range')).toHaveText('1–1 of 1');
  await expect(page.getByTestId('tasks').locator('tbody tr td').first()).toHaveText(`${one}`);

  // An id with '#'.
  await page.goto(`/tasks?q=%23${one}`);
  await expect(page.getByTestId('tasks').locator('tbody tr').first()).toContainText(`${one}`);

  // Two statuses ticked: both are in the URL and both boxes stay ticked.
  await page.goto(`/tasks?q=${marker}`);
  await live(page);
  await page.getByTestId('filter-status-succeeded').check();
  await page.getByTestId('filter-status-queued').check();
  await page.getByTestId('filter').click();
  await expect(page).toHaveURL(/status=queued&status=succeeded|status=succeeded&status=queued/);
  await expect(page.getByTestId('filter-status-succeeded')).toBeChecked();
  await expect(page.getByTestId('filter-status-queued')).toBeChecked();
  await expect(page.getByTestId('filter-status-failed')).not.toBeChecked();
  await expect(page.getByTestId('list-range')).toContainText('of');

  // Nothing matches: the page says so and offers the whole list.
  await page.goto(`/tasks?q=${marker}&status=failed`);
  await expect(page.getByText('No task matches these filters')).toBeVisible();
  await page.getByRole('link', { name: 'Show all tasks' }).click();
  await expect(page).toHaveURL(/\/tasks$/);
});

test('runs page by cursor and are found by who started them and by text', async ({ page }) => {
  const name = `find-runs-${Date.now().toString(36)}`;
  await api('POST', '/workflows', `name: ${name}\ninputs:\n  city: { type: string }\nsteps:\n  - id: a\n    type: task\n    task_type: echo\n    payload: { city: "{{ inputs.city }}" }\n`);
  const runs: number[] = [];
  for (let i = 0; i < 53; i++) {
    const run = await api<{ id: number }>('POST', '/runs', { workflow: name, inputs: { city: i === 7 ? 'Reykjavik' : 'Lyon' } });
    runs.push(run.id);
  }
  await signIn(page, users.vera);
  await page.goto(`/runs?workflow=${name}`);
  await live(page);
  await expect(page.getByTestId('list-range')).toHaveText('1–50 of 53');
  await page.getByTestId('older').click();
  await expect(page.getByTestId('list-range')).toHaveText('51–53 of 53');
  await expect(page.getByTestId('run-row').last()).toContainText(`#${runs[0]}`);
  await expect(page.getByTestId('older')).toHaveCount(0);

  await page.goto(`/runs?workflow=${name}`);
  await live(page);
  await page.getByTestId('filter-q').fill('reykjavik');
  await page.getByTestId('filter').click();
  await expect(page.getByTestId('list-range')).toHaveText('1–1 of 1');
  await expect(page.getByTestId('run-row')).toContainText(`#${runs[7]}`);
  // The API token's runs are started by its user; nobody else started one.
  await page.goto(`/runs?workflow=${name}&started_by=nobody`);
  await expect(page.getByText('No run matches these filters')).toBeVisible();
});

test('the queue is split into ready, scheduled and held, each saying what holds its tasks', async ({ page }, info) => {
  const key = `find-${Date.now().toString(36)}`;
  const mine: number[] = [];
  const submit = async (task: Record<string, unknown>) => {
    const t = await api<{ id: number }>('POST', '/tasks', task);
    mine.push(t.id);
    return t.id;
  };
  try {
    // Ready, but needing a label no agent has; its key is then full, so
    // the second task of the key is held; and one not before an hour.
    const ready = await submit({ task_type: 'echo', payload: { key }, required_labels: ['gpu'], concurrency_key: key, concurrency_limit: 1 });
    const held = await submit({ task_type: 'echo', payload: { key }, required_labels: ['gpu'], concurrency_key: key, concurrency_limit: 1 });
    const later = await submit({ task_type: 'echo', payload: { key }, run_after_us: Date.now() * 1000 + 3_600_000_000 });

    await signIn(page, users.vera);
    await page.goto(`/tasks?status=queued&q=${key}`);
    await live(page);
    const tabs = page.getByTestId('queue-tabs');
    await expect(tabs.getByTestId('queue-tab-ready')).toHaveText('Ready (1)');
    await expect(tabs.getByTestId('queue-tab-scheduled')).toHaveText('Scheduled (1)');
    await expect(tabs.getByTestId('queue-tab-held')).toHaveText('Held (1)');
    await expect(tabs.getByTestId('queue-tab-all')).toHaveText('All queued (3)');
    await expect(tabs.getByTestId('queue-tab-ready')).toHaveAttribute('aria-current', 'page');
    const rows = page.getByTestId('tasks').locator('tbody tr');
    await expect(rows).toHaveCount(1);
    await expect(rows.first()).toContainText(`${ready}`);
    await expect(rows.first().getByTestId('queue-note')).toHaveText('no online agent takes echo with labels gpu');
    await shot(page, info, 'queue-ready');

    await tabs.getByTestId('queue-tab-scheduled').click();
    await expect(page).toHaveURL(/state=scheduled/);
    await expect(rows).toHaveCount(1);
    await expect(rows.first()).toContainText(`${later}`);
    await expect(rows.first().getByTestId('queue-note')).toHaveText(/^starts in (59|60) min$/);

    await tabs.getByTestId('queue-tab-held').click();
    await expect(rows).toHaveCount(1);
    await expect(rows.first()).toContainText(`${held}`);
    await expect(rows.first().getByTestId('queue-note')).toHaveText(`held: key ${key} is full`);

    await tabs.getByTestId('queue-tab-all').click();
    await expect(rows).toHaveCount(3);
  } finally {
    for (const id of mine) await api('POST', `/tasks/${id}/cancel`, {}).catch(() => undefined);
  }
});

test('an operator cancels 20 selected tasks at once, after one question; a viewer cannot select', async ({ page, browser }, info) => {
  const marker = `bulk-${Date.now().toString(36)}`;
  const tasks = Array.from({ length: 20 }, (_, i) => ({ task_type: 'echo', payload: { marker, i }, required_labels: ['gpu'] }));
  const answer = await api<{ tasks: { id: number }[] }>('POST', '/tasks', { tasks });
  const ids = answer.tasks.map((t) => t.id);
  try {
    await signIn(page, users.alice);
    await page.goto(`/tasks?q=${marker}`);
    await live(page);
    const rows = page.getByTestId('task-row');
    await expect(rows).toHaveCount(20);
    await expect(page.getByTestId('bulk-bar')).toHaveCount(0);
    // One ticked by hand, then the whole page.
    await rows.first().getByTestId('select-task').check();
    await expect(page.getByTestId('selected-count')).toHaveText('1 selected');
    await page.getByTestId('select-page').check();
    await expect(page.getByTestId('selected-count')).toHaveText('20 selected');
    await page.getByTestId('cancel-selected').click();
    await expect(page.getByTestId('confirm-question')).toHaveText('Cancel 20 tasks? Running attempts are stopped.');
    await shot(page, info, 'bulk-cancel-question');
    await page.getByTestId('confirm-cancel-selected').click();
    await expect(page.getByRole('status').filter({ hasText: 'tasks cancelled' })).toHaveText('20 of 20 tasks cancelled.');
    await expect(page.locator('[data-testid=task-row][data-status=cancelled]')).toHaveCount(20);
    await expect(page.getByTestId('bulk-bar')).toHaveCount(0);
    for (const id of ids) {
      expect((await api<{ status: string }>('GET', `/tasks/${id}`)).status).toBe('cancelled');
    }

    const viewer = await browser.newPage();
    await signIn(viewer, users.vera);
    await viewer.goto(`/tasks?q=${marker}`);
    await live(viewer);
    await expect(viewer.getByTestId('task-row')).toHaveCount(20);
    await expect(viewer.getByTestId('select-task')).toHaveCount(0);
    await expect(viewer.getByTestId('select-page')).toHaveCount(0);
    await viewer.close();
  } finally {
    for (const id of ids) await api('POST', `/tasks/${id}/cancel`, {}).catch(() => undefined);
  }
});
