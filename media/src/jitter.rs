//! Adaptive jitter buffer (sans-IO): packets go in with their arrival time, frames come out
//! on the buffer's own frame clock, one per `poll` when due.
//!
//! Why it is shaped like this: the decoder behind it must run once per frame whether or
//! not a packet arrived, so every tick yields either a [`JitterOutput::Frame`] or a
//! [`JitterOutput::Lost`] (the decoder then runs PLC, or Opus FEC from the `next` payload
//! that is handed along). The target delay follows the spread of transit times seen over
//! the last two seconds, clamped to `min_delay..=max_delay`; it grows by holding the play
//! point during an underrun and shrinks by skipping one frame when the buffer holds more
//! than target plus two frames. A sequence wrap, a timestamp jump (new talkspurt), a
//! marker bit after silence and an SSRC change are all handled by re-anchoring.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::rtp::{SeqExtender, ts_delta};

/// Jitter buffer tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JitterConfig {
    /// RTP clock rate of the stream.
    pub clock_rate: u32,
    /// Nominal frame duration (ptime); learned from the stream if it differs.
    pub ptime: Duration,
    /// Lowest target delay.
    pub min_delay: Duration,
    /// Highest target delay; also the largest gap treated as loss rather than a jump.
    pub max_delay: Duration,
}

impl JitterConfig {
    /// 20..200 ms adaptive delay for a stream with the given clock and ptime.
    pub fn new(clock_rate: u32, ptime: Duration) -> Self {
        Self {
            clock_rate,
            ptime,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
        }
    }
}

/// A frame ready for the decoder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub timestamp: u32,
    /// Marker bit as received.
    pub marker: bool,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

/// One tick of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JitterOutput {
    /// The frame due now.
    Frame(Frame),
    /// No packet for this slot: conceal `samples` (clock units) of audio.
    Lost {
        /// RTP timestamp of the missing frame.
        timestamp: u32,
        /// Duration to conceal, in RTP clock units.
        samples: u32,
        /// Payload of the following packet if already buffered (for Opus in-band FEC).
        next: Option<Vec<u8>>,
    },
}

/// What happened to an inserted packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    /// Buffered for playout.
    Accepted,
    /// Its slot was already played or concealed; dropped.
    Late,
    /// Already buffered; dropped.
    Duplicate,
}

/// Counters for stats and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JitterStats {
    /// Packets accepted.
    pub accepted: u64,
    /// Packets dropped because they arrived after their slot.
    pub late: u64,
    /// Duplicates dropped.
    pub duplicate: u64,
    /// Frames played.
    pub played: u64,
    /// `Lost` outputs produced.
    pub concealed: u64,
    /// Frames skipped to shrink the delay.
    pub skipped: u64,
    /// Times the buffer re-anchored (start, talkspurt, SSRC change).
    pub resets: u64,
    /// Concealed slots used to grow the delay (the packet was expected to still arrive).
    pub stretched: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No stream yet, or the stream went quiet.
    Idle,
    /// Collecting packets until the target delay is buffered.
    Prefetch { start_at: Instant },
    /// Emitting one output per frame.
    Playing,
}

#[derive(Debug, Clone)]
struct Slot {
    seq: u16,
    marker: bool,
    payload: Vec<u8>,
}

/// The adaptive jitter buffer. See the module docs.
#[derive(Debug, Clone)]
pub struct JitterBuffer {
    cfg: JitterConfig,
    state: State,
    ssrc: Option<u32>,
    /// Extended timestamp of the reference packet; other timestamps are unwrapped around it.
    ts_ref: Option<(u32, i64)>,
    seq_ext: SeqExtender,
    last_seq_ts: Option<(u64, i64)>,
    frame_ts: i64,
    slots: BTreeMap<i64, Slot>,
    play_ts: i64,
    next_due: Option<Instant>,
    underruns: u32,
    since_skip: u32,
    epoch: Option<Instant>,
    /// Lowest and highest transit time of the last [`WINDOW`].
    transits: MinMaxWindow,
    target: Duration,
    /// Smallest transit (arrival minus timestamp, clock units) in the window.
    base_transit: i64,
    jitter: f64,
    last_transit: Option<i64>,
    stats: JitterStats,
}

const WINDOW: Duration = Duration::from_secs(2);
const MAX_UNDERRUN_FRAMES: u32 = 5;

