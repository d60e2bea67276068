// namecall Web Push add-on (docs/protocol.md, "Push notifications").
//
// After `welcome` of an account: if this browser already allowed
// notifications, it re-sends its push subscription on the new socket (each
// page load is a new chat device). The "Notify me" button asks for
// permission, subscribes with the gateway's VAPID key (GET /v1/push/vapid)
// through the service worker /sw.js, and registers the subscription with
// `push_subscribe`. The checkbox sets `push_preview`.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const app = window.namecall;
  const supported = 'serviceWorker' in navigator && 'PushManager' in window
    && 'Notification' in window;

  function send(frame) {
    if (app.ws && app.ws.readyState === WebSocket.OPEN) app.ws.send(JSON.stringify(frame));
  }

  function keyBytes(b64url) {
    const b64 = b64url.replace(/-/g, '+').replace(/_/g, '/');
    const raw = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    return Uint8Array.from(raw, (c) => c.charCodeAt(0));
  }

  function register(sub) {
    const j = sub.toJSON();
    send({ type: 'push_subscribe', endpoint: j.endpoint, p256dh: j.keys.p256dh, auth: j.keys.auth });
  }

  async function subscription(ask) {
    const reg = await navigator.serviceWorker.register('/sw.js');
    await navigator.serviceWorker.ready;
    let sub = await reg.pushManager.getSubscription();
    if (sub || !ask) return sub;
    const res = await fetch('/v1/push/vapid');
    if (!res.ok) throw new Error(`push is off on this gateway (${res.status})`);
    const { public_key: key } = await res.json();
    sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(key) });
    return sub;
  }

  function status(text) {
    const s = $('push-status');
    if (s) s.textContent = text;
  }

  async function enable() {
    try {
      if ((await Notification.requestPermission()) !== 'granted') {
        status('notifications are blocked in this browser');
        return;
      }
      const sub = await subscription(true);
      if (sub) { register(sub); status('notifications on'); }
    } catch (e) {
      status(`cannot turn notifications on: ${e.message}`);
    }
  }

  document.addEventListener('namecall:frame', (ev) => {
    const f = ev.detail;
    if (f.type !== 'welcome' || f.guest) return;
    const row = $('push-row');
    if (row) row.hidden = !supported;
    if (!supported || Notification.permission !== 'granted') return;
    subscription(false)
      .then((sub) => { if (sub) { register(sub); status('notifications on'); } })
      .catch((e) => status(`notifications: ${e.message}`));
  });

  // loaded at the end of <body>: the controls exist already
  const btn = $('push-btn');
  if (btn) btn.addEventListener('click', enable);
  const preview = $('push-preview');
  if (preview) {
    preview.addEventListener('change', () => send({ type: 'push_preview', on: preview.checked }));
  }
})();
