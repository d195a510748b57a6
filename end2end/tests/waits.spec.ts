// Durable waits on the run page: a step waiting for an event shows its own
// colour and its key, an operator sends the event from the page and the run
// finishes live; a viewer is told what the step waits for but gets no form;
// a sub-workflow's child run links to its parent and back.
import { expect, Locator, Page, test } from '@playwright/test';
import { api, users, waitFor } from '../stack';
import { live, markPage, shot, signIn, stillSamePage } from './helpers';

const PAYMENT = {
  name: 'e2e-payment',
  description: 'Waits for the payment of an order, then ships it',
  inputs: { order: { type: 'string', required: true } },
  steps: [
    {
      id: 'paid',
      type: 'wait',
      event: { key: 'order:{{ inputs.order }}', timeout_ms: 600000, on_timeout: 'continue' },
    },
    {
      id: 'ship',
      type: 'task',
      depends_on: ['paid'],
      task_type: 'echo',
      payload: { amount: '{{ steps.paid.output.data.amount }}' },
    },
  ],
};

const SIGNOFF = {
  name: 'e2e-signoff',
  steps: [{ id: 'ack', type: 'wait', event: { key: 'e2e-signoff' } }],
};

const RELEASE = {
  name: 'e2e-release',
  steps: [{ id: 'approve', type: 'workflow', workflow: 'e2e-signoff' }],
};

async function start(workflow: string, inputs: Record<string, unknown> = {}): Promise<number> {
  const run = await api('POST', '/runs', { workflow, inputs });
  return run.id;
}

function step(run: any, id: string): any {
  return run.steps.find((s: any) => s.step_id === id);
}

/** Waits until a step of a run has a status, by the API. */
async function stepReaches(runId: number, stepId: string, status: string): Promise<any> {
  return waitFor(`step ${stepId} of run ${runId} ${status}`, async () => {
    const run = await api('GET', `/runs/${runId}`);
    return step(run, stepId)?.status === status && run;
  });
}

/** WCAG contrast of two computed colours of an element (text on its background). */
async function contrast(el: Locator, fg: 'color' | 'fill', bg: Locator, bgProp: 'backgroundColor' | 'fill') {
  const colour = async (l: Locator, prop: string) =>
    l.evaluate((e, p) => (getComputedStyle(e) as any)[p] as string, prop);
  const [a, b] = [await colour(el, fg), await colour(bg, bgProp)];
  return await el.evaluate(
    (_, [a, b]) => {
      const lum = (css: string) => {
        const [r, g, bl] = (css.match(/[\d.]+/g) ?? []).slice(0, 3).map(Number);
        const f = (c: number) => ((c /= 255) <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4);
        return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(bl);
      };
      const [hi, lo] = [lum(a), lum(b)].sort((x, y) => y - x);
      return (hi + 0.05) / (lo + 0.05);
    },
    [a, b],
  );
}

/** The waiting colours read at AA (4.5:1) in the light and the dark theme. */
async function waitingIsReadable(page: Page, stepId: string) {
  const badge = page.getByTestId('step-panel').locator('.badge.s-waiting');
  const node = page.getByTestId(`step-${stepId}`);
  for (const colorScheme of ['light', 'dark'] as const) {
    await page.emulateMedia({ colorScheme });
    expect(await contrast(badge, 'color', badge, 'backgroundColor'), `badge, ${colorScheme}`).toBeGreaterThanOrEqual(4.5);
    const label = node.locator('.node-sub');
    const box = node.locator('rect').first();
    expect(await contrast(label, 'fill', box, 'fill'), `graph node, ${colorScheme}`).toBeGreaterThanOrEqual(4.5);
  }
  await page.emulateMedia({ colorScheme: 'light' });
}

