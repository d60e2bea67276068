//! G.722 wideband audio (ITU-T G.722, 64 kbit/s, mode 1): 16 kHz PCM in 8-bit codes,
//! two sub-bands split by a 24-tap QMF and coded by sub-band ADPCM (6 bits low band,
//! 2 bits high band).
//!
//! Integer arithmetic follows the recommendation block by block (the block names of
//! G.722 section 6 are kept in the comments), so the output is bit-exact with other
//! conforming implementations; `tests/g722_reference.rs` checks that byte for byte
//! against the spandsp-derived `g722` package from PyPI.
//!
//! One code byte is one 16 kHz sample pair, so a 20 ms frame is 320 samples and 160
//! bytes. Its RTP clock is 8000 Hz (RFC 3551 keeps the rate of the original erroneous
//! registration), which is why [`super::Codec::clock_rate`] and
//! [`super::Codec::sample_rate`] differ for it.

use super::CodecError;

/// Taps of the transmit and receive QMF (G.722 Table 11), one half; the filter is
/// symmetric, the odd phase reads it backwards.
const QMF: [i32; 12] = [3, -11, 12, 32, -210, 951, 3876, -805, 362, -156, 53, -11];

/// Low-band quantiser decision levels (QUANTL, Table 14), scaled by 8.
const Q6: [i32; 31] = [
    0, 35, 72, 110, 150, 190, 233, 276, 323, 370, 422, 473, 530, 587, 650, 714, 786, 858, 940,
    1023, 1121, 1219, 1339, 1458, 1612, 1765, 1980, 2195, 2557, 2919, 0,
];
/// 6-bit low-band codes for a negative / positive difference, by quantiser interval.
const ILN: [i32; 31] = [
    0, 63, 62, 31, 30, 29, 28, 27, 26, 25, 24, 23, 22, 21, 20, 19, 18, 17, 16, 15, 14, 13, 12, 11,
    10, 9, 8, 7, 6, 5, 4,
];
const ILP: [i32; 31] = [
    0, 61, 60, 59, 58, 57, 56, 55, 54, 53, 52, 51, 50, 49, 48, 47, 46, 45, 44, 43, 42, 41, 40, 39,
    38, 37, 36, 35, 34, 33, 32,
];
/// Inverse quantiser outputs for the 4-bit (QM4), 6-bit (QM6) low band and the 2-bit
/// high band (QM2), G.722 Tables 16 and 17.
const QM4: [i32; 16] = [
    0, -20456, -12896, -8968, -6288, -4240, -2584, -1200, 20456, 12896, 8968, 6288, 4240, 2584,
    1200, 0,
];
const QM6: [i32; 64] = [
    -136, -136, -136, -136, -24808, -21904, -19008, -16704, -14984, -13512, -12280, -11192, -10232,
    -9360, -8576, -7856, -7192, -6576, -6000, -5456, -4944, -4464, -4008, -3576, -3168, -2776,
    -2400, -2032, -1688, -1360, -1040, -728, 24808, 21904, 19008, 16704, 14984, 13512, 12280,
    11192, 10232, 9360, 8576, 7856, 7192, 6576, 6000, 5456, 4944, 4464, 4008, 3576, 3168, 2776,
    2400, 2032, 1688, 1360, 1040, 728, 432, 136, -432, -136,
];
const QM2: [i32; 4] = [-7408, -1616, 7408, 1616];
/// Log scale factor multipliers (LOGSCL/LOGSCH) and the code → multiplier index maps.
const WL: [i32; 8] = [-60, -30, 58, 172, 334, 538, 1198, 3042];
const RL42: [i32; 16] = [0, 7, 6, 5, 4, 3, 2, 1, 7, 6, 5, 4, 3, 2, 1, 0];
const WH: [i32; 3] = [0, -214, 798];
const RH2: [usize; 4] = [2, 1, 2, 1];
/// High-band codes for a negative / positive difference (QUANTH).
const IHN: [i32; 3] = [0, 1, 0];
const IHP: [i32; 3] = [0, 3, 2];
/// Antilog table of SCALEL/SCALEH.
const ILB: [i32; 32] = [
    2048, 2093, 2139, 2186, 2233, 2282, 2332, 2383, 2435, 2489, 2543, 2599, 2656, 2714, 2774, 2834,
    2896, 2960, 3025, 3091, 3158, 3228, 3298, 3371, 3444, 3520, 3597, 3676, 3756, 3838, 3922, 4008,
];

