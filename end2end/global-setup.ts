// Starts drover-server on SQLite in a fresh directory with short heartbeat
// timings (so a killed agent goes offline in seconds), creates one user per
// role, and starts one agent. Fails loudly if a binary or the site is missing.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { baseURL, bin, dataDir, port, root, startAgent, stateFile, users, waitFor } from './stack';

export default async function globalSetup() {
  for (const b of ['drover-server', 'drover-agent']) {
    if (!fs.existsSync(bin(b))) throw new Error(`${bin(b)} is missing: run scripts/test.sh (it builds the binaries)`);
  }
  // DROVER_E2E_EMBEDDED_SITE=1: the server serves the dashboard compiled
  // into it (feature embed-site, as a release does), not target/site.
  const embedded = !!process.env.DROVER_E2E_EMBEDDED_SITE;
  const site = path.join(root, 'target', 'site', 'pkg', 'drover.wasm');
  if (!embedded && !fs.existsSync(site)) throw new Error(`${site} is missing: build the dashboard with cargo leptos build`);
  fs.rmSync(dataDir, { recursive: true, force: true });
  fs.mkdirSync(dataDir, { recursive: true });
  const log = fs.openSync(path.join(dataDir, 'server.log'), 'a');
  const server = spawn(bin('drover-server'), [], {
    env: {
      ...process.env,
      DROVER_LISTEN: `127.0.0.1:${port}`,
      DROVER_DATA_DIR: dataDir,
      ...(embedded ? {} : { DROVER_SITE_ROOT: path.join(root, 'target', 'site') }),
      DROVER_ADMIN_PASSWORD: users.admin.password,
      DROVER_HEARTBEAT_INTERVAL: '1s',
      DROVER_HEARTBEAT_TIMEOUT: '3s',
      DROVER_TASK_TYPES: 'echo,sleep,fail,charge-card,wc',
      // The agent page's load chart gets a sample a second.
      DROVER_AGENT_LOAD_INTERVAL: '1s',
      // The overview's queue depth chart gets a sample a second.
      DROVER_QUEUE_DEPTH_INTERVAL: '1s',
      // The notifications test's webhook receiver listens on 127.0.0.1,
      // and its retry should come within a second.
      DROVER_NOTIFY_ALLOW_PRIVATE: 'true',
      DROVER_NOTIFY_RETRY_BACKOFF: '500ms',
      RUST_LOG: 'info,sqlx=warn',
    },
    stdio: ['ignore', log, log],
  });
  await waitFor('drover-server to answer /healthz', async () => (await fetch(`${baseURL}/healthz`)).ok, 20_000);
  const apiToken = fs.readFileSync(path.join(dataDir, 'api-token'), 'utf8').trim();
  const enrollmentToken = fs.readFileSync(path.join(dataDir, 'enrollment-token'), 'utf8').trim();
  for (const u of [users.alice, users.bob, users.vera]) {
    const res = await fetch(`${baseURL}/api/v1/users`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: u.name, role: u.role, password: u.password }),
    });
    if (!res.ok) throw new Error(`creating ${u.name}: ${res.status} ${await res.text()}`);
  }
  const agent = startAgent('steady', enrollmentToken);
  fs.writeFileSync(
    stateFile,
    JSON.stringify({ serverPid: server.pid, agentPids: [agent.pid], apiToken, enrollmentToken }),
  );
  await waitFor('the agent to register', async () => {
    const res = await fetch(`${baseURL}/api/v1/agents`, { headers: { authorization: `Bearer ${apiToken}` } });
    const body = await res.json();
    return body.agents?.some((a: any) => a.name === 'steady' && a.status === 'online');
  });
  server.unref();
  agent.unref();
}
