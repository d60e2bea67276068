// namecall service worker: shows a notification for each Web Push the
// gateway sends while this browser's chat socket is closed
// (docs/protocol.md, "Push notifications"). The payload is
// {conversation, seq, sender[, preview]}; the page syncs the message itself.
'use strict';

self.addEventListener('push', (event) => {
  let n = {};
  try { n = event.data ? event.data.json() : {}; } catch (_) { n = {}; }
  const title = n.sender ? `New message from ${n.sender}` : 'New message';
  const options = {
    body: n.preview || 'Open namecall to read it.',
    tag: n.conversation || 'namecall',
    renotify: true,
    data: { conversation: n.conversation, seq: n.seq },
  };
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  event.waitUntil((async () => {
    const tabs = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
    for (const t of tabs) {
      if ('focus' in t) return t.focus();
    }
    return self.clients.openWindow('/');
  })());
});