test('an operator sends the event a step waits for from its page, and the run finishes live', async ({ page }, info) => {
  await api('POST', '/workflows', PAYMENT);
  const id = await start('e2e-payment', { order: 'e2e-42' });
  await stepReaches(id, 'paid', 'waiting');

  await signIn(page, users.alice);
  await page.goto(`/runs/${id}`);
  await live(page);
  await markPage(page);
  const paid = page.getByTestId('step-paid');
  await expect(paid).toHaveAttribute('data-status', 'waiting');
  await expect(paid).toContainText('event wait · waiting');
  await expect(page.getByTestId('run-status')).toContainText('running');

  await paid.click();
  const panel = page.getByTestId('step-panel');
  await expect(panel.locator('.badge')).toHaveText('waiting');
  const says = page.getByTestId('wait-says');
  await expect(says).toContainText('Waiting for event order:e2e-42 — times out at');
  await expect(says).toContainText('then continues.');
  await expect(says.getByTestId('wait-key')).toHaveText('order:e2e-42');
  await waitingIsReadable(page, 'paid');
  await expect(page.getByTestId('send-event-key')).toHaveText('order:e2e-42');
  await shot(page, info, '01-waiting-for-event');

  // Data that is not JSON is refused in the page; nothing is sent.
  const data = page.getByTestId('event-data');
  await expect(data).toHaveValue('{}');
  await data.fill('{amount: 17');
  await page.getByTestId('send-event-button').click();
  await expect(page.getByTestId('event-answer')).toContainText('The data is not JSON');
  await expect(paid).toHaveAttribute('data-status', 'waiting');

  await data.fill('{"amount": 17}');
  await page.getByTestId('send-event-button').click();
  await expect(page.getByTestId('event-answer')).toContainText(`resumed 1 step: run #${id}, step paid.`);
  // The run moves on by itself: the wait resumed, the next step ran.
  await expect(paid).toHaveAttribute('data-status', 'succeeded', { timeout: 5_000 });
  await expect(page.getByTestId('step-ship')).toHaveAttribute('data-status', 'succeeded', { timeout: 5_000 });
  await expect(page.getByTestId('run-status')).toContainText('succeeded', { timeout: 5_000 });
  await expect(says).toContainText('Event order:e2e-42 arrived at');
  await expect(panel).toContainText('"amount": 17');
  await expect(page.getByTestId('send-event-button')).toHaveCount(0);
  await stillSamePage(page);
  await shot(page, info, '02-resumed');
});

test('a viewer is told what a step waits for, and is offered no form', async ({ page }) => {
  await api('POST', '/workflows', PAYMENT);
  const id = await start('e2e-payment', { order: 'e2e-43' });
  await stepReaches(id, 'paid', 'waiting');
  await signIn(page, users.vera);
  await page.goto(`/runs/${id}`);
  await live(page);
  await page.getByTestId('step-paid').click();
  await expect(page.getByTestId('wait-says')).toContainText('Waiting for event order:e2e-43');
  await expect(page.getByTestId('send-event')).toHaveCount(0);
  await expect(page.locator('main textarea')).toHaveCount(0);
  await api('POST', '/events', { key: 'order:e2e-43', data: {} });
});

test('a child run links to its parent, and the parent to it', async ({ page }, info) => {
  await api('POST', '/workflows', SIGNOFF);
  await api('POST', '/workflows', RELEASE);
  const parent = await start('e2e-release');
  const run = await stepReaches(parent, 'approve', 'waiting');
  const child: number = step(run, 'approve').wait.child_run_id;
  await stepReaches(child, 'ack', 'waiting');

  await signIn(page, users.alice);
  await page.goto('/runs');
  await live(page);
  const row = page.getByTestId('run-row').filter({ has: page.locator(`a[href="/runs/${child}"]`) }).first();
  await expect(row.getByTestId('child-of')).toContainText(`of #${parent}`);

  await page.goto(`/runs/${parent}`);
  await live(page);
  await markPage(page);
  await expect(page.getByTestId('step-approve')).toContainText('sub-workflow · waiting');
  await page.getByTestId('step-approve').click();
  await expect(page.getByTestId('wait-says')).toContainText(`Running workflow e2e-signoff v1 as run #${child}.`);
  await page.getByTestId('child-run').click();
  await expect(page).toHaveURL(new RegExp(`/runs/${child}$`));
  await expect(page.getByTestId('parent-run')).toContainText(`Started by run #${parent}, step approve`);
  await expect(page.getByTestId('step-ack')).toHaveAttribute('data-status', 'waiting');
  await shot(page, info, 'child-run');

  // The event sent from the child's page ends the child, then the parent.
  await page.getByTestId('step-ack').click();
  await page.getByTestId('send-event-button').click();
  await expect(page.getByTestId('event-answer')).toContainText(`run #${child}, step ack`);
  await expect(page.getByTestId('run-status')).toContainText('succeeded', { timeout: 5_000 });
  await page.getByTestId('parent-run').getByRole('link').click();
  await expect(page).toHaveURL(new RegExp(`/runs/${parent}$`));
  await expect(page.getByTestId('step-approve')).toHaveAttribute('data-status', 'succeeded', { timeout: 5_000 });
  await expect(page.getByTestId('run-status')).toContainText('succeeded');
  await stillSamePage(page);
});
