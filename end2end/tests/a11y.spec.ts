// Issue 17, defect 11: the dashboard works for keyboard and screen-reader
// users. Every page passes axe-core without serious or critical violations
// in both themes; Tab first reaches a skip link; a run's steps open from the
// keyboard, so a failed step is retried without a mouse; the run page's
// headings go in order; every state badge reads at 4.5:1; the approval
// comment box has a label.
import AxeBuilder from '@axe-core/playwright';
import { expect, Page, test } from '@playwright/test';
import { api, users, waitFor } from '../stack';
import { live, signIn } from './helpers';

const FAILING = `
name: a11y-fails
steps:
  - id: boom
    type: task
    task_type: fail
    max_attempts: 1
    payload: { error: "boom on purpose", retryable: false }
`;

const ASKING = `
name: a11y-asks
steps:
  - id: prepare
    type: task
    task_type: echo
    payload: { ready: true }
  - id: a11y_sign_off
    type: approval
    depends_on: [prepare]
    approvers: { roles: [approver] }
    message: "Sign off the accessibility check"
`;

const VERSIONED = 'name: a11y-versions\nsteps:\n  - id: one\n    type: task\n    task_type: echo\n';

/** A finished run whose only step failed; its id. */
async function failedRun(): Promise<number> {
  await api('POST', '/workflows', FAILING);
  const run = await api<{ id: number }>('POST', '/runs', { workflow: 'a11y-fails' });
  await waitFor('the run to fail', async () => (await api('GET', `/runs/${run.id}`)).status === 'failed', 30_000);
  return run.id;
}

/** Runs left waiting for approval; cancelled after the tests, so other
 *  tests' inboxes hold only their own approvals. */
const asking: number[] = [];

/** A run waiting for an approver's decision; its id. */
async function runAskingForApproval(): Promise<number> {
  await api('POST', '/workflows', ASKING);
  const run = await api<{ id: number }>('POST', '/runs', { workflow: 'a11y-asks' });
  asking.push(run.id);
  await waitFor('the run to ask for approval', async () =>
    (await api('GET', `/runs/${run.id}`)).status === 'waiting_approval', 30_000);
  return run.id;
}

test.afterAll(async () => {
  for (const id of asking) await api('POST', `/runs/${id}/cancel`, {}).catch(() => undefined);
});

/** Serious and critical axe violations of the page as it is now, one line each. */
async function seriousViolations(page: Page): Promise<string[]> {
  const { violations } = await new AxeBuilder({ page }).analyze();
  return violations
    .filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
}

/** Tabs until the focused element has `testid`; fails after `max` presses. */
async function tabTo(page: Page, testid: string, max = 80) {
  for (let i = 0; i < max; i++) {
    if ((await page.evaluate(() => document.activeElement?.getAttribute('data-testid'))) === testid) return;
    await page.keyboard.press('Tab');
  }
  throw new Error(`Tab never reached ${testid}`);
}

test('every page has no serious or critical accessibility violations, in the light and the dark theme', async ({ browser }) => {
  // Some twenty pages, each checked twice: more than one ordinary test's time.
  test.slow();
  const failed = await failedRun();
  const waiting = await runAskingForApproval();
  const detail = await api('GET', `/runs/${failed}`);
  const taskId: number = detail.steps[0].task_ids[0];
  const agent = (await api('GET', '/agents')).agents.find((a: any) => a.name === 'steady');
  // A workflow with two versions, for its source and diff.
  await api('POST', '/workflows', VERSIONED);
  await api('POST', '/workflows', `${VERSIONED}  - id: two\n    type: task\n    task_type: echo\n    depends_on: [one]\n`);

  const check = async (page: Page, path: string, found: string[]) => {
    await page.goto(path);
    if (path === '/signin') await expect(page.locator('body[data-page]')).toHaveCount(1);
    else await live(page);
    for (const colorScheme of ['light', 'dark'] as const) {
      await page.emulateMedia({ colorScheme });
      for (const v of await seriousViolations(page)) found.push(`${path} [${colorScheme}] ${v}`);
    }
  };

  const found: string[] = [];
  const admin = await (await browser.newContext()).newPage();
  await signIn(admin, users.admin);
  for (const path of [
    '/', '/tasks', `/tasks/${taskId}`, '/runs', `/runs/${failed}`, `/runs/${waiting}`,
    '/workflows', '/workflows/a11y-asks', '/workflows/a11y-versions?version=1',
    '/workflows/a11y-versions?diff=1..2', `/workflows/a11y-fails?from_run=${failed}`, '/agents', `/agents/${agent.id}`, '/approvals',
    '/schedules', '/queues', '/notifications', '/enrollment-tokens', '/audit',
  ]) {
    await check(admin, path, found);
  }
  // A step's details, opened.
  await admin.goto(`/runs/${failed}`);
  await live(admin);
  await admin.getByTestId('step-boom').click();
  await expect(admin.getByTestId('step-panel')).toBeVisible();
  for (const colorScheme of ['light', 'dark'] as const) {
    await admin.emulateMedia({ colorScheme });
    for (const v of await seriousViolations(admin)) found.push(`step panel [${colorScheme}] ${v}`);
  }
  // The approver sees the decision form, with its comment box.
  const approver = await (await browser.newContext()).newPage();
  await signIn(approver, users.bob);
  await check(approver, '/approvals', found);
  await check(approver, `/runs/${waiting}`, found);
  const visitor = await (await browser.newContext()).newPage();
  await check(visitor, '/signin', found);
  expect(found, found.join('\n')).toEqual([]);
});

