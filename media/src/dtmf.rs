//! DTMF: RFC 4733 telephone-event packets, the rewriter that carries them from one leg to
//! the other, an in-band tone generator (ITU-T Q.23 pairs) for a leg that did not
//! negotiate telephone-event, and a Goertzel detector for the reverse direction.
//!
//! The rewriter exists because the browser sends events on a 48 kHz clock while the PBX
//! leg runs at 8 kHz: timestamps and durations must both be rescaled, the payload type
//! replaced, each press must come out as exactly one event (start with marker, updates,
//! three end packets) no matter how many retransmitted end packets came in.

use thiserror::Error;

/// Why a telephone-event payload was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DtmfError {
    /// Fewer than the 4 bytes of an event.
    #[error("telephone-event payload too short ({0} bytes)")]
    Truncated(usize),
    /// A character that is no DTMF key.
    #[error("not a DTMF key: {0:?}")]
    NotAKey(char),
    /// A SIP INFO body that carries no DTMF key (unknown content type, no `Signal=`).
    #[error("no DTMF key in SIP INFO body ({0})")]
    BadInfoBody(String),
}

/// One RFC 4733 event block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfEvent {
    /// Event code (0-9, 10 = `*`, 11 = `#`, 12-15 = A-D).
    pub event: u8,
    /// End bit.
    pub end: bool,
    /// Volume in -dBm0 (0..=63).
    pub volume: u8,
    /// Duration so far in RTP clock units.
    pub duration: u16,
}

impl DtmfEvent {
    /// Parses the first event block of a payload (RFC 4733 2.3).
    ///
    /// # Errors
    /// [`DtmfError::Truncated`] for payloads shorter than 4 bytes.
    pub fn parse(payload: &[u8]) -> Result<Self, DtmfError> {
        if payload.len() < 4 {
            return Err(DtmfError::Truncated(payload.len()));
        }
        Ok(Self {
            event: payload[0],
            end: payload[1] & 0x80 != 0,
            volume: payload[1] & 0x3f,
            duration: u16::from_be_bytes([payload[2], payload[3]]),
        })
    }

    /// The 4-byte wire form.
    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3f),
            d[0],
            d[1],
        ]
    }

    /// The keypad character for a DTMF event code.
    pub fn digit(self) -> Option<char> {
        event_to_digit(self.event)
    }
}

/// Maps an event code 0..=15 to its keypad character.
pub fn event_to_digit(event: u8) -> Option<char> {
    b"0123456789*#ABCD"
        .get(usize::from(event))
        .map(|&b| b as char)
}

/// Maps a keypad character to its event code.
pub fn digit_to_event(digit: char) -> Option<u8> {
    b"0123456789*#ABCD"
        .iter()
        .position(|&b| b as char == digit.to_ascii_uppercase())
        .map(|p| p as u8)
}

/// One key press carried in a SIP INFO request: the fallback for PBXs that neither
/// negotiate telephone-event nor detect in-band tones. Two bodies exist in the wild:
/// `application/dtmf-relay` (`Signal=5\r\nDuration=160\r\n`, Cisco, Asterisk,
/// FreeSWITCH) and `application/dtmf` (the key alone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoDtmf {
    /// The keypad character (`0`-`9`, `*`, `#`, `A`-`D`).
    pub digit: char,
    /// How long the key was held, in ms.
    pub duration_ms: u32,
}

impl InfoDtmf {
    /// Content type of the `Signal=`/`Duration=` body.
    pub const DTMF_RELAY: &'static str = "application/dtmf-relay";
    /// Content type of the bare-key body.
    pub const DTMF: &'static str = "application/dtmf";
    /// Duration assumed when a body gives none.
    pub const DEFAULT_DURATION_MS: u32 = 250;

    /// A press of `digit` held for `duration_ms`.
    ///
    /// # Errors
    /// [`DtmfError::NotAKey`] when `digit` is no DTMF key.
    pub fn new(digit: char, duration_ms: u32) -> Result<Self, DtmfError> {
        let event = digit_to_event(digit).ok_or(DtmfError::NotAKey(digit))?;
        let digit = event_to_digit(event).ok_or(DtmfError::NotAKey(digit))?;
        Ok(Self { digit, duration_ms })
    }

