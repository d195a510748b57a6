// Issue 17, defect 2: uploading a workflow a run could never finish (a
// step's task type or labels no registered agent has) says so on the
// form, naming the step, instead of moving on in silence. A definition the
// fleet can run goes straight to its page, as before.
import { expect, test } from '@playwright/test';
import { api, users } from '../stack';
import { live, shot, signIn } from './helpers';

test('an upload with a step no agent could take warns, naming the step', async ({ page }, info) => {
  const name = `warned-${Date.now().toString(36)}`;
  await signIn(page, users.admin);
  await page.goto('/workflows');
  await live(page);
  await page.getByTestId('definition').fill(
    `name: ${name}\nsteps:\n  - id: fine\n    type: task\n    task_type: echo\n  - id: render\n    type: task\n    task_type: render-video\n    depends_on: [fine]\n  - id: gpu\n    type: task\n    task_type: echo\n    required_labels: [gpu]\n    depends_on: [fine]\n`,
  );
  await page.getByTestId('upload').click();
  const warnings = page.getByTestId('upload-warnings');
  await expect(warnings).toContainText(`Uploaded ${name} v1, but no registered agent could take some of its steps`);
  await expect(warnings.locator('li')).toHaveCount(2);
  await expect(warnings.locator('li').nth(0)).toContainText('step "render"');
  await expect(warnings.locator('li').nth(0)).toContainText('render-video');
  await expect(warnings.locator('li').nth(1)).toContainText('step "gpu"');
  await expect(warnings.locator('li').nth(1)).toContainText('gpu');
  await expect(page).toHaveURL(/\/workflows$/);
  await shot(page, info, 'upload-warnings');
  await warnings.getByTestId('open-uploaded').click();
  await expect(page).toHaveURL(new RegExp(`/workflows/${name}`));
});

test('an upload the fleet can run goes straight to its page', async ({ page }) => {
  const name = `runnable-${Date.now().toString(36)}`;
  await signIn(page, users.admin);
  await page.goto('/workflows');
  await live(page);
  await page.getByTestId('definition').fill(`name: ${name}\nsteps:\n  - id: fine\n    type: task\n    task_type: echo\n`);
  await page.getByTestId('upload').click();
  await expect(page).toHaveURL(new RegExp(`/workflows/${name}`));
});

test('a step whose task no agent has taken shows as queued, not running', async ({ page }, info) => {
  const name = `unstarted-${Date.now().toString(36)}`;
  await api('POST', '/workflows', `name: ${name}\nsteps:\n  - id: render\n    type: task\n    task_type: render-video\n`);
  const run = await api<{ id: number }>('POST', '/runs', { workflow: name });
  try {
    await signIn(page, users.vera);
    await page.goto(`/runs/${run.id}`);
    await live(page);
    const node = page.getByTestId('step-render');
    await expect(node).toHaveAttribute('data-status', 'queued');
    await node.click();
    await expect(page.getByTestId('step-panel')).toContainText('queued');
    await expect(page.getByTestId('step-queued')).toBeVisible();
    await shot(page, info, 'step-queued');
  } finally {
    await api('POST', `/runs/${run.id}/cancel`, {}).catch(() => undefined);
  }
});
