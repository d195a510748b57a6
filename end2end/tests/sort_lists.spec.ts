// Sortable columns (issue 17, "find anything"): a column's heading sorts
// the list one way, then the other, in the URL; the order holds across
// pages and filters; the queue's own tab keeps the scheduler's order.
// And times shown in the reader's zone, with UTC on hover.
import { expect, test } from '@playwright/test';
import { api, baseURL, readState, users } from '../stack';
import { live, signIn } from './helpers';

test.describe.configure({ mode: 'serial' });

const marker = `sorting-${Date.now().toString(36)}`;
const TYPES = ['wc', 'echo', 'sleep'];
let ids: number[] = [];

test.beforeAll(async () => {
  // 60 tasks: more than a page, types repeating so ties cross the page end.
  const tasks = Array.from({ length: 60 }, (_, i) => ({
    task_type: TYPES[i % 3],
    payload: { tag: marker, ms: 1, text: 'x' },
    urgency: i % 5,
  }));
  const answer = await api<{ tasks: { id: number }[] }>('POST', '/tasks', { tasks });
  ids = answer.tasks.map((t) => t.id);
});

/** The cells of one column, in the order shown. */
async function column(page: import('@playwright/test').Page, index: number): Promise<string[]> {
  return page.getByTestId('tasks').locator(`tbody tr td:nth-child(${index})`).allInnerTexts();
}

test('a heading sorts the tasks one way, then the other, across pages', async ({ page }) => {
  await signIn(page, users.vera);
  await page.goto(`/tasks?q=${marker}`);
  await live(page);
  // The default: newest first, which the id heading says.
  await expect(page.getByTestId('sort-id').locator('..')).toHaveAttribute('aria-sort', 'descending');
  await expect(page.getByTestId('tasks').locator('tbody tr').first()).toContainText(`${ids[59]}`);

  await page.getByTestId('sort-type').click();
  await expect(page).toHaveURL(/sort=type/);
  await expect(page.getByTestId('sort-type').locator('..')).toHaveAttribute('aria-sort', 'ascending');
  await expect(page.getByTestId('list-range')).toHaveText('1–50 of 60');
  const first = await column(page, 2);
  expect(first).toHaveLength(50);
  expect(first).toEqual([...first].sort());
  expect(first[0]).toBe('echo');
  // Ties by id: the echo tasks come oldest first.
  const echoIds = ids.filter((_, i) => TYPES[i % 3] === 'echo');
  await expect(page.getByTestId('tasks').locator('tbody tr').first()).toContainText(`${echoIds[0]}`);

  // The next page continues the order and keeps the search.
  await page.getByTestId('older').click();
  await expect(page).toHaveURL(/sort=type/);
  await expect(page).toHaveURL(new RegExp(`q=${marker}`));
  await expect(page.getByTestId('list-range')).toHaveText('51–60 of 60');
  const second = await column(page, 2);
  expect(second).toEqual(Array(10).fill('wc'));

  // Again: descending.
  await page.goto(`/tasks?q=${marker}&sort=type`);
  await live(page);
  await page.getByTestId('sort-type').click();
  await expect(page).toHaveURL(/sort=-type/);
  await expect(page.getByTestId('sort-type').locator('..')).toHaveAttribute('aria-sort', 'descending');
  await expect(page.getByTestId('tasks').locator('tbody tr td:nth-child(2)').first()).toHaveText('wc');

  // A filter keeps the order: it travels in the form.
  await page.getByTestId('filter-status-succeeded').check();
  await page.getByTestId('filter').click();
  await expect(page).toHaveURL(/sort=-type/);
});

test('a bad order in the API is named; the queue keeps claim order', async ({ page }) => {
  const res = await fetch(`${baseURL}/api/v1/tasks?sort=payload`, {
    headers: { authorization: `Bearer ${readState().apiToken}` },
  });
  expect(res.status).toBe(422);
  expect((await res.json()).error.field).toBe('sort');

  await signIn(page, users.vera);
  await page.goto('/tasks?status=queued');
  await live(page);
  await expect(page.getByTestId('sort-type')).toHaveCount(0);
});

test('runs sort by workflow', async ({ page }) => {
  await signIn(page, users.vera);
  await page.goto('/runs');
  await live(page);
  const rows = page.getByTestId('run-row');
  if ((await rows.count()) < 2) test.skip(true, 'needs runs from earlier specs');
  await page.getByTestId('sort-workflow').click();
  await expect(page).toHaveURL(/sort=workflow/);
  await expect(page.getByTestId('sort-workflow').locator('..')).toHaveAttribute('aria-sort', 'ascending');
  const names = (await page.getByTestId('runs').locator('tbody tr td:nth-child(2)').allInnerTexts()).map((t) =>
    t.replace(/ v\d+$/, ''),
  );
  expect(names).toEqual([...names].sort());
});

test.describe('in another zone', () => {
  test.use({ timezoneId: 'Asia/Kolkata' });

  test("times show in the reader's zone, with UTC on hover", async ({ page }) => {
    await signIn(page, users.vera);
    await page.goto(`/tasks/${ids[0]}`);
    await live(page);
    const created = page.locator('dt:text-is("Created") + dd time');
    await expect(created).toContainText('UTC+05:30');
    await expect(created).toHaveAttribute('title', / UTC$/);
    await expect(created).toHaveAttribute('datetime', /Z$/);
  });
});