    /// Parses an INFO body by its content type (parameters such as `;charset` ignored).
    /// Keys are case-insensitive, whitespace and LF-only line ends are tolerated, and
    /// `Signal=10`/`11` (event codes) mean `*`/`#` as some phones send them.
    ///
    /// # Errors
    /// [`DtmfError::BadInfoBody`] for other content types or a body without a key,
    /// [`DtmfError::NotAKey`] for a signal that is no DTMF key.
    pub fn parse(content_type: &str, body: &[u8]) -> Result<Self, DtmfError> {
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        let text = std::str::from_utf8(body)
            .map_err(|_| DtmfError::BadInfoBody("body is not UTF-8".into()))?;
        if ct == Self::DTMF {
            let key = text.trim();
            let mut chars = key.chars();
            return match (chars.next(), chars.next()) {
                (Some(c), None) => Self::new(c, Self::DEFAULT_DURATION_MS),
                _ => Self::signal(key, Self::DEFAULT_DURATION_MS),
            };
        }
        if ct != Self::DTMF_RELAY {
            return Err(DtmfError::BadInfoBody(format!("content type {ct}")));
        }
        let mut signal = None;
        let mut duration = Self::DEFAULT_DURATION_MS;
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "signal" => signal = Some(v),
                "duration" => {
                    // A bad duration is not worth losing the digit over.
                    duration = v.parse().unwrap_or(Self::DEFAULT_DURATION_MS);
                }
                _ => {}
            }
        }
        let signal = signal.ok_or_else(|| DtmfError::BadInfoBody("no Signal= line".into()))?;
        Self::signal(signal, duration)
    }

    fn signal(v: &str, duration_ms: u32) -> Result<Self, DtmfError> {
        let mut chars = v.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => Self::new(c, duration_ms),
            (Some(_), Some(_)) => match v.parse::<u8>().ok().and_then(event_to_digit) {
                Some(d) => Self::new(d, duration_ms),
                None => Err(DtmfError::BadInfoBody(format!("signal {v:?}"))),
            },
            _ => Err(DtmfError::BadInfoBody("empty signal".into())),
        }
    }

    /// The `application/dtmf-relay` body for this press.
    pub fn to_dtmf_relay(&self) -> String {
        format!("Signal={}\r\nDuration={}\r\n", self.digit, self.duration_ms)
    }

    /// The RFC 4733 event code of the key.
    pub fn event(&self) -> u8 {
        digit_to_event(self.digit).unwrap_or(0)
    }
}

/// A telephone-event packet for the outgoing leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// Marker bit (set on the first packet of an event).
    pub marker: bool,
    /// Payload type on the outgoing leg.
    pub payload_type: u8,
    /// Event timestamp in the outgoing clock (constant for one event).
    pub timestamp: u32,
    /// The event block.
    pub event: DtmfEvent,
}

/// What the rewriter produced for one incoming packet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rewritten {
    /// Packets to send on the outgoing leg, in order.
    pub packets: Vec<DtmfPacket>,
    /// Set once per press, on its first packet: the digit pressed.
    pub digit: Option<char>,
}

/// Carries telephone-events across legs with PT and clock rewritten. See the module docs.
#[derive(Debug, Clone)]
pub struct DtmfRewriter {
    out_pt: u8,
    in_clock: u32,
    out_clock: u32,
    /// Incoming event timestamp of the event in progress and its outgoing timestamp.
    current: Option<(u32, u32)>,
    /// Incoming timestamp of the last event whose end we already forwarded.
    ended: Option<u32>,
    /// Outgoing base for events when the caller does not give an outgoing timestamp.
    base: Option<(u32, u32)>,
}

impl DtmfRewriter {
    /// Creates a rewriter from `in_clock` Hz to `out_clock` Hz with outgoing PT `out_pt`.
    pub fn new(out_pt: u8, in_clock: u32, out_clock: u32) -> Self {
        Self {
            out_pt,
            in_clock: in_clock.max(1),
            out_clock: out_clock.max(1),
            current: None,
            ended: None,
            base: None,
        }
    }

    fn scale(&self, v: u64) -> u64 {
        v * u64::from(self.out_clock) / u64::from(self.in_clock)
    }

