//! The built-in `echo` target: the caller hears themselves.
//!
//! Every received Opus frame goes straight back. The RTP clock is rewritten
//! onto our own timeline (starting at a random offset, advancing by the
//! caller's timestamp deltas) so the outgoing stream is a proper stream of
//! our SSRC rather than a reflected copy of the caller's; str0m assigns our
//! SSRC and sequence numbers.

use std::sync::Arc;
use std::time::Instant;

use media::webrtc::OpusFrame;

use crate::media_io::MediaPeer;

/// The echo peer of one call.
#[derive(Debug)]
pub struct Echo {
    /// The first received timestamp and our timestamp for it.
    anchor: Option<(u64, u64)>,
    /// Our timeline's start.
    out_base: u64,
    /// The last timestamp we sent, to keep ours monotonic if the caller's jumps back.
    last_out: Option<u64>,
}

impl Echo {
    /// An echo whose outgoing RTP clock starts at `out_base`.
    pub fn new(out_base: u32) -> Self {
        Echo {
            anchor: None,
            out_base: u64::from(out_base),
            last_out: None,
        }
    }

    /// Our RTP time for a frame the caller stamped `rtp_in`.
    pub fn rewrite(&mut self, rtp_in: u64) -> u64 {
        let (first_in, first_out) = *self.anchor.get_or_insert((rtp_in, self.out_base));
        let mut out = first_out + rtp_in.saturating_sub(first_in);
        if let Some(last) = self.last_out
            && out <= last
        {
            // a reordered or repeated frame: keep our clock moving forward by one 20 ms frame
            out = last + 960;
        }
        self.last_out = Some(out);
        out
    }
}

impl MediaPeer for Echo {
    fn on_opus(&mut self, _now: Instant, frame: &OpusFrame) -> Option<(u64, Arc<[u8]>)> {
        Some((
            self.rewrite(frame.rtp_timestamp),
            Arc::clone(&frame.payload),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Timestamps move onto our base, keep the caller's spacing, and never go back.
    #[test]
    fn rewrites_onto_own_timeline() {
        let mut e = Echo::new(1000);
        assert_eq!(e.rewrite(50_000), 1000);
        assert_eq!(e.rewrite(50_960), 1960);
        assert_eq!(e.rewrite(52_880), 3880);
        // a late frame does not move our clock backwards
        assert_eq!(e.rewrite(50_960), 4840);
    }

    /// The payload is echoed unchanged.
    #[test]
    fn echoes_payload() {
        let mut e = Echo::new(0);
        let frame = OpusFrame {
            pt: 111,
            seq: 1,
            rtp_timestamp: 7,
            payload: Arc::from(&b"opus"[..]),
        };
        let (t, p) = e
            .on_opus(Instant::now(), &frame)
            .expect("echo answers every frame");
        assert_eq!((t, &*p), (0, &b"opus"[..]));
    }
}
