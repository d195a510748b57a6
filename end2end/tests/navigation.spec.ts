// Pages are split into groups, each its own wasm module (`cargo leptos
// build --split`, `pages::lazy_pages!`): moving between pages by their links
// loads each group in the browser, without a reload, and the page that
// appears is live.
import { expect, test } from '@playwright/test';
import { users } from '../stack';
import { live, markPage, signIn, stillSamePage } from './helpers';

test('the header links open every page in place, each loading its own code', async ({ page }) => {
  const chunks = new Set<string>();
  page.on('response', (r) => {
    const file = new URL(r.url()).pathname.split('/').pop() ?? '';
    if (file.startsWith('split_') && file.endsWith('.wasm')) chunks.add(file);
  });
  await signIn(page, users.vera);
  await live(page);
  await markPage(page);
  for (const name of ['Agents', 'Tasks', 'Workflows', 'Runs', 'Approvals', 'Overview']) {
    await page.locator('header nav').getByRole('link', { name, exact: true }).click();
    await expect(page.locator('main h1.page-title')).toHaveText(name);
  }
  // Still the first document: the router swapped pages in the browser.
  await stillSamePage(page);
  await expect(page.getByTestId('live')).toHaveAttribute('data-connected', 'true');
  // The group of every page visited (the overview's came with sign-in; the
  // approvals share it, and the runs share the workflows').
  for (const group of ['details', 'tasks', 'workflows', 'glance']) {
    expect([...chunks], `the ${group} group loaded`).toContain(`split_drover_pages_${group}.wasm`);
  }
});
