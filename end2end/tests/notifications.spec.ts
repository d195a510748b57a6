// Notifications in the dashboard: an admin creates a webhook rule from the
// form (a refusal is shown by the field it names, the secret once), a task
// that fails for good makes a delivery whose status changes live on the
// page — refused once by the receiver, then delivered on the retry — a
// test send shows up the same way, and the rule is disabled and deleted
// from its row. An operator sees the deliveries but no rules; a viewer
// gets neither. The receiver is a small HTTP server in the test.
import * as http from 'node:http';
import { AddressInfo } from 'node:net';
import { expect, test } from '@playwright/test';
import { api, users } from '../stack';
import { live, shot, signIn } from './helpers';

test.describe.configure({ mode: 'serial' });

const RULE = 'e2e-ops';

interface Received {
  event: string;
  body: any;
}

/** A webhook receiver: answers each request with the next planned status (then 200). */
function receiver(plan: number[]) {
  const got: Received[] = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.on('data', (c) => (raw += c));
    req.on('end', () => {
      got.push({ event: String(req.headers['x-drover-event'] ?? ''), body: JSON.parse(raw || 'null') });
      res.statusCode = plan.shift() ?? 200;
      res.end();
    });
  });
  return { server, got };
}

let hook: ReturnType<typeof receiver>;
let hookUrl = '';

test.beforeAll(async () => {
  // The first delivery is refused once: the page shows the retry.
  hook = receiver([500]);
  await new Promise<void>((r) => hook.server.listen(0, '127.0.0.1', r));
  hookUrl = `http://127.0.0.1:${(hook.server.address() as AddressInfo).port}/hook`;
});

test.afterAll(async () => {
  const { rules } = await api<{ rules: { id: number; name: string }[] }>('GET', '/notifications/rules');
  for (const r of rules) if (r.name === RULE) await api('DELETE', `/notifications/rules/${r.id}`);
  hook.server.close();
});

test('an admin creates a rule, sees a failure delivered after a retry and a test send, disables and deletes it', async ({ page }, info) => {
  await signIn(page, users.admin);
  await page.goto('/');
  await live(page);
  await page.locator('header nav').getByRole('link', { name: 'Notifications', exact: true }).click();
  await expect(page).toHaveURL(/\/notifications$/);
  await expect(page.locator('main h1.page-title')).toHaveText('Notifications');
  await live(page);

  const form = page.getByTestId('rule-form');
  // Every control of the form has a label.
  const unlabelled = await form.evaluate((f) =>
    [...f.querySelectorAll('input, select, textarea')]
      .filter((el) => ((el as HTMLInputElement).labels?.length ?? 0) === 0)
      .map((el) => el.getAttribute('name')),
  );
  expect(unlabelled).toEqual([]);

  // The server's refusal is shown by the field it names.
  await form.getByTestId('input-name').fill(RULE);
  await form.getByTestId('input-url').fill('ftp://example.com/hook');
  await form.getByTestId('create-rule').click();
  await expect(form.getByTestId('error-url')).toContainText('http:// or https://');
  await expect(page.locator(`[data-testid=rule-row][data-rule="${RULE}"]`)).toHaveCount(0);

  // Task failures only, of the `fail` type.
  await form.getByTestId('input-url').fill(hookUrl);
  await form.getByTestId('event-run_failed').uncheck();
  await expect(form.getByTestId('event-task_failed')).toBeChecked();
  await form.getByTestId('input-task_type').fill('fail');
  await form.getByTestId('create-rule').click();
  const created = page.getByTestId('rule-created');
  await expect(created).toContainText(`Rule ${RULE} created`);
  await expect(page.getByTestId('rule-secret')).toHaveValue(/^[0-9a-f]{64}$/);
  await expect(form.getByTestId('error-url')).toHaveCount(0);

  const row = page.locator(`[data-testid=rule-row][data-rule="${RULE}"]`);
  await expect(row).toHaveAttribute('data-enabled', 'true');
  await expect(row.getByTestId('rule-events')).toHaveText('task_failed');
  // The URL is shown as its origin only.
  await expect(row.getByTestId('rule-url')).toHaveText(hookUrl.replace(/\/hook$/, '/…'));

  // A task that fails for good: its delivery appears, refused once, then delivered — live.
  const task = await api<{ id: number }>('POST', '/tasks', {
    task_type: 'fail',
    payload: { error: 'the e2e task failed on purpose', retryable: false },
    max_attempts: 1,
  });
  const delivery = page
    .locator(`[data-testid=delivery-row][data-rule="${RULE}"][data-event="task_failed"]`)
    .first();
  await expect(delivery).toBeVisible({ timeout: 15_000 });
  await expect(delivery).toHaveAttribute('data-status', 'delivered', { timeout: 15_000 });
  await expect(delivery.getByTestId('delivery-attempts')).toHaveText(/^2 \/ \d+$/);
  await expect(delivery).toContainText(`Task #${task.id} (fail) failed for good`);
  expect(hook.got.filter((r) => r.event === 'task_failed')).toHaveLength(2);
  expect(hook.got[1].body.task.id).toBe(task.id);
  expect(hook.got[1].body.text).toContain('the e2e task failed on purpose');
  await shot(page, info, 'notifications-delivered');

  // A test send from the row.
  await row.getByTestId('test').click();
  await expect(page.getByRole('status').filter({ hasText: 'is on its way' })).toBeVisible();
  const test = page.locator(`[data-testid=delivery-row][data-rule="${RULE}"][data-event="test"]`).first();
  await expect(test).toHaveAttribute('data-status', 'delivered', { timeout: 15_000 });
  await expect(test.getByTestId('delivery-attempts')).toHaveText(/^1 \/ \d+$/);

  // Disabled, then deleted after confirming; its deliveries stay listed.
  await row.getByTestId('disable').click();
  await expect(row).toHaveAttribute('data-enabled', 'false');
  await expect(page.getByRole('status').filter({ hasText: 'is disabled' })).toBeVisible();
  await row.getByTestId('enable').click();
  await expect(row).toHaveAttribute('data-enabled', 'true');
  await row.getByTestId('delete').click();
  await expect(row.getByTestId('confirm-question')).toContainText('sends nothing more');
  await row.getByTestId('confirm-delete').click();
  await expect(row).toHaveCount(0);
  await expect(page.getByRole('status').filter({ hasText: 'is deleted' })).toBeVisible();
  await expect(delivery).toHaveAttribute('data-status', 'delivered');
});

test('an operator sees the deliveries but no rules; a viewer neither', async ({ page }, info) => {
  await signIn(page, users.alice);
  await page.goto('/');
  await live(page);
  await page.locator('header nav').getByRole('link', { name: 'Notifications', exact: true }).click();
  await live(page);
  await expect(page.getByTestId('deliveries')).toBeVisible();
  await expect(page.locator(`[data-testid=delivery-row][data-rule="${RULE}"]`).first()).toBeVisible();
  await expect(page.getByTestId('rules')).toHaveCount(0);
  await expect(page.getByTestId('rule-form')).toHaveCount(0);
  await expect(page.locator('main button')).toHaveCount(0);
  await shot(page, info, 'notifications-operator');

  await page.context().clearCookies();
  await signIn(page, users.vera);
  await expect(page.locator('header nav a[href="/notifications"]')).toHaveCount(0);
  await page.goto('/notifications');
  await live(page);
  await expect(page.getByTestId('operators-only')).toBeVisible();
  await expect(page.getByTestId('deliveries')).toHaveCount(0);
});
