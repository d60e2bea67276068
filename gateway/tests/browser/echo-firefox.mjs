#!/usr/bin/env node
// Firefox test of the echo target through the real web client.
//
//   node echo-firefox.mjs <gateway-url> [--seconds 3]
//
// The Firefox twin of echo.mjs: opens <gateway-url>/?ice=loopback in headless
// Firefox (Debian's /usr/bin/firefox-esr, driven over WebDriver BiDi by
// puppeteer-core: Playwright only drives its own patched Firefox builds),
// signs in as a guest, calls `echo` through the UI, waits until the page says
// "connected", reads getStats twice and checks that echoed audio arrives
// (inbound-rtp bytes grow, codec opus, totalAudioEnergy > 0), presses DTMF 1,
// hangs up and checks the ended state and its reason. Prints one JSON line
// with the same checks as echo.mjs; exit 0 when every check passes.
//
// Firefox's fake microphone (media.navigator.streams.fake) plays a tone, so
// the echoed audio has energy. `?ice=loopback` makes the page drop
// non-loopback candidates, so the test also works outside a lo-only network
// namespace; inside one, Firefox only gathers 127.0.0.1 candidates because
// media.peerconnection.ice.loopback is on.
//
// Environment: FIREFOX (default /usr/bin/firefox-esr), PUPPETEER_CORE (the
// puppeteer-core folder, default <repo>/tests/node_modules/puppeteer-core).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const base = args.find((a) => !a.startsWith('--'));
const seconds = Number(args.includes('--seconds') ? args[args.indexOf('--seconds') + 1] : '3');
const here = path.dirname(fileURLToPath(import.meta.url));
const ppPath = process.env.PUPPETEER_CORE
  || path.resolve(here, '..', '..', '..', 'tests', 'node_modules', 'puppeteer-core');
const executablePath = process.env.FIREFOX || '/usr/bin/firefox-esr';
const loOnly = Object.values(os.networkInterfaces()).flat().every((a) => a.internal);

const result = {
  ok: false, browser: 'firefox', network: loOnly ? 'lo only' : 'has non-loopback interfaces', checks: {},
};

// what makes a headless Firefox a test client: a fake microphone without a
// permission prompt, host candidates on 127.0.0.1 shown as addresses (not
// mDNS names), audio that plays without a user gesture, and no background
// traffic towards Mozilla (there is no network in CI anyway)
const prefs = {
  'media.navigator.streams.fake': true,
  'media.navigator.permission.disabled': true,
  // A page that neither captures a real device nor holds a microphone
  // permission only gathers the "default address" (the source address of the
  // default route); a fake device does not count as capturing, and in a
  // lo-only namespace there is no default route, so Firefox would gather no
  // candidate at all. A default-allow microphone permission lifts that.
  'permissions.default.microphone': 1,
  'media.peerconnection.ice.loopback': true,
  'media.peerconnection.ice.obfuscate_host_addresses': false,
  'media.autoplay.default': 0,
  'media.autoplay.blocking_policy': 0,
  'app.update.enabled': false,
  'browser.shell.checkDefaultBrowser': false,
  'datareporting.policy.dataSubmissionEnabled': false,
  'toolkit.telemetry.enabled': false,
  'network.captive-portal-service.enabled': false,
  'network.connectivity-service.enabled': false,
};

