//! One direction of media conversion between two codecs: decode (or conceal) each frame
//! slot, adapt sample rate and frame size, encode for the other leg.
//!
//! Input is what a jitter buffer yields ([`JitterOutput`]): a frame to decode, or a lost
//! slot to conceal (Opus PLC, Opus in-band FEC when the next packet is already there, or
//! a fading repeat of the last frame for G.711 and G.722). PCM goes through a FIFO so a
//! 20 ms Opus side can feed a 30 ms PBX side. For Opus⇄G.711 the Opus codec runs at 8 kHz
//! and for Opus⇄G.722 at 16 kHz (see `codec::opus`), so no resampler is involved; any
//! other rate pair goes through the polyphase [`Resampler`]. Output durations are in the
//! outgoing codec's RTP clock, not its sample rate (G.722: 160 per 20 ms, 320 samples). An in-band DTMF tone can be mixed into the output for a leg
//! that has no telephone-event.

use std::collections::VecDeque;

use crate::codec::opus::OpusSettings;
use crate::codec::resample::Resampler;
use crate::codec::{AudioDecoder, AudioEncoder, Codec, CodecError};
use crate::dtmf::{ToneDetector, ToneGenerator};
use crate::jitter::JitterOutput;

/// An encoded frame ready for the outgoing leg.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedFrame {
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Duration in the outgoing codec's RTP clock units.
    pub samples: u32,
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TranscodeStats {
    /// Frames decoded.
    pub decoded: u64,
    /// Slots concealed by PLC.
    pub concealed: u64,
    /// Slots rebuilt from Opus FEC.
    pub fec_recovered: u64,
    /// Frames that failed to decode (then concealed).
    pub decode_errors: u64,
    /// Frames encoded.
    pub encoded: u64,
}

/// One transcoding direction. See the module docs.
#[derive(Debug)]
pub struct Transcoder {
    from: Codec,
    to: Codec,
    dec: AudioDecoder,
    enc: AudioEncoder,
    resampler: Option<Resampler>,
    /// PCM at the encoder's rate waiting to fill an outgoing frame.
    fifo: Vec<i16>,
    enc_frame: usize,
    out_samples: u32,
    scratch: Vec<i16>,
    resampled: Vec<i16>,
    /// Last decoded frame (decoder rate) and how many slots in a row were concealed.
    last: Vec<i16>,
    lost_run: u32,
    tone: ToneGenerator,
    /// In-band DTMF detection on the decoded input (for a leg without telephone-event).
    detector: Option<ToneDetector>,
    digits: VecDeque<char>,
    out: VecDeque<EncodedFrame>,
    stats: TranscodeStats,
}

impl Transcoder {
    /// Builds `from` → `to` with outgoing packets of `to_ptime_ms`. `opus` sets the Opus
    /// side: its `sample_rate` is the rate Opus is decoded/encoded at (8000 for the default
    /// narrowband path), its complexity/FEC apply when encoding Opus.
    ///
    /// # Errors
    /// [`CodecError`] for unsupported codecs, rates or frame sizes.
    pub fn new(
        from: Codec,
        to: Codec,
        to_ptime_ms: u32,
        opus: OpusSettings,
    ) -> Result<Self, CodecError> {
        if !(10..=120).contains(&to_ptime_ms) || !to_ptime_ms.is_multiple_of(10) {
            return Err(CodecError::FrameDuration(to_ptime_ms));
        }
        let dec = AudioDecoder::new(from, opus.sample_rate)?;
        let enc = AudioEncoder::new(
            to,
            OpusSettings {
                ptime_ms: to_ptime_ms,
                ..opus
            },
        )?;
        let (dr, er) = (dec.sample_rate(), enc.sample_rate());
        let resampler = if dr == er {
            None
        } else {
            Some(Resampler::new(dr, er)?)
        };
        let enc_frame = er as usize / 1000 * to_ptime_ms as usize;
        Ok(Self {
            from,
            to,
            dec,
            enc,
            resampler,
            fifo: Vec::new(),
            enc_frame,
            out_samples: to.clock_rate() / 1000 * to_ptime_ms,
            scratch: Vec::new(),
            resampled: Vec::new(),
            last: Vec::new(),
            lost_run: 0,
            tone: ToneGenerator::new(er),
            detector: None,
            digits: VecDeque::new(),
            out: VecDeque::new(),
            stats: TranscodeStats::default(),
        })
    }

    /// Source codec.
    pub fn from_codec(&self) -> Codec {
        self.from
    }

    /// Destination codec.
    pub fn to_codec(&self) -> Codec {
        self.to
    }

    /// True when a resampler is in the path.
    pub fn resamples(&self) -> bool {
        self.resampler.is_some()
    }

    /// Counters.
    pub fn stats(&self) -> TranscodeStats {
        self.stats
    }

