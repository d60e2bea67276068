//! RTCP keyframe requests (RFC 4585 PLI, RFC 5104 FIR), for video passthrough.
//!
//! When both legs agree on VP8 or H.264 ([`crate::sdp::negotiate_video_passthrough`]),
//! video is relayed untouched, and a decoder that lost sync on one side asks the
//! *other* side's encoder for a keyframe. The request names SSRCs of the leg it
//! arrived on, so forwarding it means re-addressing it: [`KeyframeRequest::retarget`]
//! puts in our SSRC on the outgoing leg as sender and the remote encoder's SSRC as
//! media source. Parsing never panics; anything that is not a well-formed PLI or
//! FIR is `None` (and stays opaque in [`RtcpPacket::Other`]).

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

#[cfg(test)]
mod tests {
    use super::*;

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
