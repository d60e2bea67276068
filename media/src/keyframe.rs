//! RTCP keyframe requests (RFC 4585 PLI, RFC 5104 FIR), for video passthrough.
//!
//! When both legs agree on VP8 or H.264 ([`crate::sdp::negotiate_video_passthrough`]),
//! video is relayed untouched, and a decoder that lost sync on one side asks the
//! *other* side's encoder for a keyframe. The request names SSRCs of the leg it
//! arrived on, so forwarding it means re-addressing it: [`KeyframeRequest::retarget`]
//! puts in our SSRC on the outgoing leg as sender and the remote encoder's SSRC as
//! media source, and [`KeyframeForwarder`] does that with a rate limit. Parsing never
//! panics; anything that is not a well-formed PLI or FIR is `None` (and stays opaque in
//! [`RtcpPacket::Other`]).

use crate::rtp::RtcpPacket;

/// RTCP payload-specific feedback (RFC 4585 6.1).
const PT_PSFB: u8 = 206;
/// PSFB format: Picture Loss Indication (RFC 4585 6.3.1).
const FMT_PLI: u8 = 1;
/// PSFB format: Full Intra Request (RFC 5104 4.3.1).
const FMT_FIR: u8 = 4;

/// A request for a keyframe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyframeRequest {
    /// Picture Loss Indication.
    Pli {
        /// SSRC of the receiver asking.
        sender_ssrc: u32,
        /// SSRC of the video stream that should send a keyframe.
        media_ssrc: u32,
    },
    /// Full Intra Request (one FCI entry).
    Fir {
        /// SSRC of the receiver asking.
        sender_ssrc: u32,
        /// SSRC of the video stream that should send a keyframe.
        media_ssrc: u32,
        /// Command sequence number; a repeated number is the same request.
        seq: u8,
    },
}

fn be32(b: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(..4)?.try_into().ok()?))
}

impl KeyframeRequest {
    /// The keyframe request in one parsed RTCP packet, if it is a PLI or a FIR.
    pub fn from_rtcp(p: &RtcpPacket) -> Option<Self> {
        let RtcpPacket::Other {
            packet_type: PT_PSFB,
            count,
            body,
        } = p
        else {
            return None;
        };
        let sender_ssrc = be32(body)?;
        match *count {
            FMT_PLI => Some(Self::Pli {
                sender_ssrc,
                media_ssrc: be32(body.get(4..)?)?,
            }),
            // FIR: media source field is 0, the target is in the FCI entry
            FMT_FIR => {
                let fci = body.get(8..16)?;
                Some(Self::Fir {
                    sender_ssrc,
                    media_ssrc: be32(fci)?,
                    seq: fci[4],
                })
            }
            _ => None,
        }
    }

    /// Every keyframe request in a compound RTCP datagram (none if it does not parse).
    pub fn from_compound(datagram: &[u8]) -> Vec<Self> {
        RtcpPacket::parse_compound(datagram)
            .map(|ps| ps.iter().filter_map(Self::from_rtcp).collect())
            .unwrap_or_default()
    }

    /// The same request re-addressed for the other leg: `sender_ssrc` is ours there,
    /// `media_ssrc` the remote encoder's.
    pub fn retarget(self, sender_ssrc: u32, media_ssrc: u32) -> Self {
        match self {
            Self::Pli { .. } => Self::Pli {
                sender_ssrc,
                media_ssrc,
            },
            Self::Fir { seq, .. } => Self::Fir {
                sender_ssrc,
                media_ssrc,
                seq,
            },
        }
    }

    /// The RTCP packet on the wire (a compound of one, as RFC 5506 reduced-size RTCP allows).
    pub fn to_bytes(self) -> Vec<u8> {
        let (fmt, body): (u8, Vec<u8>) = match self {
            Self::Pli {
                sender_ssrc,
                media_ssrc,
            } => (
                FMT_PLI,
                [sender_ssrc.to_be_bytes(), media_ssrc.to_be_bytes()].concat(),
            ),
            Self::Fir {
                sender_ssrc,
                media_ssrc,
                seq,
            } => (
                FMT_FIR,
                [
                    sender_ssrc.to_be_bytes(),
                    0u32.to_be_bytes(),
                    media_ssrc.to_be_bytes(),
                    [seq, 0, 0, 0],
                ]
                .concat(),
            ),
        };
        let words = (body.len() / 4) as u16;
        let mut out = Vec::with_capacity(4 + body.len());
        out.push(0x80 | fmt);
        out.push(PT_PSFB);
        out.extend_from_slice(&words.to_be_bytes());
        out.extend_from_slice(&body);
        out
    }
}