    /// Starts an in-band DTMF tone of `event` for at most `max_ms` on the output.
    pub fn start_tone(&mut self, event: u8, max_ms: u32) -> bool {
        let rate = self.enc.sample_rate() as usize;
        self.tone.start(event, rate / 1000 * max_ms as usize)
    }

    /// Stops the in-band tone.
    pub fn stop_tone(&mut self) {
        self.tone.stop();
    }

    /// Runs a Goertzel DTMF detector on the decoded input from now on.
    pub fn enable_tone_detection(&mut self) {
        if self.detector.is_none() {
            self.detector = Some(ToneDetector::new(self.dec.sample_rate()));
        }
    }

    /// Next in-band digit detected on the input (once per key press).
    pub fn poll_digit(&mut self) -> Option<char> {
        self.digits.pop_front()
    }

    /// Drops buffered PCM (talkspurt end), so the next frame starts fresh.
    pub fn flush(&mut self) {
        self.fifo.clear();
    }

    /// Processes one jitter-buffer slot.
    ///
    /// # Errors
    /// A [`CodecError`] from the encoder (a decode failure is concealed, not returned).
    pub fn push(&mut self, input: &JitterOutput) -> Result<(), CodecError> {
        let in_clock = self.from.clock_rate();
        let dec_rate = self.dec.sample_rate();
        self.scratch.clear();
        match input {
            JitterOutput::Frame(f) => match self.dec.decode(&f.payload, &mut self.scratch) {
                Ok(_) => {
                    self.stats.decoded += 1;
                    self.lost_run = 0;
                    self.last.clone_from(&self.scratch);
                }
                Err(_) => {
                    self.stats.decode_errors += 1;
                    self.scratch.clear();
                    // Guess the frame length from the last good one.
                    let n = self.last.len().max(dec_rate as usize / 50);
                    self.conceal(n, None)?;
                }
            },
            JitterOutput::Lost { samples, next, .. } => {
                let n = (u64::from(*samples) * u64::from(dec_rate) / u64::from(in_clock)) as usize;
                self.conceal(n, next.as_deref())?;
            }
        }
        let pcm = std::mem::take(&mut self.scratch);
        if let Some(d) = self.detector.as_mut() {
            self.digits.extend(d.feed(&pcm));
        }
        match &mut self.resampler {
            Some(r) => {
                self.resampled.clear();
                r.process(&pcm, &mut self.resampled);
                self.fifo.extend_from_slice(&self.resampled);
            }
            None => self.fifo.extend_from_slice(&pcm),
        }
        self.scratch = pcm;
        while self.fifo.len() >= self.enc_frame {
            let mut frame: Vec<i16> = self.fifo.drain(..self.enc_frame).collect();
            if self.tone.is_active() {
                self.tone.fill(&mut frame);
            }
            let mut payload = Vec::with_capacity(self.enc_frame);
            self.enc.encode(&frame, &mut payload)?;
            self.stats.encoded += 1;
            self.out.push_back(EncodedFrame {
                payload,
                samples: self.out_samples,
            });
        }
        Ok(())
    }

    fn conceal(&mut self, n: usize, next: Option<&[u8]>) -> Result<(), CodecError> {
        if n == 0 {
            return Ok(());
        }
        self.lost_run += 1;
        match &mut self.dec {
            AudioDecoder::Opus(_) => {
                let res = self.dec.conceal(n, next, &mut self.scratch);
                if res.is_err() {
                    self.scratch.resize(n, 0);
                }
                if next.is_some() {
                    self.stats.fec_recovered += 1;
                } else {
                    self.stats.concealed += 1;
                }
            }
            AudioDecoder::Pcmu | AudioDecoder::Pcma | AudioDecoder::G722(_) => {
                // Fading repetition of the last frame: cheap and better than silence for
                // isolated losses; after ~60 ms it has faded out.
                let gain = 0.6f32.powi(self.lost_run as i32);
                if self.last.is_empty() {
                    self.scratch.resize(n, 0);
                } else {
                    self.scratch.extend(
                        (0..n).map(|i| (f32::from(self.last[i % self.last.len()]) * gain) as i16),
                    );
                }
                self.stats.concealed += 1;
            }
        }
        Ok(())
    }

