// An agent's own page: from the Agents list, follow the agent's name to its
// page, which shows what it declared, the tasks it runs and its load over
// time. Two sleep tasks on the steady agent's four slots raise the chart to
// L 0.5 and the running tasks appear, live, without a reload; once they are
// cancelled the chart comes back down. A viewer reads it all.
import { expect, test } from '@playwright/test';
import { api, users, waitFor } from '../stack';
import { live, markPage, shot, signIn, stillSamePage } from './helpers';

interface Agent {
  id: number;
  name: string;
  status: string;
}

const submitted: number[] = [];

// Sleep tasks must not outlive a failed test: the other tests share the agent.
test.afterAll(async () => {
  for (const id of submitted) await api('POST', `/tasks/${id}/cancel`, {}).catch(() => undefined);
});

test('an agent page charts its load over time and follows it live', async ({ page }, info) => {
  const { agents } = await api<{ agents: Agent[] }>('GET', '/agents');
  const steady = agents.find((a) => a.name === 'steady');
  if (!steady) throw new Error('the stack has no agent "steady"');

  await signIn(page, users.vera);
  await page.goto('/agents');
  await live(page);
  await page.locator('[data-testid=agent-row][data-agent=steady]').getByTestId('agent-link').click();
  await expect(page).toHaveURL(new RegExp(`/agents/${steady.id}$`));
  await live(page);
  const facts = page.getByTestId('agent-facts');
  await expect(facts).toHaveAttribute('data-agent', 'steady');
  await expect(facts).toContainText('sleep');
  await expect(facts.getByTestId('drained')).toHaveText('no');
  const chart = page.getByTestId('load-chart');
  await expect(chart).toHaveAttribute('role', 'img');
  await expect(chart).toHaveAttribute('aria-label', /^Load of steady over the last 1 h: /);

  // The window is in the URL; 15 minutes gives the finest buckets.
  await page.getByTestId('load-window').filter({ hasText: '15 min' }).click();
  await expect(page).toHaveURL(new RegExp(`/agents/${steady.id}\\?window=900$`));
  await expect(chart).toHaveAttribute('aria-label', /over the last 15 min: /);
  await expect(page.getByTestId('load-window').filter({ hasText: '15 min' })).toHaveAttribute('aria-current', 'page');
  await markPage(page);

  for (const i of [1, 2]) {
    const answer = await api<{ id: number }>('POST', '/tasks', { task_type: 'sleep', payload: { ms: 120000, i }, urgency: 9 });
    submitted.push(answer.id);
  }
  await waitFor('both tasks running on the steady agent', async () => {
    const tasks = await Promise.all(submitted.map((id) => api('GET', `/tasks/${id}`)));
    return tasks.every((t: any) => t.status === 'running' && t.agent_id === steady.id);
  });

  // Live: the running tasks link to their pages, and the newest samples
  // reach L 0.5 (2 of 4) in the chart, its label and its table.
  const running = page.getByTestId('running-task');
  await expect(running).toHaveCount(2);
  for (const id of submitted) await expect(page.locator(`[data-testid=running-task] a[href="/tasks/${id}"]`)).toHaveCount(1);
  await expect(chart).toHaveAttribute('data-last-peak', '0.50', { timeout: 20_000 });
  await expect(chart).toHaveAttribute('aria-label', /peak L (0\.[5-9]\d|1\.00); now 2 of 4 slots busy \(L 0\.50\)/);
  await expect(chart.locator('polyline.mean')).not.toHaveCount(0);
  await expect(page.getByTestId('agent-now')).toContainText('2 of 4');
  const table = page.getByTestId('load-table');
  await table.locator('summary').click();
  await expect(table.getByTestId('load-row').first().locator('td').nth(3)).toHaveText('0.50');
  await stillSamePage(page);
  await shot(page, info, '01-agent-load');

  for (const id of submitted) await api('POST', `/tasks/${id}/cancel`, {});
  await expect(running).toHaveCount(0);
  await expect(page.getByTestId('agent-now')).toContainText('0 of 4');
  await expect(chart).toHaveAttribute('data-last-peak', '0.00', { timeout: 30_000 });
  await stillSamePage(page);
});
