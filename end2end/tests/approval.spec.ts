// The purchase-approval journey: upload and start from the dashboard, watch
// the run reach its approval live, see the requester may not approve, approve
// as an approver in a second browser, and watch the rest turn green live.
import { expect, test } from '@playwright/test';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { root, users } from '../stack';
import { live, markPage, shot, signIn, stillSamePage } from './helpers';

test('a purchase is approved by someone other than the requester, live', async ({ browser }, info) => {
  const requester = await browser.newContext();
  const page = await requester.newPage();
  await signIn(page, users.alice);

  // Upload the example from the workflows page's form. It has an approval
  // step, so changing it is an admin's job, not the requester's.
  const adminContext = await browser.newContext();
  const admin = await adminContext.newPage();
  await signIn(admin, users.admin);
  await admin.goto('/workflows');
  await live(admin);
  const yaml = fs.readFileSync(path.join(root, 'examples', 'workflows', 'purchase-approval.yaml'), 'utf8');
  await admin.getByTestId('definition').fill(yaml);
  await admin.getByTestId('upload').click();
  await expect(admin).toHaveURL(/\/workflows\/purchase-approval/);
  await adminContext.close();
  await page.goto('/workflows/purchase-approval');
  await live(page);
  await shot(page, info, '01-start-form');

  // Start it from the generated form.
  await page.getByTestId('input-item').fill('standing desk');
  await page.getByTestId('input-amount').fill('2500');
  await page.getByTestId('start').click();
  await expect(page).toHaveURL(/\/runs\/\d+$/);
  await live(page);
  await markPage(page);

  // The run reaches the approval without a reload.
  await expect(page.getByTestId('step-request')).toHaveAttribute('data-status', 'succeeded');
  await expect(page.getByTestId('step-manager_approval')).toHaveAttribute('data-status', 'waiting_approval');
  await expect(page.getByTestId('run-status')).toContainText('waiting approval');
  // The requester is told why they may not approve, and has no button for it.
  await expect(page.getByTestId('cannot-approve')).toContainText('separation of duties');
  await expect(page.getByTestId('approve')).toHaveCount(0);
  await shot(page, info, '02-waiting-for-approval');

  // An approver decides in a second browser context.
  const approverContext = await browser.newContext();
  const approver = await approverContext.newPage();
  await signIn(approver, users.bob);
  await approver.goto('/approvals');
  await live(approver);
  const card = approver.getByTestId('approval-manager_approval');
  await expect(card).toContainText('alice wants to buy standing desk for 2500 EUR');
  await shot(approver, info, '03-approver-inbox');
  await card.getByTestId('comment').fill('Within budget');
  await card.getByTestId('approve').click();
  await expect(approver.getByTestId('decided')).toContainText('Within budget');

  // The requester's page turns green on its own.
  for (const step of ['manager_approval', 'finance', 'notify']) {
    await expect(page.getByTestId(`step-${step}`)).toHaveAttribute('data-status', 'succeeded');
  }
  await expect(page.getByTestId('run-status')).toContainText('succeeded');
  await expect(page.getByTestId('decided')).toContainText('approved by bob');
  await stillSamePage(page);
  await page.getByTestId('step-finance').click();
  await expect(page.getByTestId('step-panel')).toContainText('L at claim');
  await shot(page, info, '04-run-succeeded');
  if (process.env.DROVER_UPDATE_SCREENSHOTS) await page.screenshot({ path: path.join(root, 'docs', 'screenshots', 'run.png') });
  await requester.close();
  await approverContext.close();
});

test('a bad input in the start form is named by its field', async ({ page }, info) => {
  await signIn(page, users.alice);
  await page.goto('/workflows/purchase-approval');
  await live(page);
  await page.getByTestId('input-item').fill('chair');
  await page.getByTestId('input-amount').fill('lots');
  await page.getByTestId('start').click();
  await expect(page.getByTestId('error-amount')).toContainText('number');
  await expect(page).toHaveURL(/\/workflows\/purchase-approval/);
  await shot(page, info, 'bad-amount');
  await page.getByTestId('input-amount').fill('120');
  await page.getByTestId('input-item').fill('');
  await page.getByTestId('start').click();
  // A required input left empty is refused by the browser, before any request.
  expect(await page.getByTestId('input-item').evaluate((i: HTMLInputElement) => i.validity.valueMissing)).toBe(true);
  await expect(page).toHaveURL(/\/workflows\/purchase-approval$/);
  await shot(page, info, 'missing-item');
});