    /// Rewrites one incoming telephone-event packet. `out_ts` is the outgoing leg's current
    /// media timestamp, used as the event timestamp when a new event starts; with `None` the
    /// incoming timestamp is rescaled relative to the first event seen.
    ///
    /// # Errors
    /// [`DtmfError`] for a malformed payload.
    pub fn push(
        &mut self,
        in_ts: u32,
        payload: &[u8],
        out_ts: Option<u32>,
    ) -> Result<Rewritten, DtmfError> {
        let ev = DtmfEvent::parse(payload)?;
        let mut res = Rewritten::default();
        if self.ended == Some(in_ts) {
            // Retransmitted end packets of an event already finished.
            return Ok(res);
        }
        let start = self.current.is_none_or(|(ts, _)| ts != in_ts);
        if start {
            let ots = match out_ts {
                Some(t) => t,
                None => {
                    let (ib, ob) = *self
                        .base
                        .get_or_insert((in_ts, self.scale(u64::from(in_ts)) as u32));
                    ob.wrapping_add(self.scale(u64::from(in_ts.wrapping_sub(ib))) as u32)
                }
            };
            self.current = Some((in_ts, ots));
            res.digit = ev.digit();
        }
        let (_, ots) = self.current.unwrap_or((in_ts, 0));
        let out_ev = DtmfEvent {
            duration: self.scale(u64::from(ev.duration)).min(u64::from(u16::MAX)) as u16,
            ..ev
        };
        let pkt = DtmfPacket {
            marker: start,
            payload_type: self.out_pt,
            timestamp: ots,
            event: out_ev,
        };
        if ev.end {
            // RFC 4733 2.5.1.4: the end packet is sent three times.
            res.packets.extend([
                pkt,
                DtmfPacket {
                    marker: false,
                    ..pkt
                },
                DtmfPacket {
                    marker: false,
                    ..pkt
                },
            ]);
            self.ended = Some(in_ts);
            self.current = None;
        } else {
            res.packets.push(pkt);
        }
        Ok(res)
    }
}

/// Q.23 frequency pair (low, high) of a DTMF event code.
pub fn tone_pair(event: u8) -> Option<(f32, f32)> {
    const LOW: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const HIGH: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    // Keypad layout: rows 123A, 456B, 789C, *0#D.
    let (r, c) = match event {
        1..=3 => (0, event - 1),
        4..=6 => (1, event - 4),
        7..=9 => (2, event - 7),
        10 => (3, 0),
        0 => (3, 1),
        11 => (3, 2),
        12..=15 => (usize::from(event - 12) as u8, 3),
        _ => return None,
    };
    Some((LOW[usize::from(r)], HIGH[usize::from(c)]))
}

/// Phase-continuous in-band DTMF generator for a leg without telephone-event.
#[derive(Debug, Clone)]
pub struct ToneGenerator {
    rate: f32,
    freqs: Option<(f32, f32)>,
    phase: (f32, f32),
    remaining: usize,
}

/// Amplitude of each of the two tones (about -7 dBm0 each after G.711).
const TONE_AMPLITUDE: f32 = 7000.0;

impl ToneGenerator {
    /// Creates an idle generator at `sample_rate` Hz.
    pub fn new(sample_rate: u32) -> Self {
        Self {
            rate: sample_rate as f32,
            freqs: None,
            phase: (0.0, 0.0),
            remaining: 0,
        }
    }

    /// Starts a tone for `event` lasting `samples`; unknown events are ignored (returns false).
    pub fn start(&mut self, event: u8, samples: usize) -> bool {
        match tone_pair(event) {
            Some(p) => {
                self.freqs = Some(p);
                self.phase = (0.0, 0.0);
                self.remaining = samples;
                true
            }
            None => false,
        }
    }

    /// Stops the tone now (on an RFC 4733 end).
    pub fn stop(&mut self) {
        self.remaining = 0;
    }

    /// True while a tone is playing.
    pub fn is_active(&self) -> bool {
        self.remaining > 0 && self.freqs.is_some()
    }

    /// Overwrites the start of `frame` with tone while it lasts; returns samples written.
    pub fn fill(&mut self, frame: &mut [i16]) -> usize {
        let Some((fl, fh)) = self.freqs else { return 0 };
        let n = frame.len().min(self.remaining);
        let (dl, dh) = (
            std::f32::consts::TAU * fl / self.rate,
            std::f32::consts::TAU * fh / self.rate,
        );
        for s in &mut frame[..n] {
            *s = (TONE_AMPLITUDE * (self.phase.0.sin() + self.phase.1.sin())) as i16;
            self.phase.0 = (self.phase.0 + dl) % std::f32::consts::TAU;
            self.phase.1 = (self.phase.1 + dh) % std::f32::consts::TAU;
        }
        self.remaining -= n;
        n
    }
}

