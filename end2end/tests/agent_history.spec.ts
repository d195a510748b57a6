// An agent's page as a daily tool (issue 17): beside what it runs now, the
// tasks it finished lately and what happened to it — registered, drained
// and enabled, by whom — read by a viewer, live.
import { expect, test } from '@playwright/test';
import { api, users, waitFor } from '../stack';
import { live, signIn } from './helpers';

test('an agent page lists what it finished lately and its history', async ({ page }) => {
  const { agents } = await api<{ agents: { id: number; name: string }[] }>('GET', '/agents');
  const steady = agents.find((a) => a.name === 'steady');
  if (!steady) throw new Error('the stack has no agent "steady"');

  await signIn(page, users.vera);
  await page.goto(`/agents/${steady.id}`);
  await live(page);
  const history = page.getByTestId('agent-history');
  await expect(history.locator('[data-action="agent.registered"]').first()).toBeVisible();

  // A task it runs now shows among the finished ones, without a reload.
  const marker = `recent-${Date.now().toString(36)}`;
  const task = await api<{ id: number }>('POST', '/tasks', { task_type: 'echo', payload: { marker } });
  await waitFor('the echo task to finish', async () => (await api('GET', `/tasks/${task.id}`)).status === 'succeeded');
  const row = page.getByTestId('recent-task').filter({ hasText: `Task ${task.id}` });
  await expect(row).toBeVisible();
  await expect(row).toContainText('succeeded');
  await expect(row.getByRole('link')).toHaveAttribute('href', `/tasks/${task.id}`);

  // Drained and enabled again by the admin: both on the page, newest first, with who.
  await api('POST', `/agents/${steady.id}/drain`, {});
  await api('POST', `/agents/${steady.id}/enable`, {});
  const entries = history.getByTestId('history-entry');
  await expect(entries.first()).toHaveAttribute('data-action', 'agent.enabled');
  await expect(entries.first()).toContainText('enabled by admin');
  await expect(entries.nth(1)).toHaveAttribute('data-action', 'agent.drained');
  await expect(entries.nth(1)).toContainText('drained by admin');
});

test('the history of an agent that does not exist is a 404', async () => {
  await expect(api('GET', '/agents/999999/history')).rejects.toThrow(/404/);
});
