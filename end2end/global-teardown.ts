// Stops the agents, then the server (SIGTERM: they shut down gracefully).
import * as fs from 'node:fs';
import { readState, stateFile } from './stack';

export default async function globalTeardown() {
  if (!fs.existsSync(stateFile)) return;
  const { serverPid, agentPids } = readState();
  for (const pid of [...agentPids, serverPid]) {
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      // already gone
    }
  }
  await new Promise((r) => setTimeout(r, 500));
  for (const pid of [...agentPids, serverPid]) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // stopped
    }
  }
}
