// The dashboard on a phone (issue 17: "mobile layout (390 px) where the
// navigation and action columns stay usable"): no page scrolls sideways,
// every navigation link is on screen, and a row's actions stay in view
// while a wide table scrolls under them.
import { expect, Page, test } from '@playwright/test';
import { api, users, waitFor } from '../stack';
import { live, shot, signIn } from './helpers';

test.use({ viewport: { width: 390, height: 844 } });

async function fitsTheScreen(page: Page, path: string) {
  await page.goto(path);
  await live(page);
  const { scroll, width } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    width: window.innerWidth,
  }));
  expect(scroll, `${path} scrolls sideways`).toBeLessThanOrEqual(width);
}

async function onScreen(page: Page, locator: ReturnType<Page['locator']>, what: string) {
  await expect(locator).toBeVisible();
  const box = await locator.boundingBox();
  expect(box, what).not.toBeNull();
  expect(box!.x, `${what} starts on screen`).toBeGreaterThanOrEqual(0);
  expect(box!.x + box!.width, `${what} ends on screen`).toBeLessThanOrEqual(390);
}

test('every page fits a phone and its navigation is all on screen', async ({ page }, info) => {
  await signIn(page, users.admin);
  for (const path of ['/', '/agents', '/tasks', '/queues', '/workflows', '/runs', '/schedules', '/approvals', '/notifications', '/enrollment-tokens', '/audit']) {
    await fitsTheScreen(page, path);
  }
  const links = page.locator('header.topbar nav a');
  expect(await links.count()).toBeGreaterThanOrEqual(10);
  for (const link of await links.all()) await onScreen(page, link, `the "${await link.innerText()}" link`);
  await shot(page, info, 'mobile-audit');
});

test("a task row's actions stay on screen on a phone", async ({ page }, info) => {
  const marker = `mobile-${Date.now().toString(36)}`;
  // A long sleep: queued or running, it can be cancelled.
  const task = await api<{ id: number }>('POST', '/tasks', { task_type: 'sleep', payload: { ms: 60000, marker } });
  try {
    await signIn(page, users.alice);
    await page.goto(`/tasks?q=${marker}`);
    await live(page);
    const row = page.getByTestId('tasks').locator('tbody tr').first();
    await expect(row).toContainText(`${task.id}`);
    await onScreen(page, row.getByRole('button', { name: /cancel/i }).first(), 'the Cancel button');
    await shot(page, info, 'mobile-tasks');
  } finally {
    await api('POST', `/tasks/${task.id}/cancel`, {}).catch(() => undefined);
  }
  await waitFor('the task to be cancelled', async () => (await api('GET', `/tasks/${task.id}`)).status === 'cancelled');
});
