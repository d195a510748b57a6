// Workflow pages as a daily tool: each version's source as it was
// uploaded, the diff between two versions, the graph before any run, the
// workflow's recent runs and success rate, and "run again" with an earlier
// run's inputs, prefilled and still editable. Its workflow has a name of
// its own, and every run it starts finishes, so later specs see nothing of it.
import { expect, Page, test } from '@playwright/test';
import { api, users, waitFor } from '../stack';
import { live, shot, signIn } from './helpers';

const name = `daily-${Date.now().toString(36)}`;
const V1 = `# Says hello.
name: ${name}
inputs:
  who: { type: string, required: true }
  loud: { type: boolean }
steps:
  - id: greet
    type: task
    task_type: echo
    payload: { hello: "{{ inputs.who }}" }
`;
const V2 = V1.replace('# Says hello.', '# Says hello, then goodbye.') + `  - id: part
    type: task
    task_type: echo
    depends_on: [greet]
    payload: { bye: "{{ inputs.who }}" }
`;

async function upload(page: Page, text: string) {
  await page.goto('/workflows');
  await live(page);
  await page.getByTestId('definition').fill(text);
  await page.getByTestId('upload').click();
  await expect(page).toHaveURL(new RegExp(`/workflows/${name}$`));
  await live(page);
}

async function succeeded(id: number) {
  await waitFor(`run ${id} to succeed`, async () => (await api('GET', `/runs/${id}`)).status === 'succeeded', 30_000);
}

/** Starts the run the form holds; its id, once it has succeeded. */
async function startFromForm(page: Page): Promise<number> {
  await page.getByTestId('start').click();
  await expect(page).toHaveURL(/\/runs\/\d+$/);
  const id = Number(new URL(page.url()).pathname.split('/').pop());
  await succeeded(id);
  return id;
}

