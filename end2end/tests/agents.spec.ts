// Killing an agent mid-task: the dashboard shows it go offline and its
// task move to another agent, without a reload.
import { expect, test } from '@playwright/test';
import * as path from 'node:path';
import { api, readState, root, startAgent, users, waitFor } from '../stack';
import { live, markPage, shot, signIn, stillSamePage } from './helpers';

test('a killed agent goes offline and its task moves to another agent', async ({ page }, info) => {
  const { enrollmentToken } = readState();
  const agents = (await api('GET', '/agents')).agents;
  const steady = agents.find((a: any) => a.name === 'steady');
  // Only the doomed agent takes the task: the steady one drains meanwhile.
  await api('POST', `/agents/${steady.id}/drain`, {});
  const doomed = startAgent('doomed', enrollmentToken);
  try {
    const doomedId = await waitFor('the doomed agent to register', async () =>
      (await api('GET', '/agents')).agents.find((a: any) => a.name === 'doomed' && a.status === 'online')?.id,
    );
    const submitted = await api('POST', '/tasks', { task_type: 'sleep', payload: { ms: 120000 }, urgency: 9 });
    const taskId = submitted.id ?? submitted.tasks?.[0]?.id;
    await waitFor('the task to run on the doomed agent', async () => {
      const t = await api('GET', `/tasks/${taskId}`);
      return t.status === 'running' && t.agent_id === doomedId;
    });
    await api('POST', `/agents/${steady.id}/enable`, {});

    await signIn(page, users.admin);
    await page.goto('/agents');
    await live(page);
    await markPage(page);
    const doomedRow = page.locator('[data-testid=agent-row][data-agent=doomed]');
    await expect(doomedRow).toHaveAttribute('data-status', 'online');
    await expect(doomedRow.getByTestId('agent-load')).toContainText('1/4');
    await shot(page, info, '01-agents-before-kill');
    if (process.env.DROVER_UPDATE_SCREENSHOTS) await page.screenshot({ path: path.join(root, 'docs', 'screenshots', 'agents.png') });

    doomed.kill('SIGKILL');
    await expect(doomedRow).toHaveAttribute('data-status', 'offline', { timeout: 15_000 });
    const steadyRow = page.locator('[data-testid=agent-row][data-agent=steady]');
    await expect(steadyRow.getByTestId('agent-load')).toContainText('1/4', { timeout: 15_000 });
    await stillSamePage(page);
    await shot(page, info, '02-agent-offline-task-moved');

    // The task's page tells the story: lost on the doomed agent, running on the steady one.
    await page.goto(`/tasks/${taskId}`);
    const attempts = page.getByTestId('attempt');
    await expect(attempts).toHaveCount(2);
    await expect(attempts.nth(0)).toHaveAttribute('data-agent', String(doomedId));
    await expect(attempts.nth(1)).toHaveAttribute('data-agent', String(steady.id));
    await shot(page, info, '03-task-attempts');
    await api('POST', `/tasks/${taskId}/cancel`, {});
  } finally {
    doomed.kill('SIGKILL');
    await api('POST', `/agents/${steady.id}/enable`, {}).catch(() => undefined);
  }
});
