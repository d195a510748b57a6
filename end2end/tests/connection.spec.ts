// Honest connection state: when the server goes away the header's dot turns
// red and the page says so (actions taken meanwhile are not saved); when a
// request cannot reach the server, the same; when the server is back, the
// page reconnects on its own and says nothing more.
import { expect, test } from '@playwright/test';
import { ChildProcess, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bin, dataDir, root, users, waitFor } from '../stack';
import { shot } from './helpers';

const PORT = 18293;
const URL = `http://127.0.0.1:${PORT}`;

function startServer(dir: string): ChildProcess {
  const log = fs.openSync(path.join(dataDir, 'connection-server.log'), 'a');
  return spawn(bin('drover-server'), [], {
    env: {
      ...process.env,
      DROVER_LISTEN: `127.0.0.1:${PORT}`,
      DROVER_DATA_DIR: dir,
      DROVER_SITE_ROOT: path.join(root, 'target', 'site'),
      DROVER_API_TOKEN: 'connection-e2e-api-token',
      DROVER_ENROLLMENT_TOKEN: 'connection-e2e-enroll-token',
      DROVER_ADMIN_PASSWORD: users.admin.password,
      DROVER_TASK_TYPES: 'echo',
    },
    stdio: ['ignore', log, log],
  });
}

async function up(): Promise<void> {
  await waitFor('the server', async () => {
    try {
      return (await fetch(`${URL}/healthz`)).ok;
    } catch {
      return false;
    }
  }, 20_000);
}

async function stop(proc: ChildProcess): Promise<void> {
  if (proc.exitCode !== null) return;
  const exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.kill('SIGTERM');
  await exited;
}

test('the page says when the server cannot be reached, and recovers on its own', async ({ page }, info) => {
  const dir = path.join(dataDir, `connection-${Date.now()}`);
  let server = startServer(dir);
  try {
    await up();
    await page.goto(`${URL}/signin`);
    await page.fill('input[name=name]', users.admin.name);
    await page.fill('input[name=password]', users.admin.password);
    await page.click('button[type=submit]');
    await page.goto(`${URL}/tasks`);
    const dot = page.getByTestId('live');
    await expect(dot).toHaveAttribute('data-connected', 'true');
    await expect(page.getByTestId('lost')).toHaveCount(0);

    // A request that cannot reach the server, while the stream is still up.
    await page.route('**/api/v1/agents*', (route) => route.abort('connectionrefused'));
    await page.getByRole('link', { name: 'Agents', exact: true }).first().click();
    await expect(page.getByTestId('lost')).toBeVisible({ timeout: 5_000 });
    await expect(dot).toHaveClass(/lost/);
    await page.unroute('**/api/v1/agents*');
    await page.goto(`${URL}/tasks`);
    await expect(dot).toHaveAttribute('data-connected', 'true');
    await expect(page.getByTestId('lost')).toHaveCount(0);

    // The server stops: the stream ends, the page says so at once.
    await stop(server);
    await expect(page.getByTestId('lost')).toBeVisible({ timeout: 5_000 });
    await expect(dot).toHaveAttribute('data-connected', 'false');
    await expect(dot).toHaveClass(/lost/);
    await shot(page, info, 'connection-lost');

    // Back again: the browser reconnects by itself and the notice goes.
    server = startServer(dir);
    await up();
    await expect(dot).toHaveAttribute('data-connected', 'true', { timeout: 15_000 });
    await expect(page.getByTestId('lost')).toHaveCount(0);
  } finally {
    await stop(server);
  }
});
