// Playwright runs the dashboard tests in Debian's Chromium against a real
// drover-server (SQLite in a fresh directory) and real drover-agent
// processes, started by global-setup.ts. `scripts/test.sh` runs them.
import { defineConfig } from '@playwright/test';

export default defineConfig({
  testDir: './tests',
  // The tests share one server and some move agents around: one at a time.
  workers: 1,
  fullyParallel: false,
  timeout: 90_000,
  expect: { timeout: 10_000 },
  retries: 0,
  reporter: [['list']],
  outputDir: './test-results',
  globalSetup: './global-setup.ts',
  globalTeardown: './global-teardown.ts',
  // The performance probe is a benchmark, run by scripts/bench-dashboard.sh.
  testIgnore: process.env.DROVER_E2E_PERF ? [] : ['**/perf.spec.ts'],
  use: {
    baseURL: process.env.DROVER_E2E_URL ?? 'http://127.0.0.1:18181',
    viewport: { width: 1280, height: 860 },
    launchOptions: {
      executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
      args: ['--no-sandbox', '--disable-dev-shm-usage'],
    },
    trace: 'off',
    screenshot: 'only-on-failure',
  },
});