async function main() {
  if (!base) throw new Error('usage: node echo-firefox.mjs <gateway-url>');
  const puppeteer = (await import(pathToFileURL(path.join(ppPath, 'lib', 'esm', 'puppeteer', 'puppeteer-core.js')).href)).default;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'namecall-echo-firefox-'));
  let browser;
  const consoleLines = [];
  try {
    browser = await puppeteer.launch({
      browser: 'firefox', executablePath, headless: true, userDataDir: profile,
      extraPrefsFirefox: prefs, timeout: 60000, protocolTimeout: 60000,
    });
    result.version = await browser.version();
    const page = (await browser.pages())[0] || await browser.newPage();
    page.on('console', (m) => consoleLines.push(m.text()));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    await page.goto(new URL('/?ice=loopback', base).href);

    // sign in as a guest
    await page.type('#login-name', 'firefox-test');
    await page.click('#login-btn');
    await page.waitForSelector('#call-panel:not([hidden])', { timeout: 10000 });
    result.checks.signed_in = (await page.$eval('#whoami', (e) => e.textContent)).includes('firefox-test');

    // call echo through the UI
    await page.$eval('#callee', (e) => { e.value = ''; });
    await page.type('#callee', 'echo');
    await page.click('#call-btn');
    await page.waitForFunction(
      () => ['connected', 'ended'].includes(document.getElementById('call-state').dataset.state),
      { timeout: 20000 },
    );
    const stateAfterCall = await page.$eval('#call-state', (e) => e.dataset.state);
    result.checks.connected = stateAfterCall === 'connected';
    if (!result.checks.connected) {
      throw new Error(`call did not connect: ${await page.$eval('#call-detail', (e) => e.textContent)}`);
    }

    const stats = () => page.evaluate(async () => {
      const pc = window.namecall.pc;
      if (!pc) return null;
      const s = await pc.getStats();
      const byId = {};
      s.forEach((r) => { byId[r.id] = r; });
      const out = { inbound: null, pair: null };
      s.forEach((r) => {
        if (r.type === 'inbound-rtp' && r.kind === 'audio') {
          out.inbound = {
            bytesReceived: r.bytesReceived, packetsReceived: r.packetsReceived,
            totalAudioEnergy: r.totalAudioEnergy, audioLevel: r.audioLevel,
            codec: r.codecId && byId[r.codecId] ? `${byId[r.codecId].mimeType}/${byId[r.codecId].clockRate}` : null,
          };
        }
        // Firefox marks the pair in use with `selected` (non-standard) as well as `nominated`
        if (r.type === 'candidate-pair' && (r.nominated || r.selected) && r.state === 'succeeded') {
          const l = byId[r.localCandidateId];
          const rm = byId[r.remoteCandidateId];
          out.pair = { local: l && `${l.address}:${l.port}`, remote: rm && `${rm.address}:${rm.port}` };
        }
      });
      return out;
    });
    const pause = (ms) => new Promise((r) => { setTimeout(r, ms); });
    // give the jitter buffer a moment before the first sample
    await pause(500);
    const first = await stats();
    await pause(seconds * 1000);
    const last = await stats();
    result.stats = { first, last };
    const b0 = (first && first.inbound && first.inbound.bytesReceived) || 0;
    result.checks.bytes_growing = !!(last && last.inbound && last.inbound.bytesReceived > b0);
    result.checks.codec_opus = !!(last && last.inbound && /opus/i.test(last.inbound.codec || ''));
    result.checks.audio_energy = !!(last && last.inbound && (last.inbound.totalAudioEnergy || 0) > 0);
    const lo = (a) => /^(127\.|::1)/.test(a || '');
    result.checks.loopback_pair = !!(last && last.pair && lo(last.pair.remote) && (!loOnly || lo(last.pair.local)));

    // DTMF through the keypad must not disturb the call
    const keys = await page.$$('#keypad button');
    let one = null;
    for (const k of keys) if (await k.evaluate((e) => e.textContent) === '1') one = k;
    if (!one) throw new Error('no DTMF key 1 on the keypad');
    await one.click();

    // hang up
    await page.click('#hangup-btn');
    await page.waitForFunction(() => document.getElementById('call-state').dataset.state === 'ended', { timeout: 10000 });
    result.checks.ended = true;
    result.ended_detail = await page.$eval('#call-detail', (e) => e.textContent);
    result.ended_reason = await page.$eval('#call-state', (e) => e.dataset.reason);
    result.checks.ended_by_hangup = result.ended_reason === 'hangup';

    result.ok = Object.values(result.checks).every(Boolean);
  } finally {
    if (!result.ok) result.console = consoleLines.slice(-30);
    if (browser) await browser.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

try {
  await main();
} catch (e) {
  result.error = String((e && e.stack) || e);
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