/// Limits to the 16-bit range, as the recommendation's saturating adders do.
#[inline]
fn sat(v: i32) -> i32 {
    v.clamp(-32768, 32767)
}

/// SCALEL (`shift` 8) / SCALEH (`shift` 10): quantiser scale factor from the log one.
#[inline]
fn scale(nb: i32, shift: i32) -> i32 {
    let mant = ILB[((nb >> 6) & 31) as usize];
    let exp = shift - (nb >> 11);
    let v = if exp < 0 { mant << -exp } else { mant >> exp };
    v << 2
}

/// The adaptive predictor of one sub-band (block 4: two poles, six zeros) and its scale
/// factor, shared by encoder and decoder so both track the same state.
#[derive(Debug, Clone, Default)]
struct Band {
    /// Signal estimate (PREDIC).
    s: i32,
    /// Pole and zero parts of the estimate.
    sp: i32,
    sz: i32,
    /// Reconstructed signal, partially reconstructed signal, pole coefficients (index 0 = now).
    r: [i32; 3],
    p: [i32; 3],
    a: [i32; 3],
    /// Quantised differences and zero coefficients.
    d: [i32; 7],
    b: [i32; 7],
    /// Log scale factor and scale factor.
    nb: i32,
    det: i32,
}

impl Band {
    fn new(det: i32) -> Self {
        Band {
            det,
            ..Band::default()
        }
    }

    /// LOGSCL/LOGSCH then SCALEL/SCALEH: adapts the scale factor to multiplier `w`.
    #[inline]
    fn adapt_scale(&mut self, w: i32, max: i32, shift: i32) {
        self.nb = (((self.nb * 127) >> 7) + w).clamp(0, max);
        self.det = scale(self.nb, shift);
    }

    /// Block 4: updates the predictor with the quantised difference `d`.
    fn update(&mut self, d: i32) {
        // RECONS, PARREC
        self.d[0] = d;
        self.r[0] = sat(self.s + d);
        self.p[0] = sat(self.sz + d);

        // UPPOL2: second pole coefficient, from the signs of p
        let sg0 = self.p[0] >> 15;
        let sg1 = self.p[1] >> 15;
        let sg2 = self.p[2] >> 15;
        let wd1 = sat(self.a[1] << 2);
        let wd2 = if sg0 == sg1 { -wd1 } else { wd1 }.min(32767);
        let a2 = ((wd2 >> 7) + if sg0 == sg2 { 128 } else { -128 } + ((self.a[2] * 32512) >> 15))
            .clamp(-12288, 12288);

        // UPPOL1: first pole coefficient, bounded by the new second one
        let wd1 = if sg0 == sg1 { 192 } else { -192 };
        let lim = sat(15360 - a2);
        let a1 = sat(wd1 + ((self.a[1] * 32640) >> 15)).clamp(-lim, lim);

        // UPZERO: sign-sign update of the zero coefficients
        let step = if d == 0 { 0 } else { 128 };
        let sgd = d >> 15;
        let mut b = [0i32; 7];
        for ((bn, &bo), &dd) in b.iter_mut().zip(&self.b).zip(&self.d).skip(1) {
            let w = if dd >> 15 == sgd { step } else { -step };
            *bn = sat(w + ((bo * 32640) >> 15));
        }

        // DELAYA
        for i in (1..7).rev() {
            self.d[i] = self.d[i - 1];
        }
        self.b[1..].copy_from_slice(&b[1..]);
        self.r[2] = self.r[1];
        self.r[1] = self.r[0];
        self.p[2] = self.p[1];
        self.p[1] = self.p[0];
        self.a[1] = a1;
        self.a[2] = a2;

        // FILTEP, FILTEZ, PREDIC
        let pole1 = (self.a[1] * sat(self.r[1] + self.r[1])) >> 15;
        let pole2 = (self.a[2] * sat(self.r[2] + self.r[2])) >> 15;
        self.sp = sat(pole1 + pole2);
        let mut sz = 0;
        for i in (1..7).rev() {
            sz += (self.b[i] * sat(self.d[i] + self.d[i])) >> 15;
        }
        self.sz = sat(sz);
        self.s = sat(self.sp + self.sz);
    }
}