impl JitterBuffer {
    /// Creates an empty buffer.
    pub fn new(cfg: JitterConfig) -> Self {
        let frame_ts =
            (u64::from(cfg.clock_rate) * cfg.ptime.as_micros() as u64 / 1_000_000) as i64;
        Self {
            cfg,
            state: State::Idle,
            ssrc: None,
            ts_ref: None,
            seq_ext: SeqExtender::default(),
            last_seq_ts: None,
            frame_ts: frame_ts.max(1),
            slots: BTreeMap::new(),
            play_ts: 0,
            next_due: None,
            underruns: 0,
            since_skip: 0,
            epoch: None,
            transits: MinMaxWindow::default(),
            target: cfg.min_delay,
            base_transit: 0,
            jitter: 0.0,
            last_transit: None,
            stats: JitterStats::default(),
        }
    }

    /// Current counters.
    pub fn stats(&self) -> JitterStats {
        self.stats
    }

    /// Current target playout delay.
    pub fn target_delay(&self) -> Duration {
        self.target
    }

    /// RFC 3550 interarrival jitter estimate in clock units.
    pub fn jitter(&self) -> f64 {
        self.jitter
    }

    /// Number of packets waiting.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no packet is waiting.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    fn to_ts(&self, d: Duration) -> i64 {
        (d.as_micros() as i64) * i64::from(self.cfg.clock_rate) / 1_000_000
    }

    fn to_dur(&self, ts: i64) -> Duration {
        Duration::from_micros((ts.max(0) as u64) * 1_000_000 / u64::from(self.cfg.clock_rate))
    }

    fn reset(&mut self) {
        self.state = State::Idle;
        self.ts_ref = None;
        self.seq_ext = SeqExtender::default();
        self.last_seq_ts = None;
        self.slots.clear();
        self.next_due = None;
        self.underruns = 0;
        self.transits.clear();
        self.last_transit = None;
        self.stats.resets += 1;
    }

    /// Offers one received packet.
    pub fn insert(
        &mut self,
        now: Instant,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: Vec<u8>,
    ) -> Inserted {
        if self.ssrc != Some(ssrc) {
            if self.ssrc.is_some() {
                self.reset();
            }
            self.ssrc = Some(ssrc);
        }
        let epoch = *self.epoch.get_or_insert(now);
        let (ref_ts, ref_ext) = *self
            .ts_ref
            .get_or_insert((timestamp, (1 << 32) + i64::from(timestamp)));
        let ext = ref_ext + i64::from(ts_delta(timestamp, ref_ts));
        // Re-centre the reference so unwrapping stays correct over long calls.
        self.ts_ref = Some((timestamp, ext));
        let ext_seq = self.seq_ext.extend(seq);

        // Learn the real frame duration from consecutive sequence numbers.
        if let Some((ps, pt)) = self.last_seq_ts
            && ext_seq == ps + 1
            && ext > pt
            && ext - pt <= self.to_ts(Duration::from_millis(120))
        {
            self.frame_ts = ext - pt;
        }
        if self.last_seq_ts.is_none_or(|(ps, _)| ext_seq > ps) {
            self.last_seq_ts = Some((ext_seq, ext));
        }

        // A timestamp far from the play point in either direction means the sender restarted
        // its clock or resumed after a long silence: start over from this packet.
        let max_ts = self.to_ts(self.cfg.max_delay) * 4;
        if self.state == State::Playing
            && (ext - self.play_ts).abs() > max_ts.max(self.frame_ts * 50)
        {
            let target = self.target;
            self.slots.clear();
            self.state = State::Idle;
            self.stats.resets += 1;
            self.transits.clear();
            self.last_transit = None;
            self.target = target;
        }

        // Transit-time bookkeeping for adaptation (clock units).
        let arrival = self.to_ts(now - epoch);
        let transit = arrival - ext;
        if let Some(prev) = self.last_transit {
            let d = (transit - prev).abs() as f64;
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
        self.transits.push(now, transit);
        self.update_target();

        match self.state {
            State::Playing if ext < self.play_ts => {
                self.stats.late += 1;
                return Inserted::Late;
            }
            State::Idle => {
                self.play_ts = ext;
                self.state = State::Prefetch {
                    start_at: now + self.target,
                };
                self.since_skip = 0;
            }
            State::Prefetch { .. } if ext < self.play_ts => self.play_ts = ext,
            _ => {}
        }
        if self.slots.contains_key(&ext) {
            self.stats.duplicate += 1;
            return Inserted::Duplicate;
        }
        self.slots.insert(
            ext,
            Slot {
                seq,
                marker,
                payload,
            },
        );
        // Bound memory: never hold more than twice the maximum delay.
        let cap = (self.to_ts(self.cfg.max_delay) * 2 / self.frame_ts).max(4) as usize;
        while self.slots.len() > cap {
            if let Some((k, _)) = self.slots.pop_first() {
                self.play_ts = self.play_ts.max(k + self.frame_ts);
                self.stats.skipped += 1;
            }
        }
        self.stats.accepted += 1;
        Inserted::Accepted
    }

    fn update_target(&mut self) {
        let (lo, hi) = self.transits.min_max().unwrap_or((i64::MAX, i64::MIN));
        let spread = if lo <= hi { hi - lo } else { 0 };
        if lo <= hi {
            self.base_transit = lo;
        }
        let want = self.to_dur(spread + self.frame_ts / 2);
        let want = want.clamp(self.cfg.min_delay, self.cfg.max_delay);
        // Grow at once (late packets hurt more than delay); shrink slowly.
        if want > self.target {
            self.target = want;
        } else {
            self.target = (self.target * 15 + want) / 16;
        }
    }

    /// The time at which the slot `ts` must play for packets with the fastest transit seen
    /// to have waited exactly the target delay.
    fn deadline(&self, ts: i64) -> Option<Instant> {
        let epoch = self.epoch?;
        let units = ts + self.base_transit;
        let at = if units >= 0 {
            epoch + self.to_dur(units)
        } else {
            epoch.checked_sub(self.to_dur(-units))?
        };
        Some(at + self.target)
    }

    /// When `poll` next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Idle => None,
            State::Prefetch { start_at } => Some(start_at),
            State::Playing => self.next_due,
        }
    }

    fn buffered_ts(&self) -> i64 {
        self.slots
            .last_key_value()
            .map_or(0, |(k, _)| k + self.frame_ts - self.play_ts)
    }

    /// Returns the output for the current frame slot if it is due.
    pub fn poll(&mut self, now: Instant) -> Option<JitterOutput> {
        match self.state {
            State::Idle => return None,
            State::Prefetch { start_at } => {
                if now < start_at {
                    return None;
                }
                self.state = State::Playing;
                self.next_due = Some(now);
                self.underruns = 0;
            }
            State::Playing => {}
        }
        let due = self.next_due?;
        if now < due {
            return None;
        }
        let frame_dur = self.to_dur(self.frame_ts);
        // A caller that fell far behind resynchronises instead of bursting.
        self.next_due = Some(if now.duration_since(due) > Duration::from_secs(1) {
            now + frame_dur
        } else {
            due + frame_dur
        });

        if let Some(slot) = self.slots.remove(&self.play_ts) {
            let out = Frame {
                seq: slot.seq,
                timestamp: self.play_ts as u32,
                marker: slot.marker,
                payload: slot.payload,
            };
            self.play_ts += self.frame_ts;
            self.underruns = 0;
            self.stats.played += 1;
            self.since_skip += 1;
            self.maybe_skip(now);
            return Some(JitterOutput::Frame(out));
        }
        match self.slots.first_key_value().map(|(k, _)| *k) {
            Some(first) if first < self.play_ts => {
                // Only possible after a frame-size change; drop what can no longer play.
                self.slots.retain(|k, _| *k >= self.play_ts);
                self.lost()
            }
            Some(first) if first - self.play_ts > self.to_ts(self.cfg.max_delay) => {
                // Timestamp jump (new talkspurt): re-anchor and prefetch again.
                self.play_ts = first;
                self.state = State::Prefetch {
                    start_at: now + self.target.saturating_sub(self.to_dur(self.buffered_ts())),
                };
                self.stats.resets += 1;
                None
            }
            Some(_) => {
                // The slot is empty but later packets are here. If the target delay has grown
                // past where we play, the packet may still come: stretch by concealing without
                // advancing. Otherwise it is lost.
                if self
                    .deadline(self.play_ts)
                    .is_some_and(|d| now + frame_dur / 2 < d)
                {
                    self.stats.concealed += 1;
                    self.stats.stretched += 1;
                    return Some(JitterOutput::Lost {
                        timestamp: self.play_ts as u32,
                        samples: self.frame_ts as u32,
                        next: None,
                    });
                }
                self.lost()
            }
            None => {
                // Underrun: conceal but hold the play point, which grows the delay by a frame.
                self.underruns += 1;
                if self.underruns > MAX_UNDERRUN_FRAMES {
                    // The talker stopped (or the path died): go quiet until packets return.
                    self.state = State::Idle;
                    return None;
                }
                self.stats.concealed += 1;
                Some(JitterOutput::Lost {
                    timestamp: self.play_ts as u32,
                    samples: self.frame_ts as u32,
                    next: None,
                })
            }
        }
    }

    fn lost(&mut self) -> Option<JitterOutput> {
        let ts = self.play_ts;
        self.play_ts += self.frame_ts;
        self.stats.concealed += 1;
        let next = self.slots.get(&self.play_ts).map(|s| s.payload.clone());
        Some(JitterOutput::Lost {
            timestamp: ts as u32,
            samples: self.frame_ts as u32,
            next,
        })
    }

    /// Shrinks the delay by one frame when we play more than two frames later than the
    /// target requires and the frame to drop is already here.
    fn maybe_skip(&mut self, now: Instant) {
        if self.since_skip < 5 {
            return;
        }
        let Some(deadline) = self.deadline(self.play_ts) else {
            return;
        };
        let slack = now.saturating_duration_since(deadline);
        if slack > self.to_dur(self.frame_ts * 2) && self.slots.contains_key(&self.play_ts) {
            self.slots.remove(&self.play_ts);
            self.play_ts += self.frame_ts;
            self.stats.skipped += 1;
            self.since_skip = 0;
        }
    }
}