/// The DTMF row (low group) and column (high group) frequencies, Hz.
const DTMF_FREQS: [f32; 8] = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];

/// Goertzel DTMF detector: reports each key press once.
///
/// It runs on every frame from a PBX without telephone-event, so it is written to be
/// cheap: a block quieter than the detection floor skips the filters, and the eight
/// Goertzel filters run side by side in one pass (independent lanes the compiler
/// vectorises) with their coefficients computed once.
#[derive(Debug, Clone)]
pub struct ToneDetector {
    /// `2 cos(2π f / rate)` of each of [`DTMF_FREQS`].
    coef: [f32; 8],
    block: usize,
    buf: Vec<f32>,
    last: Option<u8>,
    /// Consecutive blocks agreeing on `last` (or on silence).
    agree: u32,
    reported: Option<u8>,
}

impl ToneDetector {
    /// Creates a detector for PCM at `sample_rate` Hz (blocks of ~12.75 ms).
    pub fn new(sample_rate: u32) -> Self {
        let rate = sample_rate as f32;
        Self {
            coef: DTMF_FREQS.map(|f| 2.0 * (std::f32::consts::TAU * f / rate).cos()),
            block: (sample_rate as usize * 102 / 8000).max(32),
            buf: Vec::new(),
            last: None,
            agree: 0,
            reported: None,
        }
    }

    /// Goertzel power at each of [`DTMF_FREQS`] over the block.
    fn powers(&self) -> [f32; 8] {
        let c = self.coef;
        let (mut s1, mut s2) = ([0.0f32; 8], [0.0f32; 8]);
        for &x in &self.buf {
            for k in 0..8 {
                let s = x + c[k] * s1[k] - s2[k];
                s2[k] = s1[k];
                s1[k] = s;
            }
        }
        std::array::from_fn(|k| s1[k] * s1[k] + s2[k] * s2[k] - c[k] * s1[k] * s2[k])
    }

    fn classify(&self) -> Option<u8> {
        let energy: f32 = self.buf.iter().map(|x| x * x).sum();
        let n = self.buf.len() as f32;
        if energy < n * 100.0 * 100.0 {
            return None;
        }
        let p = self.powers();
        let (lp, hp) = p.split_at(4);
        let best = |p: &[f32]| {
            let mut i = 0;
            for j in 1..p.len() {
                if p[j] > p[i] {
                    i = j;
                }
            }
            i
        };
        let (li, hi) = (best(lp), best(hp));
        // A pure tone of amplitude A gives Goertzel power ~ (A*N/2)^2 and energy N*A^2/2,
        // so power/(energy*N/2) ~ 1 for each tone; require both tones to carry the signal.
        let norm = energy * n / 2.0;
        if lp[li] + hp[hi] < 0.6 * norm {
            return None;
        }
        // Twist within 8 dB, and each winner 6 dB above the rest of its group.
        let twist = lp[li] / hp[hi].max(1e-9);
        if !(0.16..=6.3).contains(&twist) {
            return None;
        }
        let others_ok =
            |p: &[f32], k: usize| p.iter().enumerate().all(|(j, &v)| j == k || v * 4.0 < p[k]);
        if !others_ok(lp, li) || !others_ok(hp, hi) {
            return None;
        }
        const MAP: [[u8; 4]; 4] = [[1, 2, 3, 12], [4, 5, 6, 13], [7, 8, 9, 14], [10, 0, 11, 15]];
        Some(MAP[li][hi])
    }

    /// Feeds PCM; returns the digits whose key-down was confirmed in this call.
    pub fn feed(&mut self, pcm: &[i16]) -> Vec<char> {
        let mut out = Vec::new();
        for &s in pcm {
            self.buf.push(f32::from(s));
            if self.buf.len() == self.block {
                let d = self.classify();
                self.buf.clear();
                if d == self.last {
                    self.agree += 1;
                } else {
                    self.last = d;
                    self.agree = 1;
                }
                // Two agreeing blocks (~25 ms) confirm a key-down or a release.
                if self.agree == 2 {
                    if let Some(e) = d
                        && self.reported != Some(e)
                    {
                        out.extend(event_to_digit(e));
                    }
                    self.reported = d;
                }
            }
        }
        out
    }
}

