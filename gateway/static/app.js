// namecall web client: plain JS, no build step.
//
// Speaks the /v1/ws JSON protocol (docs/protocol.md): hello -> welcome,
// call {id,to,sdp} -> answer {sdp} and trickled ice both ways (media connects
// while the callee rings), ringing, accepted (the callee picked up), hold,
// dtmf, hangup -> ended. Works in Chromium and Firefox.
//
// The STUN/TURN servers of `welcome` (`ice_servers`, TURN ones with fresh
// credentials) go to every RTCPeerConnection.
//
// `?ice=loopback` drops every non-loopback ICE candidate (used by the
// browser test so that only 127.0.0.1 is ever tried); `?ice=relay` does the
// same and also sets `iceTransportPolicy: 'relay'`, so media must go through
// the TURN server (a test-only option: the product default uses every path).
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const iceParam = new URLSearchParams(location.search).get('ice');
  const loopbackOnly = iceParam === 'loopback' || iceParam === 'relay';
  const relayOnly = iceParam === 'relay';
  // names suggested before the session is open (the directory answers after)
  const KNOWN_NAMES = ['echo'];

  const app = {
    ws: null,
    login: null,
    pc: null,
    stream: null,
    callId: null,
    muted: false,
    state: 'idle',
    pendingRemoteIce: [],
    iceServers: [], // from welcome: RTCIceServer dictionaries
    incoming: null, // a ringing call from a desk phone
    accepted: false, // the callee picked up
    mediaUp: false, // ICE and DTLS are connected
    held: false,
  };

  // what the caller reads when a call ends (reason tokens of docs/protocol.md)
  const ENDED_TEXT = {
    'hangup': 'Call ended',
    'remote-hangup': 'The other side hung up',
    'remote-closed': 'Call ended',
    'busy': 'Busy: the line is engaged, try again later',
    'unavailable': 'Not available right now',
    'not-found': 'Nobody answers to that name',
    'no-answer': 'No answer',
    'declined': 'The call was declined',
    'cancelled': 'Call cancelled',
    'login-required': 'Sign in with an account to call this name',
    'not-acceptable': 'The call could not agree on audio',
    'unreachable': 'The company\'s phone system cannot be reached',
    'ice-failed': 'Media could not connect',
    'lost': 'The connection was lost',
    'media-error': 'Media failure',
    'failed': 'The call failed',
    'declined-here': 'Call declined',
    'answered-elsewhere': 'Answered on another device',
  };
  window.namecall = app; // for tests and the console

  function log(text) {
    const li = document.createElement('li');
    li.textContent = `${new Date().toLocaleTimeString()} ${text}`;
    $('log').prepend(li);
  }

  function setState(state, detail = '') {
    app.state = state;
    $('call-state').textContent = state;
    $('call-state').dataset.state = state;
    $('call-detail').textContent = detail;
    const inCall = !['idle', 'ended'].includes(state);
    $('call-btn').disabled = inCall;
    $('hangup-btn').disabled = !inCall;
    $('mute-btn').disabled = !inCall;
    for (const b of $('keypad').querySelectorAll('button')) b.disabled = !['connected', 'on-hold'].includes(state);
  }

  function send(frame) {
    if (app.ws && app.ws.readyState === WebSocket.OPEN) app.ws.send(JSON.stringify(frame));
  }

  function isLoopbackCandidate(line) {
    // candidate:<foundation> <component> <proto> <priority> <address> <port> typ ...
    const f = line.replace(/^a=/, '').split(' ');
    return f[4] === '127.0.0.1' || f[4] === '::1';
  }

  function filterSdp(sdp) {
    if (!loopbackOnly) return sdp;
    return sdp.split('\r\n').filter((l) => !l.startsWith('a=candidate:') || isLoopbackCandidate(l)).join('\r\n');
  }

  // ---- session ------------------------------------------------------------

  // an account session survives page reloads through its token (never for guests)
  const TOKEN_KEY = 'namecall.token';

  function connect(login, password, register, token) {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/v1/ws`;
    const ws = new WebSocket(url);
    app.ws = ws;
    ws.onopen = () => {
      if (token) send({ type: 'resume', token });
      else if (register) send({ type: 'register', login, password });
      else send(password ? { type: 'auth', login, password } : { type: 'hello', login });
    };
    ws.onmessage = (ev) => {
      let frame;
      try { frame = JSON.parse(ev.data); } catch { log('bad frame from server'); return; }
      onFrame(frame);
    };
    ws.onclose = () => {
      log('disconnected');
      if (app.callId) endCall('disconnected', 0);
      $('login-panel').hidden = false;
      $('call-panel').hidden = true;
      $('logout-btn').hidden = true;
      $('whoami').textContent = '';
      document.dispatchEvent(new CustomEvent('namecall:closed'));
    };
  }

  function onFrame(f) {
    // chat.js (and other add-ons) see every frame first and cancel the ones they own
    const ev = new CustomEvent('namecall:frame', { detail: f, cancelable: true });
    if (!document.dispatchEvent(ev)) return;
    switch (f.type) {
      case 'welcome':
        app.login = f.login;
        app.guest = f.guest;
        app.iceServers = Array.isArray(f.ice_servers) ? f.ice_servers : [];
        if (f.token) localStorage.setItem(TOKEN_KEY, f.token);
        $('whoami').textContent = `${f.login}${f.guest ? ' (guest)' : ''}`;
        $('logout-btn').hidden = false;
        $('login-panel').hidden = true;
        $('call-panel').hidden = false;
        log(`signed in as ${f.login}`);
        break;
      case 'logged_out':
        localStorage.removeItem(TOKEN_KEY);
        app.ws.close();
        break;
      case 'results':
        if (f.query === $('search').value.trim()) showResults(f.hits || []);
        break;
      case 'ringing':
        if (f.id !== app.callId || app.accepted) return;
        setState('ringing', f.early ? 'the company plays a message' : 'the callee is being alerted');
        // without the PBX's own early media, play a ringback tone here
        if (f.early) stopRingback(); else startRingback();
        break;
      case 'accepted':
        if (f.id !== app.callId) return;
        stopRingback();
        app.accepted = true;
        if (app.mediaUp) setState('connected');
        else setState('answered', 'connecting media');
        break;
      case 'hold':
        if (f.id !== app.callId) return;
        app.held = f.on;
        if (f.on) setState('on-hold', 'the other side put you on hold');
        else if (app.mediaUp) setState('connected');
        break;
      case 'answer':
        if (f.id !== app.callId || !app.pc) return;
        app.pc.setRemoteDescription({ type: 'answer', sdp: f.sdp })
          .then(async () => {
            for (const c of app.pendingRemoteIce.splice(0)) await addRemoteIce(c);
          })
          .catch((e) => { log(`cannot apply answer: ${e}`); hangup(); });
        break;
      case 'ice':
        if (f.id !== app.callId || !app.pc) return;
        if (app.pc.remoteDescription) addRemoteIce(f.candidate);
        else app.pendingRemoteIce.push(f.candidate);
        break;
      case 'incoming':
        showIncoming(f);
        break;
      case 'ended':
        if (app.incoming && f.id === app.incoming.id) {
          log(`missed call from ${app.incoming.from} (${f.reason})`);
          hideIncoming();
        }
        if (f.id === app.callId) endCall(f.reason, f.code);
        break;
      case 'error':
        log(`error ${f.code}: ${f.message}${f.ref ? ` (${f.ref})` : ''}`);
        if (f.ref === 'resume') localStorage.removeItem(TOKEN_KEY); // expired or revoked
        $('login-error').textContent = ['auth-failed', 'register-failed'].includes(f.code) ? f.message : '';
        break;
      default:
        log(`unknown frame ${f.type}`);
    }
  }

  async function addRemoteIce(candidate) {
    try {
      if (candidate) await app.pc.addIceCandidate({ candidate, sdpMLineIndex: 0 });
      else await app.pc.addIceCandidate({ candidate: '', sdpMLineIndex: 0 });
    } catch (e) {
      log(`remote candidate refused: ${e}`);
    }
  }

  // ---- calls --------------------------------------------------------------

  async function call(to) {
    const id = `c${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;
    setState('calling', to);
    // video passes through to companies whose trunk allows it; otherwise the call is audio only
    const sdp = await startPeer(id, $('video-call').checked);
    // trickle: send the offer at once, candidates follow as `ice` frames
    if (sdp) send({ type: 'call', id, to, sdp });
  }

  // a desk phone calls us: ring until the user answers or declines
  function showIncoming(f) {
    if (app.callId) { send({ type: 'decline', id: f.id }); return; } // busy on this device
    app.incoming = f;
    $('incoming-from').textContent = f.video ? `${f.from} (video)` : f.from;
    $('incoming-from').title = f.from_uri;
    $('incoming').hidden = false;
    log(`incoming call from ${f.from}`);
  }

  function hideIncoming() {
    app.incoming = null;
    $('incoming').hidden = true;
  }

  async function answerIncoming() {
    const f = app.incoming;
    if (!f) return;
    hideIncoming();
    setState('answering', f.from);
    // a desk phone with a camera: answer with ours when the Video box is ticked
    const sdp = await startPeer(f.id, !!f.video && $('video-call').checked);
    if (sdp) send({ type: 'accept', id: f.id, sdp });
  }

  function declineIncoming() {
    if (!app.incoming) return;
    send({ type: 'decline', id: app.incoming.id });
    hideIncoming();
  }

  // microphone (and camera for a video call), peer connection and offer for call `id`;
  // returns the offer SDP
  async function startPeer(id, video = false) {
    app.callId = id;
    app.accepted = false;
    app.mediaUp = false;
    app.held = false;
    delete $('call-state').dataset.reason;
    try {
      app.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video });
    } catch (e) {
      log(`microphone: ${e}`);
      endCall('no-microphone', 0);
      return null;
    }
    const config = { iceServers: app.iceServers };
    if (relayOnly) config.iceTransportPolicy = 'relay';
    const pc = new RTCPeerConnection(config);
    app.pc = pc;
    for (const t of app.stream.getAudioTracks()) pc.addTrack(t, app.stream);
    for (const t of app.stream.getVideoTracks()) pc.addTrack(t, app.stream);
    if (video) {
      $('local-video').srcObject = new MediaStream(app.stream.getVideoTracks());
      $('videos').hidden = false;
    }
    pc.ontrack = (ev) => {
      // a remote track is only played (and only has audio-level stats) once rendered
      const el = $(ev.track.kind === 'video' ? 'remote-video' : 'remote-audio');
      el.srcObject = new MediaStream([ev.track]);
      el.play().catch((e) => log(`play: ${e}`));
    };
    pc.onicecandidate = (ev) => {
      if (app.callId !== id) return;
      if (ev.candidate && ev.candidate.candidate) {
        if (loopbackOnly && !isLoopbackCandidate(ev.candidate.candidate)) return;
        send({ type: 'ice', id, candidate: ev.candidate.candidate });
      } else if (!ev.candidate) {
        send({ type: 'ice', id, candidate: '' });
      }
    };
    pc.onconnectionstatechange = () => {
      log(`media ${pc.connectionState}`);
      if (app.callId !== id) return;
      if (pc.connectionState === 'connected') {
        app.mediaUp = true;
        if (app.accepted && !app.held) setState('connected');
      }
      if (pc.connectionState === 'failed') hangup();
    };
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    return filterSdp(pc.localDescription.sdp);
  }

  function hangup() {
    if (!app.callId) return;
    send({ type: 'hangup', id: app.callId });
    setState('hanging-up');
  }

  // ringback: 425 Hz, 1 s on, 4 s off (ITU-T E.180 common European tone)
  function startRingback() {
    if (app.ringback) return;
    try {
      const ctx = new AudioContext();
      const gain = ctx.createGain();
      gain.gain.value = 0;
      const osc = ctx.createOscillator();
      osc.frequency.value = 425;
      osc.connect(gain).connect(ctx.destination);
      osc.start();
      const t0 = ctx.currentTime;
      for (let i = 0; i < 60; i++) {
        gain.gain.setValueAtTime(0.08, t0 + i * 5);
        gain.gain.setValueAtTime(0, t0 + i * 5 + 1);
      }
      app.ringback = ctx;
    } catch (e) {
      log(`ringback: ${e}`);
    }
  }

  function stopRingback() {
    if (app.ringback) app.ringback.close().catch(() => {});
    app.ringback = null;
  }

  function endCall(reason, code) {
    stopRingback();
    log(`call ended: ${reason}${code ? ` (${code})` : ''}`);
    if (app.pc) app.pc.close();
    if (app.stream) for (const t of app.stream.getTracks()) t.stop();
    for (const v of ['remote-video', 'local-video']) $(v).srcObject = null;
    $('videos').hidden = true;
    app.pc = null;
    app.stream = null;
    app.callId = null;
    app.pendingRemoteIce = [];
    app.accepted = false;
    app.mediaUp = false;
    app.held = false;
    app.muted = false;
    $('mute-btn').setAttribute('aria-pressed', 'false');
    $('mute-btn').textContent = 'Mute';
    $('remote-audio').srcObject = null;
    setState('ended', `${ENDED_TEXT[reason] || reason}${code ? ` (${code})` : ''}`);
    $('call-state').dataset.reason = reason;
  }

  function toggleMute() {
    if (!app.stream) return;
    app.muted = !app.muted;
    for (const t of app.stream.getAudioTracks()) t.enabled = !app.muted;
    $('mute-btn').setAttribute('aria-pressed', String(app.muted));
    $('mute-btn').textContent = app.muted ? 'Unmute' : 'Mute';
  }

  function dtmf(digit) {
    if (!app.callId) return;
    send({ type: 'dtmf', id: app.callId, digits: digit });
    log(`dtmf ${digit}`);
  }

  // ---- wiring -------------------------------------------------------------

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    connect($('login-name').value.trim(), $('login-password').value);
  });
  $('register-btn').addEventListener('click', () => {
    if (!$('login-form').reportValidity()) return;
    if ($('login-password').value.length < 8) { log('choose a password of at least 8 characters'); return; }
    connect($('login-name').value.trim(), $('login-password').value, true);
  });
  $('call-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const to = $('callee').value.trim();
    if (to) call(to).catch((e) => { log(`call failed: ${e}`); endCall('error', 0); });
  });
  $('hangup-btn').addEventListener('click', hangup);
  $('answer-btn').addEventListener('click', () => answerIncoming().catch((e) => { log(`answer failed: ${e}`); endCall('error', 0); }));
  $('decline-btn').addEventListener('click', declineIncoming);
  $('logout-btn').addEventListener('click', () => {
    if (app.guest) { app.ws.close(); return; }
    send({ type: 'logout' });
  });
  $('mute-btn').addEventListener('click', toggleMute);
  function showResults(hits) {
    const ul = $('search-results');
    ul.replaceChildren();
    for (const h of hits) {
      const li = document.createElement('li');
      li.textContent = h.display_name && h.display_name !== h.name ? `${h.name} — ${h.display_name}` : h.name;
      li.addEventListener('click', () => { $('callee').value = h.name; ul.replaceChildren(); });
      if (['user', 'tenant', 'subname'].includes(h.kind)) {
        // chat.js opens the thread (a company's goes out as SIP MESSAGE)
        const b = document.createElement('button');
        b.type = 'button';
        b.className = 'secondary chat-hit';
        b.textContent = 'Chat';
        b.addEventListener('click', (ev) => {
          ev.stopPropagation();
          ul.replaceChildren();
          document.dispatchEvent(new CustomEvent('namecall:chat', { detail: h }));
        });
        li.append(' ', b);
      }
      ul.append(li);
    }
  }
  $('search').addEventListener('input', () => {
    const q = $('search').value.trim();
    if (!q) { $('search-results').replaceChildren(); return; }
    // the directory answers with a `results` frame (exact, prefix, then typo-tolerant)
    if (app.ws && app.ws.readyState === WebSocket.OPEN) send({ type: 'search', query: q });
    else showResults(KNOWN_NAMES.filter((n) => n.includes(q.toLowerCase())).map((name) => ({ name })));
  });
  for (const d of ['1', '2', '3', '4', '5', '6', '7', '8', '9', '*', '0', '#']) {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'secondary';
    b.textContent = d;
    b.addEventListener('click', () => dtmf(d));
    $('keypad').append(b);
  }
  setState('idle');
  const saved = localStorage.getItem(TOKEN_KEY);
  if (saved) connect(null, null, false, saved);
})();