/// The minimum and maximum of the values pushed during the last [`WINDOW`], in O(1)
/// amortised per push (monotonic queues: a value that can never again be the
/// minimum, or the maximum, is dropped when it is overtaken).
#[derive(Debug, Clone, Default)]
struct MinMaxWindow {
    /// Increasing values; the front is the minimum.
    lows: VecDeque<(Instant, i64)>,
    /// Decreasing values; the front is the maximum.
    highs: VecDeque<(Instant, i64)>,
}

impl MinMaxWindow {
    fn push(&mut self, now: Instant, v: i64) {
        while self.lows.back().is_some_and(|&(_, x)| x >= v) {
            self.lows.pop_back();
        }
        self.lows.push_back((now, v));
        while self.highs.back().is_some_and(|&(_, x)| x <= v) {
            self.highs.pop_back();
        }
        self.highs.push_back((now, v));
        for q in [&mut self.lows, &mut self.highs] {
            while q
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > WINDOW)
            {
                q.pop_front();
            }
        }
    }

    fn min_max(&self) -> Option<(i64, i64)> {
        Some((self.lows.front()?.1, self.highs.front()?.1))
    }

    fn clear(&mut self) {
        self.lows.clear();
        self.highs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT: Duration = Duration::from_millis(20);

    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn unit(&mut self) -> f64 {
            (self.next() >> 11) as f64 / (1u64 << 53) as f64
        }
    }

    /// A packet as sent: index `i`, plus its arrival time.
    struct Sent {
        arrive: Instant,
        seq: u16,
        ts: u32,
        idx: u32,
    }

    fn payload(i: u32) -> Vec<u8> {
        i.to_be_bytes().to_vec()
    }

    /// Drives the buffer with a 1 ms clock; returns the sequence of outputs (frame index or
    /// None for a Lost).
    fn drive(
        jb: &mut JitterBuffer,
        t0: Instant,
        mut pkts: Vec<Sent>,
        until_ms: u64,
    ) -> Vec<Option<u32>> {
        pkts.sort_by_key(|p| p.arrive);
        let mut it = pkts.into_iter().peekable();
        let mut out = Vec::new();
        for ms in 0..until_ms {
            let now = t0 + Duration::from_millis(ms);
            while let Some(p) = it.next_if(|p| p.arrive <= now) {
                jb.insert(now, 1, p.seq, p.ts, false, payload(p.idx));
            }
            while let Some(o) = jb.poll(now) {
                out.push(match o {
                    JitterOutput::Frame(f) => {
                        Some(u32::from_be_bytes(f.payload.try_into().expect("4 bytes")))
                    }
                    JitterOutput::Lost { .. } => None,
                });
            }
        }
        out
    }

    fn stream(t0: Instant, n: u32, seq0: u16, ts0: u32, delay: impl Fn(u32) -> u64) -> Vec<Sent> {
        (0..n)
            .map(|i| Sent {
                arrive: t0 + Duration::from_millis(u64::from(i) * 20 + delay(i)),
                seq: seq0.wrapping_add(i as u16),
                ts: ts0.wrapping_add(i * 160),
                idx: i,
            })
            .collect()
    }

    fn frames(out: &[Option<u32>]) -> Vec<u32> {
        out.iter().flatten().copied().collect()
    }

    /// Steady stream across the sequence and timestamp wrap: every frame plays, in order.
    #[test]
    fn in_order_across_wrap() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, PT));
        let out = drive(
            &mut jb,
            t0,
            stream(t0, 200, 65500, u32::MAX - 800, |_| 5),
            4100,
        );
        assert_eq!(frames(&out), (0..200).collect::<Vec<_>>());
        // Only the underrun after the last packet is concealed.
        let first_lost = out.iter().position(|o| o.is_none()).unwrap_or(out.len());
        assert_eq!(first_lost, 200);
        assert_eq!(jb.target_delay(), Duration::from_millis(20));
    }

    /// Pairs swapped in flight still play in order with no concealment.
    #[test]
    fn reordering_is_repaired() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, PT));
        // Odd packets are delayed by 25 ms, so they arrive after their successor.
        let out = drive(
            &mut jb,
            t0,
            stream(t0, 100, 7, 0, |i| if i % 2 == 1 { 25 } else { 0 }),
            2200,
        );
        // The very first swapped packet arrives before any spread was measured (target still
        // at its 20 ms minimum) and is late; once the target has grown, every swap is repaired.
        let want: Vec<u32> = (0..100).filter(|&i| i != 1).collect();
        assert_eq!(frames(&out), want);
        assert_eq!(jb.stats().late, 1);
        assert!(jb.target_delay() >= Duration::from_millis(25));
    }

    /// A lost packet yields exactly one Lost in its slot, carrying the next payload for FEC.
    #[test]
    fn loss_is_reported_in_place_with_fec_payload() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, PT));
        let mut pkts = stream(t0, 50, 100, 1000, |_| 0);
        pkts.retain(|p| p.idx != 20);
        let mut lost_next = None;
        let mut it = {
            pkts.sort_by_key(|p| p.arrive);
            pkts.into_iter().peekable()
        };
        let mut seq_out = Vec::new();
        for ms in 0..1200 {
            let now = t0 + Duration::from_millis(ms);
            while let Some(p) = it.next_if(|p| p.arrive <= now) {
                jb.insert(now, 1, p.seq, p.ts, false, payload(p.idx));
            }
            while let Some(o) = jb.poll(now) {
                match o {
                    JitterOutput::Frame(f) => seq_out.push(Some(f.seq)),
                    JitterOutput::Lost {
                        timestamp,
                        samples,
                        next,
                    } => {
                        assert_eq!(samples, 160);
                        lost_next.get_or_insert((timestamp, next));
                        seq_out.push(None);
                    }
                }
            }
        }
        // After the last packet the buffer conceals a few underrun slots, then goes idle.
        let trailing = seq_out.iter().rev().take_while(|o| o.is_none()).count();
        assert!(trailing <= MAX_UNDERRUN_FRAMES as usize);
        seq_out.truncate(seq_out.len() - trailing);
        let expect: Vec<Option<u16>> = (0..50u16).map(|i| (i != 20).then_some(100 + i)).collect();
        assert_eq!(seq_out, expect);
        let lost_next = lost_next.map(|(ts, next)| {
            assert_eq!(ts, 1000 + 20 * 160);
            next
        });
        assert_eq!(jb.stats().concealed, 1 + trailing as u64);
        assert_eq!(lost_next, Some(Some(payload(21))));
    }

    /// 40 ms of random network jitter: the target grows to cover it and almost nothing is late.
    #[test]
    fn adapts_to_40ms_jitter() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, PT));
        let mut rng = Rng(0x1234_5678);
        let delays: Vec<u64> = (0..1000).map(|_| (rng.unit() * 40.0) as u64).collect();
        let out = drive(
            &mut jb,
            t0,
            stream(t0, 1000, 0, 0, |i| delays[i as usize]),
            21_000,
        );
        let played = frames(&out);
        // Ordered, no repeats.
        assert!(played.windows(2).all(|w| w[0] < w[1]));
        let late = jb.stats().late;
        // Only the first seconds, before the window has seen the full spread, may lose frames.
        assert!(late <= 10, "late {late}");
        assert!(played.len() >= 985, "played {}", played.len());
        let t = jb.target_delay();
        assert!(
            t >= Duration::from_millis(35) && t <= Duration::from_millis(80),
            "target {t:?}"
        );
        // After warm-up nothing after frame 200 is missing.
        assert!((200..1000).all(|i| played.contains(&i)));
    }

    /// A 120 ms stall followed by a burst: the buffer conceals the stall, plays the burst and
    /// then shrinks back towards its target by skipping.
    #[test]
    fn burst_after_stall() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, PT));
        // Packets 50..56 are held and released together at the time of packet 56.
        let out = drive(
            &mut jb,
            t0,
            stream(t0, 300, 0, 0, |i| {
                if (50..56).contains(&i) {
                    u64::from(56 - i) * 20
                } else {
                    0
                }
            }),
            6400,
        );
        let played = frames(&out);
        assert!(played.windows(2).all(|w| w[0] < w[1]));
        assert!(jb.stats().concealed >= 1, "the stall must be concealed");
        assert!((56..300).all(|i| played.contains(&i)) || jb.stats().skipped > 0);
        // The grown delay was reduced again by skipping frames.
        assert!(jb.stats().skipped >= 1, "{:?}", jb.stats());
        assert!(*played.last().expect("played") == 299);
    }

    /// A timestamp jump with marker (new talkspurt after silence) re-anchors without a flood
    /// of Lost outputs.
    #[test]
    fn talkspurt_timestamp_jump() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, PT));
        let mut pkts = stream(t0, 20, 0, 0, |_| 0);
        // After 2 s of silence the sender resumes with ts advanced by 2 s, seq contiguous.
        for i in 0..20u32 {
            pkts.push(Sent {
                arrive: t0 + Duration::from_millis(2400 + u64::from(i) * 20),
                seq: 20 + i as u16,
                ts: (20 + 100 + i) * 160,
                idx: 100 + i,
            });
        }
        let out = drive(&mut jb, t0, pkts, 3200);
        let played = frames(&out);
        assert_eq!(played.len(), 40);
        // Each talkspurt end conceals a few underrun slots; nothing is concealed inside the gap.
        assert!(out.iter().filter(|o| o.is_none()).count() <= 2 * MAX_UNDERRUN_FRAMES as usize);
    }

    /// Duplicates and packets older than the play point are dropped and counted; an SSRC change
    /// resets the buffer so the new source plays.
    #[test]
    fn duplicates_late_and_ssrc_change() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8000, PT));
        assert_eq!(
            jb.insert(t0, 1, 10, 1600, true, vec![1]),
            Inserted::Accepted
        );
        assert_eq!(
            jb.insert(t0, 1, 10, 1600, true, vec![1]),
            Inserted::Duplicate
        );
        let t1 = t0 + Duration::from_millis(20);
        assert_eq!(
            jb.poll(t1).map(|o| matches!(o, JitterOutput::Frame(_))),
            Some(true)
        );
        assert_eq!(jb.insert(t1, 1, 9, 1440, false, vec![0]), Inserted::Late);
        assert_eq!(
            jb.insert(t1, 2, 500, 99_999, true, vec![7]),
            Inserted::Accepted
        );
        assert_eq!(jb.poll(t1), None, "new source prefetches first");
        // The target delay learnt on the old source (50 ms) is kept: same network path.
        let t2 = t1 + Duration::from_millis(60);
        match jb.poll(t2) {
            Some(JitterOutput::Frame(f)) => assert_eq!((f.seq, f.payload), (500, vec![7])),
            other => panic!("expected frame, got {other:?}"),
        }
        let s = jb.stats();
        assert_eq!((s.duplicate, s.late), (1, 1));
        assert!(s.resets >= 1);
    }

    /// The monotonic window gives the same extremes as a scan of the whole window.
    #[test]
    fn min_max_window_matches_a_scan() {
        let t0 = Instant::now();
        let mut w = MinMaxWindow::default();
        let mut all: Vec<(Instant, i64)> = Vec::new();
        let mut x: i64 = 12345;
        for i in 0..2000u64 {
            // a pseudo-random walk, 10 ms apart: the window holds ~200 values
            x = (x * 1103515245 + 12345) % 2147483648;
            let v = x % 1000 - 500;
            let now = t0 + Duration::from_millis(10 * i);
            w.push(now, v);
            all.push((now, v));
            let live = all.iter().filter(|(t, _)| now.duration_since(*t) <= WINDOW);
            let lo = live.clone().map(|&(_, v)| v).min();
            let hi = live.map(|&(_, v)| v).max();
            assert_eq!(w.min_max(), lo.zip(hi), "at step {i}");
        }
    }
}
