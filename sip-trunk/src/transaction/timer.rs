//! RFC 3261 transaction timers as an enum-indexed table, in the shape of
//! quinn-proto's `TimerTable`: each transaction owns one table, the layer asks
//! every table for its earliest deadline, and `handle_timeout` walks
//! [`Timer::VALUES`] to fire the expired ones.

use std::time::{Duration, Instant};

/// The timers of RFC 3261 17 (Table 4). The doc line of each variant quotes
/// the RFC's meaning and default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Timer {
    /// A: "INVITE request retransmit interval, for UDP only"; initially T1, doubles each time (no cap).
    A = 0,
    /// B: "INVITE transaction timeout timer"; 64*T1.
    B = 1,
    /// D: "Wait time for response retransmits"; > 32 s for UDP, 0 s for TCP/SCTP.
    D = 2,
    /// E: "non-INVITE request retransmit interval, UDP only"; initially T1, doubles up to T2.
    E = 3,
    /// F: "non-INVITE transaction timeout timer"; 64*T1.
    F = 4,
    /// G: "INVITE response retransmit interval"; initially T1, doubles up to T2.
    G = 5,
    /// H: "Wait time for ACK receipt"; 64*T1.
    H = 6,
    /// I: "Wait time for ACK retransmits"; T4 for UDP, 0 s for TCP/SCTP.
    I = 7,
    /// J: "Wait time for non-INVITE request retransmits"; 64*T1 for UDP, 0 s for TCP/SCTP.
    J = 8,
    /// K: "Wait time for response retransmits"; T4 for UDP, 0 s for TCP/SCTP.
    K = 9,
    /// L (RFC 6026): "Wait time for accepted INVITE request retransmits"; 64*T1.
    L = 10,
    /// M (RFC 6026): "Wait time for retransmission of 2xx to INVITE or additional 2xx from other branches of a forked INVITE"; 64*T1.
    M = 11,
}

impl Timer {
    /// Every timer, in the order `handle_timeout` checks them.
    pub const VALUES: [Timer; 12] = [
        Timer::A,
        Timer::B,
        Timer::D,
        Timer::E,
        Timer::F,
        Timer::G,
        Timer::H,
        Timer::I,
        Timer::J,
        Timer::K,
        Timer::L,
        Timer::M,
    ];
}

/// Deadlines of one transaction, indexed by [`Timer`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerTable {
    data: [Option<Instant>; 12],
}

impl TimerTable {
    pub(crate) fn set(&mut self, timer: Timer, at: Instant) {
        self.data[timer as usize] = Some(at);
    }

    pub(crate) fn get(&self, timer: Timer) -> Option<Instant> {
        self.data[timer as usize]
    }

    pub(crate) fn stop(&mut self, timer: Timer) {
        self.data[timer as usize] = None;
    }

    pub(crate) fn stop_all(&mut self) {
        self.data = [None; 12];
    }

    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.data.iter().filter_map(|t| *t).min()
    }

    pub(crate) fn is_expired(&self, timer: Timer, now: Instant) -> bool {
        self.data[timer as usize].is_some_and(|t| t <= now)
    }
}

/// Timer values; RFC 3261 defaults are T1 = 500 ms, T2 = 4 s, T4 = 5 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// T1: RTT estimate.
    pub t1: Duration,
    /// T2: maximum retransmit interval for non-INVITE requests and INVITE responses.
    pub t2: Duration,
    /// T4: maximum duration a message will remain in the network.
    pub t4: Duration,
    /// Timer D on unreliable transports (RFC 3261: more than 32 s).
    pub d: Duration,
}

impl Default for Timings {
    fn default() -> Timings {
        Timings {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            d: Duration::from_secs(32),
        }
    }
}

impl Timings {
    /// 64*T1: Timers B, F, H, J, L and M.
    pub fn t1_x64(&self) -> Duration {
        self.t1 * 64
    }
}