test('a workflow page shows sources, a diff, the graph before a run, its runs, and runs again prefilled', async ({ page }, info) => {
  // An admin: after approval.spec.ts, echo runs after an approval, and a
  // workflow running it is an admin's to change.
  await signIn(page, users.admin);
  await upload(page, V1);
  await upload(page, V2);

  // The latest version, before any run: its graph, its text, no runs yet.
  await expect(page.locator('main h1')).toContainText(`${name} v2`);
  const graph = page.getByTestId('graph-preview');
  await expect(graph.getByTestId('preview-step-greet')).toBeVisible();
  await expect(graph.getByTestId('preview-step-part')).toBeVisible();
  await expect(graph.locator('.edges path')).toHaveCount(1);
  await expect(page.getByTestId('success-rate')).toHaveText('No run has finished yet.');
  await expect(page.getByTestId('no-runs')).toBeVisible();
  const source = page.getByTestId('source');
  await expect(source.locator('.line')).toHaveCount(V2.trimEnd().split('\n').length);
  await expect(source.locator('.line').first()).toHaveAttribute('data-line', '1');
  await expect(source.locator('.line').first()).toHaveText('# Says hello, then goodbye.');
  await expect(source).toContainText('    depends_on: [greet]');
  await shot(page, info, '01-before-any-run');

  // What changed since v1: the comment, and the new step's five lines.
  await page.getByTestId('compare-previous').click();
  await expect(page).toHaveURL(/diff=1\.\.2/);
  await expect(page.getByTestId('diff-summary')).toHaveText('v1 → v2: 6 lines added, 1 removed.');
  const diff = page.getByTestId('diff');
  await expect(diff.locator('tr[data-change=added]')).toHaveCount(6);
  const removed = diff.locator('tr[data-change=removed]');
  await expect(removed).toHaveCount(1);
  await expect(removed.locator('td.mark')).toHaveText('−');
  await expect(removed.locator('td.code')).toHaveText('# Says hello.');
  await expect(diff.locator('tr[data-change=added]').first().locator('td.mark')).toHaveText('+');
  await expect(diff.locator('tr[data-change=added]').filter({ hasText: '- id: part' }).locator('td.ln').nth(1)).toHaveText('11');
  await shot(page, info, '02-diff');
  // The other way round, picked in the form.
  await page.getByTestId('compare-from').selectOption('2');
  await page.getByTestId('compare-to').selectOption('1');
  await page.getByTestId('compare').click();
  await expect(page).toHaveURL(/diff=2\.\.1/);
  await expect(page.getByTestId('diff-summary')).toHaveText('v2 → v1: 1 line added, 6 removed.');

  // An older version, picked in the URL: its own text and graph.
  await page.goto(`/workflows/${name}?version=1`);
  await live(page);
  await expect(page.locator('main h1')).toContainText(`${name} v1`);
  await expect(page.getByTestId('source').locator('.line').first()).toHaveText('# Says hello.');
  await expect(page.getByTestId('graph-preview').locator('[data-testid^=preview-step-]')).toHaveCount(1);

  // Run the latest; the page then counts it.
  await page.goto(`/workflows/${name}`);
  await live(page);
  await page.getByTestId('input-who').fill('Ada');
  await page.getByTestId('input-loud').check();
  const first = await startFromForm(page);
  await page.goto(`/workflows/${name}`);
  await live(page);
  await expect(page.getByTestId('success-rate')).toContainText('100% of the last 1 finished run succeeded');
  const row = page.locator(`[data-testid=recent-run][data-run="${first}"]`);
  await expect(row).toContainText('succeeded');
  await expect(row).toContainText('admin');
  await expect(row).toContainText('v2');
  await shot(page, info, '03-after-a-run');

  // Run again: the form holds that run's inputs, and they can be changed.
  await row.getByTestId('run-again').click();
  await expect(page).toHaveURL(new RegExp(`from_run=${first}`));
  await expect(page.getByTestId('from-run-notice')).toContainText(`run #${first}`);
  await expect(page.getByTestId('input-who')).toHaveValue('Ada');
  await expect(page.getByTestId('input-loud')).toBeChecked();
  await shot(page, info, '04-run-again');
  await live(page);
  await page.getByTestId('input-who').fill('Grace');
  const again = await startFromForm(page);
  expect((await api('GET', `/runs/${again}`)).inputs).toEqual({ who: 'Grace', loud: true });

  // A run of an older version: its inputs fill the latest's form, which says so.
  const old = await api<{ id: number }>('POST', '/runs', { workflow: name, version: 1, inputs: { who: 'Lin' } });
  await succeeded(old.id);
  await page.goto(`/workflows/${name}?from_run=${old.id}`);
  await live(page);
  const notice = page.getByTestId('from-run-notice');
  await expect(notice).toContainText(`run #${old.id}, which ran v1: this form starts v2.`);
  await expect(page.getByTestId('input-who')).toHaveValue('Lin');
  await expect(page.getByTestId('input-loud')).not.toBeChecked();
  await notice.getByTestId('start-run-version').click();
  await expect(page).toHaveURL(new RegExp(`version=1&from_run=${old.id}`));
  await expect(page.locator('main h1')).toContainText(`${name} v1`);
  await expect(page.getByTestId('input-who')).toHaveValue('Lin');
  await expect(page.getByTestId('success-rate')).toContainText('100% of the last 3 finished runs succeeded');
});

test('a viewer reads the source and the diff but gets no start form', async ({ page }) => {
  await api('POST', '/workflows', V1.replace(`name: ${name}`, `name: ${name}-seen`));
  await api('POST', '/workflows', V2.replace(`name: ${name}`, `name: ${name}-seen`));
  await signIn(page, users.vera);
  await page.goto(`/workflows/${name}-seen?diff=1..2`);
  await live(page);
  await expect(page.getByTestId('diff-summary')).toHaveText('v1 → v2: 6 lines added, 1 removed.');
  await expect(page.getByTestId('source').locator('.line').first()).toHaveText('# Says hello, then goodbye.');
  await expect(page.getByTestId('start-form')).toHaveCount(0);
  await expect(page.getByTestId('run-again')).toHaveCount(0);
});
