#!/usr/bin/env node
// Browser test of group chat through the real web client.
//
//   node group-chat.mjs <gateway-url>
//
// Three headless Chromium pages (alice, bob, carol) sign up. Alice creates
// the group "Launch" with bob and carol from the "New group" form and
// writes; the members panel lists all three with alice as admin; bob and
// carol see the group with an unread badge; as each opens it, alice's
// message shows "read by" growing and ends "read". Alice removes carol:
// carol's page says she is no longer a member and cannot send, and alice's
// next message reaches bob but not carol. Bob has no admin controls until
// alice makes him admin; then he renames the group (alice's title follows)
// and leaves (alice's member list follows).
// Prints one JSON line; exit 0 when every check passes.
//
// Environment: CHROMIUM, PLAYWRIGHT_CORE (see common.mjs).

import { newPage, signUp, verdict } from './common.mjs';

const base = process.argv.slice(2).find((a) => !a.startsWith('--'));
const WAIT = { timeout: 15000 };

const result = { ok: false, checks: {} };

function readers(page, text) {
  return page.evaluate((t) => {
    const li = [...document.querySelectorAll('#messages li.mine')]
      .find((l) => (l.querySelector('.text') || {}).textContent === t);
    return li ? { state: li.dataset.state, readers: (li.querySelector('.readers') || {}).textContent } : null;
  }, text);
}

async function waitReaders(page, text, want) {
  await page.waitForFunction(([t, w]) => {
    const li = [...document.querySelectorAll('#messages li.mine')]
      .find((l) => (l.querySelector('.text') || {}).textContent === t);
    return li && (li.querySelector('.readers') || {}).textContent === w;
  }, [text, want], WAIT);
}

async function members(page) {
  return page.$$eval('#group-members-list li[data-login]', (lis) => lis.map((l) => l.dataset.login));
}

async function waitMembers(page, want) {
  await page.waitForFunction((w) => {
    const got = [...document.querySelectorAll('#group-members-list li[data-login]')].map((l) => l.dataset.login);
    return got.join(',') === w.join(',');
  }, want, WAIT);
}

await verdict(result, async (browser, consoleLines) => {
  if (!base) throw new Error('usage: node group-chat.mjs <gateway-url>');
  const pages = {};
  for (const name of ['alice', 'bob', 'carol']) {
    const p = await newPage(browser, name, consoleLines);
    await signUp(p, base, name, WAIT);
    pages[name] = p;
  }
  const { alice, bob, carol } = pages;
  result.checks.signed_in = true;

  // alice creates the group from the form: its thread opens with the members
  await alice.fill('#group-title', 'Launch');
  await alice.fill('#group-members', 'bob, carol');
  await alice.click('#group-create-btn');
  await alice.waitForSelector('#thread:not([hidden])', WAIT);
  await alice.waitForFunction(() => document.querySelector('#thread-title').textContent === 'Launch', null, WAIT);
  await waitMembers(alice, ['alice', 'bob', 'carol']);
  result.checks.created = true;
  result.checks.creator_is_admin = await alice.$eval('#group-members-list li[data-login="alice"]',
    (l) => !!l.querySelector('.admin'));
  result.checks.admin_controls = await alice.isVisible('#group-admin-form')
    && await alice.isVisible('#group-members-list li[data-login="bob"] button.remove');

  await alice.fill('#chat-text', 'kick-off at ten');
  await alice.click('#chat-send');
  const group = await alice.evaluate(() => window.namecall.chat.open);
  result.group = group;

  // bob and carol see the group titled, with one unread post
  for (const p of [bob, carol]) {
    await p.waitForSelector(`#conv-list li[data-conv="${group}"] .unread[data-unread="1"]`, WAIT);
  }
  result.checks.listed_with_title = (await bob.textContent(`#conv-list li[data-conv="${group}"] .name`)) === 'Launch';

  // bob reads: "read by bob"; carol reads: "read by bob, carol" and the state is read
  await bob.click(`#conv-list li[data-conv="${group}"]`);
  await bob.waitForSelector('#messages li.theirs .text:text-is("kick-off at ten")', WAIT);
  await waitMembers(bob, ['alice', 'bob', 'carol']);
  result.checks.bob_not_admin = await bob.$eval('#group-admin-form', (f) => f.hidden)
    && (await bob.$$('#group-members-list button.remove')).length === 0;
  await waitReaders(alice, 'kick-off at ten', 'read by bob');
  result.checks.read_by_one = (await readers(alice, 'kick-off at ten')).state !== 'read';
  await carol.click(`#conv-list li[data-conv="${group}"]`);
  await carol.waitForSelector('#messages li.theirs .text:text-is("kick-off at ten")', WAIT);
  await waitReaders(alice, 'kick-off at ten', 'read by bob, carol');
  result.checks.read_by_all = (await readers(alice, 'kick-off at ten')).state === 'read';

  // alice removes carol
  await alice.click('#group-members-list li[data-login="carol"] button.remove');
  await waitMembers(alice, ['alice', 'bob']);
  await carol.waitForFunction(() => document.querySelector('#chat-send').disabled, null, WAIT);
  result.checks.removed_member_told = /no longer a member/.test(await carol.textContent('#group-members-list'));
  await alice.fill('#chat-text', 'carol moved team');
  await alice.click('#chat-send');
  await bob.waitForSelector('#messages li.theirs .text:text-is("carol moved team")', WAIT);
  // give carol's page the time bob's needed, and more
  await carol.waitForTimeout(500);
  result.checks.removed_member_gets_nothing = !(await carol.evaluate(
    () => [...document.querySelectorAll('#messages li .text')].some((t) => t.textContent === 'carol moved team')));

  // alice makes bob admin: bob gets the controls, renames, then leaves
  await alice.click('#group-members-list li[data-login="bob"] button.promote');
  await bob.waitForSelector('#group-admin-form:not([hidden])', { ...WAIT, state: 'attached' });
  result.checks.promoted = true;
  await bob.fill('#group-rename', 'Launch v2');
  await bob.click('#group-rename-btn');
  await alice.waitForFunction(() => document.querySelector('#thread-title').textContent === 'Launch v2', null, WAIT);
  result.checks.renamed = true;
  await bob.click('#group-leave-btn');
  await waitMembers(alice, ['alice']);
  result.checks.left = true;
  result.final_members = await members(alice);
});
