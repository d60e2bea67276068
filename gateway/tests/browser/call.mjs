#!/usr/bin/env node
// Browser side of the PBX call tests: a messenger user in headless Chromium
// calls a company name through the real web client.
//
//   node call.mjs <gateway-url> --to acme/sales [--login alice] [--search acme]
//                 [--end hangup|remote|cancel|fail] [--seconds 4] [--dtmf 1] [--video]
//                 [--audio <wav>]
//
// Registers <login> (a fresh account), optionally searches the directory and
// checks the name is among the hits, calls --to through the UI, then:
//   hangup  waits for "connected", samples getStats for --seconds (pressing
//           the keypad keys of --dtmf midway, one after the other, e.g.
//           `--dtmf 159#`), clicks Hang up;
//   remote  waits for "connected", samples until the call ends by itself
//           (the desk phone hangs up; at most --seconds);
//   cancel  waits for "ringing", clicks Hang up before anyone answers;
//   early   waits for "ringing", samples getStats for --seconds while it
//           rings (early media; with --video, checks early_video_decoded),
//           then waits for "connected" and hangs up;
//   fail    waits for the call to end without connecting;
//   answer  makes no call: waits (up to 60 s) for a desk phone to call
//           <login>, clicks Answer, samples getStats until the call ends
//           by itself (at most --seconds).
// --video ticks the web client's Video box (fake camera): the samples then carry
// `video` (inbound framesDecoded/keyFramesDecoded/pliCount/firCount and the
// outbound framesSent/pliCount/firCount) and checks video_decoded (frames from the
// far end decoded, and growing) and video_sent.
// Prints one JSON line: {ok, checks, samples:[{t, energy, bytes, state}], ended:{reason, detail}}.
// `t` is the wall clock (ms) so the Rust side can line samples up with what
// it did to the desk phone. Exit 0 when every check passes.
//
// --audio makes Chromium's fake microphone play that WAV instead of its beep.
// Environment: CHROMIUM (default /usr/bin/chromium), PLAYWRIGHT_CORE.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const argv = process.argv.slice(2);
const opt = (name, dflt) => (argv.includes(`--${name}`) ? argv[argv.indexOf(`--${name}`) + 1] : dflt);
const base = argv[0];
const to = opt('to', 'acme/sales');
const login = opt('login', 'alice');
const search = opt('search', '');
const end = opt('end', 'hangup');
const seconds = Number(opt('seconds', '4'));
const dtmf = opt('dtmf', '');
const video = argv.includes('--video');
const audio = opt('audio', '');
const here = path.dirname(fileURLToPath(import.meta.url));
const pwPath = process.env.PLAYWRIGHT_CORE
  || path.resolve(here, '..', '..', '..', 'tests', 'node_modules', 'playwright-core');
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';

const result = { ok: false, checks: {}, samples: [], events: [] };
const mark = (what) => { result.events.push({ t: Date.now(), what }); console.error(`[call.mjs] ${what}`); };

