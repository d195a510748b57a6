// The processes under test: paths, ports, users, and helpers to start agents
// and call the API. Shared by global setup, teardown and the tests.
import { spawn, ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

export const root = path.resolve(__dirname, '..');
export const bin = (name: string) =>
  path.join(process.env.DROVER_BIN_DIR ?? path.join(root, 'target', 'debug'), name);
export const port = Number(process.env.DROVER_E2E_PORT ?? 18181);
export const baseURL = `http://127.0.0.1:${port}`;
export const dataDir = process.env.DROVER_E2E_DATA ?? path.join(root, 'target', 'e2e-data');
export const stateFile = path.join(dataDir, 'stack.json');

export const users = {
  admin: { name: 'admin', password: 'admin-password-e2e', role: 'admin' },
  alice: { name: 'alice', password: 'alice-password-e2e', role: 'operator' },
  bob: { name: 'bob', password: 'bob-password-e2e', role: 'approver' },
  vera: { name: 'vera', password: 'vera-password-e2e', role: 'viewer' },
} as const;

export interface StackState {
  serverPid: number;
  agentPids: number[];
  apiToken: string;
  enrollmentToken: string;
}

export function readState(): StackState {
  return JSON.parse(fs.readFileSync(stateFile, 'utf8'));
}

/** Starts a drover-agent with the example handlers (or the agent.toml at
 *  `config`); its log goes to the data dir. */
export function startAgent(name: string, enrollmentToken: string, config?: string): ChildProcess {
  const log = fs.openSync(path.join(dataDir, `agent-${name}.log`), 'a');
  const child = spawn(
    bin('drover-agent'),
    [
      '--server', baseURL,
      '--token', enrollmentToken,
      '--config', config ?? path.join(root, 'examples', 'agent.toml'),
      '--name', name,
      '--state-dir', path.join(dataDir, `agent-${name}`),
    ],
    { stdio: ['ignore', log, log], detached: false },
  );
  return child;
}

/** Calls the REST API with the admin's API token. */
export async function api<T = any>(method: string, p: string, body?: unknown): Promise<T> {
  const { apiToken } = readState();
  const res = await fetch(`${baseURL}/api/v1${p}`, {
    method,
    headers: { authorization: `Bearer ${apiToken}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  if (!res.ok) throw new Error(`${method} ${p}: ${res.status} ${text}`);
  return (text ? JSON.parse(text) : null) as T;
}

export async function waitFor<T>(what: string, probe: () => Promise<T | undefined | null | false>, ms = 15_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v) return v as T;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
