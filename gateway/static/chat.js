// namecall web chat: plain JS, no build step, on the same /v1/ws socket as
// calls (docs/protocol.md, "Chat").
//
// app.js owns the socket and forwards every frame as a cancelable
// `namecall:frame` event; this file handles the chat ones. After `welcome`
// of an account it syncs (sync -> batch ... until more=false, acking each
// cursor), lists conversations with unread counts, shows one thread with
// per-message states (sending, sent, delivered, read), typing, and the
// peer's presence (asked when a one-to-one thread opens, then pushed).
//
// A company name (`acme/sales`) is a chat peer too: its thread is
// `co:<me>+<name>`, the gateway carries it to a desk phone as SIP MESSAGE,
// `delivered` means the company's PBX took it, and a failure arrives as an
// `error` with the message's client id (shown as "not delivered").
//
// Groups (`g:<creator>:<id>`): "New group" creates one; a group thread
// shows its members (asked with `members` when it opens and after every
// membership change), admins get add, remove, promote and rename; every
// member may leave. Own posts in a group show who has read them, from the
// members' receipt watermarks.
//
// The page keeps nothing across reloads: each load is a new chat device
// and syncs the whole stream.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const app = window.namecall;
  const CHAT_FRAMES = new Set(['ack', 'message', 'batch', 'history', 'receipt', 'read_elsewhere',
    'expired', 'typing', 'receipts', 'conversations', 'presence', 'ok', 'members']);
  const TYPING_REFRESH_MS = 3000;

  const chat = {
    me: null,
    convs: new Map(), // id -> conversation
    open: null, // id of the shown thread
    synced: false,
    typingSentAt: 0,
    groupOps: new Map(), // client_id of a group_* frame -> what it was
  };
  app.chat = chat; // for tests and the console

  function send(frame) {
    if (app.ws && app.ws.readyState === WebSocket.OPEN) app.ws.send(JSON.stringify(frame));
  }

  function newId() {
    return `w${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
  }

  function dmId(a, b) {
    return a < b ? `dm:${a}+${b}` : `dm:${b}+${a}`;
  }

  function peerOf(id) {
    if (!id.startsWith('dm:')) return null;
    const [a, b] = id.slice(3).split('+');
    return a === chat.me ? b : a;
  }

  function companyOf(id) {
    return id.startsWith('co:') ? id.slice(3).split('+')[1] : null;
  }

  // a company hit (or any name with a `/`) opens a company thread
  function threadFor(name, kind) {
    const company = kind ? kind === 'tenant' || kind === 'subname' : name.includes('/');
    return company ? `co:${chat.me}+${name}` : dmId(chat.me, name);
  }

  function conv(id) {
    let c = chat.convs.get(id);
    if (!c) {
      c = {
        id, title: null, lastSeq: 0, unread: 0, active: true,
        messages: new Map(), // seq -> entry
        pending: new Map(), // client_id -> {body, state}
        peers: new Map(), // login -> {delivered, read}
        typing: new Set(),
        members: null, // groups: [{login, admin, delivered, read}] from `members`
      };
      chat.convs.set(id, c);
    }
    return c;
  }

  // ---- incoming entries ---------------------------------------------------

  function ingest(e) {
    const c = conv(e.conversation);
    c.lastSeq = Math.max(c.lastSeq, e.seq);
    if (e.op === 'edit') {
      const t = c.messages.get(e.target);
      if (t) { t.body = e.body; t.edited_at = e.ts; }
    } else if (e.op === 'delete') {
      const t = c.messages.get(e.target);
      if (t) { t.deleted = true; delete t.body; }
    } else if (e.op === 'group' && e.change) {
      if (e.change.title) c.title = e.change.title;
      const gone = e.change.event === 'removed' || e.change.event === 'left';
      if (gone && e.change.member === chat.me) c.active = false;
      // the member list changed: ask again if it is on screen
      if (chat.synced && chat.open === c.id && c.active) send({ type: 'members', conversation: c.id });
    }
    const fresh = !c.messages.has(e.seq);
    c.messages.set(e.seq, e);
    if (e.sender === chat.me) c.pending.delete(e.client_id);
    if (fresh && e.sender !== chat.me && e.op === 'post' && !e.deleted) {
      c.typing.delete(e.sender);
      if (chat.open === c.id && document.visibilityState === 'visible') markRead(c);
      else c.unread += 1;
    }
  }

  function markRead(c) {
    if (c.lastSeq > 0) send({ type: 'read', conversation: c.id, seq: c.lastSeq });
    c.unread = 0;
  }

  function stateOf(c, seq) {
    const others = [...c.peers.values()];
    if (others.length === 0) return 'sent';
    if (others.every((p) => p.read >= seq)) return 'read';
    if (others.every((p) => p.delivered >= seq)) return 'delivered';
    return 'sent';
  }

  function isGroup(id) {
    return id.startsWith('g:');
  }

  function amAdmin(c) {
    return !!(c.members && c.members.some((m) => m.login === chat.me && m.admin));
  }

  function loginsIn(text) {
    return text.toLowerCase().split(/[\s,]+/).filter((l) => l && l !== chat.me);
  }

  function groupOp(frame, what) {
    const clientId = newId();
    chat.groupOps.set(clientId, what);
    $('group-error').textContent = '';
    $('group-create-error').textContent = '';
    send({ ...frame, client_id: clientId });
    return clientId;
  }

  function setPeer(c, login, delivered, read) {
    const p = c.peers.get(login) || { delivered: 0, read: 0 };
    p.delivered = Math.max(p.delivered, delivered);
    p.read = Math.max(p.read, read);
    c.peers.set(login, p);
  }

  function onFrame(f) {
    switch (f.type) {
      case 'batch':
        for (const e of f.messages) ingest(e);
        if (f.messages.length) send({ type: 'ack', cursor: f.cursor });
        if (f.more) send({ type: 'sync', limit: 200 });
        else { chat.synced = true; send({ type: 'conversations' }); }
        break;
      case 'message':
        ingest(f);
        send({ type: 'ack', cursor: f.cursor });
        break;
      case 'ack': {
        const c = conv(f.conversation);
        const op = chat.groupOps.get(f.client_id);
        if (op) {
          // the device that made a group change gets no `message` of it:
          // fetch the event (title, members) like the other devices see it
          chat.groupOps.delete(f.client_id);
          const before = c.lastSeq;
          c.lastSeq = Math.max(c.lastSeq, f.seq);
          if (op === 'leave') c.active = false;
          else send({ type: 'history', conversation: c.id, after: Math.max(0, Math.min(before, f.seq - 1)), limit: 100 });
          if (op === 'create') openThread(c.id);
          else if (c.active && chat.open === c.id) send({ type: 'members', conversation: c.id });
          break;
        }
        const p = c.pending.get(f.client_id);
        c.pending.delete(f.client_id);
        if (p && !c.messages.has(f.seq)) {
          c.messages.set(f.seq, {
            conversation: f.conversation, seq: f.seq, sender: chat.me, client_id: f.client_id,
            ts: f.ts, op: 'post', body: p.body,
          });
        }
        c.lastSeq = Math.max(c.lastSeq, f.seq);
        break;
      }
      case 'receipt':
        setPeer(conv(f.conversation), f.member, f.delivered, f.read);
        break;
      case 'receipts': {
        // answer to the "where is my last message" question asked on open
        const c = conv(f.conversation);
        for (const l of f.read_by) setPeer(c, l, f.seq, f.seq);
        for (const l of f.delivered_to) setPeer(c, l, f.seq, 0);
        for (const l of f.pending) setPeer(c, l, 0, 0);
        break;
      }
      case 'read_elsewhere': {
        const c = conv(f.conversation);
        if (f.read >= c.lastSeq) c.unread = 0;
        break;
      }
      case 'conversations':
        for (const it of f.items) {
          const c = conv(it.id);
          c.title = it.title || c.title;
          c.lastSeq = Math.max(c.lastSeq, it.last_seq);
          c.unread = it.unread;
          c.active = it.active;
        }
        break;
      case 'members': {
        const c = conv(f.conversation);
        c.members = f.members;
        // receipts count only the current members
        c.peers = new Map();
        for (const m of f.members) if (m.login !== chat.me) setPeer(c, m.login, m.delivered, m.read);
        break;
      }
      case 'typing': {
        const c = conv(f.conversation);
        if (f.typing) c.typing.add(f.user); else c.typing.delete(f.user);
        break;
      }
      case 'presence':
        if (chat.open && peerOf(chat.open) === f.login) showPresence(f);
        break;
      case 'expired': {
        const m = conv(f.conversation).messages.get(f.seq);
        if (m) m.expired = true;
        break;
      }
      case 'history':
        for (const e of f.messages) ingest(e);
        break;
      case 'ok':
        return;
      default:
        return;
    }
    render();
  }

  function onError(f) {
    // chat errors carry the client id of the failed write
    if (!f.client_id) return false;
    const op = chat.groupOps.get(f.client_id);
    if (op) {
      chat.groupOps.delete(f.client_id);
      $(op === 'create' ? 'group-create-error' : 'group-error').textContent = `${op} refused: ${f.code}${f.message && f.message !== f.code ? ` (${f.message})` : ''}`;
      return true;
    }
    for (const c of chat.convs.values()) {
      const p = c.pending.get(f.client_id);
      if (p) { p.state = 'failed'; p.error = f.code; render(); return true; }
      // a stored message to a company that its PBX did not take
      for (const m of c.messages.values()) {
        if (m.sender === chat.me && m.client_id === f.client_id) { m.failed = f.code; render(); return true; }
      }
    }
    return false;
  }

  // ---- outgoing -----------------------------------------------------------

  function sendBody(body) {
    if (!chat.open) return;
    const c = conv(chat.open);
    const clientId = newId();
    c.pending.set(clientId, { body, state: 'sending' });
    send({ type: 'send', conversation: c.id, client_id: clientId, body });
    chat.typingSentAt = 0;
    render();
  }

  function openThread(id) {
    chat.open = id;
    const c = conv(id);
    markRead(c);
    // after a reload the page knows no receipts yet: ask for the latest own message
    const mine = [...c.messages.values()].filter((m) => m.sender === chat.me && m.op === 'post');
    if (mine.length) send({ type: 'receipts', conversation: id, seq: mine[mine.length - 1].seq });
    $('peer-presence').textContent = '';
    $('peer-presence').dataset.state = '';
    const peer = peerOf(id);
    // the answer comes now; later changes are pushed while this socket lives
    if (peer) send({ type: 'presence', login: peer });
    c.members = isGroup(id) ? c.members : null;
    if (isGroup(id) && c.active) send({ type: 'members', conversation: id });
    $('group-error').textContent = '';
    $('thread').hidden = false;
    render();
    $('chat-text').focus();
  }

  function showPresence(f) {
    const el = $('peer-presence');
    el.dataset.state = f.state;
    if (f.state === 'online') el.textContent = 'online';
    else if (f.state === 'last_seen') el.textContent = `last seen ${new Date(f.at).toLocaleString()}`;
    else el.textContent = '';
  }

  // ---- rendering ----------------------------------------------------------

  function describe(body) {
    if (!body) return '';
    switch (body.kind) {
      case 'text': return body.text;
      case 'location': return `📍 ${body.label ? `${body.label} ` : ''}${body.lat.toFixed(5)}, ${body.lon.toFixed(5)}`;
      case 'image': return `🖼 image (${body.mime})`;
      case 'video': return `🎞 video (${body.mime})`;
      case 'file': return `📎 ${body.name || 'file'}`;
      case 'contact': return `👤 ${body.name}`;
      default: return `[${body.kind}]`;
    }
  }

  function groupEventText(m) {
    const ch = m.change || {};
    switch (ch.event) {
      case 'created': return `${m.sender} created "${ch.title}" with ${(ch.members || []).join(', ')}`;
      case 'renamed': return `${m.sender} renamed the group to "${ch.title}"`;
      case 'added': return `${m.sender} added ${(ch.members || []).join(', ')}`;
      case 'removed': return `${m.sender} removed ${ch.member}`;
      case 'left': return `${ch.member || m.sender} left`;
      case 'promoted': return `${m.sender} made ${ch.member} an admin`;
      default: return `${m.sender}: group change`;
    }
  }

  function uploadUrl(id) {
    return `/v1/uploads/${encodeURIComponent(id)}`;
  }

  function bodyNode(body) {
    if (body && body.kind === 'image') {
      const a = document.createElement('a');
      a.href = uploadUrl(body.upload_id);
      a.target = '_blank';
      a.rel = 'noopener';
      const img = document.createElement('img');
      img.src = uploadUrl(body.thumbnail_id || body.upload_id);
      img.alt = 'image';
      img.loading = 'lazy';
      a.append(img);
      return a;
    }
    if (body && body.kind === 'video') {
      const v = document.createElement('video');
      v.src = uploadUrl(body.upload_id);
      v.controls = true;
      v.preload = 'metadata';
      return v;
    }
    if (body && body.kind === 'file') {
      const a = document.createElement('a');
      a.href = uploadUrl(body.upload_id);
      a.textContent = describe(body);
      return a;
    }
    if (body && body.kind === 'location') {
      const a = document.createElement('a');
      a.href = `https://www.openstreetmap.org/?mlat=${body.lat}&mlon=${body.lon}#map=16/${body.lat}/${body.lon}`;
      a.target = '_blank';
      a.rel = 'noopener';
      a.textContent = describe(body);
      return a;
    }
    return document.createTextNode(describe(body));
  }

  function title(c) {
    return c.title || peerOf(c.id) || companyOf(c.id) || c.id;
  }

  function renderList() {
    const ul = $('conv-list');
    ul.replaceChildren();
    const items = [...chat.convs.values()].sort((a, b) => latest(b) - latest(a));
    for (const c of items) {
      const li = document.createElement('li');
      li.dataset.conv = c.id;
      li.classList.toggle('open', c.id === chat.open);
      const name = document.createElement('span');
      name.className = 'name';
      name.textContent = title(c);
      li.append(name);
      if (c.typing.size) {
        const t = document.createElement('span');
        t.className = 'typing';
        t.textContent = 'typing…';
        li.append(t);
      }
      const badge = document.createElement('span');
      badge.className = 'unread';
      badge.dataset.unread = String(c.unread);
      badge.textContent = c.unread ? String(c.unread) : '';
      li.append(badge);
      li.addEventListener('click', () => openThread(c.id));
      ul.append(li);
    }
  }

  function latest(c) {
    let ts = 0;
    for (const m of c.messages.values()) ts = Math.max(ts, m.ts || 0);
    return ts || c.lastSeq;
  }

  function renderThread() {
    if (!chat.open) return;
    const c = conv(chat.open);
    $('thread-title').textContent = title(c);
    const ol = $('messages');
    ol.replaceChildren();
    const seqs = [...c.messages.keys()].sort((a, b) => a - b);
    for (const seq of seqs) {
      const m = c.messages.get(seq);
      if (m.op === 'edit' || m.op === 'delete') continue;
      const li = document.createElement('li');
      li.dataset.seq = String(seq);
      const mine = m.sender === chat.me;
      li.className = mine ? 'mine' : 'theirs';
      if (m.op === 'group') {
        li.className = 'event';
        li.textContent = groupEventText(m);
      } else if (m.deleted) {
        li.textContent = 'message deleted';
        li.classList.add('deleted');
      } else {
        if (!mine && !c.id.startsWith('dm:')) {
          const who = document.createElement('span');
          who.className = 'who';
          who.textContent = m.sender;
          li.append(who);
        }
        const text = document.createElement('span');
        text.className = 'text';
        text.append(bodyNode(m.body));
        li.append(text);
        if (m.edited_at) li.append(' (edited)');
      }
      if (mine && m.op === 'post' && !m.deleted) {
        const st = m.failed ? 'failed' : m.expired ? 'expired' : stateOf(c, seq);
        li.dataset.state = st;
        const s = document.createElement('span');
        s.className = 'state';
        s.textContent = {
          sent: '✓', delivered: '✓✓', read: '✓✓ read', expired: 'not delivered', failed: `not delivered: ${m.failed}`,
        }[st];
        s.title = st;
        li.append(s);
        if (isGroup(c.id) && !m.failed && !m.expired) {
          const readers = [...c.peers].filter(([, p]) => p.read >= seq).map(([l]) => l).sort();
          const r = document.createElement('span');
          r.className = 'readers';
          r.textContent = readers.length ? `read by ${readers.join(', ')}` : '';
          li.append(r);
        }
      }
      ol.append(li);
    }
    for (const [clientId, p] of c.pending) {
      const li = document.createElement('li');
      li.className = 'mine';
      li.dataset.clientId = clientId;
      li.dataset.state = p.state;
      const text = document.createElement('span');
      text.className = 'text';
      text.append(bodyNode(p.body));
      const s = document.createElement('span');
      s.className = 'state';
      s.textContent = p.state === 'failed' ? `failed: ${p.error}` : '…';
      li.append(text, s);
      ol.append(li);
    }
    ol.scrollTop = ol.scrollHeight;
    renderGroupPanel(c);
    $('chat-text').disabled = !c.active;
    $('chat-send').disabled = !c.active;
    const typing = $('typing-indicator');
    typing.hidden = c.typing.size === 0;
    typing.textContent = c.typing.size ? `${[...c.typing].join(', ')} ${c.typing.size > 1 ? 'are' : 'is'} typing…` : '';
  }

  function renderGroupPanel(c) {
    const panel = $('group-panel');
    panel.hidden = !isGroup(c.id);
    if (panel.hidden) return;
    const admin = c.active && amAdmin(c);
    $('group-admin-form').hidden = !admin;
    $('group-rename-form').hidden = !admin;
    $('group-leave-btn').hidden = !c.active;
    const ul = $('group-members-list');
    ul.replaceChildren();
    if (!c.active) {
      const li = document.createElement('li');
      li.textContent = 'You are no longer a member of this group.';
      ul.append(li);
      return;
    }
    for (const m of c.members || []) {
      const li = document.createElement('li');
      li.dataset.login = m.login;
      const name = document.createElement('span');
      name.className = 'login';
      name.textContent = m.login === chat.me ? `${m.login} (you)` : m.login;
      li.append(name);
      if (m.admin) {
        const a = document.createElement('span');
        a.className = 'admin';
        a.textContent = 'admin';
        li.append(a);
      }
      if (admin && m.login !== chat.me) {
        if (!m.admin) {
          const p = document.createElement('button');
          p.type = 'button';
          p.className = 'secondary promote';
          p.textContent = 'Make admin';
          p.addEventListener('click', () => groupOp({ type: 'group_promote', conversation: c.id, member: m.login }, 'make admin'));
          li.append(p);
        }
        const r = document.createElement('button');
        r.type = 'button';
        r.className = 'danger remove';
        r.textContent = 'Remove';
        r.addEventListener('click', () => groupOp({ type: 'group_remove', conversation: c.id, member: m.login }, 'remove'));
        li.append(r);
      }
      ul.append(li);
    }
  }

  function render() {
    renderList();
    renderThread();
  }

  // ---- wiring -------------------------------------------------------------

  document.addEventListener('namecall:frame', (ev) => {
    const f = ev.detail;
    if (f.type === 'welcome') {
      chat.me = f.login;
      $('chat-panel').hidden = f.guest;
      $('chat-guest-hint').hidden = !f.guest;
      if (!f.guest) send({ type: 'sync', limit: 200 });
      return; // app.js shows the session too
    }
    if (f.type === 'error') {
      if (onError(f)) ev.preventDefault();
      return;
    }
    if (CHAT_FRAMES.has(f.type)) {
      // `ice` is the calls' own; `typing`, `ack` etc. are only ours
      ev.preventDefault();
      onFrame(f);
    }
  });

  document.addEventListener('namecall:closed', () => {
    chat.convs.clear();
    chat.open = null;
    chat.synced = false;
    $('chat-panel').hidden = true;
    $('thread').hidden = true;
  });

  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && chat.open) { markRead(conv(chat.open)); render(); }
  });

  $('new-chat-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const to = $('chat-to').value.trim().toLowerCase();
    if (!to || !chat.me || to === chat.me) return;
    $('chat-to').value = '';
    openThread(threadFor(to));
  });

  // "Chat" on a directory search hit (app.js)
  document.addEventListener('namecall:chat', (ev) => {
    const h = ev.detail;
    if (!chat.me || app.guest || h.name === chat.me) return;
    openThread(threadFor(h.name, h.kind));
  });

  $('new-group-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const title = $('group-title').value.trim();
    const members = loginsIn($('group-members').value);
    if (!title || !members.length || !chat.me) {
      $('group-create-error').textContent = 'a group needs a title and at least one other member';
      return;
    }
    $('group-title').value = '';
    $('group-members').value = '';
    groupOp({ type: 'group_create', title, members }, 'create');
  });

  $('group-admin-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const members = loginsIn($('group-add').value);
    if (!chat.open || !members.length) return;
    $('group-add').value = '';
    groupOp({ type: 'group_add', conversation: chat.open, members }, 'add');
  });

  $('group-rename-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const title = $('group-rename').value.trim();
    if (!chat.open || !title) return;
    $('group-rename').value = '';
    groupOp({ type: 'group_rename', conversation: chat.open, title }, 'rename');
  });

  $('group-leave-btn').addEventListener('click', () => {
    if (chat.open && isGroup(chat.open)) groupOp({ type: 'group_leave', conversation: chat.open }, 'leave');
  });

  $('chat-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('chat-text').value;
    if (!text.trim()) return;
    $('chat-text').value = '';
    sendBody({ kind: 'text', text });
  });

  $('chat-text').addEventListener('input', () => {
    // a one-to-one chat exists from its first message; typing before that is refused
    if (!chat.open || conv(chat.open).lastSeq === 0) return;
    const now = Date.now();
    if (!$('chat-text').value) {
      if (chat.typingSentAt) send({ type: 'typing', conversation: chat.open, on: false });
      chat.typingSentAt = 0;
    } else if (now - chat.typingSentAt > TYPING_REFRESH_MS) {
      send({ type: 'typing', conversation: chat.open, on: true });
      chat.typingSentAt = now;
    }
  });

  // uploads go over HTTP with the session token; the message names the upload
  async function upload(file) {
    $('location-error').textContent = '';
    const token = localStorage.getItem('namecall.token');
    const r = await fetch('/v1/uploads', {
      method: 'POST',
      headers: { 'Content-Type': file.type || 'application/octet-stream', Authorization: `Bearer ${token}` },
      body: file,
    });
    const j = await r.json().catch(() => ({}));
    if (!r.ok) { $('location-error').textContent = `upload refused: ${j.detail || r.status}`; return; }
    const body = { kind: j.kind, upload_id: j.upload_id, mime: j.mime, size: j.size };
    if (j.thumbnail_id) body.thumbnail_id = j.thumbnail_id;
    if (j.kind === 'file' && file.name) body.name = file.name.slice(0, 255);
    sendBody(body);
  }

  $('chat-file').addEventListener('change', () => {
    const file = $('chat-file').files[0];
    $('chat-file').value = '';
    if (file && chat.open) upload(file).catch((e) => { $('location-error').textContent = `upload failed: ${e}`; });
  });

  $('location-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const lat = parseFloat($('loc-lat').value);
    const lon = parseFloat($('loc-lon').value);
    const label = $('loc-label').value.trim();
    const body = (la, lo, acc) => {
      const b = { kind: 'location', lat: la, lon: lo };
      if (acc !== undefined) b.accuracy_m = acc;
      if (label) b.label = label;
      return b;
    };
    if (Number.isFinite(lat) && Number.isFinite(lon)) {
      sendBody(body(lat, lon));
    } else if (navigator.geolocation) {
      navigator.geolocation.getCurrentPosition(
        (p) => sendBody(body(p.coords.latitude, p.coords.longitude, p.coords.accuracy)),
        (e) => { $('location-error').textContent = `location unavailable: ${e.message}`; },
        { timeout: 10000 },
      );
    } else {
      $('location-error').textContent = 'enter a latitude and longitude';
    }
  });
})();