async function main() {
  const { chromium } = await import(pathToFileURL(path.join(pwPath, 'index.mjs')).href);
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'namecall-call-profile-'));
  const flags = [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--no-default-browser-check',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream',
    '--allow-loopback-in-peer-connection',
    '--disable-features=WebRtcHideLocalIpsWithMdns',
    '--autoplay-policy=no-user-gesture-required',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1',
  ];
  if (audio) flags.push(`--use-file-for-fake-audio-capture=${audio}`);
  let ctx;
  const consoleLines = [];
  try {
    ctx = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: flags, timeout: 60000 });
    const page = ctx.pages()[0] || await ctx.newPage();
    page.on('console', (m) => consoleLines.push(m.text()));
    page.on('pageerror', (e) => consoleLines.push(`pageerror: ${e.message}`));
    await page.goto(new URL('/?ice=loopback', base).href);

    // register a fresh account (guests may not call companies)
    await page.fill('#login-name', login);
    await page.fill('#login-password', 'correct horse battery');
    await page.click('#register-btn');
    await page.waitForSelector('#call-panel:not([hidden])', { timeout: 15000 });
    result.checks.registered = (await page.textContent('#whoami')).trim() === login;
    mark('registered');
    // a reload keeps the account session (the token in localStorage resumes it)
    await page.reload();
    await page.waitForSelector('#call-panel:not([hidden])', { timeout: 15000 });
    result.checks.resumed_after_reload = (await page.textContent('#whoami')).trim() === login;

    if (search) {
      await page.fill('#search', search);
      await page.waitForFunction((name) => [...document.querySelectorAll('#search-results li')]
        .some((li) => li.textContent.startsWith(name)), to, { timeout: 10000 });
      result.hits = await page.$$eval('#search-results li', (lis) => lis.map((li) => li.textContent));
      // pick the callee from the results, as a user would
      await page.click(`#search-results li:text-matches("^${to.replace('/', '\\/')}( |$)")`);
      result.checks.found_by_search = (await page.inputValue('#callee')) === to;
    } else {
      await page.fill('#callee', to);
    }

    const state = () => page.getAttribute('#call-state', 'data-state');
    const waitState = (states, ms) => page.waitForFunction(
      (s) => s.includes(document.getElementById('call-state').dataset.state), states, { timeout: ms });
    const sample = async () => {
      const s = await page.evaluate(async () => {
        const pc = window.namecall.pc;
        const out = { energy: 0, bytes: 0, codec: null, video: null };
        if (!pc) return out;
        const stats = await pc.getStats();
        const byId = {};
        stats.forEach((r) => { byId[r.id] = r; });
        stats.forEach((r) => {
          if (r.type === 'inbound-rtp' && r.kind === 'audio') {
            out.energy = r.totalAudioEnergy || 0;
            out.bytes = r.bytesReceived || 0;
            out.codec = r.codecId && byId[r.codecId] ? byId[r.codecId].mimeType : null;
          }
          if (r.kind === 'video' && (r.type === 'inbound-rtp' || r.type === 'outbound-rtp')) {
            out.video = out.video || {};
            const dir = r.type === 'inbound-rtp' ? 'in' : 'out';
            out.video[dir] = {
              frames: (dir === 'in' ? r.framesDecoded : r.framesSent) || 0,
              keyFrames: (dir === 'in' ? r.keyFramesDecoded : r.keyFramesEncoded) || 0,
              pli: r.pliCount || 0,
              fir: r.firCount || 0,
              codec: r.codecId && byId[r.codecId] ? byId[r.codecId].mimeType : null,
            };
          }
        });
        return out;
      });
      result.samples.push({ t: Date.now(), state: await state(), ...s });
    };

    if (video) await page.check('#video-call');
    if (end === 'answer') {
      // tell the Rust side we are reachable, then wait for the desk phone
      console.log('READY');
      await page.waitForSelector('#incoming:not([hidden])', { timeout: 60000 });
      result.incoming_from = (await page.textContent('#incoming-from')).trim();
      result.checks.incoming_shown = result.incoming_from.length > 0;
      mark(`incoming from ${result.incoming_from}`);
      await page.click('#answer-btn');
      mark('answer clicked');
    } else {
      await page.click('#call-btn');
      mark('call clicked');
    }

    if (end === 'early') {
      await waitState(['ringing', 'ended'], 20000);
      mark('ringing');
      // a 180 (no early media) may come first; the 183 with SDP follows
      result.checks.ringing_early = await page.waitForFunction(
        () => document.getElementById('call-detail').textContent.includes('message'),
        null, { timeout: 10000 }).then(() => true, () => false);
      const stop = Date.now() + seconds * 1000;
      while (Date.now() < stop) {
        await sample();
        await page.waitForTimeout(250);
      }
      const ringingSamples = result.samples.filter((s) => s.state === 'ringing');
      const lastRinging = ringingSamples[ringingSamples.length - 1] || { energy: 0 };
      result.early_media_energy = lastRinging.energy;
      if (video) {
        // video from the far end decoded while it still rings (early video)
        const ev = (lastRinging.video && lastRinging.video.in) || { frames: 0 };
        result.early_video = lastRinging.video || null;
        result.checks.early_video_decoded = ev.frames > 0;
      }
      console.log('EARLY-DONE');
      await waitState(['connected', 'ended'], 30000);
      result.checks.connected = (await state()) === 'connected';
      mark('connected');
      await page.click('#hangup-btn');
    } else if (end === 'cancel') {
      await waitState(['ringing', 'ended'], 20000);
      result.checks.ringing = (await state()) === 'ringing';
      mark('ringing');
      await page.click('#hangup-btn');
      mark('hangup clicked');
    } else if (end === 'fail') {
      await waitState(['ended', 'connected'], 40000);
      result.checks.not_connected = (await state()) === 'ended';
    } else {
      await waitState(['connected', 'ended'], 30000);
      result.checks.connected = (await state()) === 'connected';
      if (!result.checks.connected) throw new Error(`call did not connect: ${await page.textContent('#call-detail')}`);
      mark('connected');
      const stop = Date.now() + seconds * 1000;
      let pressed = !dtmf;
      while (Date.now() < stop) {
        await sample();
        if ((end === 'remote' || end === 'answer') && (await state()) === 'ended') break;
        if (!pressed && Date.now() > stop - (seconds * 1000) / 2) {
          for (const key of dtmf) {
            await page.click(`#keypad button:text-is("${key}")`);
            mark(`dtmf ${key}`);
          }
          pressed = true;
        }
        await page.waitForTimeout(250);
      }
      // samples taken after the call ended have no peer connection: leave them out
      const live = result.samples.filter((s) => s.state !== 'ended');
      const first = live.find((s) => s.state === 'connected') || { energy: 0, bytes: 0 };
      const last = live[live.length - 1] || { energy: 0, bytes: 0 };
      result.checks.bytes_growing = last.bytes > first.bytes;
      result.checks.audio_energy = last.energy > 0;
      result.codec = last.codec;
      if (video) {
        const firstV = (live.find((s) => s.video && s.video.in) || {}).video || { in: { frames: 0 } };
        const lastV = last.video || { in: { frames: 0 }, out: { frames: 0 } };
        result.video = lastV;
        result.checks.video_decoded = !!lastV.in && lastV.in.frames > 0 && lastV.in.frames > firstV.in.frames;
        result.checks.video_sent = !!lastV.out && lastV.out.frames > 0;
      }
      if (end === 'hangup') {
        await page.click('#hangup-btn');
        mark('hangup clicked');
      }
    }
    await waitState(['ended'], end === 'remote' || end === 'answer' ? 40000 : 15000);
    mark('ended');
    result.ended = {
      reason: await page.getAttribute('#call-state', 'data-reason'),
      detail: (await page.textContent('#call-detail')).trim(),
    };
    result.ok = Object.values(result.checks).every(Boolean);
  } finally {
    if (!result.ok) result.console = consoleLines.slice(-40);
    if (ctx) await ctx.close().catch(() => {});
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

try {
  if (!base) throw new Error('usage: node call.mjs <gateway-url> --to <name>');
  await main();
} catch (e) {
  result.error = String((e && e.stack) || e);
}
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