/// The QMF delay line: 24 taps of sample history.
#[derive(Debug, Clone, Default)]
struct Qmf {
    x: [i32; 24],
}

impl Qmf {
    /// Shifts in a sample pair and returns the two polyphase sums: the even taps of the
    /// history against the filter forwards, the odd taps against it backwards.
    #[inline]
    fn push(&mut self, first: i32, second: i32) -> (i32, i32) {
        self.x.copy_within(2.., 0);
        self.x[22] = first;
        self.x[23] = second;
        let mut fwd = 0;
        let mut back = 0;
        for i in 0..12 {
            fwd += self.x[2 * i] * QMF[i];
            back += self.x[2 * i + 1] * QMF[11 - i];
        }
        (fwd, back)
    }
}

/// G.722 encoder, 64 kbit/s: 16 kHz PCM in, one byte per sample pair out.
#[derive(Debug, Clone)]
pub struct G722Encoder {
    qmf: Qmf,
    low: Band,
    high: Band,
}

impl Default for G722Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Encoder {
    /// A fresh encoder (state as after a G.722 reset).
    pub fn new() -> Self {
        G722Encoder {
            qmf: Qmf::default(),
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// Encodes 16 kHz PCM, appending `pcm.len() / 2` code bytes to `out`.
    ///
    /// # Errors
    /// [`CodecError::FrameLength`] when `pcm` has an odd number of samples (G.722 codes
    /// sample pairs; nothing is encoded then).
    pub fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<(), CodecError> {
        if !pcm.len().is_multiple_of(2) {
            return Err(CodecError::FrameLength {
                expected: pcm.len() + 1,
                got: pcm.len(),
            });
        }
        out.reserve(pcm.len() / 2);
        for pair in pcm.chunks_exact(2) {
            out.push(self.encode_pair(i32::from(pair[0]), i32::from(pair[1])));
        }
        Ok(())
    }

    fn encode_pair(&mut self, first: i32, second: i32) -> u8 {
        // Transmit QMF: split into a 0-4 kHz and a 4-8 kHz band at 8 kHz each.
        let (fwd, back) = self.qmf.push(first, second);
        let xlow = (back + fwd) >> 14;
        let xhigh = (back - fwd) >> 14;

        // Low band. SUBTRA, QUANTL
        let low = &mut self.low;
        let el = sat(xlow - low.s);
        let mag = if el >= 0 { el } else { -(el + 1) };
        let mut i = 1;
        while i < 30 && mag >= (Q6[i] * low.det) >> 12 {
            i += 1;
        }
        let ilow = if el < 0 { ILN[i] } else { ILP[i] };
        // INVQAL on the 4 most significant bits, which is all the predictor sees
        let ril = (ilow >> 2) as usize;
        let dlow = (low.det * QM4[ril]) >> 15;
        low.adapt_scale(WL[RL42[ril] as usize], 18432, 8);
        low.update(dlow);

        // High band. SUBTRA, QUANTH, INVQAH
        let high = &mut self.high;
        let eh = sat(xhigh - high.s);
        let mag = if eh >= 0 { eh } else { -(eh + 1) };
        let mih = if mag >= (564 * high.det) >> 12 { 2 } else { 1 };
        let ihigh = if eh < 0 { IHN[mih] } else { IHP[mih] };
        let dhigh = (high.det * QM2[ihigh as usize]) >> 15;
        high.adapt_scale(WH[RH2[ihigh as usize]], 22528, 10);
        high.update(dhigh);

        ((ihigh << 6) | ilow) as u8
    }
}

/// G.722 decoder, 64 kbit/s: one byte per sample pair in, 16 kHz PCM out.
#[derive(Debug, Clone)]
pub struct G722Decoder {
    qmf: Qmf,
    low: Band,
    high: Band,
}

impl Default for G722Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl G722Decoder {
    /// A fresh decoder (state as after a G.722 reset).
    pub fn new() -> Self {
        G722Decoder {
            qmf: Qmf::default(),
            low: Band::new(32),
            high: Band::new(8),
        }
    }

    /// Decodes code bytes, appending two 16 kHz samples per byte to `out`. Every byte
    /// is a valid code, so decoding cannot fail.
    pub fn decode(&mut self, codes: &[u8], out: &mut Vec<i16>) {
        out.reserve(codes.len() * 2);
        for &code in codes {
            let (a, b) = self.decode_code(code);
            out.push(a);
            out.push(b);
        }
    }

    fn decode_code(&mut self, code: u8) -> (i16, i16) {
        let ilow = usize::from(code & 0x3f);
        let ihigh = usize::from(code >> 6);

        // Low band. INVQBL with all 6 bits, RECONS, LIMIT
        let low = &mut self.low;
        let rlow = (low.s + ((low.det * QM6[ilow]) >> 15)).clamp(-16384, 16383);
        // INVQAL with the 4 most significant bits feeds the predictor (as in the encoder)
        let ril = ilow >> 2;
        let dlow = (low.det * QM4[ril]) >> 15;
        low.adapt_scale(WL[RL42[ril] as usize], 18432, 8);
        low.update(dlow);

        // High band. INVQAH, RECONS, LIMIT
        let high = &mut self.high;
        let dhigh = (high.det * QM2[ihigh]) >> 15;
        let rhigh = (dhigh + high.s).clamp(-16384, 16383);
        high.adapt_scale(WH[RH2[ihigh]], 22528, 10);
        high.update(dhigh);

        // Receive QMF: interleave the two bands back into 16 kHz.
        let (fwd, back) = self.qmf.push(rlow + rhigh, rlow - rhigh);
        (sat(back >> 11) as i16, sat(fwd >> 11) as i16)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(freq: f64, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / 16000.0).sin()) as i16)
            .collect()
    }

