// The dashboard issue, defect 3: retrying a step rewrote the run's
// history. After "Retry step" the timeline put the compensation before the
// retried step, the original failure disappeared, a step that never ran
// stayed "pending" in a finished run, and compensation arrows were drawn
// across the main path. The run page now tells the run from its events:
// in the order things happened, the first failure kept, who retried; a
// step that never ran reads "skipped"; compensation has a lane of its own;
// a Gantt chart shows each generation of a step and its attempts; and the
// selected step is in the URL.
import { ChildProcess } from 'node:child_process';
import { expect, Locator, test } from '@playwright/test';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { api, dataDir, readState, startAgent, users, waitFor } from '../stack';
import { live, shot, signIn } from './helpers';

const dir = path.join(dataDir, 'run-history');
const charged = path.join(dir, 'charged');

// An agent of its own (only it carries the label): its card charge is
// declined the first time and goes through once retried.
const config = `name = "historian"
capacity = 2
labels = ["run-history"]

[handlers.charge-card]
kind = "command"
program = "sh"
args = ["-c", '''
if [ -f "${charged}" ]; then echo '{"charged": true}'; exit 0; fi
touch "${charged}"
echo "card declined" >&2
exit 1
''']
`;

const WORKFLOW = `
name: run-history
description: Charge, then ship; refund if the charge fails
steps:
  - id: charge
    type: task
    task_type: charge-card
    required_labels: [run-history]
    max_attempts: 1
    payload: { order: "H-1" }
  - id: ship
    type: task
    depends_on: [charge]
    task_type: echo
    payload: { ship: "H-1" }
  - id: refund
    type: task
    task_type: echo
    on_failure_of: [charge]
    payload: { refund: "H-1" }
`;

test.describe.configure({ mode: 'serial' });

let agent: ChildProcess | undefined;

test.beforeAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'agent.toml');
  fs.writeFileSync(file, config);
  agent = startAgent('historian', readState().enrollmentToken, file);
  await waitFor('the historian agent to register', async () =>
    (await api('GET', '/agents')).agents.some((a: any) => a.name === 'historian' && a.status === 'online'));
  await api('POST', '/workflows', WORKFLOW);
});

test.afterAll(() => {
  agent?.kill('SIGTERM');
});

/** The top and bottom of an element on the page. */
async function box(l: Locator) {
  const b = await l.boundingBox();
  if (!b) throw new Error('not laid out');
  return { top: b.y, bottom: b.y + b.height };
}

