// Two server instances on one PostgreSQL database: a change made through
// one instance reaches a browser connected to the other (LISTEN/NOTIFY).
import { expect, test } from '@playwright/test';
import { ChildProcess, execFileSync, spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { bin, dataDir, root, users, waitFor } from '../stack';
import { shot } from './helpers';

const adminUrl = process.env.DROVER_TEST_PG ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const TOKEN = 'cluster-e2e-api-token';
const ENROLL = 'cluster-e2e-enroll-token';

function startServer(port: number, dbUrl: string, name: string): ChildProcess {
  const log = fs.openSync(path.join(dataDir, `cluster-${name}.log`), 'a');
  return spawn(bin('drover-server'), [], {
    env: {
      ...process.env,
      DROVER_LISTEN: `127.0.0.1:${port}`,
      DROVER_DATABASE_URL: dbUrl,
      DROVER_DATA_DIR: path.join(dataDir, `cluster-${name}`),
      DROVER_SITE_ROOT: path.join(root, 'target', 'site'),
      DROVER_API_TOKEN: TOKEN,
      DROVER_ENROLLMENT_TOKEN: ENROLL,
      DROVER_ADMIN_PASSWORD: users.admin.password,
      DROVER_TASK_TYPES: 'echo',
    },
    stdio: ['ignore', log, log],
  });
}

test('a change made on one instance shows in a browser on the other', async ({ page }, info) => {
  const db = `drover_e2e_cluster_${Date.now()}`;
  execFileSync('psql', [adminUrl, '-qAtc', `CREATE DATABASE ${db}`]);
  const dbUrl = adminUrl.replace(/\/[^/]*$/, `/${db}`);
  const [portA, portB] = [18291, 18292];
  const procs: ChildProcess[] = [];
  try {
    procs.push(startServer(portA, dbUrl, 'a'));
    await waitFor('instance A', async () => (await fetch(`http://127.0.0.1:${portA}/healthz`)).ok, 20_000);
    procs.push(startServer(portB, dbUrl, 'b'));
    await waitFor('instance B', async () => (await fetch(`http://127.0.0.1:${portB}/healthz`)).ok, 20_000);
    // A workflow uploaded through A appears on B's page, live.
    await page.goto(`http://127.0.0.1:${portB}/signin`);
    await page.fill('input[name=name]', users.admin.name);
    await page.fill('input[name=password]', users.admin.password);
    await page.click('button[type=submit]');
    await page.goto(`http://127.0.0.1:${portB}/workflows`);
    await expect(page.getByTestId('live')).toHaveAttribute('data-connected', 'true');
    await expect(page.getByTestId('workflow-row')).toHaveCount(0);
    const upload = await fetch(`http://127.0.0.1:${portA}/api/v1/workflows`, {
      method: 'POST',
      headers: { authorization: `Bearer ${TOKEN}` },
      body: 'name: made-on-a\nsteps:\n  - id: hello\n    type: task\n    task_type: echo\n',
    });
    expect(upload.status).toBe(201);
    const started = Date.now();
    await expect(page.getByTestId('workflow-row')).toContainText('made-on-a', { timeout: 5_000 });
    const delay = Date.now() - started;
    expect(delay).toBeLessThan(3_000);
    await shot(page, info, 'instance-b-sees-upload-on-a');
  } finally {
    for (const p of procs) p.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    for (const p of procs) p.kill('SIGKILL');
    try {
      execFileSync('psql', [adminUrl, '-qAtc', `DROP DATABASE IF EXISTS ${db} WITH (FORCE)`]);
    } catch {
      // left for the next cleanup
    }
  }
});
