// The dashboard tells the truth about what it serves: a page for nothing
// answers 404 and says so, the sign-in page is quiet until someone signs in,
// a task shows only its current error and links its run and agent, every
// page has its own title, and what is sent is compressed and cached right.
import { expect, Page, test } from '@playwright/test';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { api, dataDir, readState, startAgent, users, waitFor } from '../stack';
import { live, signIn } from './helpers';

/** A workflow of one echo step, started; returns its run's id, the step's
 *  task and the agent that ran it, once it has succeeded. */
async function finishedOneStepRun() {
  await api('POST', '/workflows', 'name: honest-one-step\nsteps:\n  - id: greet\n    type: task\n    task_type: echo\n    payload: { hello: world }\n');
  const run = await api('POST', '/runs', { workflow: 'honest-one-step', inputs: {} });
  const detail = await waitFor('the one-step run to succeed', async () => {
    const d = await api('GET', `/runs/${run.id}`);
    return d.status === 'succeeded' ? d : undefined;
  }, 30_000);
  const taskId: number = detail.steps.find((s: any) => s.step_id === 'greet').task_ids[0];
  const task = await api('GET', `/tasks/${taskId}`);
  const agent = (await api('GET', '/agents')).agents.find((a: any) => a.id === task.agent_id);
  return { runId: run.id as number, taskId, agent };
}

test.describe('pages for nothing are honest 404s', () => {
  test('a run that does not exist is a 404 "no such run" page', async ({ page }) => {
    await signIn(page, users.vera);
    const res = await page.goto('/runs/999999');
    expect(res?.status()).toBe(404);
    await expect(page.getByTestId('not-found')).toContainText('No such run');
    await expect(page).toHaveTitle('Run not found · Drover');
  });

  test('a task id that is not a number is a 404 "not a task id" page', async ({ page }) => {
    await signIn(page, users.vera);
    const res = await page.goto('/tasks/abc');
    expect(res?.status()).toBe(404);
    await expect(page.getByTestId('not-found')).toContainText('not a task id');
    await expect(page.locator('main')).not.toContainText('task 0');
    const missing = await page.goto('/tasks/999999');
    expect(missing?.status()).toBe(404);
    await expect(page.getByTestId('not-found')).toContainText('No such task');
  });
});

test.describe('signing in', () => {
  test('the sign-in page asks nothing of the server that fails', async ({ browser }) => {
    const context = await browser.newContext({ baseURL: test.info().project.use.baseURL });
    const page = await context.newPage();
    const failures: string[] = [];
    page.on('response', (r) => { if (r.status() >= 400) failures.push(`${r.status()} ${r.url()}`); });
    page.on('console', (m) => { if (m.type() === 'error') failures.push(`console: ${m.text()}`); });
    await page.goto('/signin');
    await expect(page.locator('body[data-hydrated=true]')).toHaveCount(1, { timeout: 30_000 });
    await expect(page.locator('body[data-page]')).toHaveCount(1);
    await page.waitForTimeout(1000);
    expect(failures).toEqual([]);
    await context.close();
  });

  test('a wrong password keeps the name that was typed', async ({ page }) => {
    await page.goto('/signin');
    await page.fill('input[name=name]', users.alice.name);
    await page.fill('input[name=password]', 'not-her-password');
    await page.click('button[type=submit]');
    await expect(page.getByTestId('signin-error')).toContainText('Wrong name or password');
    await expect(page.locator('input[name=name]')).toHaveValue(users.alice.name);
    await expect(page.locator('input[name=password]')).toHaveValue('');
  });
});

test.describe('the task page', () => {
  test('a running task shows an earlier attempt\'s error only in that attempt\'s row', async ({ page }) => {
    // An agent of its own, whose handler fails the first attempt and runs the second.
    const config = path.join(dataDir, 'agent-flaky.toml');
    fs.writeFileSync(config, [
      'name = "flaky"', 'capacity = 1', 'labels = ["flaky"]',
      '[handlers.sleep]', 'kind = "command"', 'program = "sh"',
      `args = ["-c", 'if [ "$DROVER_ATTEMPT" = "1" ]; then echo "first attempt broke" >&2; exit 1; fi; sleep 120']`,
      '',
    ].join('\n'));
    const flaky = startAgent('flaky', readState().enrollmentToken, config);
    let taskId: number | undefined;
    try {
      await waitFor('the flaky agent to register', async () =>
        (await api('GET', '/agents')).agents.some((a: any) => a.name === 'flaky' && a.status === 'online'));
      const submitted = await api('POST', '/tasks', {
        task_type: 'sleep', payload: {}, required_labels: ['flaky'], max_attempts: 3, retry_backoff_ms: 100,
      });
      taskId = submitted.id ?? submitted.tasks?.[0]?.id;
      await waitFor('the second attempt to run', async () => {
        const t = await api('GET', `/tasks/${taskId}`);
        return t.status === 'running' && t.attempts === 2;
      }, 30_000);

      await signIn(page, users.vera);
      await page.goto(`/tasks/${taskId}`);
      await live(page);
      const attempts = page.getByTestId('attempt');
      await expect(attempts).toHaveCount(2);
      await expect(attempts.nth(0)).toContainText('first attempt broke');
      // Not as the task's own error: it is running, it has none now. (Its
      // history — the timeline, the log — still tells of the failure.)
      await expect(page.locator('.task-detail .error-pre')).toHaveCount(0);
      await page.goto('/tasks?status=running');
      const row = page.getByTestId('task-row').filter({ has: page.locator(`a[href="/tasks/${taskId}"]`) });
      await expect(row).toHaveCount(1);
      await expect(row.locator('.err-line')).toHaveCount(0);
    } finally {
      if (taskId !== undefined) await api('POST', `/tasks/${taskId}/cancel`, {}).catch(() => undefined);
      flaky.kill('SIGTERM');
    }
  });

  test('a task links its run, its step and its agent by name', async ({ page }) => {
    const { runId, taskId, agent } = await finishedOneStepRun();
    await signIn(page, users.vera);
    await page.goto(`/tasks/${taskId}`);
    await live(page);
    const runLink = page.getByTestId('task-run');
    await expect(runLink).toHaveAttribute('href', `/runs/${runId}`);
    await expect(runLink).toContainText(`Run ${runId}`);
    await expect(page.getByTestId('task-step')).toContainText('greet');
    const agentLink = page.getByTestId('attempt').first().locator('a');
    await expect(agentLink).toHaveAttribute('href', `/agents/${agent.id}`);
    await expect(agentLink).toHaveText(agent.name);
    await expect(page.locator('main')).not.toContainText('agent #');
    // The step's link opens the run with that step selected.
    await page.getByTestId('task-step').click();
    await expect(page).toHaveURL(new RegExp(`/runs/${runId}\\?step=greet$`));
    await expect(page.getByTestId('step-panel')).toContainText('greet');
  });
});

