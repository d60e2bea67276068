#!/usr/bin/env node
// Browser test of chatting with a company through the real web client.
//
//   node company-chat.mjs <gateway-url> <text> <reply>
//
// Registers `alice` in headless Chromium, searches "acme", presses *Chat* on
// the `acme/sales` hit, sends <text> and checks: the thread is the company
// conversation, the message turns delivered (the desk phone's PBX took the
// SIP MESSAGE), and <reply> (sent by the desk phone, driven by the Rust
// test) appears in the thread from the company.
// Prints one JSON line; exit 0 when every check passes.
//
// Environment: CHROMIUM (default /usr/bin/chromium), PLAYWRIGHT_CORE (the
// playwright-core folder, default <repo>/tests/node_modules/playwright-core).

import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const [base, text, reply] = process.argv.slice(2);
const here = path.dirname(fileURLToPath(import.meta.url));
const pwPath = process.env.PLAYWRIGHT_CORE
  || path.resolve(here, '..', '..', '..', 'tests', 'node_modules', 'playwright-core');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const CONV = 'co:alice+acme/sales';
const WAIT = { timeout: 20000 };

const result = { ok: false, checks: {} };

async function main() {
  if (!base || !text || !reply) throw new Error('usage: node company-chat.mjs <gateway-url> <text> <reply>');
  const { chromium } = await import(pathToFileURL(path.join(pwPath, 'index.mjs')).href);
  const flags = [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--no-default-browser-check',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
  ];
  let browser;
  const consoleLines = [];
  try {
    browser = await chromium.launch({ executablePath, headless: true, args: flags, timeout: 60000 });
    const page = await (await browser.newContext()).newPage();
    page.on('console', (m) => consoleLines.push(m.text()));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));

    await page.goto(new URL('/', base).href);
    await page.fill('#login-name', 'alice');
    await page.fill('#login-password', 'correct horse battery');
    await page.click('#register-btn');
    await page.waitForSelector('#chat-panel:not([hidden])', WAIT);
    result.checks.signed_in = true;

    // find the department in the directory and open its chat
    await page.fill('#search', 'acme');
    const hit = page.locator('#search-results li', { hasText: /^acme\/sales/ }).locator('button.chat-hit');
    await hit.waitFor(WAIT);
    await hit.click();
    await page.waitForSelector('#thread:not([hidden])', WAIT);
    result.checks.thread_opened = (await page.textContent('#thread-title')).trim() === 'acme/sales';

    await page.fill('#chat-text', text);
    await page.press('#chat-text', 'Enter');
    await page.waitForFunction((t) => {
      const li = [...document.querySelectorAll('#messages li.mine')]
        .find((l) => (l.querySelector('.text') || {}).textContent === t);
      return li && li.dataset.state === 'delivered';
    }, text, WAIT);
    result.checks.delivered = true;
    result.checks.listed = await page.evaluate((id) => !!document.querySelector(`#conv-list li[data-conv="${id}"]`), CONV);

    await page.waitForFunction((t) => [...document.querySelectorAll('#messages li.theirs .text')]
      .some((s) => s.textContent === t), reply, { timeout: 40000 });
    result.checks.reply_arrived = true;
    result.checks.reply_from_company = await page.evaluate((t) => {
      const li = [...document.querySelectorAll('#messages li.theirs')]
        .find((l) => (l.querySelector('.text') || {}).textContent === t);
      return !!li && (li.querySelector('.who') || {}).textContent === 'acme';
    }, reply);

    result.ok = Object.values(result.checks).every(Boolean);
  } finally {
    if (!result.ok) result.console = consoleLines.slice(-40);
    if (browser) await browser.close().catch(() => {});
  }
}

try {
  await main();
} catch (e) {
  result.error = String((e && e.stack) || e);
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
