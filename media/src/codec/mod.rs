//! Audio codecs: the [`Codec`] identity (names, clock rates, static payload types) and the
//! sample-level encoders/decoders behind it.
//!
//! G.711 is implemented here with lookup tables; G.722 (64 kbit/s) is a pure-Rust
//! sub-band ADPCM codec ([`g722`]) bit-exact with the ITU algorithm; Opus wraps libopus
//! through the `opus` crate. The resampler lives here too because only codec paths need it.

pub mod g711;
pub mod g722;
pub mod opus;
pub mod resample;

use thiserror::Error;

/// Why an encode or decode step failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum CodecError {
    /// The codec is known but this build cannot encode or decode it.
    #[error("codec {0:?} is not supported for transcoding")]
    Unsupported(Codec),
    /// The sample rate is not one the codec or resampler accepts.
    #[error("unsupported sample rate {0} Hz")]
    SampleRate(u32),
    /// The frame duration is not one the codec accepts.
    #[error("unsupported frame duration {0} ms")]
    FrameDuration(u32),
    /// The number of input samples does not match the configured frame.
    #[error("expected {expected} samples, got {got}")]
    FrameLength {
        /// Samples per frame configured.
        expected: usize,
        /// Samples given.
        got: usize,
    },
    /// libopus reported an error (corrupt packet, bad argument).
    #[error("opus: {0}")]
    Opus(String),
}

/// An audio payload format the gateway knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 mu-law, static PT 0.
    Pcmu,
    /// G.711 A-law, static PT 8.
    Pcma,
    /// G.722 wideband ADPCM, static PT 9 (RTP clock 8000 by RFC 3551's historical error).
    G722,
    /// Opus (RFC 7587), dynamic PT, RTP clock 48000.
    Opus,
    /// RFC 4733 telephone-event, dynamic PT.
    TelephoneEvent,
}

impl Codec {
    /// The RTP clock rate for this codec (telephone-event follows its audio codec; 8000 here).
    pub fn clock_rate(self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma | Self::G722 | Self::TelephoneEvent => 8000,
            Self::Opus => 48000,
        }
    }

    /// The audio sample rate the codec works at (differs from the clock for G.722).
    pub fn sample_rate(self) -> u32 {
        match self {
            Self::G722 => 16000,
            other => other.clock_rate(),
        }
    }

    /// The static payload type from RFC 3551, if any.
    pub fn static_pt(self) -> Option<u8> {
        match self {
            Self::Pcmu => Some(0),
            Self::Pcma => Some(8),
            Self::G722 => Some(9),
            Self::Opus | Self::TelephoneEvent => None,
        }
    }

    /// The encoding name used in `a=rtpmap`.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Self::Pcmu => "PCMU",
            Self::Pcma => "PCMA",
            Self::G722 => "G722",
            Self::Opus => "opus",
            Self::TelephoneEvent => "telephone-event",
        }
    }

    /// Looks a codec up by its rtpmap encoding name (case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        [
            Self::Pcmu,
            Self::Pcma,
            Self::G722,
            Self::Opus,
            Self::TelephoneEvent,
        ]
        .into_iter()
        .find(|c| c.encoding_name().eq_ignore_ascii_case(name))
    }

    /// The codec that owns a static payload type.
    pub fn from_static_pt(pt: u8) -> Option<Self> {
        match pt {
            0 => Some(Self::Pcmu),
            8 => Some(Self::Pcma),
            9 => Some(Self::G722),
            _ => None,
        }
    }
}

/// A sample-level decoder for one leg: payload bytes in, 16-bit mono PCM out.
#[derive(Debug)]
pub enum AudioDecoder {
    /// G.711 mu-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722 at 64 kbit/s (16 kHz PCM).
    G722(Box<g722::G722Decoder>),
    /// Opus via libopus.
    Opus(opus::OpusDecoder),
}

impl AudioDecoder {
    /// Creates a decoder; `sample_rate` is only used by Opus (8000/16000/48000 output).
    ///
    /// # Errors
    /// [`CodecError::Unsupported`] for telephone-event, or a libopus error.
    pub fn new(codec: Codec, sample_rate: u32) -> Result<Self, CodecError> {
        match codec {
            Codec::Pcmu => Ok(Self::Pcmu),
            Codec::Pcma => Ok(Self::Pcma),
            Codec::G722 => Ok(Self::G722(Box::default())),
            Codec::Opus => Ok(Self::Opus(opus::OpusDecoder::new(sample_rate)?)),
            other => Err(CodecError::Unsupported(other)),
        }
    }

