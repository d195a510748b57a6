// The Queues page: with the only agent drained, echo tasks wait; the page
// shows the type's depth (and the task a full concurrency key holds), says
// in words that no online agent takes the type, and shows the key's slots.
// It follows the queue live: more tasks raise the depth, and once the
// agent is back the tasks start, the warning goes and the key empties.
import { expect, test } from '@playwright/test';
import { api, users, waitFor } from '../stack';
import { live, shot, signIn } from './helpers';

test.describe.configure({ mode: 'serial' });

interface Agent {
  id: number;
  name: string;
  status: string;
}

interface TypeHealth {
  task_type: string;
  queued: number;
}

const KEY = 'e2e-queues:1';
const submitted: number[] = [];

async function submit(task: Record<string, unknown>): Promise<number> {
  const answer = await api<{ id: number }>('POST', '/tasks', task);
  submitted.push(answer.id);
  return answer.id;
}

async function steady(): Promise<Agent> {
  const { agents } = await api<{ agents: Agent[] }>('GET', '/agents');
  const agent = agents.find((a) => a.name === 'steady');
  if (!agent) throw new Error('the stack has no agent "steady"');
  return agent;
}

/** The echo queue's depth, as the API says. */
async function echoDepth(): Promise<number> {
  const { types } = await api<{ types: TypeHealth[] }>('GET', '/queues');
  return types.find((t) => t.task_type === 'echo')?.queued ?? 0;
}

// Queued tasks must not outlive a failed test, nor the agent stay drained.
test.afterAll(async () => {
  for (const id of submitted) {
    await api('POST', `/tasks/${id}/cancel`, {}).catch(() => undefined);
  }
  const agent = await steady().catch(() => undefined);
  if (agent?.status === 'draining') await api('POST', `/agents/${agent.id}/enable`, {});
});

test('a type no online agent takes shows its depth and says so, and the page follows the queue live', async ({ page }, info) => {
  const agent = await steady();
  await api('POST', `/agents/${agent.id}/drain`, {});
  for (const i of [1, 2, 3]) await submit({ task_type: 'echo', payload: { from: 'the queues test', i } });
  // A key with room for one: the second task of it is held.
  for (const i of [1, 2]) {
    await submit({ task_type: 'echo', payload: { keyed: i }, concurrency_key: KEY, concurrency_limit: 1 });
  }
  const depth = await echoDepth();
  expect(depth).toBeGreaterThanOrEqual(5);

  await signIn(page, users.vera);
  await page.goto('/queues');
  await live(page);
  const row = page.locator('[data-testid=queue-type][data-type=echo]');
  await expect(row.getByTestId('depth')).toHaveText(String(depth));
  await expect(row.getByTestId('held')).toHaveText('1');
  await expect(row.getByTestId('no-agent')).toHaveText('No online agent takes this type');
  await expect(row).toHaveAttribute('data-stranded', 'true');
  await expect(row.getByTestId('able')).toContainText('0 agents');
  await expect(row.getByTestId('oldest')).toHaveText(/\d/);
  const key = page.locator(`[data-testid=queue-key][data-key="${KEY}"]`);
  await expect(key.getByTestId('slots')).toHaveText('1/1');
  await expect(key.getByTestId('key-held')).toHaveText('1');
  await shot(page, info, 'queues-no-agent');

  // Live, without a reload: two more tasks deepen the queue.
  for (const i of [4, 5]) await submit({ task_type: 'echo', payload: { from: 'the queues test', i } });
  await expect(row.getByTestId('depth')).toHaveText(String(depth + 2));

  // The agent is back: the tasks start, the warning goes, the key empties.
  await api('POST', `/agents/${agent.id}/enable`, {});
  await expect(row.getByTestId('no-agent')).toHaveCount(0);
  await expect(row).toHaveAttribute('data-stranded', 'false');
  await expect(row.getByTestId('able')).toContainText('1 agent');
  await expect(key).toHaveCount(0, { timeout: 20_000 });
  await waitFor('the test\'s tasks to finish', async () => {
    for (const id of submitted) {
      const t = await api<{ status: string }>('GET', `/tasks/${id}`);
      if (t.status !== 'succeeded') return false;
    }
    return true;
  });
  await expect(row.getByTestId('depth')).toHaveText(String(await echoDepth()));
  await expect(row.getByTestId('p50')).toHaveText(/\d/);
  await shot(page, info, 'queues-drained');
});
