//! Opus encoder and decoder over libopus (the `opus` crate), with the settings the gateway
//! uses and frame-size handling for every ptime a peer may ask for.
//!
//! The default transcode path runs Opus at the PBX leg's rate: for G.711 the encoder is fed
//! 8 kHz and the decoder asked for 8 kHz (libopus resamples internally and the SILK layer
//! codes narrowband anyway), for G.722 both run at 16 kHz (SILK wideband). That is far
//! cheaper than 48 kHz at complexity 10 and needs no resampler (see `benches/media.rs`).
//! libopus has no 30 ms frame; 30 ms packets are built from three 10 ms frames with the
//! repacketizer.

use super::CodecError;

/// Encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusSettings {
    /// PCM sample rate fed to the encoder: 8000, 12000, 16000, 24000 or 48000.
    pub sample_rate: u32,
    /// Encoder complexity 0..=10.
    pub complexity: i32,
    /// In-band forward error correction (LBRR) on.
    pub inband_fec: bool,
    /// Expected loss percentage, steers how much FEC is spent.
    pub packet_loss_perc: i32,
    /// Target bitrate in bit/s (`None` = libopus default for the rate).
    pub bitrate: Option<i32>,
    /// Packet duration in ms: 10, 20, 30, 40 or 60.
    pub ptime_ms: u32,
}

impl OpusSettings {
    /// The default for Opus⇄G.711: 8 kHz, complexity 1, FEC on, 20 ms.
    ///
    /// Complexity 1 is the cheapest setting the load benchmark found
    /// (docs/benchmarks.md) and the quality test with 5% loss and 40 ms
    /// jitter passes with it (segmental SNR 9.2 dB against 8.9 dB at 5):
    /// the G.711 leg, not the Opus encoder, bounds the quality.
    pub fn narrowband() -> Self {
        Self {
            sample_rate: 8000,
            complexity: 1,
            inband_fec: true,
            packet_loss_perc: 5,
            bitrate: Some(24_000),
            ptime_ms: 20,
        }
    }

    /// The default for Opus⇄G.722: as [`OpusSettings::narrowband`] but fed 16 kHz (and
    /// decoded at 16 kHz), the G.722 leg's own sample rate, so no resampler is needed and
    /// the 4-7 kHz band the PBX leg carries reaches the browser; 32 kbit/s, which the
    /// wideband quality test scores 0.3 dB better than 24 kbit/s at the same CPU cost.
    pub fn wideband() -> Self {
        Self {
            sample_rate: 16000,
            bitrate: Some(32_000),
            ..Self::narrowband()
        }
    }

    /// The settings for a PBX leg speaking `codec`: Opus runs at that codec's sample rate
    /// (16 kHz for G.722, 8 kHz for G.711 and anything else). An Opus PBX leg is
    /// transcoded only when it cannot pass through (another ptime, in-band DTMF): then
    /// both Opus sides run wideband.
    pub fn for_pbx_codec(codec: super::Codec) -> Self {
        match codec {
            super::Codec::G722 | super::Codec::Opus => Self::wideband(),
            _ => Self::narrowband(),
        }
    }

    /// Full-band reference profile: 48 kHz, complexity 10, FEC on, 20 ms.
    pub fn fullband() -> Self {
        Self {
            sample_rate: 48000,
            complexity: 10,
            ..Self::narrowband()
        }
    }

    /// Samples per packet at this rate and ptime.
    pub fn frame_samples(&self) -> usize {
        (self.sample_rate as usize / 1000) * self.ptime_ms as usize
    }
}

fn map_err(e: ::opus::Error) -> CodecError {
    CodecError::Opus(e.to_string())
}

fn check_rate(rate: u32) -> Result<(), CodecError> {
    if matches!(rate, 8000 | 12000 | 16000 | 24000 | 48000) {
        Ok(())
    } else {
        Err(CodecError::SampleRate(rate))
    }
}