/// Plays digits typed on a keypad (not carried in RTP) as RFC 4733 telephone-events.
///
/// The output imitates what a browser sends: on a given clock, one event per digit with
/// an update every 20 ms for [`DigitPlayer::TONE`], then the end packet, then a pause of
/// [`DigitPlayer::GAP`] before the next digit. Feed each `(timestamp, payload)` to the
/// bridge as if the browser had sent it, so the rewriter (or the in-band tone generator)
/// does the rest. Sans-IO: [`DigitPlayer::poll`] hands out what is due at `now`.
#[derive(Debug, Clone)]
pub struct DigitPlayer {
    clock: u32,
    queue: std::collections::VecDeque<u8>,
    /// The event being played: code, start instant, event timestamp, updates sent.
    current: Option<(u8, std::time::Instant, u32, u32)>,
    /// The next event's timestamp.
    next_ts: u32,
    /// No new digit starts before this instant.
    idle_until: Option<std::time::Instant>,
}

impl DigitPlayer {
    /// How long each digit sounds.
    pub const TONE: std::time::Duration = std::time::Duration::from_millis(100);
    /// Silence between two digits.
    pub const GAP: std::time::Duration = std::time::Duration::from_millis(60);
    const STEP: std::time::Duration = std::time::Duration::from_millis(20);

    /// A player on an RTP clock of `clock` Hz whose first event is stamped `first_ts`.
    pub fn new(clock: u32, first_ts: u32) -> Self {
        Self {
            clock: clock.max(1),
            queue: std::collections::VecDeque::new(),
            current: None,
            next_ts: first_ts,
            idle_until: None,
        }
    }

    /// Queues `digits`; characters that are not DTMF keys are refused (nothing is queued).
    ///
    /// # Errors
    /// [`DtmfError::NotAKey`] naming the first bad character.
    pub fn push(&mut self, digits: &str) -> Result<(), DtmfError> {
        let events = digits
            .chars()
            .map(|c| digit_to_event(c).ok_or(DtmfError::NotAKey(c)))
            .collect::<Result<Vec<_>, _>>()?;
        self.queue.extend(events);
        Ok(())
    }

    /// True while digits are queued or sounding.
    pub fn is_busy(&self) -> bool {
        self.current.is_some() || !self.queue.is_empty()
    }

    /// The next telephone-event packet due at `now`, as `(event timestamp, payload)`.
    pub fn poll(&mut self, now: std::time::Instant) -> Option<(u32, [u8; 4])> {
        if self.current.is_none() {
            if self.idle_until.is_some_and(|t| now < t) {
                return None;
            }
            let event = self.queue.pop_front()?;
            let ts = self.next_ts;
            self.current = Some((event, now, ts, 0));
        }
        let (event, start, ts, sent) = self.current?;
        let due = start + Self::STEP * sent;
        if now < due {
            return None;
        }
        let tone_steps = (Self::TONE.as_millis() / Self::STEP.as_millis()) as u32;
        let end = sent >= tone_steps;
        let elapsed = Self::STEP * sent.min(tone_steps);
        let duration = (elapsed.as_micros() as u64 * u64::from(self.clock) / 1_000_000)
            .min(u64::from(u16::MAX)) as u16;
        let ev = DtmfEvent {
            event,
            end,
            volume: 10,
            duration,
        };
        if end {
            self.current = None;
            self.idle_until = Some(now + Self::GAP);
            // the next event starts after this one's tone and the gap, on the same clock
            let span =
                (Self::TONE + Self::GAP).as_micros() as u64 * u64::from(self.clock) / 1_000_000;
            self.next_ts = ts.wrapping_add(span as u32);
        } else {
            self.current = Some((event, start, ts, sent + 1));
        }
        Some((ts, ev.to_bytes()))
    }

