// A viewer sees everything and is offered nothing that changes anything;
// the server refuses the change if it is tried anyway.
import { expect, test } from '@playwright/test';
import { api, users } from '../stack';
import { live, shot, signIn } from './helpers';

test('a viewer sees no buttons that change anything', async ({ page }, info) => {
  const runs = await api('GET', '/runs?limit=1');
  await signIn(page, users.vera);
  const pages = ['/', '/agents', '/tasks', '/workflows', '/workflows/purchase-approval', '/approvals'];
  if (runs.runs.length > 0) pages.push(`/runs/${runs.runs[0].id}`);
  for (const p of pages) {
    await page.goto(p);
    await live(page);
    await expect(page.locator('main h1').first()).toBeVisible();
    // The only buttons a viewer gets: "Sign out" in the header, and the
    // read-only filters of lists.
    await expect(page.locator('main button:not(form.filters button)')).toHaveCount(0);
    await expect(page.locator('main textarea')).toHaveCount(0);
  }
  await shot(page, info, 'viewer-run');
  // Tried anyway (with a valid CSRF token), the server says no.
  const status = await page.evaluate(async () => {
    const csrf = document.cookie.split('; ').find((c) => c.startsWith('drover_csrf='))?.split('=')[1] ?? '';
    const res = await fetch('/api/v1/runs', {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
      body: JSON.stringify({ workflow: 'purchase-approval', inputs: { item: 'x', amount: 1 } }),
    });
    return res.status;
  });
  expect(status).toBe(403);
});

test('a change without the CSRF token is refused', async ({ page }) => {
  await signIn(page, users.alice);
  await page.goto('/');
  const status = await page.evaluate(async () => {
    const res = await fetch('/api/v1/runs', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ workflow: 'purchase-approval', inputs: { item: 'x', amount: 1 } }),
    });
    return res.status;
  });
  expect(status).toBe(403);
});

test('pages need a sign-in, and a wrong password says so', async ({ page }) => {
  await page.goto('/agents');
  await expect(page).toHaveURL(/\/signin\?next=%2Fagents/);
  await page.fill('input[name=name]', 'alice');
  await page.fill('input[name=password]', 'not-her-password');
  await page.click('button[type=submit]');
  await expect(page.getByTestId('signin-error')).toContainText('Wrong name or password');
  await page.fill('input[name=name]', users.alice.name);
  await page.fill('input[name=password]', users.alice.password);
  await page.click('button[type=submit]');
  await expect(page).toHaveURL(/\/agents$/);
  const cookies = await page.context().cookies();
  const session = cookies.find((c) => c.name === 'drover_session');
  expect(session?.httpOnly).toBe(true);
  expect(session?.sameSite).toBe('Lax');
});
