// "Why is this waiting?" on a queued task's page: a task needing a label no
// agent has names the closest agent (a link to it) and what it lacks, and
// follows that agent live as it drains and comes back (and its aged priority
// without any event, as time passes); a task held until an
// hour from now says it is not before that time, and the section goes away
// once the task is cancelled.
import { expect, test } from '@playwright/test';
import { api, users } from '../stack';
import { live, shot, signIn } from './helpers';

test.describe.configure({ mode: 'serial' });

interface Agent {
  id: number;
  name: string;
  status: string;
}

const submitted: number[] = [];

async function submit(task: Record<string, unknown>): Promise<{ id: number; status: string; warnings?: string[] }> {
  const answer = await api<{ id: number; status: string; warnings?: string[] }>('POST', '/tasks', task);
  submitted.push(answer.id);
  return answer;
}

async function steady(): Promise<Agent> {
  const { agents } = await api<{ agents: Agent[] }>('GET', '/agents');
  const agent = agents.find((a) => a.name === 'steady');
  if (!agent) throw new Error('the stack has no agent "steady"');
  return agent;
}

/** `2026-11-25 01:02:03 UTC`, as the dashboard writes times. */
function utc(us: number): string {
  return new Date(Math.floor(us / 1000)).toISOString().replace('T', ' ').replace(/\.\d+Z$/, ' UTC');
}

// Queued tasks must not outlive a failed test, nor the agent stay drained.
test.afterAll(async () => {
  for (const id of submitted) {
    await api('POST', `/tasks/${id}/cancel`, {}).catch(() => undefined);
  }
  const agent = await steady().catch(() => undefined);
  if (agent?.status === 'draining') await api('POST', `/agents/${agent.id}/enable`, {});
});

test('a task needing a label no agent has names the closest agent and what it lacks, live', async ({ page }, info) => {
  const agent = await steady();
  // The stack's agent runs echo (DROVER_TASK_TYPES allows it) but has no "gpu" label.
  const task = await submit({ task_type: 'echo', payload: { from: 'the waiting test' }, required_labels: ['gpu'] });
  expect(task.status).toBe('queued');
  expect(task.warnings ?? []).toEqual([expect.stringContaining('has all of the labels gpu')]);

  await signIn(page, users.vera);
  await page.goto(`/tasks/${task.id}`);
  await live(page);
  const waiting = page.getByTestId('waiting');
  await expect(waiting.getByRole('heading', { name: 'Why is this waiting?' })).toBeVisible();
  await expect(waiting.getByTestId('waiting-summary')).toContainText('No online agent handles "echo" with labels gpu');
  await expect(waiting.getByTestId('waiting-summary')).toContainText('closest: steady, which lacks label "gpu"');

  const reason = waiting.locator('li[data-kind=no_agent]');
  await expect(reason).toContainText('No online agent runs echo with the labels gpu');
  const closest = reason.locator('[data-testid=closest-agent][data-agent=steady]');
  await expect(closest).toContainText('lacks label "gpu"');
  await expect(closest.locator('.badge')).toHaveText('online');
  await expect(closest.getByRole('link', { name: 'steady' })).toHaveAttribute('href', `/agents#agent-${agent.id}`);
  await expect(waiting.getByTestId('aged-priority')).toContainText(/\d/);
  await expect(waiting.getByTestId('estimated-start')).toHaveText('unknown: no online agent can run it');
  await shot(page, info, 'waiting-no-agent');

  // Nothing happens, yet the priority ages: the page asks again while the task waits.
  const aged = waiting.getByTestId('aged-priority').locator('strong');
  const agedBefore = (await aged.textContent()) ?? '';
  await expect(aged).not.toHaveText(agedBefore, { timeout: 15_000 });

  // The explanation follows the agents without a reload: drained, the
  // closest agent is also "draining"; re-enabled, it is back online.
  await api('POST', `/agents/${agent.id}/drain`, {});
  await expect(closest).toContainText('lacks label "gpu", is draining');
  await expect(closest.locator('.badge')).toHaveText('draining');
  await api('POST', `/agents/${agent.id}/enable`, {});
  await expect(closest).toHaveText(/lacks label "gpu"$/);
  await expect(closest.locator('.badge')).toHaveText('online');

  // The link leads to the agent's row.
  await closest.getByRole('link', { name: 'steady' }).click();
  await expect(page).toHaveURL(new RegExp(`/agents#agent-${agent.id}$`));
  await expect(page.locator(`#agent-${agent.id}`)).toHaveAttribute('data-agent', 'steady');
});

test('a task held for an hour says it is not before that time, until it is cancelled', async ({ page }, info) => {
  const runAfterUs = Date.now() * 1000 + 3600 * 1_000_000;
  const task = await submit({ task_type: 'echo', payload: { from: 'the waiting test, later' }, run_after_us: runAfterUs });
  expect(task.status).toBe('queued');

  await signIn(page, users.alice);
  await page.goto(`/tasks/${task.id}`);
  await live(page);
  const waiting = page.getByTestId('waiting');
  await expect(waiting.getByTestId('waiting-summary')).toHaveText('Not before its run_after time.');
  const reason = waiting.locator('li[data-kind=not_before]');
  await expect(reason).toContainText(`Not before ${utc(runAfterUs)}`);
  await expect(reason.getByTestId('not-before-in')).toHaveText(/^in (59 min|1 h)$/);
  await expect(reason).toContainText('its run_after time');
  await expect(waiting.getByTestId('estimated-start')).toContainText(/starts in about (59 min|1 h)|unknown/);
  await shot(page, info, 'waiting-not-before');

  // Cancelled (an event), it no longer waits: the section goes.
  await api('POST', `/tasks/${task.id}/cancel`, {});
  await expect(page.locator('.task-detail h1 .badge')).toHaveText('cancelled');
  await expect(waiting).toHaveCount(0);
});