    /// When [`DigitPlayer::poll`] next has something, if anything is queued.
    pub fn poll_timeout(&self) -> Option<std::time::Instant> {
        match self.current {
            Some((_, start, _, sent)) => Some(start + Self::STEP * sent),
            None if self.queue.is_empty() => None,
            None => Some(self.idle_until.unwrap_or_else(std::time::Instant::now)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g711;

    #[test]
    fn sip_info_bodies_parse_and_format() {
        let d = InfoDtmf::parse("application/dtmf-relay", b"Signal=5\r\nDuration=160\r\n")
            .expect("cisco body");
        assert_eq!((d.digit, d.duration_ms, d.event()), ('5', 160, 5));
        assert_eq!(d.to_dtmf_relay(), "Signal=5\r\nDuration=160\r\n");
        let d = InfoDtmf::parse(
            "Application/DTMF-Relay; charset=x",
            b"signal = #\nduration= 90",
        )
        .expect("loose body");
        assert_eq!((d.digit, d.duration_ms), ('#', 90));
        let d = InfoDtmf::parse("application/dtmf-relay", b"Signal=10\r\n").expect("code");
        assert_eq!(
            (d.digit, d.duration_ms),
            ('*', InfoDtmf::DEFAULT_DURATION_MS)
        );
        let d = InfoDtmf::parse("application/dtmf", b" b\r\n").expect("bare key");
        assert_eq!(d.digit, 'B');
        assert_eq!(
            InfoDtmf::parse("application/dtmf-relay", b"Duration=100\r\n"),
            Err(DtmfError::BadInfoBody("no Signal= line".into()))
        );
        assert_eq!(
            InfoDtmf::parse("application/dtmf-relay", b"Signal=X\r\n"),
            Err(DtmfError::NotAKey('X'))
        );
        assert!(InfoDtmf::parse("application/dtmf-relay", b"Signal=99\r\n").is_err());
        assert!(InfoDtmf::parse("text/plain", b"Signal=1").is_err());
        assert!(InfoDtmf::parse("application/dtmf-relay", &[0xff, 0xfe]).is_err());
        assert!(InfoDtmf::parse("application/dtmf", b"").is_err());
        let round = InfoDtmf::new('9', 120).expect("key");
        assert_eq!(
            InfoDtmf::parse(InfoDtmf::DTMF_RELAY, round.to_dtmf_relay().as_bytes()),
            Ok(round)
        );
    }

    /// A browser's 48 kHz event (start, updates, three ends, then a second press) becomes
    /// one 8 kHz event per press with PT, timestamp and durations rewritten.
    #[test]
    fn browser_48k_sequence_becomes_8k() {
        let mut rw = DtmfRewriter::new(101, 48000, 8000);
        let ev = |event, end, dur| {
            DtmfEvent {
                event,
                end,
                volume: 10,
                duration: dur,
            }
            .to_bytes()
        };
        let ts1 = 96_000u32;
        let mut out = Vec::new();
        let mut digits = Vec::new();
        let mut feed = |ts: u32, p: [u8; 4]| {
            let r = rw.push(ts, &p, None).expect("valid");
            digits.extend(r.digit);
            out.extend(r.packets);
        };
        for d in [960u16, 1920, 2880, 3840] {
            feed(ts1, ev(5, false, d));
        }
        for _ in 0..3 {
            feed(ts1, ev(5, true, 4800));
        }
        let ts2 = ts1 + 48_000;
        feed(ts2, ev(11, false, 960));
        for _ in 0..3 {
            feed(ts2, ev(11, true, 2880));
        }
        assert_eq!(digits, vec!['5', '#']);
        let got: Vec<(bool, u32, u8, bool, u16)> = out
            .iter()
            .map(|p| {
                assert_eq!(p.payload_type, 101);
                (
                    p.marker,
                    p.timestamp,
                    p.event.event,
                    p.event.end,
                    p.event.duration,
                )
            })
            .collect();
        let o1 = ts1 / 6;
        let o2 = o1 + 8000;
        assert_eq!(
            got,
            vec![
                (true, o1, 5, false, 160),
                (false, o1, 5, false, 320),
                (false, o1, 5, false, 480),
                (false, o1, 5, false, 640),
                (false, o1, 5, true, 800),
                (false, o1, 5, true, 800),
                (false, o1, 5, true, 800),
                (true, o2, 11, false, 160),
                (false, o2, 11, true, 480),
                (false, o2, 11, true, 480),
                (false, o2, 11, true, 480),
            ]
        );
        // An explicit outgoing timestamp wins over rescaling.
        let mut rw = DtmfRewriter::new(96, 48000, 8000);
        let r = rw.push(5, &ev(1, false, 960), Some(777)).expect("valid");
        assert_eq!(r.packets[0].timestamp, 777);
        assert_eq!(rw.push(5, &[1, 2], None), Err(DtmfError::Truncated(2)));
    }

    /// Event blocks round-trip and map to keypad characters.
    #[test]
    fn event_codec_and_digits() {
        let e = DtmfEvent {
            event: 11,
            end: true,
            volume: 63,
            duration: 65535,
        };
        assert_eq!(DtmfEvent::parse(&e.to_bytes()), Ok(e));
        assert_eq!(e.digit(), Some('#'));
        assert_eq!(digit_to_event('*'), Some(10));
        assert_eq!(digit_to_event('d'), Some(15));
        assert_eq!(event_to_digit(16), None);
        assert_eq!(tone_pair(0), Some((941.0, 1336.0)));
        assert_eq!(tone_pair(15), Some((941.0, 1633.0)));
        assert_eq!(tone_pair(16), None);
    }

    /// Every key generated in-band, passed through mu-law, is detected exactly once;
    /// silence and a single sine are not detected.
    #[test]
    fn generator_to_detector_through_g711() {
        for rate in [8000u32, 48000] {
            let mut det = ToneDetector::new(rate);
            let mut seen = Vec::new();
            for ev in 0..16u8 {
                let mut g = ToneGenerator::new(rate);
                assert!(g.start(ev, rate as usize / 1000 * 80));
                let mut pcm = vec![0i16; rate as usize / 1000 * 140];
                assert_eq!(g.fill(&mut pcm), rate as usize / 1000 * 80);
                assert!(!g.is_active());
                let pcm: Vec<i16> = if rate == 8000 {
                    pcm.iter()
                        .map(|&s| g711::ulaw_decode(g711::ulaw_encode(s)))
                        .collect()
                } else {
                    pcm
                };
                seen.extend(det.feed(&pcm));
            }
            assert_eq!(
                seen.iter().collect::<String>(),
                "0123456789*#ABCD",
                "rate {rate}"
            );
            let sine: Vec<i16> = (0..8000)
                .map(|i| (9000.0 * (i as f32 * 0.3).sin()) as i16)
                .collect();
            assert!(ToneDetector::new(8000).feed(&sine).is_empty());
            assert!(ToneDetector::new(8000).feed(&[0; 8000]).is_empty());
        }
    }

    /// Keypad digits come out as one event each: updates every 20 ms with growing
    /// durations, one end packet, a gap, the next digit on a later timestamp; the
    /// rewriter then reports each press exactly once.
    #[test]
    fn digit_player_plays_one_event_per_digit() {
        let t0 = std::time::Instant::now();
        let mut p = DigitPlayer::new(48_000, 1000);
        assert!(p.push("1x").is_err(), "a bad key refuses the whole string");
        assert!(!p.is_busy());
        p.push("1#").expect("keys");
        let mut out = Vec::new();
        let mut now = t0;
        while p.is_busy() {
            let Some(at) = p.poll_timeout() else { break };
            now = now.max(at);
            while let Some(pkt) = p.poll(now) {
                out.push((now, pkt));
            }
            assert!(
                now < t0 + std::time::Duration::from_secs(2),
                "player stalls"
            );
        }
        let events: Vec<DtmfEvent> = out
            .iter()
            .map(|(_, (_, b))| DtmfEvent::parse(b).expect("event"))
            .collect();
        assert_eq!(events.len(), 12, "6 packets per digit");
        assert_eq!(events[0].event, 1);
        assert_eq!(
            events[..6].iter().map(|e| e.duration).collect::<Vec<_>>(),
            vec![0, 960, 1920, 2880, 3840, 4800]
        );
        assert!(events[5].end && !events[4].end);
        assert_eq!(events[6].event, 11);
        let (ts1, ts2) = ((out[0].1).0, (out[6].1).0);
        assert_eq!(ts1, 1000);
        assert_eq!(ts2, 1000 + (160 * 48), "next event after tone and gap");
        assert!(out[6].0 >= out[5].0 + DigitPlayer::GAP);
        let mut rw = DtmfRewriter::new(101, 48_000, 8_000);
        let digits: Vec<char> = out
            .iter()
            .filter_map(|(_, (ts, b))| rw.push(*ts, b, None).ok().and_then(|r| r.digit))
            .collect();
        assert_eq!(digits, vec!['1', '#']);
    }
}