    /// The PCM sample rate this decoder produces.
    pub fn sample_rate(&self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma => 8000,
            Self::G722(_) => 16000,
            Self::Opus(d) => d.sample_rate(),
        }
    }

    /// Decodes one payload, appending PCM to `out`; returns the number of samples added.
    ///
    /// # Errors
    /// A libopus error for a corrupt Opus packet.
    pub fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, CodecError> {
        match self {
            Self::Pcmu => {
                out.extend(payload.iter().map(|&b| g711::ulaw_decode(b)));
                Ok(payload.len())
            }
            Self::Pcma => {
                out.extend(payload.iter().map(|&b| g711::alaw_decode(b)));
                Ok(payload.len())
            }
            Self::G722(d) => {
                d.decode(payload, out);
                Ok(payload.len() * 2)
            }
            Self::Opus(d) => d.decode(payload, out),
        }
    }

    /// Produces `samples` of concealment for a lost frame; `next` is the following packet if
    /// it has already arrived (Opus in-band FEC can rebuild the lost frame from it).
    ///
    /// # Errors
    /// A libopus error.
    pub fn conceal(
        &mut self,
        samples: usize,
        next: Option<&[u8]>,
        out: &mut Vec<i16>,
    ) -> Result<usize, CodecError> {
        match self {
            Self::Opus(d) => match next {
                Some(n) => d.decode_fec(n, samples, out),
                None => d.conceal(samples, out),
            },
            // G.711 and G.722 have no codec PLC; the pipeline's own concealment handles it.
            Self::Pcmu | Self::Pcma | Self::G722(_) => {
                out.extend(std::iter::repeat_n(0, samples));
                Ok(samples)
            }
        }
    }
}

/// A sample-level encoder for one leg: 16-bit mono PCM in, payload bytes out.
#[derive(Debug)]
pub enum AudioEncoder {
    /// G.711 mu-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// G.722 at 64 kbit/s (16 kHz PCM).
    G722(Box<g722::G722Encoder>),
    /// Opus via libopus.
    Opus(opus::OpusEncoder),
}

impl AudioEncoder {
    /// Creates a G.711 or G.722 encoder, or an Opus encoder with `settings`.
    ///
    /// # Errors
    /// [`CodecError::Unsupported`] for telephone-event, or a libopus error.
    pub fn new(codec: Codec, settings: opus::OpusSettings) -> Result<Self, CodecError> {
        match codec {
            Codec::Pcmu => Ok(Self::Pcmu),
            Codec::Pcma => Ok(Self::Pcma),
            Codec::G722 => Ok(Self::G722(Box::default())),
            Codec::Opus => Ok(Self::Opus(opus::OpusEncoder::new(settings)?)),
            other => Err(CodecError::Unsupported(other)),
        }
    }

    /// The PCM sample rate this encoder expects.
    pub fn sample_rate(&self) -> u32 {
        match self {
            Self::Pcmu | Self::Pcma => 8000,
            Self::G722(_) => 16000,
            Self::Opus(e) => e.settings().sample_rate,
        }
    }

    /// Encodes one frame of PCM, appending the payload to `out`.
    ///
    /// # Errors
    /// [`CodecError::FrameLength`] or a libopus error for Opus.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        match self {
            Self::Pcmu => {
                out.extend(pcm.iter().map(|&s| g711::ulaw_encode(s)));
                Ok(())
            }
            Self::Pcma => {
                out.extend(pcm.iter().map(|&s| g711::alaw_encode(s)));
                Ok(())
            }
            Self::G722(e) => e.encode(pcm, out),
            Self::Opus(e) => e.encode(pcm, out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names, static PTs and clock rates match RFC 3551/7587.
    #[test]
    fn codec_identity_table() {
        assert_eq!(Codec::from_name("pcmu"), Some(Codec::Pcmu));
        assert_eq!(Codec::from_name("OPUS"), Some(Codec::Opus));
        assert_eq!(Codec::from_name("GSM"), None);
        assert_eq!(Codec::Pcma.static_pt(), Some(8));
        assert_eq!(Codec::from_static_pt(9), Some(Codec::G722));
        assert_eq!(Codec::G722.clock_rate(), 8000);
        assert_eq!(Codec::G722.sample_rate(), 16000);
        assert_eq!(Codec::Opus.clock_rate(), 48000);
        assert!(matches!(
            AudioEncoder::new(Codec::TelephoneEvent, opus::OpusSettings::narrowband()),
            Err(CodecError::Unsupported(Codec::TelephoneEvent))
        ));
        let enc = AudioEncoder::new(Codec::G722, opus::OpusSettings::narrowband()).expect("g722");
        let dec = AudioDecoder::new(Codec::G722, 8000).expect("g722");
        assert_eq!((enc.sample_rate(), dec.sample_rate()), (16000, 16000));
    }
}
