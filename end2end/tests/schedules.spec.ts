// Schedules in the dashboard: an admin creates one from the form (a refusal
// is shown by the field it names), sees it fire a run every second, follows
// a run back to its schedule, pauses it from its row and deletes it after
// confirming; a viewer sees the list but no form and no buttons.
import { expect, test } from '@playwright/test';
import { api, users } from '../stack';
import { live, shot, signIn } from './helpers';

test.describe.configure({ mode: 'serial' });

const WORKFLOW = 'e2e-scheduled-echo';
const SCHEDULE = 'e2e-every-second';
const QUIET = 'e2e-nightly';

interface Schedule {
  id: number;
  name: string;
  state: string;
  fired_count: number;
}

async function schedules(): Promise<Schedule[]> {
  return (await api<{ schedules: Schedule[] }>('GET', '/schedules')).schedules;
}

// A schedule that fires every second must not outlive a failed test.
test.afterAll(async () => {
  for (const s of await schedules()) {
    if (s.name === SCHEDULE || s.name === QUIET) await api('DELETE', `/schedules/${s.id}`);
  }
});

test('an admin schedules a workflow every second, sees it fire runs, pauses and deletes it', async ({ page }, info) => {
  // One echo step; uploading the same definition again changes nothing.
  await api('POST', '/workflows', {
    name: WORKFLOW,
    description: 'One echo step, started by the schedules test',
    steps: [{ id: 'hello', type: 'task', task_type: 'echo', payload: { from: 'a schedule' } }],
  });

  await signIn(page, users.admin);
  await page.goto('/');
  await live(page);
  await page.locator('header nav').getByRole('link', { name: 'Schedules', exact: true }).click();
  await expect(page).toHaveURL(/\/schedules$/);
  await expect(page.locator('main h1.page-title')).toHaveText('Schedules');
  await live(page);

  const form = page.getByTestId('schedule-form');
  // Every control of the form has a label.
  const unlabelled = await form.evaluate((f) =>
    [...f.querySelectorAll('input, select, textarea')]
      .filter((el) => ((el as HTMLInputElement).labels?.length ?? 0) === 0)
      .map((el) => el.getAttribute('name')),
  );
  expect(unlabelled).toEqual([]);
  // The task's fields show only for a task, the one-time field only for once.
  await expect(form.getByTestId('input-task_type')).toBeHidden();
  await expect(form.getByTestId('input-at')).toBeHidden();
  await form.getByTestId('input-target').selectOption('task');
  await expect(form.getByTestId('input-task_type')).toBeVisible();
  await expect(form.getByTestId('input-workflow')).toBeHidden();
  await form.getByTestId('input-target').selectOption('workflow');
  await form.getByTestId('input-timing').selectOption('once');
  await expect(form.getByTestId('input-at')).toBeVisible();
  await expect(form.getByTestId('input-cron')).toBeHidden();
  await form.getByTestId('input-timing').selectOption('cron');

  // The server's refusal is shown by the field it names.
  await form.getByTestId('input-name').fill(SCHEDULE);
  await form.getByTestId('input-workflow').selectOption(WORKFLOW);
  await form.getByTestId('input-cron').fill('every second');
  await form.getByTestId('create-schedule').click();
  await expect(form.getByTestId('error-cron')).toContainText('not a cron expression');
  await expect(page.locator(`[data-testid=schedule-row][data-schedule="${SCHEDULE}"]`)).toHaveCount(0);

  await form.getByTestId('input-cron').fill('* * * * * *');
  await expect(form.getByTestId('input-time_zone')).toHaveValue('UTC');
  await form.getByTestId('create-schedule').click();
  await expect(page.getByTestId('schedule-created')).toContainText(`Schedule ${SCHEDULE} created`);
  await expect(form.getByTestId('error-cron')).toHaveCount(0);

  const row = page.locator(`[data-testid=schedule-row][data-schedule="${SCHEDULE}"]`);
  await expect(row).toHaveAttribute('data-state', 'active');
  await expect(row.getByTestId('schedule-workflow')).toHaveText(WORKFLOW);
  await expect(row.getByTestId('schedule-when')).toContainText('* * * * * *');
  await expect(row.getByTestId('schedule-when')).toContainText('UTC');
  await expect(row.getByTestId('next-fire')).toContainText('UTC');
  await expect(row.getByTestId('next-fire-in')).toHaveText(/^\((in \d+ s|due now)\)$/);
  await expect(row.getByTestId('schedule-state')).toHaveText('active');

  // Within a few seconds its last tick has started a run, live.
  const lastRun = row.getByTestId('last-run');
  await expect(lastRun).toBeVisible({ timeout: 5_000 });
  await expect(row.getByTestId('last-tick').locator('.badge')).toHaveText('started');
  const href = await lastRun.getAttribute('href');
  expect(href).toMatch(/^\/runs\/\d+$/);
  const runId = Number(href!.split('/').pop());
  await expect(row.getByTestId('fired-count')).not.toHaveText('0');
  await shot(page, info, 'schedule-firing');
  const id = (await schedules()).find((s) => s.name === SCHEDULE)!.id;

  // The run is on /runs, started by the schedule, which it links to.
  await page.locator('header nav').getByRole('link', { name: 'Runs', exact: true }).click();
  await expect(page).toHaveURL(/\/runs$/);
  await live(page);
  const runRow = page.getByTestId('run-row').filter({ has: page.locator(`a[href="/runs/${runId}"]`) });
  await expect(runRow).toBeVisible();
  await expect(runRow).toContainText(WORKFLOW);
  await expect(runRow.getByTestId('started-by-schedule')).toHaveText(`schedule:${id}`);
  // The schedule fires every second: each new run moves the rows down, and
  // a click aimed at one row can land on the next. Hold the list still.
  await page.getByTestId('pause-live').click();
  await runRow.locator(`a[href="/runs/${runId}"]`).click();
  await expect(page).toHaveURL(new RegExp(`/runs/${runId}$`));
  await live(page);
  // The run's facts name the schedule (its timeline does too).
  const startedBy = page.locator('dl').getByTestId('started-by-schedule');
  await expect(startedBy).toHaveText(`schedule:${id}`);
  await startedBy.click();
  await expect(page).toHaveURL(new RegExp(`/schedules#schedule-${id}$`));
  await live(page);

  // Paused from its row: it says so, and starts nothing more.
  await expect(row).toBeVisible();
  await row.getByTestId('pause').click();
  await expect(row).toHaveAttribute('data-state', 'paused');
  await expect(row.getByTestId('schedule-state')).toHaveText('paused');
  await expect(page.getByRole('status').filter({ hasText: 'is paused' })).toBeVisible();
  await expect(row.getByTestId('next-fire')).toHaveText('—');
  await expect(row.getByTestId('resume')).toBeVisible();
  await expect(row.getByTestId('pause')).toHaveCount(0);
  const fired = (await schedules()).find((s) => s.id === id)!.fired_count;
  await page.waitForTimeout(2_500);
  const after = (await schedules()).find((s) => s.id === id)!;
  expect(after.state).toBe('paused');
  expect(after.fired_count).toBe(fired);
  await shot(page, info, 'schedule-paused');

  // Deleting asks first.
  await row.getByTestId('delete').click();
  await expect(row.getByTestId('confirm-question')).toContainText('runs and tasks it started are kept');
  await row.getByTestId('keep').click();
  await expect(row).toHaveCount(1);
  await row.getByTestId('delete').click();
  await row.getByTestId('confirm-delete').click();
  await expect(row).toHaveCount(0);
  await expect(page.getByRole('status').filter({ hasText: 'is deleted' })).toBeVisible();
  expect((await schedules()).some((s) => s.id === id)).toBe(false);
});

test('a viewer sees the schedules but no form and no buttons', async ({ page }, info) => {
  await api('POST', '/schedules', {
    name: QUIET,
    workflow: WORKFLOW,
    cron: '0 3 * * *',
    time_zone: 'Europe/Berlin',
  });
  await signIn(page, users.vera);
  await page.goto('/schedules');
  await live(page);
  const row = page.locator(`[data-testid=schedule-row][data-schedule="${QUIET}"]`);
  await expect(row).toHaveAttribute('data-state', 'active');
  await expect(row.getByTestId('schedule-when')).toContainText('Europe/Berlin');
  await expect(row.getByTestId('next-fire-in')).toContainText('in ');
  await expect(row.getByTestId('last-tick')).toHaveText('not yet');
  await expect(page.getByTestId('schedule-form')).toHaveCount(0);
  await expect(page.locator('main button')).toHaveCount(0);
  await expect(page.locator('main textarea, main select, main input')).toHaveCount(0);
  await shot(page, info, 'schedules-viewer');
});