test.describe('page titles', () => {
  async function titled(page: Page, url: string, title: string) {
    await page.goto(url);
    await expect(page).toHaveTitle(title);
  }

  test('every page has its own title, also after moving in place', async ({ page }) => {
    const { runId, taskId, agent } = await finishedOneStepRun();
    await page.goto('/signin');
    await expect(page).toHaveTitle('Sign in · Drover');
    await signIn(page, users.admin);
    await titled(page, '/', 'Overview · Drover');
    await titled(page, '/tasks', 'Tasks · Drover');
    await titled(page, `/tasks/${taskId}`, `Task ${taskId} · Drover`);
    await titled(page, '/runs', 'Runs · Drover');
    await titled(page, `/runs/${runId}`, `Run ${runId} · Drover`);
    await titled(page, '/agents', 'Agents · Drover');
    await titled(page, `/agents/${agent.id}`, `Agent ${agent.name} · Drover`);
    await titled(page, '/queues', 'Queues · Drover');
    await titled(page, '/workflows', 'Workflows · Drover');
    await titled(page, '/workflows/honest-one-step', 'Workflow honest-one-step · Drover');
    await titled(page, '/schedules', 'Schedules · Drover');
    await titled(page, '/approvals', 'Approvals · Drover');
    await titled(page, '/notifications', 'Notifications · Drover');
    await titled(page, '/enrollment-tokens', 'Enrollment tokens · Drover');
    await titled(page, '/audit', 'Audit log · Drover');
    await titled(page, '/no-such-page', 'Not found · Drover');
    // Moving by a link (no reload) changes the title too.
    await page.goto('/tasks');
    await live(page);
    await page.locator('header nav').getByRole('link', { name: 'Runs', exact: true }).click();
    await expect(page.locator('main h1.page-title')).toHaveText('Runs');
    await expect(page).toHaveTitle('Runs · Drover');
  });
});

test.describe('what the server sends', () => {
  test('pages and static files are compressed and cached right; the event stream is not buffered', async ({ page }) => {
    // A fresh browser: every static file comes from the server, not a cache.
    const statics: { url: string; status: number; headers: Record<string, string> }[] = [];
    page.on('response', (r) => {
      if (new URL(r.url()).pathname.startsWith('/pkg/')) statics.push({ url: r.url(), status: r.status(), headers: r.headers() });
    });
    await page.goto('/signin');
    await expect(page.locator('body[data-page]')).toHaveCount(1, { timeout: 30_000 });
    await page.waitForLoadState('networkidle');
    expect(statics.filter((s) => s.headers['content-encoding']).length).toBeGreaterThan(0);
    for (const s of statics) {
      expect(s.status, s.url).toBe(200);
      // Chromium asks for its scripts, styles and wasm with
      // `Accept-Encoding: gzip, deflate, br, zstd`; files under 1 KiB (a
      // release build's smallest chunks) gain nothing and are sent as they are.
      if (s.headers['content-encoding'] === undefined) expect(Number(s.headers['content-length']), s.url).toBeLessThan(1024);
      else expect(s.headers['content-encoding'], s.url).toMatch(/^(br|gzip)$/);
      expect(s.headers['cache-control'], s.url).toMatch(/^(no-cache|public, max-age=31536000, immutable)$/);
      if (s.headers['cache-control'] === 'no-cache') expect(s.headers['last-modified'], s.url).toBeTruthy();
    }

    await signIn(page, users.vera);
    const events = page.waitForResponse((r) => new URL(r.url()).pathname === '/api/v1/events');
    const res = await page.goto('/tasks');
    const html = res!.headers();
    expect(html['content-encoding']).toMatch(/^(br|gzip)$/);
    expect(html['cache-control']).toBe('no-cache');
    await live(page);
    const stream = (await events).headers();
    expect(stream['content-type']).toContain('text/event-stream');
    expect(stream['content-encoding']).toBeUndefined();

    // The stream still delivers at once: a task submitted now shows up
    // on the open page without a reload.
    const submitted = await api('POST', '/tasks', { task_type: 'echo', payload: { honest: true } });
    const id = submitted.id ?? submitted.tasks?.[0]?.id;
    await expect(page.locator(`a[href="/tasks/${id}"]`)).toHaveCount(1, { timeout: 10_000 });
  });
});