/// A mono Opus encoder with DTX off.
pub struct OpusEncoder {
    inner: ::opus::Encoder,
    settings: OpusSettings,
    repack: Option<::opus::Repacketizer>,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Creates an encoder.
    ///
    /// # Errors
    /// [`CodecError::SampleRate`], [`CodecError::FrameDuration`] or a libopus error.
    pub fn new(settings: OpusSettings) -> Result<Self, CodecError> {
        check_rate(settings.sample_rate)?;
        let mut inner = ::opus::Encoder::new(
            settings.sample_rate,
            ::opus::Channels::Mono,
            ::opus::Application::Voip,
        )
        .map_err(map_err)?;
        inner
            .set_complexity(settings.complexity.clamp(0, 10))
            .map_err(map_err)?;
        inner.set_inband_fec(settings.inband_fec).map_err(map_err)?;
        inner
            .set_packet_loss_perc(settings.packet_loss_perc.clamp(0, 100))
            .map_err(map_err)?;
        // DTX off: the PBX side expects a steady packet clock and comfort noise is not negotiated.
        inner.set_dtx(false).map_err(map_err)?;
        inner.set_signal(::opus::Signal::Voice).map_err(map_err)?;
        if let Some(b) = settings.bitrate {
            inner
                .set_bitrate(::opus::Bitrate::Bits(b))
                .map_err(map_err)?;
        }
        let mut enc = Self {
            inner,
            settings,
            repack: None,
        };
        enc.set_ptime(settings.ptime_ms)?;
        Ok(enc)
    }

    /// The active settings.
    pub fn settings(&self) -> &OpusSettings {
        &self.settings
    }

    /// Changes the packet duration (10/20/30/40/60 ms) between packets.
    ///
    /// # Errors
    /// [`CodecError::FrameDuration`] for other values.
    pub fn set_ptime(&mut self, ms: u32) -> Result<(), CodecError> {
        match ms {
            10 | 20 | 40 | 60 => self.repack = None,
            30 => {
                if self.repack.is_none() {
                    self.repack = Some(::opus::Repacketizer::new().map_err(map_err)?);
                }
            }
            other => return Err(CodecError::FrameDuration(other)),
        }
        self.settings.ptime_ms = ms;
        Ok(())
    }

    /// Encodes exactly one packet's worth of PCM ([`OpusSettings::frame_samples`]),
    /// appending the packet to `out`.
    ///
    /// # Errors
    /// [`CodecError::FrameLength`] or a libopus error.
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        let expected = self.settings.frame_samples();
        if pcm.len() != expected {
            return Err(CodecError::FrameLength {
                expected,
                got: pcm.len(),
            });
        }
        let mut buf = [0u8; 1500];
        match &mut self.repack {
            None => {
                let n = self.inner.encode(pcm, &mut buf).map_err(map_err)?;
                out.extend_from_slice(&buf[..n]);
            }
            Some(rp) => {
                let third = expected / 3;
                let mut parts = [[0u8; 500]; 3];
                let mut lens = [0usize; 3];
                for (i, chunk) in pcm.chunks_exact(third).enumerate() {
                    lens[i] = self.inner.encode(chunk, &mut parts[i]).map_err(map_err)?;
                }
                let slices: [&[u8]; 3] = [
                    &parts[0][..lens[0]],
                    &parts[1][..lens[1]],
                    &parts[2][..lens[2]],
                ];
                let n = rp.combine(&slices, &mut buf).map_err(map_err)?;
                out.extend_from_slice(&buf[..n]);
            }
        }
        Ok(())
    }
}

/// A mono Opus decoder with packet-loss concealment and FEC recovery.
pub struct OpusDecoder {
    inner: ::opus::Decoder,
    sample_rate: u32,
    scratch: Vec<i16>,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("sample_rate", &self.sample_rate)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// Creates a decoder producing mono PCM at `sample_rate`.
    ///
    /// # Errors
    /// [`CodecError::SampleRate`] or a libopus error.
    pub fn new(sample_rate: u32) -> Result<Self, CodecError> {
        check_rate(sample_rate)?;
        Ok(Self {
            inner: ::opus::Decoder::new(sample_rate, ::opus::Channels::Mono).map_err(map_err)?,
            sample_rate,
            // 120 ms is the longest Opus packet.
            scratch: vec![0; sample_rate as usize / 1000 * 120],
        })
    }