/// Carries keyframe requests from one leg's RTCP to the other leg, re-addressed, and lets
/// at most one through per [`KeyframeForwarder::MIN_INTERVAL`]: a burst of losses (or a
/// browser repeating its PLI) asks the far encoder once. Sans-IO: time is an argument.
#[derive(Debug, Clone)]
pub struct KeyframeForwarder {
    /// Our SSRC on the outgoing leg (the request's sender).
    sender_ssrc: u32,
    /// The far encoder's SSRC on the outgoing leg.
    media_ssrc: u32,
    /// Send FIR instead of PLI (for a peer that lists only `ccm fir`).
    use_fir: bool,
    fir_seq: u8,
    last: Option<std::time::Instant>,
    forwarded: u64,
    suppressed: u64,
}

impl KeyframeForwarder {
    /// Shortest time between two forwarded requests.
    pub const MIN_INTERVAL: std::time::Duration = std::time::Duration::from_millis(500);

    /// A forwarder sending as `sender_ssrc` about the stream `media_ssrc`, as PLI or FIR.
    pub fn new(sender_ssrc: u32, media_ssrc: u32, use_fir: bool) -> Self {
        Self {
            sender_ssrc,
            media_ssrc,
            use_fir,
            fir_seq: 0,
            last: None,
            forwarded: 0,
            suppressed: 0,
        }
    }

    /// The far encoder's SSRC changed (learned from its first packet, or a new stream).
    pub fn set_media_ssrc(&mut self, ssrc: u32) {
        self.media_ssrc = ssrc;
    }

    /// Handles an RTCP datagram from the incoming leg at `now`; returns the request to
    /// send on the outgoing leg's RTCP, if it carried one and the interval allows it.
    pub fn handle_rtcp(&mut self, now: std::time::Instant, datagram: &[u8]) -> Option<Vec<u8>> {
        if KeyframeRequest::from_compound(datagram).is_empty() {
            return None;
        }
        self.request(now)
    }

    /// A keyframe request that did not come as RTCP (a str0m `KeyframeRequest` event, a
    /// frame lost on the way in): the request to send on the outgoing leg's RTCP, if the
    /// interval allows it.
    pub fn request(&mut self, now: std::time::Instant) -> Option<Vec<u8>> {
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < Self::MIN_INTERVAL)
        {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        self.forwarded += 1;
        let out = if self.use_fir {
            // RFC 5104 4.3.1.1: a new request takes the next sequence number
            let seq = self.fir_seq;
            self.fir_seq = self.fir_seq.wrapping_add(1);
            KeyframeRequest::Fir {
                sender_ssrc: self.sender_ssrc,
                media_ssrc: self.media_ssrc,
                seq,
            }
        } else {
            KeyframeRequest::Pli {
                sender_ssrc: self.sender_ssrc,
                media_ssrc: self.media_ssrc,
            }
        };
        Some(out.to_bytes())
    }

