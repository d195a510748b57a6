// Fleet trust in the dashboard: an admin hands out a scoped enrollment
// token (shown once), revokes it and an agent after confirming, and reads
// what happened in the audit log; anyone else is offered none of it.
import { expect, Page, test, TestInfo } from '@playwright/test';
import { baseURL, readState, users } from '../stack';
import { live, shot, signIn } from './helpers';

// The audit test reads what the tests before it did.
test.describe.configure({ mode: 'serial' });

/** Registers an agent the way drover-agent does, without running one. */
async function register(token: string, name: string, task_types = ['echo'], labels: string[] = []) {
  const res = await fetch(`${baseURL}/api/v1/agent/register`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: JSON.stringify({ name, hostname: 'e2e-host', task_types, capacity: 1, labels, version: 'e2e', protocol: 1 }),
  });
  return { status: res.status, body: await res.json().catch(() => null) };
}

async function heartbeat(sessionToken: string) {
  const res = await fetch(`${baseURL}/api/v1/agent/heartbeat`, {
    method: 'POST',
    headers: { authorization: `Bearer ${sessionToken}`, 'content-type': 'application/json' },
    body: JSON.stringify({ running: [] }),
  });
  return res.status;
}

const agentRow = (page: Page, name: string) => page.locator(`[data-testid=agent-row][data-agent="${name}"]`);

test('an admin creates a scoped enrollment token, sees it once, and revokes it after confirming', async ({ page }, info) => {
  await signIn(page, users.admin);
  await page.goto('/');
  await live(page);
  await page.locator('header nav a[href="/enrollment-tokens"]').click();
  await expect(page).toHaveURL(/\/enrollment-tokens$/);
  await live(page);

  // The server's refusal is shown by the field it is about.
  await page.getByTestId('input-name').fill('e2e-pool');
  await page.getByTestId('input-expires_in').fill('soon');
  await page.getByTestId('create-token').click();
  await expect(page.getByTestId('error-expires_in')).toContainText('30d');
  await expect(page.getByTestId('new-token-box')).toHaveCount(0);

  await page.getByTestId('input-task_types').fill('echo, wc');
  await page.getByTestId('input-labels').fill('e2e');
  await page.getByTestId('input-expires_in').fill('30d');
  await page.getByTestId('create-token').click();
  const box = page.getByTestId('new-token-box');
  await expect(box).toContainText('not shown again');
  const field = page.getByTestId('new-token');
  await expect(field).toHaveAttribute('readonly', '');
  const token = await field.inputValue();
  expect(token).toMatch(/^[0-9a-f]{64}$/);
  await expect(page.getByTestId('error-expires_in')).toHaveCount(0);
  await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
  await page.getByTestId('copy-token').click();
  await expect(page.getByTestId('copied')).toBeVisible();
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(token);

  const row = page.locator('[data-testid=token-row][data-token=e2e-pool]');
  await expect(row).toHaveAttribute('data-status', 'active');
  await expect(row.getByTestId('token-prefix')).toHaveText(`${token.slice(0, 8)}…`);
  await expect(row.getByTestId('token-task-types')).toHaveText('echowc');
  await expect(row.getByTestId('token-labels')).toHaveText('e2e');
  await expect(row).toContainText('admin');
  // The bootstrap token the stack's agents use allows anything.
  await expect(page.locator('[data-testid=token-row]').first().getByTestId('token-labels')).toBeVisible();
  await shot(page, info, 'enrollment-token-created');
  await page.emulateMedia({ colorScheme: 'dark' });
  await shot(page, info, 'enrollment-token-created-dark');
  await page.emulateMedia({ colorScheme: 'light' });

  // A duplicate name is refused by the name field.
  await page.getByTestId('input-name').fill('e2e-pool');
  await page.getByTestId('create-token').click();
  await expect(page.getByTestId('error-name')).toContainText('exists already');

  // The token enrolls only what it allows.
  expect((await register(token, 'e2e-outside', ['sleep'])).status).toBe(403);
  const enrolled = await register(token, 'e2e-scoped', ['echo'], ['e2e']);
  expect(enrolled.status).toBe(200);

  // Shown once: after a reload only its prefix is left.
  await page.reload();
  await live(page);
  await expect(page.getByTestId('new-token-box')).toHaveCount(0);
  await expect(page.locator('body')).not.toContainText(token);

  // Revoking asks first, and says what else it revokes.
  await row.getByTestId('revoke').click();
  await expect(row.getByTestId('confirm-question')).toContainText('agents enrolled with it are revoked too');
  await expect(row.getByTestId('keep')).toBeFocused();
  await row.getByTestId('keep').click();
  await expect(row.getByTestId('confirm-question')).toHaveCount(0);
  await expect(row).toHaveAttribute('data-status', 'active');
  await row.getByTestId('revoke').click();
  await page.keyboard.press('Escape');
  await expect(row.getByTestId('confirm-revoke')).toHaveCount(0);
  await row.getByTestId('revoke').click();
  await row.getByTestId('confirm-revoke').click();
  await expect(row).toHaveAttribute('data-status', 'revoked');
  await expect(page.getByRole('status')).toContainText('the one agent enrolled with it too');
  await expect(row.getByTestId('revoke')).toHaveCount(0);
  expect((await register(token, 'e2e-late', ['echo'])).status).toBe(401);

  // The agent enrolled with it is revoked too.
  await page.goto('/agents');
  await live(page);
  await expect(agentRow(page, 'e2e-scoped')).toHaveAttribute('data-status', 'revoked');
  await expect(agentRow(page, 'e2e-scoped').getByTestId('revoke')).toHaveCount(0);
  expect(await heartbeat(enrolled.body.session_token)).toBe(401);
});

