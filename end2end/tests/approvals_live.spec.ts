// Issue 17, defect 1: an approval a run asks for reaches the approver's
// inbox and the run's page the moment it is asked for, not on a reload.
import { expect, test } from '@playwright/test';
import { api, users, waitFor } from '../stack';
import { live, markPage, signIn, stillSamePage } from './helpers';

const FLOW = `
name: live-approval
steps:
  - id: pause
    type: wait
    duration_ms: 3000
  - id: sign_off
    type: approval
    depends_on: [pause]
    approvers: { roles: [approver] }
    message: "Sign off the live approval"
`;

/** Starts a run with the admin's token and waits until it asks. */
async function runAskingForApproval(): Promise<{ id: number }> {
  await api('POST', '/workflows', FLOW);
  const run = await api<{ id: number }>('POST', '/runs', { workflow: 'live-approval' });
  await waitFor('the run to ask for approval', async () =>
    (await api<{ status: string }>('GET', `/runs/${run.id}`)).status === 'waiting_approval');
  return run;
}

test('an approval appears in the open inbox and on the open run page without a reload', async ({ browser }) => {
  await api('POST', '/workflows', FLOW);
  const context = await browser.newContext();
  const inbox = await context.newPage();
  await signIn(inbox, users.bob);
  await inbox.goto('/approvals');
  await live(inbox);
  await markPage(inbox);

  // The run waits three seconds before it asks: both pages are open and
  // live by then.
  const run = await api<{ id: number }>('POST', '/runs', { workflow: 'live-approval' });
  const page = await context.newPage();
  await page.goto(`/runs/${run.id}`);
  await live(page);
  await markPage(page);
  await expect(page.getByTestId('step-pause')).toHaveAttribute('data-status', 'waiting');

  const card = inbox.getByTestId('approval-sign_off');
  await expect(card).toContainText('Sign off the live approval');
  await expect(card.getByTestId('approve')).toBeVisible();
  await stillSamePage(inbox);

  await expect(page.getByTestId('run-status')).toContainText('waiting approval');
  await expect(page.getByTestId('approve')).toBeVisible();
  await stillSamePage(page);

  // Deciding it on the run page moves the run on, also live.
  await page.getByTestId('approve').click();
  await expect(page.getByTestId('run-status')).toContainText('succeeded');
  await stillSamePage(page);
  await context.close();
});

test('a run cancelled while it waits for approval names who cancelled it, live', async ({ browser }) => {
  const run = await runAskingForApproval();
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, users.bob);
  await page.goto(`/runs/${run.id}`);
  await live(page);
  await markPage(page);
  await expect(page.getByTestId('approve')).toBeVisible();

  // The admin (the API token's user) cancels the run.
  await api('POST', `/runs/${run.id}/cancel`, {});
  await expect(page.getByTestId('run-status')).toContainText('cancelled');
  const card = page.getByTestId('approval-sign_off');
  await expect(card.getByTestId('decided')).toContainText(/cancelled by admin at \d{4}-\d\d-\d\d/);
  await expect(card.getByTestId('decided')).not.toContainText('timeout');
  await stillSamePage(page);

  // The inbox's history says the same.
  await page.goto('/approvals');
  await live(page);
  const row = page.getByTestId('decided').locator('tr', { hasText: `#${run.id} live-approval` });
  await expect(row).toContainText('admin');
  await expect(row).not.toContainText('timeout');
  await context.close();
});

test('the overview tile leads someone who may not decide to the approvals waiting for others', async ({ browser }) => {
  // Started with the admin's token: the admin may not approve it.
  const run = await runAskingForApproval();
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, users.admin);
  await page.goto('/');
  await live(page);
  await page.getByTestId('tile-approvals').click();
  await expect(page).toHaveURL(/\/approvals$/);
  const others = page.getByTestId('others');
  const card = others.locator(`[data-testid="approval-sign_off"]`, { hasText: `Run #${run.id} ·` });
  await expect(card.getByTestId('cannot-approve')).toContainText('someone else must approve it');
  await expect(card.getByTestId('approve')).toHaveCount(0);
  await api('POST', `/runs/${run.id}/cancel`, {});
  await expect(others.locator(`[data-testid="approval-sign_off"]`, { hasText: `Run #${run.id} ·` })).toHaveCount(0);
  await context.close();
});