    /// Best-gain SNR of `y` against `x` delayed by `lag` samples.
    fn snr_at(x: &[i16], y: &[i16], lag: usize) -> f64 {
        let n = x.len().min(y.len() - lag);
        let (mut sig, mut err) = (0.0, 0.0);
        for i in 0..n {
            let a = f64::from(x[i]);
            let b = f64::from(y[i + lag]);
            sig += a * a;
            err += (a - b) * (a - b);
        }
        10.0 * (sig / err.max(1.0)).log10()
    }

    /// Tones in both sub-bands survive encode + decode with the QMF's 22-sample delay.
    #[test]
    fn tones_in_both_bands_round_trip() {
        for freq in [440.0, 1800.0, 5500.0] {
            let x = tone(freq, 16000, 8000.0);
            let mut enc = G722Encoder::new();
            let mut dec = G722Decoder::new();
            let mut codes = Vec::new();
            enc.encode(&x, &mut codes).expect("even length");
            assert_eq!(codes.len(), 8000);
            let mut y = Vec::new();
            dec.decode(&codes, &mut y);
            assert_eq!(y.len(), 16000);
            let (lag, snr) = (0..40)
                .map(|l| (l, snr_at(&x[2000..14000], &y[2000..], l)))
                .fold((0, f64::MIN), |b, c| if c.1 > b.1 { c } else { b });
            assert_eq!(lag, 22, "QMF delay at {freq} Hz");
            assert!(snr > 20.0, "{freq} Hz: SNR {snr:.1} dB");
        }
    }

    /// Silence stays (nearly) silent, full-scale input saturates without panicking, and an
    /// odd frame is refused.
    #[test]
    fn edges() {
        let mut enc = G722Encoder::new();
        let mut codes = Vec::new();
        enc.encode(&[0; 320], &mut codes).expect("ok");
        let mut dec = G722Decoder::new();
        let mut y = Vec::new();
        dec.decode(&codes, &mut y);
        assert!(y.iter().all(|v| v.abs() < 16), "{:?}", &y[..16]);
        let square: Vec<i16> = (0..3200)
            .map(|i| if (i / 8) % 2 == 0 { i16::MAX } else { i16::MIN })
            .collect();
        codes.clear();
        enc.encode(&square, &mut codes).expect("ok");
        dec.decode(&codes, &mut y);
        // every byte is a valid code
        let all: Vec<u8> = (0..=255).collect();
        dec.decode(&all, &mut y);
        assert!(matches!(
            enc.encode(&[1, 2, 3], &mut codes),
            Err(CodecError::FrameLength { got: 3, .. })
        ));
    }
}