test('an admin revokes an agent after confirming, and it shows as revoked', async ({ page }, info) => {
  const { enrollmentToken } = readState();
  const doomed = await register(enrollmentToken, 'e2e-untrusted');
  expect(doomed.status).toBe(200);
  expect(await heartbeat(doomed.body.session_token)).toBe(200);
  // Online until the question is asked, then silent.
  const beating = setInterval(() => void heartbeat(doomed.body.session_token).catch(() => undefined), 500);
  try {
    await revokeAfterConfirming(page, info, doomed.body.agent_id, () => clearInterval(beating));
  } finally {
    clearInterval(beating);
  }
  expect(await heartbeat(doomed.body.session_token)).toBe(401);
});

async function revokeAfterConfirming(page: Page, info: TestInfo, agentId: number, silence: () => void) {
  await signIn(page, users.admin);
  await page.goto('/agents');
  await live(page);
  const row = agentRow(page, 'e2e-untrusted');
  await expect(row).toBeVisible();
  // The stack's own agent keeps its button; nothing is revoked by one click.
  await expect(agentRow(page, 'steady').getByTestId('revoke')).toBeVisible();
  await expect(row).toHaveAttribute('data-status', 'online');
  await row.getByTestId('revoke').click();
  await expect(row.getByTestId('confirm-question')).toContainText('refuses its calls');
  // The question survives the live refresh when the silent agent goes offline.
  silence();
  await expect(row).toHaveAttribute('data-status', 'offline', { timeout: 15_000 });
  await expect(row.getByTestId('confirm-revoke')).toBeVisible();
  await shot(page, info, 'agent-revoke-confirm');
  await row.getByTestId('confirm-revoke').click();
  await expect(row).toHaveAttribute('data-status', 'revoked');
  await expect(row.locator('.badge')).toHaveText('revoked');
  await expect(page.getByRole('status')).toContainText(`Agent ${agentId} is revoked`);
  await expect(row.getByTestId('revoke')).toHaveCount(0);
  await expect(agentRow(page, 'steady')).toHaveAttribute('data-status', 'online');
  await shot(page, info, 'agent-revoked');
}

test('the audit log lists those actions, newest first, and filters and pages them', async ({ page }, info) => {
  await signIn(page, users.admin);
  await page.goto('/');
  await live(page);
  await page.locator('header nav a[href="/audit"]').click();
  await expect(page).toHaveURL(/\/audit$/);
  await live(page);
  const rows = page.getByTestId('audit-row');
  for (const action of ['enrollment_token.created', 'enrollment_token.revoked', 'agent.revoked', 'agent.registered']) {
    await expect(rows.and(page.locator(`[data-action="${action}"]`)).first()).toBeVisible();
  }
  // Newest first: the last revocation is above the token's creation.
  const actions = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-action')));
  expect(actions.indexOf('agent.revoked')).toBeLessThan(actions.indexOf('enrollment_token.created'));
  await shot(page, info, 'audit');

  // By action prefix.
  await page.getByTestId('filter-action').fill('agent.revoked');
  await page.getByTestId('filter').click();
  await expect(page).toHaveURL(/action=agent\.revoked/);
  await expect(rows).toHaveCount(2);
  for (const a of await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-action')))) {
    expect(a).toBe('agent.revoked');
  }
  await expect(rows.first()).toHaveAttribute('data-actor', 'admin');

  // By actor: the admin's changes, not the agents' registrations.
  await page.getByTestId('filter-action').fill('');
  await page.getByTestId('filter-actor').fill('admin');
  await page.getByTestId('filter').click();
  await expect(page).toHaveURL(/actor=admin/);
  await expect(rows.first()).toBeVisible();
  for (const a of await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-actor')))) {
    expect(a).toBe('admin');
  }
  await expect(rows.and(page.locator('[data-action="agent.registered"]'))).toHaveCount(0);

  // Paging backwards, one entry a page: revoked, then created, then the end.
  await page.goto('/audit?action=enrollment_token&limit=1');
  await live(page);
  await expect(rows).toHaveCount(1);
  await expect(rows.first()).toHaveAttribute('data-action', 'enrollment_token.revoked');
  await page.getByTestId('older').click();
  await expect(page).toHaveURL(/before_id=\d+/);
  await expect(rows.first()).toHaveAttribute('data-action', 'enrollment_token.created');
  await expect(rows.first()).toContainText('e2e-pool');
  await page.getByTestId('newest').click();
  await expect(rows.first()).toHaveAttribute('data-action', 'enrollment_token.revoked');
});

test('anyone but an admin is offered no admin pages, and is told so', async ({ page }, info) => {
  await signIn(page, users.vera);
  await page.goto('/agents');
  await live(page);
  await expect(page.locator('header nav a[href="/enrollment-tokens"]')).toHaveCount(0);
  await expect(page.locator('header nav a[href="/audit"]')).toHaveCount(0);
  await expect(page.getByTestId('revoke')).toHaveCount(0);
  for (const p of ['/enrollment-tokens', '/audit']) {
    await page.goto(p);
    await live(page);
    await expect(page.getByTestId('admins-only')).toContainText('Admins only');
    await expect(page.locator('main table')).toHaveCount(0);
    await expect(page.locator('main form')).toHaveCount(0);
  }
  await shot(page, info, 'viewer-admins-only');
  // The server refuses them anyway.
  const statuses = await page.evaluate(async () =>
    Promise.all(['/api/v1/audit', '/api/v1/enrollment-tokens'].map(async (u) => (await fetch(u)).status)),
  );
  expect(statuses).toEqual([403, 403]);
});