test('the first Tab reaches "Skip to content", which moves focus past the navigation', async ({ page }) => {
  await signIn(page, users.alice);
  await page.goto('/tasks');
  await live(page);
  await page.keyboard.press('Tab');
  const skip = page.getByRole('link', { name: 'Skip to content' });
  await expect(skip).toBeFocused();
  await expect(skip).toBeInViewport();
  await page.keyboard.press('Enter');
  await expect(page.locator('main')).toBeFocused();
  // The next Tab goes into the page, not back to the navigation.
  await page.keyboard.press('Tab');
  expect(await page.evaluate(() => !!document.activeElement?.closest('main'))).toBe(true);
});

test('keyboard only: a failed step opens with Enter and is retried after confirming', async ({ page }) => {
  const id = await failedRun();
  await signIn(page, users.alice);
  await page.goto(`/runs/${id}`);
  await live(page);
  const step = page.getByTestId('step-boom');
  await expect(step).toHaveAttribute('role', 'button');
  await tabTo(page, 'step-boom');
  await page.keyboard.press('Enter');
  const panel = page.getByTestId('step-panel');
  await expect(panel).toContainText('boom');
  await expect(step).toHaveAttribute('aria-pressed', 'true');

  await tabTo(page, 'retry-step');
  await page.keyboard.press('Enter');
  // It asks first, with "Keep" focused so a second Enter changes nothing.
  await expect(page.getByTestId('keep')).toBeFocused();
  await page.keyboard.press('Shift+Tab');
  await expect(page.getByTestId('confirm-retry-step')).toBeFocused();
  await page.keyboard.press('Enter');
  await expect(page.locator('.flash.ok')).toHaveText('Step boom is running again.');
  await waitFor('the step to be retried', async () =>
    (await api('GET', `/runs/${id}`)).steps[0].generation === 1);
});

test("the run page's headings go in order: its h1 first, no level skipped", async ({ page }) => {
  const id = await runAskingForApproval();
  await signIn(page, users.bob);
  await page.goto(`/runs/${id}`);
  await live(page);
  await expect(page.getByTestId('run-approvals')).toBeVisible();
  await page.getByTestId('step-prepare').click();
  await expect(page.getByTestId('step-panel')).toBeVisible();
  const levels = await page.locator('main :is(h1, h2, h3, h4, h5, h6)').evaluateAll((hs) =>
    hs.map((h) => Number(h.tagName[1])));
  expect(levels[0], `levels ${levels}`).toBe(1);
  expect(levels.filter((l) => l === 1), `levels ${levels}`).toHaveLength(1);
  levels.forEach((l, i) => {
    if (i > 0) expect(l, `levels ${levels}`).toBeLessThanOrEqual(levels[i - 1] + 1);
  });
});

test('the approval comment box has a label', async ({ page }) => {
  const id = await runAskingForApproval();
  await signIn(page, users.bob);
  await page.goto(`/runs/${id}`);
  await live(page);
  const card = page.getByTestId('approval-a11y_sign_off');
  await expect(card.getByLabel('Comment (optional)')).toBeVisible();
  await expect(card.getByLabel('Comment (optional)')).toHaveAttribute('data-testid', 'comment');
});

test('every state badge reads at 4.5:1 in the light and the dark theme', async ({ page }) => {
  await signIn(page, users.vera);
  await page.goto('/tasks');
  await live(page);
  const states = [
    'succeeded', 'online', 'approved', 'running', 'claimed', 'queued', 'waiting_approval', 'draining',
    'pending', 'failed', 'rejected', 'lost', 'timed_out', 'offline', 'cancelled', 'skipped', 'released',
    'deregistered', 'waiting', 'revoked', 'active', 'expired', 'delivered', 'enabled', 'disabled',
  ];
  for (const colorScheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme });
    const ratios: Record<string, number> = await page.evaluate((states) => {
      const lum = (css: string) => {
        const [r, g, b] = (css.match(/[\d.]+/g) ?? []).slice(0, 3).map(Number);
        const f = (c: number) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
      };
      const out: Record<string, number> = {};
      const host = document.createElement('div');
      host.className = 'card';
      document.querySelector('main')!.append(host);
      for (const s of states) {
        const badge = document.createElement('span');
        badge.className = `badge s-${s}`;
        badge.textContent = s;
        host.append(badge);
        const style = getComputedStyle(badge);
        const [hi, lo] = [lum(style.color), lum(style.backgroundColor)].sort((x, y) => y - x);
        out[s] = Math.round(((hi + 0.05) / (lo + 0.05)) * 100) / 100;
      }
      host.remove();
      return out;
    }, states);
    const low = Object.entries(ratios).filter(([, r]) => r < 4.5);
    expect(low, `${colorScheme}: ${JSON.stringify(ratios)}`).toEqual([]);
  }
});
