//! Passthrough RTP relay (sans-IO): forwards one call's RTP/RTCP between two
//! endpoints without decoding or dejittering, as rtpengine's userspace relay does.
//!
//! Used when both legs share a codec and the PBX does its own dejittering, so
//! every packet goes out the moment it arrives (no added delay beyond the
//! shell's socket wake-up). Each side latches to the address it first hears
//! from (symmetric RTP, for NAT); after that, packets from other sources are
//! dropped and counted, as are datagrams that are not RTP or RTCP version 2.

use std::net::SocketAddr;

/// One of the two relayed endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first endpoint (e.g. the caller).
    A,
    /// The second endpoint (e.g. the PBX).
    B,
}

impl Side {
    /// The other side.
    pub fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::A => 0,
            Side::B => 1,
        }
    }
}

/// Counters of one relayed call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Packets forwarded, indexed by the side they came from (A, B).
    pub forwarded: [u64; 2],
    /// Payload octets forwarded, by source side.
    pub bytes: [u64; 2],
    /// Datagrams dropped because they were not RTP/RTCP v2.
    pub malformed: u64,
    /// Datagrams dropped because they came from an address other than the latched one.
    pub unexpected_source: u64,
    /// Datagrams dropped because the other side has no address yet.
    pub no_destination: u64,
}

/// A passthrough relay between two endpoints of one call.
#[derive(Debug, Clone)]
pub struct Relay {
    /// Where each side's packets are sent (SDP address, then the latched one).
    remote: [Option<SocketAddr>; 2],
    latched: [bool; 2],
    symmetric: bool,
    stats: RelayStats,
}

impl Relay {
    /// A relay sending to the SDP addresses `a` and `b` (either may be unknown until the
    /// side is heard from); `symmetric` latches each side to its observed source.
    pub fn new(a: Option<SocketAddr>, b: Option<SocketAddr>, symmetric: bool) -> Self {
        Self {
            remote: [a, b],
            latched: [false; 2],
            symmetric,
            stats: RelayStats::default(),
        }
    }

    /// Where packets for `side` go now.
    pub fn remote(&self, side: Side) -> Option<SocketAddr> {
        self.remote[side.index()]
    }

    /// Whether `side` is latched to the source it was heard from (after that,
    /// only that source is accepted and its address no longer changes).
    pub fn latched(&self, side: Side) -> bool {
        self.latched[side.index()]
    }

    /// Counters.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// A datagram received on `side`'s socket from `from`: returns where to send it
    /// (the same bytes, unchanged), or `None` when it is dropped.
    pub fn handle_input(
        &mut self,
        side: Side,
        from: SocketAddr,
        data: &[u8],
    ) -> Option<SocketAddr> {
        // RTP and RTCP both start with version 2 and are at least 8 bytes (RTCP) / 12 (RTP).
        if data.len() < 8 || data[0] >> 6 != 2 {
            self.stats.malformed += 1;
            return None;
        }
        let i = side.index();
        if self.latched[i] {
            if self.remote[i] != Some(from) {
                self.stats.unexpected_source += 1;
                return None;
            }
        } else if self.symmetric {
            self.remote[i] = Some(from);
            self.latched[i] = true;
        } else if self.remote[i] != Some(from) {
            self.stats.unexpected_source += 1;
            return None;
        }
        let Some(dest) = self.remote[side.other().index()] else {
            self.stats.no_destination += 1;
            return None;
        };
        self.stats.forwarded[i] += 1;
        self.stats.bytes[i] += data.len() as u64;
        Some(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("addr")
    }

    const RTP: [u8; 12] = [0x80, 0, 0, 1, 0, 0, 0, 160, 0, 0, 0, 7];

    #[test]
    fn forwards_both_ways_and_latches() {
        let mut r = Relay::new(None, Some(addr("10.0.0.2:5000")), true);
        let a = addr("192.0.2.1:4000");
        assert_eq!(
            r.handle_input(Side::A, a, &RTP),
            Some(addr("10.0.0.2:5000"))
        );
        // B actually sends from behind a NAT: it latches there.
        let b_nat = addr("203.0.113.9:6000");
        assert_eq!(r.handle_input(Side::B, b_nat, &RTP), Some(a));
        assert_eq!(r.remote(Side::B), Some(b_nat));
        assert!(r.latched(Side::A) && r.latched(Side::B));
        assert_eq!(r.handle_input(Side::A, a, &RTP), Some(b_nat));
        assert_eq!(r.stats().forwarded, [2, 1]);
    }

    #[test]
    fn drops_garbage_and_strangers() {
        let mut r = Relay::new(
            Some(addr("10.0.0.1:4000")),
            Some(addr("10.0.0.2:5000")),
            true,
        );
        assert_eq!(
            r.handle_input(Side::A, addr("10.0.0.1:4000"), b"hello"),
            None
        );
        assert_eq!(
            r.handle_input(Side::A, addr("10.0.0.1:4000"), &[0u8; 20]),
            None
        );
        assert_eq!(r.stats().malformed, 2);
        assert!(
            r.handle_input(Side::A, addr("10.0.0.1:4000"), &RTP)
                .is_some()
        );
        assert_eq!(r.handle_input(Side::A, addr("10.0.0.66:4000"), &RTP), None);
        assert_eq!(r.stats().unexpected_source, 1);
        let mut strict = Relay::new(Some(addr("10.0.0.1:4000")), None, false);
        assert_eq!(strict.handle_input(Side::A, addr("10.0.0.9:1"), &RTP), None);
        assert_eq!(
            strict.handle_input(Side::A, addr("10.0.0.1:4000"), &RTP),
            None
        );
        assert_eq!(strict.stats().no_destination, 1);
    }
}
