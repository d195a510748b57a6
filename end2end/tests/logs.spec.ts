// Live logs: what a command handler prints appears on its task's page
// within a second, without a reload, stderr set apart; once the task has
// finished its page shows the stored log as the server renders it; a run's
// page shows the log of the step picked in its graph.
import { ChildProcess } from 'node:child_process';
import { expect, test } from '@playwright/test';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { api, dataDir, readState, startAgent, users, waitFor } from '../stack';
import { live, markPage, shot, signIn, stillSamePage } from './helpers';

const dir = path.join(dataDir, 'logs-e2e');
const go = path.join(dir, 'go');
const end = path.join(dir, 'end');

// Prints a line, waits for the test's go-ahead, prints to both streams
// (apart in time: two pipes are read side by side, so lines printed on
// both at once may arrive in either order), then waits for the end (or
// 30 s) before it exits.
const config = `capacity = 1

[handlers.log-demo]
kind = "command"
program = "sh"
args = ["-c", '''
echo "starting up"
while [ ! -f "${go}" ]; do sleep 0.05; done
echo "hello from the handler"
sleep 0.1
echo "warning: disk almost full" >&2
i=0; while [ ! -f "${end}" ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done
sleep 0.1
echo '{"done": true}'
''']
`;

test.describe.configure({ mode: 'serial' });

let agent: ChildProcess | undefined;

test.beforeAll(async () => {
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  const configFile = path.join(dir, 'agent.toml');
  fs.writeFileSync(configFile, config);
  agent = startAgent('logger', readState().enrollmentToken, configFile);
  await waitFor('the logger agent to register', async () => {
    const { agents } = await api<{ agents: { name: string; status: string }[] }>('GET', '/agents');
    return agents.some((a) => a.name === 'logger' && a.status === 'online');
  });
});

test.afterAll(() => {
  fs.writeFileSync(end, '');
  agent?.kill('SIGTERM');
});

test('a line a handler prints appears on the task page within a second', async ({ page }, info) => {
  const task = await api<{ id: number }>('POST', '/tasks', { task_type: 'log-demo' });

  await signIn(page, users.vera);
  await page.goto(`/tasks/${task.id}`);
  await live(page);
  const log = page.getByTestId('task-log');
  await expect(log.getByRole('heading', { name: 'Log' })).toBeVisible();
  await expect(log.getByTestId('log-line').first()).toHaveText('starting up');
  await markPage(page);

  // The handler prints its next lines now: they are on the page within a second.
  fs.writeFileSync(go, '');
  const printed = Date.now();
  const hello = log.locator('[data-testid=log-line][data-stream=stdout]', { hasText: 'hello from the handler' });
  await expect(hello).toBeVisible({ timeout: 1_000 });
  const warning = log.locator('[data-testid=log-line][data-stream=stderr]', { hasText: 'warning: disk almost full' });
  await expect(warning).toBeVisible({ timeout: 1_000 });
  info.annotations.push({ type: 'line on screen after', description: `${Date.now() - printed} ms` });
  // stderr is set apart from stdout.
  const colour = (l: typeof hello) => l.evaluate((el) => getComputedStyle(el).color);
  expect(await colour(warning)).not.toBe(await colour(hello));
  await expect(log.getByTestId('log-line')).toHaveText(['starting up', 'hello from the handler', 'warning: disk almost full']);
  await stillSamePage(page);
  await shot(page, info, 'task-log-live');

  // Finished, the task keeps its log: a fresh load shows it, rendered by the server.
  fs.writeFileSync(end, '');
  await waitFor('the task to finish', async () => (await api<{ status: string }>('GET', `/tasks/${task.id}`)).status === 'succeeded');
  await page.reload();
  await expect(page.getByTestId('task-log').getByTestId('log-line')).toHaveText([
    'starting up',
    'hello from the handler',
    'warning: disk almost full',
    '{"done": true}',
  ]);
});

test("a run's page shows the log of the step picked in its graph", async ({ page }, info) => {
  const definition = {
    name: 'log-flow',
    steps: [
      { id: 'hello', type: 'task', task_type: 'echo', payload: { greeting: 'hi' } },
      { id: 'chat', type: 'task', task_type: 'log-demo', depends_on: ['hello'] },
    ],
  };
  // The handler goes straight through this time.
  fs.writeFileSync(go, '');
  fs.writeFileSync(end, '');
  await api('POST', '/workflows', JSON.stringify(definition));
  const run = (await api<{ id: number }>('POST', '/runs', { workflow: 'log-flow' })).id;
  await waitFor('the run to finish', async () => (await api<{ status: string }>('GET', `/runs/${run}`)).status === 'succeeded');

  await signIn(page, users.vera);
  await page.goto(`/runs/${run}`);
  await live(page);
  await page.getByTestId('step-chat').click();
  const log = page.getByTestId('task-log');
  await expect(log.getByRole('heading')).toContainText('Log · step chat · task');
  await expect(log.getByTestId('log-line')).toHaveText([
    'starting up',
    'hello from the handler',
    'warning: disk almost full',
    '{"done": true}',
  ]);
  await shot(page, info, 'run-step-log');
  // A step whose handler printed nothing says so.
  await page.getByTestId('step-hello').click();
  await expect(log.getByRole('heading')).toContainText('Log · step hello · task');
  await expect(log.getByTestId('log-empty')).toHaveText('Its handlers printed nothing.');
});
