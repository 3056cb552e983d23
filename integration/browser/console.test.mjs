// The web console in a real browser: Debian's Chromium, headless, driven by
// playwright-core. integration/browser_test.go (TestConsoleInBrowser) runs it
// against a stack of two gateways:
//
//   node console.test.mjs <gateway-1 URL> <gateway-2 URL> <screenshot dir>
//
// Environment: CHROMIUM, the browser (default /usr/bin/chromium);
// BROWSER_MODULES, the node_modules holding playwright-core (default the one
// beside this file). Exit status 0 when every check passed; the measures are
// printed as "measure: name value".

import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [gateway1, gateway2, shotDir] = process.argv.slice(2);
// The console's bearer token, as make run hands it over: in the fragment.
const token = process.env.CONSOLE_TOKEN;
if (!gateway1 || !gateway2 || !shotDir || !token) {
  console.error('usage: CONSOLE_TOKEN=<JWT> node console.test.mjs <gateway-1 URL> <gateway-2 URL> <screenshot dir>');
  process.exit(2);
}
const modules = resolve(process.env.BROWSER_MODULES || join(here, 'node_modules'));
const { chromium } = createRequire(import.meta.url)(join(modules, 'playwright-core'));

/** The SSE budget: a change made through gateway 1 shows on gateway 2's page within it. */
const SSE_BUDGET_MS = 1000;

const step = (what) => console.log(`--- ${what}`);

/** gatewayID is the Answerback-Gateway of the instance at base. */
async function gatewayID(base) {
  const res = await fetch(`${base}/healthz`);
  const id = res.headers.get('answerback-gateway');
  assert.ok(id, `${base}/healthz has no Answerback-Gateway header`);
  return id;
}

/**
 * openConsole opens the console on base in a context of its own (two users,
 * nothing shared) and collects the page's errors: a console error other than
 * the browser's own note on a failed request fails the test.
 */
async function openConsole(browser, base, name) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 1000 }, locale: 'en-US' });
  const page = await context.newPage();
  page.setDefaultTimeout(10_000);
  page.errors = [];
  page.on('pageerror', (err) => page.errors.push(`${name}: ${err.message}`));
  page.on('console', (msg) => {
    if (msg.type() === 'error' && !msg.text().startsWith('Failed to load resource')) page.errors.push(`${name}: ${msg.text()}`);
  });
  const res = await page.goto(`${base}/#token=${token}`);
  assert.equal(res.status(), 200, `${name}: GET / answered ${res.status()}`);
  await page.getByTestId('catalog-apple').waitFor();
  assert.equal(new URL(page.url()).hash, '', `${name}: the token stayed in the address bar`);
  return page;
}

/** gatewaysInLog returns the distinct gateways named in page's request log. */
async function gatewaysInLog(page) {
  const names = await page.getByTestId('log-entry').evaluateAll((items) => items.map((li) => li.dataset.gateway));
  assert.ok(names.length > 0, 'the request log is empty');
  return [...new Set(names)];
}

/**
 * sseDelay clicks target on page from and returns how long after the click
 * selector appeared on page to, both measured in the browser (the two pages
 * share one clock).
 */
async function sseDelay(from, target, to, selector) {
  const appeared = to.evaluate((sel) => new Promise((done) => {
    const seen = () => document.querySelector(sel) && (done(Date.now()), true);
    if (seen()) return;
    const observer = new MutationObserver(() => seen() && observer.disconnect());
    observer.observe(document.body, { childList: true, subtree: true });
  }), selector);
  await from.evaluate(() => document.addEventListener('click', () => { window.clickedAt = Date.now(); }, { capture: true, once: true }));
  await target.click();
  const at = await Promise.race([appeared, new Promise((done) => setTimeout(done, 5_000, null).unref())]);
  assert.ok(at, `${selector} did not appear on the other page within 5 s`);
  return at - (await from.evaluate(() => window.clickedAt));
}