    /// Next encoded frame for the outgoing leg.
    pub fn poll_frame(&mut self) -> Option<EncodedFrame> {
        self.out.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::g711;
    use crate::jitter::Frame;

    fn frame(payload: Vec<u8>) -> JitterOutput {
        JitterOutput::Frame(Frame {
            seq: 0,
            timestamp: 0,
            marker: false,
            payload,
        })
    }

    fn tone8k(n: usize, start: usize) -> Vec<i16> {
        (start..start + n)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 500.0 * i as f64 / 8000.0).sin()) as i16
            })
            .collect()
    }

    /// PCMU 20 ms → Opus 20 ms → PCMU 30 ms: frame sizes adapt, no resampler on the default path.
    #[test]
    fn g711_opus_round_trip_with_ptime_change() {
        let mut up =
            Transcoder::new(Codec::Pcmu, Codec::Opus, 20, OpusSettings::narrowband()).expect("ok");
        let mut down =
            Transcoder::new(Codec::Opus, Codec::Pcmu, 30, OpusSettings::narrowband()).expect("ok");
        assert!(!up.resamples() && !down.resamples());
        let mut out = Vec::new();
        for f in 0..30 {
            let pcmu: Vec<u8> = tone8k(160, f * 160)
                .iter()
                .map(|&s| g711::ulaw_encode(s))
                .collect();
            up.push(&frame(pcmu)).expect("push");
            while let Some(op) = up.poll_frame() {
                assert_eq!(op.samples, 960, "opus clock units per 20 ms");
                down.push(&frame(op.payload)).expect("push");
            }
            while let Some(p) = down.poll_frame() {
                assert_eq!((p.payload.len(), p.samples), (240, 240));
                out.extend(p.payload.iter().map(|&b| g711::ulaw_decode(b)));
            }
        }
        assert_eq!(out.len(), 20 * 240);
        let e: f64 = out[1000..]
            .iter()
            .map(|&s| f64::from(s).powi(2))
            .sum::<f64>()
            / (out.len() - 1000) as f64;
        assert!(e.sqrt() > 3000.0, "tone survives, rms {}", e.sqrt());
    }

    /// Loss on the Opus side is concealed (PLC or FEC) so the G.711 side gets a full frame.
    #[test]
    fn loss_is_concealed_to_full_frames() {
        let mut enc = crate::codec::opus::OpusEncoder::new(OpusSettings::narrowband()).expect("ok");
        let mut down =
            Transcoder::new(Codec::Opus, Codec::Pcma, 20, OpusSettings::narrowband()).expect("ok");
        let pkts: Vec<Vec<u8>> = (0..10)
            .map(|f| {
                let mut p = Vec::new();
                enc.encode(&tone8k(160, f * 160), &mut p).expect("enc");
                p
            })
            .collect();
        for (i, p) in pkts.iter().enumerate() {
            let input = match i {
                4 => JitterOutput::Lost {
                    timestamp: 0,
                    samples: 960,
                    next: Some(pkts[5].clone()),
                },
                7 => JitterOutput::Lost {
                    timestamp: 0,
                    samples: 960,
                    next: None,
                },
                _ => frame(p.clone()),
            };
            down.push(&input).expect("push");
            assert_eq!(
                down.poll_frame().map(|f| f.payload.len()),
                Some(160),
                "slot {i}"
            );
        }
        let s = down.stats();
        assert_eq!((s.decoded, s.fec_recovered, s.concealed), (8, 1, 1));
        // Garbage is concealed, not propagated as an error.
        down.push(&frame(vec![0xff; 3])).expect("concealed");
        assert_eq!(down.poll_frame().map(|f| f.payload.len()), Some(160));
    }

    /// The full-band profile (Opus at 48 kHz) goes through the resampler and still works.
    #[test]
    fn fullband_profile_uses_resampler() {
        let mut up =
            Transcoder::new(Codec::Pcmu, Codec::Opus, 20, OpusSettings::fullband()).expect("ok");
        assert!(up.resamples());
        for f in 0..5 {
            let pcmu: Vec<u8> = tone8k(160, f * 160)
                .iter()
                .map(|&s| g711::ulaw_encode(s))
                .collect();
            up.push(&frame(pcmu)).expect("push");
        }
        // The resampler's delay line holds back a few samples; 4 of 5 frames are out.
        let mut n = 0;
        while up.poll_frame().is_some() {
            n += 1;
        }
        assert!((4..=5).contains(&n), "{n}");
        assert!(
            Transcoder::new(
                Codec::Pcmu,
                Codec::TelephoneEvent,
                20,
                OpusSettings::narrowband()
            )
            .is_err()
        );
        assert!(Transcoder::new(Codec::Pcmu, Codec::Pcma, 25, OpusSettings::narrowband()).is_err());
    }

    /// An in-band tone replaces the audio while active and is detectable after G.711.
    #[test]
    fn inband_tone_on_output() {
        let mut t =
            Transcoder::new(Codec::Pcma, Codec::Pcmu, 20, OpusSettings::narrowband()).expect("ok");
        assert!(t.start_tone(11, 100));
        let mut det = crate::dtmf::ToneDetector::new(8000);
        let mut digits = Vec::new();
        for _ in 0..10 {
            t.push(&frame(vec![0xd5; 160])).expect("push");
            while let Some(f) = t.poll_frame() {
                let pcm: Vec<i16> = f.payload.iter().map(|&b| g711::ulaw_decode(b)).collect();
                digits.extend(det.feed(&pcm));
            }
        }
        assert_eq!(digits, vec!['#']);
    }
}
