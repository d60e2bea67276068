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
// Environment: CHROMIUM, PLAYWRIGHT_CORE (see common.mjs).

import { newPage, signUp, verdict } from './common.mjs';

const [base, text, reply] = process.argv.slice(2);
const CONV = 'co:alice+acme/sales';
const WAIT = { timeout: 20000 };

const result = { ok: false, checks: {} };

await verdict(result, async (browser, consoleLines) => {
  if (!base || !text || !reply) throw new Error('usage: node company-chat.mjs <gateway-url> <text> <reply>');
  const page = await newPage(browser, 'alice', consoleLines);
  await signUp(page, base, 'alice', WAIT);
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
});
