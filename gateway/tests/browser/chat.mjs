#!/usr/bin/env node
// Browser test of the chat through the real web client.
//
//   node chat.mjs <gateway-url> [--image <png file>]
//
// Opens two pages in headless Chromium (Debian's /usr/bin/chromium driven by
// playwright-core), registers `alice` and `bob` through the UI, and checks:
// alice's text reaches bob with an unread badge; its state at alice goes
// delivered, then read once bob opens the thread; bob's typing shows at
// alice; bob's reply, alice's location and an uploaded image (as its
// thumbnail) arrive; alice sees bob online,
// then "last seen" once bob's page is closed.
// Prints one JSON line; exit 0 when every check passes.
//
// Environment: CHROMIUM, PLAYWRIGHT_CORE (see common.mjs).

import { newPage, signUp, verdict } from './common.mjs';

const args = process.argv.slice(2);
const base = args.find((a) => !a.startsWith('--'));
const imagePath = args.includes('--image') ? args[args.indexOf('--image') + 1] : null;
const DM = 'dm:alice+bob';
const WAIT = { timeout: 15000 };

const result = { ok: false, checks: {} };

// the state of alice's message `text` in her open thread
function stateOf(page, text) {
  return page.evaluate((t) => {
    const li = [...document.querySelectorAll('#messages li.mine')]
      .find((l) => (l.querySelector('.text') || {}).textContent === t);
    return li ? li.dataset.state : null;
  }, text);
}

async function waitState(page, text, want) {
  await page.waitForFunction(([t, w]) => {
    const li = [...document.querySelectorAll('#messages li.mine')]
      .find((l) => (l.querySelector('.text') || {}).textContent === t);
    return li && li.dataset.state === w;
  }, [text, want], WAIT);
}

await verdict(result, async (browser, consoleLines) => {
  if (!base) throw new Error('usage: node chat.mjs <gateway-url>');
  // one context each: separate windows, so both pages count as visible
  const alice = await newPage(browser, 'alice', consoleLines);
  const bob = await newPage(browser, 'bob', consoleLines);
  await signUp(alice, base, 'alice', WAIT);
  await signUp(bob, base, 'bob', WAIT);
  result.checks.signed_in = true;

  // alice opens a chat with bob and writes
  await alice.fill('#chat-to', 'bob');
  await alice.click('#chat-open-btn');
  await alice.waitForSelector('#thread:not([hidden])', WAIT);
  await alice.fill('#chat-text', 'hello bob');
  await alice.click('#chat-send');

  // bob: the conversation appears with one unread message
  await bob.waitForSelector(`#conv-list li[data-conv="${DM}"] .unread[data-unread="1"]`, WAIT);
  result.checks.unread_badge = true;
  // bob's page acked the push: delivered at alice (not read yet)
  await waitState(alice, 'hello bob', 'delivered');
  result.checks.delivered = true;

  // bob opens the thread: he sees the text, the badge clears, alice sees read
  await bob.click(`#conv-list li[data-conv="${DM}"]`);
  await bob.waitForSelector('#messages li.theirs .text:text-is("hello bob")', WAIT);
  result.checks.text_arrived = true;
  await bob.waitForSelector(`#conv-list li[data-conv="${DM}"] .unread[data-unread="0"]`, { ...WAIT, state: "attached" });
  await waitState(alice, 'hello bob', 'read');
  result.checks.read = true;

  // bob types: alice sees it
  await bob.type('#chat-text', 'hi al', { delay: 20 });
  await alice.waitForSelector('#typing-indicator:not([hidden])', WAIT);
  result.checks.typing_shown = /bob is typing/.test(await alice.textContent('#typing-indicator'));
  await bob.type('#chat-text', 'ice', { delay: 20 });
  await bob.click('#chat-send');
  await alice.waitForSelector('#messages li.theirs .text:text-is("hi alice")', WAIT);
  result.checks.reply_arrived = true;
  // the message ends the typing indicator
  await alice.waitForSelector('#typing-indicator', { ...WAIT, state: 'hidden' });
  result.checks.typing_cleared = true;

  // alice shares a location
  await alice.fill('#loc-lat', '48.8584');
  await alice.fill('#loc-lon', '2.2945');
  await alice.fill('#loc-label', 'Eiffel');
  await alice.click('#send-location');
  await bob.waitForSelector('#messages li.theirs .text a[href*="mlat=48.8584"]', WAIT);
  result.checks.location_arrived = /Eiffel/.test(await bob.textContent('#messages li.theirs:last-child'));
  await waitState(alice, '📍 Eiffel 48.85840, 2.29450', 'read');
  result.checks.location_read = true;

  // alice attaches a PNG: bob sees its thumbnail (320 px wide) load
  if (imagePath) {
    await alice.setInputFiles('#chat-file', imagePath);
    const img = await bob.waitForSelector('#messages li.theirs img[src^="/v1/uploads/up_"]', WAIT);
    await bob.waitForFunction((el) => el.complete && el.naturalWidth > 0, img, WAIT);
    result.thumbnail_px = await img.evaluate((el) => [el.naturalWidth, el.naturalHeight]);
    result.checks.image_arrived = result.thumbnail_px[0] === 320;
    const href = await bob.getAttribute('#messages li.theirs:last-child a', 'href');
    result.checks.image_full_size = !!href && href !== await img.getAttribute('src');
  }

  // presence: bob online, then last seen after his page closes
  await alice.waitForSelector('#peer-presence[data-state="online"]', WAIT);
  result.checks.online = true;
  await bob.close();
  await alice.waitForSelector('#peer-presence[data-state="last_seen"]', WAIT);
  result.checks.last_seen = /last seen/.test(await alice.textContent('#peer-presence'));
  result.final_state = await stateOf(alice, 'hello bob');
});