const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const browser = await chromium.launch({ executablePath, headless: true });
let page1, page2;
try {
  console.log(`browser: ${browser.version()} (${executablePath})`);
  const [id1, id2] = await Promise.all([gatewayID(gateway1), gatewayID(gateway2)]);
  assert.notEqual(id1, id2, 'the two URLs reach the same gateway');

  step(`page 1 on ${id1}, page 2 on ${id2}: the console and its catalog`);
  page1 = await openConsole(browser, gateway1, 'page 1');
  page2 = await openConsole(browser, gateway2, 'page 2');

  const order = `browser-${Date.now().toString(36)}`;
  step(`page 1 creates ${order}`);
  await page1.getByTestId('order-id').fill(order);
  await page1.getByTestId('customer-id').fill('alice');
  await page1.getByTestId('create-order').click();
  await assertText(page1, 'order-status', 'open');
  await assertText(page1, 'stream-status', 'live');

  step('page 2 opens the same order and follows it live');
  await page2.getByTestId('order-id').fill(order);
  await page2.getByTestId('open-order').click();
  await assertText(page2, 'order-title', new RegExp(`^${order} · alice`));
  await assertText(page2, 'stream-status', 'live');
  await assertText(page2, 'order-version', '1');

  step('page 1 adds 2 apples by clicking a valid item; page 2 sees them through its stream');
  const requestsBefore = await page2.getByTestId('log-entry').count();
  await page1.getByTestId('quantity').fill('2');
  const delay = await sseDelay(page1, page1.getByTestId('valid-item-apple'), page2, '[data-testid="line-apple"]');
  console.log(`measure: sse-delay-gateway1-to-page2 ${delay} ms (click on page 1 → line on page 2)`);
  assert.ok(delay <= SSE_BUDGET_MS, `page 2 showed the line ${delay} ms after the click; the budget is ${SSE_BUDGET_MS} ms`);
  await assertText(page2, 'line-quantity-apple', '2');
  await assertText(page2, 'order-version', '2');
  await page2.locator('[data-testid="event-entry"][data-event="item-added"][data-version="2"]').waitFor();
  assert.equal(await page2.getByTestId('log-entry').count(), requestsBefore, 'page 2 sent a request: the line did not come through the stream');
  await assertText(page1, 'line-quantity-apple', '2');

  step('page 2 adds a pear; page 1 sees it through its stream');
  await page2.getByTestId('quantity').fill('1');
  const back = await sseDelay(page2, page2.getByTestId('valid-item-pear'), page1, '[data-testid="line-pear"]');
  console.log(`measure: sse-delay-gateway2-to-page1 ${back} ms (click on page 2 → line on page 1)`);
  assert.ok(back <= SSE_BUDGET_MS, `page 1 showed the line ${back} ms after the click; the budget is ${SSE_BUDGET_MS} ms`);
  await assertText(page1, 'order-total', '€3.30'); // 2 × €1.20 + €0.90

  step('page 1 removes the pear; page 2 sees the line go');
  await page1.getByTestId('remove-pear').click();
  await page2.getByTestId('line-pear').waitFor({ state: 'detached', timeout: SSE_BUDGET_MS });
  await assertText(page2, 'order-total', '€2.40');
  await assertText(page2, 'order-version', '4');

  step("each page's request log names its own gateway, with a latency");
  assert.deepEqual(await gatewaysInLog(page1), [id1]);
  assert.deepEqual(await gatewaysInLog(page2), [id2]);
  assert.match(await page1.getByTestId('log-latency').first().textContent(), /^\d+\.\d ms$/);

  step('a bad quantity shows the problem the gateway answered');
  await page1.getByTestId('quantity').fill('5000');
  await page1.getByTestId('valid-item-apple').click();
  await assertText(page1, 'problem-title', 'Quantity out of range');
  await assertText(page1, 'problem-detail', /5000/);
  await assertText(page1, 'problem-meta', /HTTP 422 · quantity-out-of-range · from /);
  await assertText(page1.getByTestId('log-status').first(), null, '422');

  step('screenshots');
  mkdirSync(shotDir, { recursive: true });
  for (const [i, page] of [[1, page1], [2, page2]]) {
    const file = join(resolve(shotDir), `console-gateway${i}.png`);
    await page.screenshot({ path: file, fullPage: true });
    console.log(`screenshot: ${file}`);
  }

  step('page 1 submits; page 2 sees the order submitted and closed to changes');
  await page1.getByTestId('submit-order').click();
  await assertText(page2, 'order-status', 'submitted');
  await assertText(page2, 'order-version', '5'); // the refused command made no version
  assert.ok(await page2.getByTestId('cancel-order').isDisabled(), 'page 2 still offers to cancel a submitted order');
  assert.equal(await page2.locator('[data-testid^="valid-item-"]').count(), 0, 'page 2 still offers items for a submitted order');

  assert.deepEqual([...page1.errors, ...page2.errors], [], 'errors in the pages');
  console.log('console in the browser: every check passed');
} catch (err) {
  for (const [i, page] of [[1, page1], [2, page2]]) {
    if (!page) continue;
    const file = join(resolve(shotDir), `console-gateway${i}-failure.png`);
    mkdirSync(shotDir, { recursive: true });
    await page.screenshot({ path: file, fullPage: true }).then(() => console.log(`screenshot: ${file}`), () => {});
    if (page.errors.length) console.log(`page ${i} errors: ${page.errors.join('; ')}`);
  }
  throw err;
} finally {
  await browser.close();
}

/**
 * assertText waits until the element with test ID id on page (or the
 * locator given in place of page) has text equal to want, or matching it
 * when want is a RegExp.
 */
async function assertText(page, id, want) {
  const locator = id === null ? page : page.getByTestId(id);
  const wanted = want instanceof RegExp ? want : new RegExp(`^${want.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}$`);
  try {
    await locator.filter({ hasText: wanted }).first().waitFor({ timeout: 5_000 });
  } catch {
    const text = await locator.first().textContent({ timeout: 1_000 }).catch(() => '(absent)');
    assert.fail(`${id ?? locator}: text ${JSON.stringify(text)}, want ${wanted}`);
  }
}
