//! RFC 4028 session timers: the `Session-Expires` header and the refresh arithmetic.
//!
//! A session timer keeps a call from hanging forever when a BYE is lost: one
//! side (the refresher) re-INVITEs or UPDATEs at half the interval, and the
//! other side hangs up when the interval passes without a refresh. This file
//! holds the header type and the timer state; `call.rs` decides when to act.

use std::fmt;
use std::time::{Duration, Instant};

/// Who refreshes, in the roles of the transaction that negotiated it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresher {
    /// The sender of the INVITE/UPDATE refreshes.
    Uac,
    /// The receiver of the INVITE/UPDATE refreshes.
    Uas,
}

/// A parsed `Session-Expires` value: `1800;refresher=uac`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionExpires {
    /// Interval in seconds.
    pub interval: u32,
    /// Refresher, if the sender named one.
    pub refresher: Option<Refresher>,
}

impl SessionExpires {
    /// Parses a header value; `None` when the delta-seconds are malformed.
    pub fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split(';');
        let interval = parts.next()?.trim().parse().ok()?;
        let mut refresher = None;
        for p in parts {
            if let Some((n, v)) = p.split_once('=')
                && n.trim().eq_ignore_ascii_case("refresher")
            {
                refresher = match v.trim().to_ascii_lowercase().as_str() {
                    "uac" => Some(Refresher::Uac),
                    "uas" => Some(Refresher::Uas),
                    _ => None,
                };
            }
        }
        Some(Self {
            interval,
            refresher,
        })
    }
}

impl fmt::Display for SessionExpires {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.interval)?;
        match self.refresher {
            Some(Refresher::Uac) => f.write_str(";refresher=uac"),
            Some(Refresher::Uas) => f.write_str(";refresher=uas"),
            None => Ok(()),
        }
    }
}

/// A running session timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionTimer {
    /// Negotiated interval.
    pub(crate) interval: Duration,
    /// Whether we are the refresher.
    pub(crate) we_refresh: bool,
    /// Last successful refresh (or the 2xx that started the session).
    pub(crate) last_refresh: Instant,
    /// A refresh request of ours is in flight.
    pub(crate) refreshing: bool,
}

impl SessionTimer {
    /// When we must send the refresh (half the interval, RFC 4028 section 10).
    pub(crate) fn refresh_at(&self) -> Instant {
        self.last_refresh + self.interval / 2
    }

    /// When the session is considered dead without a refresh.
    ///
    /// The non-refresher sends BYE at `interval - min(32 s, interval / 3)`
    /// (RFC 4028 section 10); the refresher gives its own refresh the full interval.
    pub(crate) fn expires_at(&self) -> Instant {
        if self.we_refresh {
            self.last_refresh + self.interval
        } else {
            let margin = (self.interval / 3).min(Duration::from_secs(32));
            self.last_refresh + self.interval - margin
        }
    }
}
