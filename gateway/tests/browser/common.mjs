// Shared parts of the Chromium chat tests (chat.mjs, group-chat.mjs,
// company-chat.mjs): launching Debian's Chromium through playwright-core with
// ICE and DNS kept on loopback, signing up through the web client, and the
// one-JSON-line verdict every test prints.
//
// Environment: CHROMIUM (default /usr/bin/chromium), PLAYWRIGHT_CORE (the
// playwright-core folder, default <repo>/tests/node_modules/playwright-core).

import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const pwPath = process.env.PLAYWRIGHT_CORE
  || path.resolve(here, '..', '..', '..', 'tests', 'node_modules', 'playwright-core');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const FLAGS = [
  '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--no-default-browser-check',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
];

/// Headless Chromium.
export async function launchChromium() {
  const { chromium } = await import(pathToFileURL(path.join(pwPath, 'index.mjs')).href);
  return chromium.launch({ executablePath, headless: true, args: FLAGS, timeout: 60000 });
}

/// A page in its own context (its own window: every page counts as visible),
/// its console and errors collected in `lines` under `name`.
export async function newPage(browser, name, lines) {
  const p = await (await browser.newContext()).newPage();
  p.on('console', (m) => lines.push(`${name}: ${m.text()}`));
  p.on('pageerror', (e) => lines.push(`${name} pageerror: ${e.message}`));
  return p;
}

/// Registers `login` through the web client and waits for the chat panel.
export async function signUp(page, base, login, wait = { timeout: 15000 }) {
  await page.goto(new URL('/', base).href);
  await page.fill('#login-name', login);
  await page.fill('#login-password', 'correct horse battery');
  await page.click('#register-btn');
  await page.waitForSelector('#chat-panel:not([hidden])', wait);
}

/// Runs `body(browser, consoleLines)`, which fills `result.checks`; then
/// prints `result` as one JSON line (with the last console lines when a check
/// failed) and exits 0 only when every check passed.
export async function verdict(result, body) {
  const consoleLines = [];
  let browser;
  try {
    browser = await launchChromium();
    await body(browser, consoleLines);
    result.ok = Object.keys(result.checks).length > 0 && Object.values(result.checks).every(Boolean);
  } catch (e) {
    result.error = String((e && e.stack) || e);
  } finally {
    if (!result.ok) result.console = consoleLines.slice(-40);
    if (browser) await browser.close().catch(() => {});
  }
  console.log(JSON.stringify(result));
  process.exit(result.ok ? 0 : 1);
}