    /// Output sample rate.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Decodes one packet, appending PCM to `out`; returns samples produced.
    ///
    /// # Errors
    /// A libopus error for a corrupt packet (the caller should conceal instead).
    pub fn decode(&mut self, packet: &[u8], out: &mut Vec<i16>) -> Result<usize, CodecError> {
        if packet.is_empty() {
            return Err(CodecError::Opus("empty packet".into()));
        }
        let n = self
            .inner
            .decode(packet, &mut self.scratch, false)
            .map_err(map_err)?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// Runs libopus PLC for `samples` of lost audio.
    ///
    /// # Errors
    /// A libopus error (for a duration that is not a multiple of 2.5 ms).
    pub fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<usize, CodecError> {
        let samples = samples.min(self.scratch.len());
        let n = self
            .inner
            .decode(&[], &mut self.scratch[..samples], false)
            .map_err(map_err)?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }

    /// Rebuilds a lost frame of `samples` from the in-band FEC carried in `next` (the
    /// packet after the gap); falls back to PLC when `next` carries none.
    ///
    /// # Errors
    /// A libopus error.
    pub fn decode_fec(
        &mut self,
        next: &[u8],
        samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<usize, CodecError> {
        let samples = samples.min(self.scratch.len());
        let n = self
            .inner
            .decode(next, &mut self.scratch[..samples], true)
            .map_err(map_err)?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, n: usize, start: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| {
                let t = i as f64 / f64::from(rate);
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * t).sin()
                    + 4000.0 * (2.0 * std::f64::consts::PI * 1230.0 * t).sin())
                    as i16
            })
            .collect()
    }

    fn energy(x: &[i16]) -> f64 {
        x.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / x.len().max(1) as f64
    }

    /// Every supported ptime at 8 kHz and 48 kHz yields packets that decode to the right length.
    #[test]
    fn opus_all_ptimes_decode_to_frame_length() {
        for rate in [8000, 48000] {
            for ptime in [10, 20, 30, 40, 60] {
                let s = OpusSettings {
                    sample_rate: rate,
                    ptime_ms: ptime,
                    ..OpusSettings::narrowband()
                };
                let mut enc = OpusEncoder::new(s).expect("encoder");
                let mut dec = OpusDecoder::new(rate).expect("decoder");
                let n = s.frame_samples();
                let mut out = Vec::new();
                for f in 0..5 {
                    let mut pkt = Vec::new();
                    enc.encode(&tone(rate, n, f * n), &mut pkt).expect("encode");
                    assert!(!pkt.is_empty());
                    assert_eq!(dec.decode(&pkt, &mut out).expect("decode"), n);
                }
                assert!(energy(&out[n..]) > 1e6, "rate {rate} ptime {ptime}");
            }
        }
        let mut enc = OpusEncoder::new(OpusSettings::narrowband()).expect("encoder");
        assert_eq!(enc.set_ptime(25), Err(CodecError::FrameDuration(25)));
        let mut pkt = Vec::new();
        assert!(matches!(
            enc.encode(&[0; 100], &mut pkt),
            Err(CodecError::FrameLength { .. })
        ));
    }

    /// PLC continues the tone instead of silence; FEC recovery rebuilds a lost frame.
    #[test]
    fn opus_plc_and_fec_produce_audio() {
        let s = OpusSettings {
            packet_loss_perc: 20,
            ..OpusSettings::narrowband()
        };
        let mut enc = OpusEncoder::new(s).expect("encoder");
        let n = s.frame_samples();
        let pkts: Vec<Vec<u8>> = (0..20)
            .map(|f| {
                let mut p = Vec::new();
                enc.encode(&tone(8000, n, f * n), &mut p).expect("encode");
                p
            })
            .collect();
        let mut dec = OpusDecoder::new(8000).expect("decoder");
        let mut out = Vec::new();
        for p in &pkts[..10] {
            dec.decode(p, &mut out).expect("decode");
        }
        let mut plc = Vec::new();
        assert_eq!(dec.conceal(n, &mut plc).expect("plc"), n);
        assert!(energy(&plc) > 1e5, "plc energy {}", energy(&plc));
        let mut fec = Vec::new();
        assert_eq!(dec.decode_fec(&pkts[12], n, &mut fec).expect("fec"), n);
        assert!(energy(&fec) > 1e5, "fec energy {}", energy(&fec));
        assert!(dec.decode(&[0xff, 0xff, 0xff], &mut out).is_err() || out.len() > 10 * n);
        assert!(OpusDecoder::new(44100).is_err());
    }
}