test('after "Retry step" the run page still tells the run as it happened', async ({ page }, info) => {
  const run = await api<{ id: number }>('POST', '/runs', { workflow: 'run-history' });
  await waitFor('the run to fail', async () => (await api('GET', `/runs/${run.id}`)).status === 'failed', 30_000);

  await signIn(page, users.alice);
  await page.goto(`/runs/${run.id}`);
  await live(page);
  await expect(page.getByTestId('run-status')).toContainText('failed');

  // The finished run shows no step "pending": the one it never reached was skipped.
  await expect(page.getByTestId('step-ship')).toHaveAttribute('data-status', 'skipped');
  await expect(page.locator('svg.dag [data-status=pending]')).toHaveCount(0);

  // Compensation has its own lane below the main path, and its own edges.
  const lane = page.getByTestId('compensation-lane');
  const mainPath = page.getByTestId('main-path');
  await expect(lane.getByTestId('step-refund')).toBeVisible();
  await expect(mainPath.getByTestId('step-refund')).toHaveCount(0);
  await expect(mainPath.getByTestId('step-charge')).toBeVisible();
  await expect(mainPath.getByTestId('step-ship')).toBeVisible();
  const refund = await box(lane.getByTestId('step-refund'));
  for (const step of ['charge', 'ship']) {
    expect(refund.top, `refund below ${step}`).toBeGreaterThan((await box(mainPath.getByTestId(`step-${step}`))).bottom);
  }
  await expect(page.getByTestId('compensation-edges').locator('path.comp')).toHaveCount(1);
  await expect(page.locator('svg.dag g.edges:not(.comp-edges) path.comp')).toHaveCount(0);

  // Selecting a step puts it in the URL; retry it from its panel.
  await page.getByTestId('step-charge').click();
  await expect(page).toHaveURL(new RegExp(`/runs/${run.id}\\?step=charge$`));
  const panel = page.getByTestId('step-panel');
  await expect(panel).toContainText('card declined');
  await panel.getByTestId('retry-step').click();
  await page.getByTestId('confirm-retry-step').click();
  await expect(page.locator('.flash.ok')).toHaveText('Step charge is running again.');
  await expect(page.getByTestId('run-status')).toContainText('succeeded', { timeout: 30_000 });
  await expect(page.getByTestId('step-ship')).toHaveAttribute('data-status', 'succeeded');

  // The timeline, in the order it happened: the first failure stays, the
  // compensation comes after it, then who retried, then the retried step.
  const events = page.getByTestId('timeline').getByTestId('timeline-event');
  const told = [
    'run_started ',
    'step_started charge',
    'step_failed charge',
    'compensation_started refund',
    'compensation_finished refund',
    'step_skipped ship',
    'run_finished ',
    'step_retried charge',
    'step_started charge',
    'step_succeeded charge',
    'step_started ship',
    'step_succeeded ship',
    'run_finished ',
  ];
  await expect
    .poll(async () =>
      events.evaluateAll((items) =>
        items.map((li) => `${li.getAttribute('data-kind')} ${li.getAttribute('data-step') ?? ''}`)))
    .toEqual(told);
  await expect(events.nth(2)).toContainText(/charge failed: .*card declined/);
  await expect(events.nth(5)).toContainText('ship skipped: the run failed before it ran');
  await expect(events.nth(6)).toContainText('Run failed');
  await expect(events.nth(7)).toContainText(`retried by ${users.alice.name}`);
  await expect(events.nth(8)).toContainText('(retry 1)');
  await expect(events.nth(12)).toContainText('Run succeeded');
  // When, to the microsecond, for a reader who hovers.
  await expect(events.nth(7).locator('time')).toHaveAttribute('title', /UTC$/);

  // The Gantt chart: a bar for each generation of the step, attempts under
  // them, on a time axis with units; and the same as a table.
  const gantt = page.getByTestId('gantt');
  await expect(gantt).toHaveAttribute('aria-label', /Gantt chart of run/);
  const chargeBars = gantt.locator('[data-testid=gantt-bar][data-kind=step][data-step=charge]');
  await expect(chargeBars).toHaveCount(2);
  await expect(chargeBars.nth(0)).toHaveAttribute('data-status', 'failed');
  await expect(chargeBars.nth(1)).toHaveAttribute('data-status', 'succeeded');
  await expect(gantt.locator('[data-testid=gantt-bar][data-kind=attempt][data-step=charge]')).toHaveCount(2);
  await expect(gantt.locator('[data-testid=gantt-bar][data-kind=step][data-step=refund]')).toHaveCount(1);
  await expect(gantt.locator('g.grid text').last()).toHaveText(/^\d+(\.\d+)? (µs|ms|s|min|h)$/);
  const table = page.getByTestId('gantt-table');
  await table.locator('summary').click();
  await expect(table.getByTestId('gantt-row')).toHaveCount(await gantt.getByTestId('gantt-bar').count());
  await expect(table).toContainText('the step, retry 1');
  await shot(page, info, 'run-history');

  // A reload opens the selected step, with its own history.
  await page.reload();
  await live(page);
  await expect(panel).toContainText('charge');
  await expect(page.getByTestId('step-charge')).toHaveAttribute('aria-pressed', 'true');
  const history = panel.getByTestId('step-history').getByTestId('timeline-event');
  await expect(history).toHaveCount(5);
  await expect(history.nth(1)).toContainText('card declined');
  await expect(history.nth(2)).toContainText(`retried by ${users.alice.name}`);

  // So does a shared link to another step.
  await page.goto(`/runs/${run.id}?step=refund`);
  await live(page);
  await expect(panel).toContainText('refund');
  await expect(page.getByTestId('step-refund')).toHaveAttribute('aria-pressed', 'true');
});
