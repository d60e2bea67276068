#!/usr/bin/env node
// Browser test of the echo target through the real web client.
//
//   node echo.mjs <gateway-url> [--seconds 3] [--relay]
//
// Opens <gateway-url>/?ice=loopback in headless Chromium (Debian's
// /usr/bin/chromium driven by playwright-core), signs in, calls `echo` through
// the UI, waits until the page says "connected", reads getStats twice and
// checks that echoed audio arrives (inbound-rtp bytes grow, codec opus,
// totalAudioEnergy > 0), presses DTMF 1, hangs up and checks the ended state.
// Prints one JSON line; exit 0 when every check passes.
//
// `?ice=loopback` makes the page drop non-loopback candidates, so the test
// also works outside a lo-only network namespace. `--relay` opens `?ice=relay`
// instead (the client also sets `iceTransportPolicy: 'relay'`, so media must go
// through the TURN server of `welcome`) and adds the checks `turn_credentials`
// (welcome gave a TURN server with `<expiry>:<login>` credentials) and
// `relay_pair` (the selected pair's local candidate is a relay one).
//
// Environment: CHROMIUM (default /usr/bin/chromium), PLAYWRIGHT_CORE (the
// playwright-core folder, default <repo>/tests/node_modules/playwright-core).

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const base = args.find((a) => !a.startsWith('--'));
const seconds = Number(args.includes('--seconds') ? args[args.indexOf('--seconds') + 1] : '3');
const relay = args.includes('--relay');
const here = path.dirname(fileURLToPath(import.meta.url));
const pwPath = process.env.PLAYWRIGHT_CORE
  || path.resolve(here, '..', '..', '..', 'tests', 'node_modules', 'playwright-core');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const loOnly = Object.values(os.networkInterfaces()).flat().every((a) => a.internal);

const result = { ok: false, network: loOnly ? 'lo only' : 'has non-loopback interfaces', checks: {} };

async function main() {
  if (!base) throw new Error('usage: node echo.mjs <gateway-url>');
  const { chromium } = await import(pathToFileURL(path.join(pwPath, 'index.mjs')).href);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'namecall-echo-profile-'));
  const flags = [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--no-default-browser-check',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
    '--autoplay-policy=no-user-gesture-required',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
  ];
  let ctx;
  const consoleLines = [];
  try {
    ctx = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: flags, timeout: 60000 });
    const page = ctx.pages()[0] || await ctx.newPage();
    page.on('console', (m) => consoleLines.push(m.text()));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    const url = new URL(relay ? '/?ice=relay' : '/?ice=loopback', base).href;
    await page.goto(url);

    // sign in
    await page.fill('#login-name', 'browser-test');
    await page.click('#login-btn');
    await page.waitForSelector('#call-panel:not([hidden])', { timeout: 10000 });
    result.checks.signed_in = (await page.textContent('#whoami')).includes('browser-test');
    if (relay) {
      const servers = await page.evaluate(() => window.namecall.iceServers);
      result.ice_servers = servers;
      result.checks.turn_credentials = Array.isArray(servers) && servers.some((s) =>
        s.urls.some((u) => u.startsWith('turn:')) && /^\d+:browser-test$/.test(s.username || '') && !!s.credential);
    }

    // call echo through the UI
    await page.fill('#callee', 'echo');
    await page.click('#call-btn');
    await page.waitForFunction(() => ['connected', 'ended'].includes(document.getElementById('call-state').dataset.state),
      null, { timeout: 20000 });
    const stateAfterCall = await page.getAttribute('#call-state', 'data-state');
    result.checks.connected = stateAfterCall === 'connected';
    if (!result.checks.connected) throw new Error(`call did not connect: ${await page.textContent('#call-detail')}`);

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
        if (r.type === 'candidate-pair' && r.nominated && r.state === 'succeeded') {
          const l = byId[r.localCandidateId];
          const rm = byId[r.remoteCandidateId];
          out.pair = {
            local: l && `${l.address}:${l.port}`, remote: rm && `${rm.address}:${rm.port}`,
            localType: l && l.candidateType, remoteType: rm && rm.candidateType,
          };
        }
      });
      return out;
    });
    // give the jitter buffer a moment before the first sample
    await page.waitForTimeout(500);
    const first = await stats();
    await page.waitForTimeout(seconds * 1000);
    const last = await stats();
    result.stats = { first, last };
    const b0 = (first && first.inbound && first.inbound.bytesReceived) || 0;
    result.checks.bytes_growing = !!(last && last.inbound && last.inbound.bytesReceived > b0);
    result.checks.codec_opus = !!(last && last.inbound && /opus/i.test(last.inbound.codec || ''));
    result.checks.audio_energy = !!(last && last.inbound && (last.inbound.totalAudioEnergy || 0) > 0);
    // the gateway side is always loopback; Chromium's own side is too when only lo exists
    // (outside such a namespace it may send from another interface to our 127.0.0.1)
    const lo = (a) => /^(127\.|::1)/.test(a || '');
    result.checks.loopback_pair = !!(last && last.pair && lo(last.pair.remote) && (!loOnly || lo(last.pair.local)));
    if (relay) result.checks.relay_pair = !!(last && last.pair && last.pair.localType === 'relay');

    // DTMF through the keypad must not disturb the call
    await page.click('#keypad button:has-text("1")');

    // hang up
    await page.click('#hangup-btn');
    await page.waitForFunction(() => document.getElementById('call-state').dataset.state === 'ended', null, { timeout: 10000 });
    const detail = await page.textContent('#call-detail');
    result.checks.ended = true;
    result.ended_detail = detail;
    result.ended_reason = await page.getAttribute('#call-state', 'data-reason');
    result.checks.ended_by_hangup = result.ended_reason === 'hangup';

    result.ok = Object.values(result.checks).every(Boolean);
  } finally {
    if (!result.ok) result.console = consoleLines.slice(-30);
    if (ctx) await ctx.close().catch(() => {});
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
