import { expect, Page, TestInfo } from '@playwright/test';

/** Signs in through the form, as a person would. */
export async function signIn(page: Page, user: { name: string; password: string }) {
  await page.goto('/signin');
  await page.fill('input[name=name]', user.name);
  await page.fill('input[name=password]', user.password);
  await page.click('button[type=submit]');
  await expect(page.getByTestId('who')).toContainText(user.name);
}

/** Waits until the wasm has hydrated the page and the event stream is open.
 *  The shell hydrates first; the page's own code is a lazy chunk, and until
 *  it has hydrated, typing into the page reaches no handler. */
export async function live(page: Page) {
  await expect(page.getByTestId('live')).toHaveAttribute('data-connected', 'true');
  await expect(page.locator('body[data-page]')).toHaveCount(1);
}

/** Saves a screenshot under this test's output directory (end2end/test-results). */
export async function shot(page: Page, info: TestInfo, name: string) {
  await page.screenshot({ path: info.outputPath(`${name}.png`), fullPage: true });
}

/** Marks the document; `stillSamePage` proves no reload happened since. */
export async function markPage(page: Page) {
  await page.evaluate(() => ((window as any).__droverMark = 'unchanged'));
}

export async function stillSamePage(page: Page) {
  expect(await page.evaluate(() => (window as any).__droverMark)).toBe('unchanged');
}