    /// (requests forwarded, requests suppressed by the interval).
    pub fn stats(&self) -> (u64, u64) {
        (self.forwarded, self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A browser's PLI goes out re-addressed (our SSRC, the PBX encoder's SSRC); repeats
    /// within 500 ms are held back, a later one passes; as FIR the sequence number grows;
    /// RTCP without a request and garbage produce nothing.
    #[test]
    fn forwarder_readdresses_and_limits_rate() {
        let t0 = std::time::Instant::now();
        let ms = |n| t0 + std::time::Duration::from_millis(n);
        let browser_pli = KeyframeRequest::Pli {
            sender_ssrc: 0xb0b,
            media_ssrc: 0xa11ce,
        }
        .to_bytes();
        let mut f = KeyframeForwarder::new(0x1234, 0x5678, false);
        let out = f.handle_rtcp(ms(0), &browser_pli).expect("forwarded");
        assert_eq!(
            KeyframeRequest::from_compound(&out),
            vec![KeyframeRequest::Pli {
                sender_ssrc: 0x1234,
                media_ssrc: 0x5678
            }]
        );
        assert_eq!(f.handle_rtcp(ms(100), &browser_pli), None);
        assert_eq!(f.handle_rtcp(ms(499), &browser_pli), None);
        f.set_media_ssrc(0x9999);
        let out = f
            .handle_rtcp(ms(600), &browser_pli)
            .expect("after the interval");
        assert_eq!(
            KeyframeRequest::from_compound(&out),
            vec![KeyframeRequest::Pli {
                sender_ssrc: 0x1234,
                media_ssrc: 0x9999
            }]
        );
        assert_eq!(f.stats(), (2, 2));
        let rr = [0x80, 201, 0, 1, 0, 0, 0, 5];
        assert_eq!(f.handle_rtcp(ms(5000), &rr), None);
        assert_eq!(f.handle_rtcp(ms(5000), &[0xff, 0x00]), None);

        let mut fir = KeyframeForwarder::new(1, 2, true);
        let seqs: Vec<u8> = [0u64, 600, 1200]
            .iter()
            .filter_map(|&t| fir.handle_rtcp(ms(t), &browser_pli))
            .flat_map(|b| KeyframeRequest::from_compound(&b))
            .map(|r| match r {
                KeyframeRequest::Fir { seq, .. } => seq,
                other => panic!("expected FIR, got {other:?}"),
            })
            .collect();
        assert_eq!(seqs, [0, 1, 2]);
    }

    /// A Chrome-style PLI and FIR parse, survive a round trip, and are re-addressed for
    /// the other leg with their kind and FIR sequence number kept.
    #[test]
    fn pli_and_fir_round_trip_and_retarget() {
        let pli = [
            0x81, 206, 0, 2, 0x11, 0x11, 0x11, 0x11, 0x22, 0x22, 0x22, 0x22,
        ];
        let got = KeyframeRequest::from_compound(&pli);
        assert_eq!(
            got,
            vec![KeyframeRequest::Pli {
                sender_ssrc: 0x1111_1111,
                media_ssrc: 0x2222_2222
            }]
        );
        assert_eq!(got[0].to_bytes(), pli);
        let fir = KeyframeRequest::Fir {
            sender_ssrc: 1,
            media_ssrc: 2,
            seq: 7,
        };
        let bytes = fir.to_bytes();
        assert_eq!(bytes.len(), 20);
        assert_eq!(KeyframeRequest::from_compound(&bytes), vec![fir]);
        assert_eq!(
            fir.retarget(9, 10),
            KeyframeRequest::Fir {
                sender_ssrc: 9,
                media_ssrc: 10,
                seq: 7
            }
        );
    }

    /// A PLI inside a compound after a receiver report is found; other feedback, NACKs,
    /// truncated FCIs and garbage give nothing and never panic.
    #[test]
    fn compound_and_malformed_input() {
        let mut compound = vec![0x80, 201, 0, 1, 0, 0, 0, 5];
        compound.extend_from_slice(&[0x81, 206, 0, 2, 0, 0, 0, 5, 0, 0, 0, 6]);
        assert_eq!(
            KeyframeRequest::from_compound(&compound),
            vec![KeyframeRequest::Pli {
                sender_ssrc: 5,
                media_ssrc: 6
            }]
        );
        // generic NACK (RTPFB 205 fmt 1) is not a keyframe request
        let nack = [0x81, 205, 0, 3, 0, 0, 0, 5, 0, 0, 0, 6, 0, 1, 0, 0];
        assert!(KeyframeRequest::from_compound(&nack).is_empty());
        // FIR whose FCI is cut short
        let short_fir = [0x84, 206, 0, 2, 0, 0, 0, 5, 0, 0, 0, 0];
        assert!(KeyframeRequest::from_compound(&short_fir).is_empty());
        for junk in [&[][..], &[0x81], &[0x81, 206, 0, 9, 1, 2, 3]] {
            assert!(KeyframeRequest::from_compound(junk).is_empty());
        }
    }
}
