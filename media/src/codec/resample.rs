//! A band-limited polyphase resampler for the rational ratios the gateway needs
//! (48 kHz ⇄ 8 kHz, 48 kHz ⇄ 16 kHz, 16 kHz ⇄ 8 kHz).
//!
//! One Kaiser-windowed sinc prototype (passband to 85 % of the lower Nyquist, stopband
//! from the lower Nyquist on, >= 70 dB design attenuation) is split into L polyphase
//! branches, so an interpolator never multiplies the inserted zeros and a decimator never
//! computes the dropped outputs. It is streaming: state carries across calls, and
//! the output length over a call sequence is exact (`inputs * to / from`).

use super::CodecError;

/// Streaming mono resampler between two fixed rates.
#[derive(Debug, Clone)]
pub struct Resampler {
    from: u32,
    to: u32,
    up: usize,
    down: usize,
    taps: usize,
    /// Branch `p` holds `h[p + q*up]` for q = taps-1 down to 0.
    phases: Vec<Vec<f32>>,
    buf: Vec<f32>,
    /// Position of the next output on the upsampled grid, relative to `buf[0]`.
    next: usize,
    delay: f64,
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 { a } else { gcd(b, a % b) }
}

fn bessel_i0(x: f64) -> f64 {
    let mut sum = 1.0;
    let mut term = 1.0;
    let q = x * x / 4.0;
    for k in 1..64 {
        term *= q / (k as f64 * k as f64);
        sum += term;
        if term < sum * 1e-16 {
            break;
        }
    }
    sum
}

const ATTENUATION_DB: f64 = 75.0;

/// Dot product with eight independent accumulators so the compiler can use SIMD lanes.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, ra) = a.as_chunks::<8>();
    let (cb, rb) = b.as_chunks::<8>();
    for (x, y) in ca.iter().zip(cb) {
        for k in 0..8 {
            acc[k] += x[k] * y[k];
        }
    }
    let tail: f32 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    acc.iter().sum::<f32>() + tail
}

impl Resampler {
    /// Creates a resampler from `from` Hz to `to` Hz (both 8000, 16000 or 48000 or any pair
    /// whose reduced ratio has factors of at most 12).
    ///
    /// # Errors
    /// [`CodecError::SampleRate`] for zero or awkward ratios.
    pub fn new(from: u32, to: u32) -> Result<Self, CodecError> {
        if from == 0 || to == 0 {
            return Err(CodecError::SampleRate(from.min(to)));
        }
        let g = gcd(from, to);
        let (up, down) = ((to / g) as usize, (from / g) as usize);
        if up > 12 || down > 12 {
            return Err(CodecError::SampleRate(to));
        }
        let fs_up = f64::from(from) * up as f64;
        let nyq_low = f64::from(from.min(to)) / 2.0;
        let pass = 0.85 * nyq_low;
        let stop = nyq_low;
        let fc = (pass + stop) / 2.0 / fs_up; // cycles per sample on the upsampled grid
        let dw = 2.0 * std::f64::consts::PI * (stop - pass) / fs_up;
        let n_est = ((ATTENUATION_DB - 7.95) / (2.285 * dw)).ceil() as usize + 1;
        let taps = n_est.div_ceil(up).max(1);
        let n = taps * up;
        let beta = 0.1102 * (ATTENUATION_DB - 8.7);
        let centre = (n as f64 - 1.0) / 2.0;
        let mut h: Vec<f64> = (0..n)
            .map(|i| {
                let x = i as f64 - centre;
                let sinc = if x == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
                };
                let r = 2.0 * i as f64 / (n as f64 - 1.0) - 1.0;
                sinc * bessel_i0(beta * (1.0 - r * r).max(0.0).sqrt()) / bessel_i0(beta)
            })
            .collect();
        // Unity passband gain after zero-stuffing by `up`.
        let sum: f64 = h.iter().sum();
        for v in &mut h {
            *v *= up as f64 / sum;
        }
        // Branch `p` is stored time-reversed so it lines up with the input window (oldest
        // sample first) and the inner loop runs forwards over both, which vectorises.
        let phases = (0..up)
            .map(|p| (0..taps).rev().map(|q| h[p + q * up] as f32).collect())
            .collect();
        Ok(Self {
            from,
            to,
            up,
            down,
            taps,
            phases,
            buf: vec![0.0; taps - 1],
            next: (taps - 1) * up,
            delay: centre / up as f64,
        })
    }

    /// Input rate in Hz.
    pub fn from_rate(&self) -> u32 {
        self.from
    }

    /// Output rate in Hz.
    pub fn to_rate(&self) -> u32 {
        self.to
    }

    /// Group delay of the filter, in input samples.
    pub fn delay_input_samples(&self) -> f64 {
        self.delay
    }

    /// Resamples `input`, appending the produced samples to `out` (saturating to i16).
    pub fn process(&mut self, input: &[i16], out: &mut Vec<i16>) {
        self.buf.extend(input.iter().map(|&s| f32::from(s)));
        while self.next / self.up < self.buf.len() {
            let i = self.next / self.up;
            let p = self.next % self.up;
            let coeffs = &self.phases[p];
            let window = &self.buf[i + 1 - self.taps..=i];
            out.push(dot(coeffs, window).round().clamp(-32768.0, 32767.0) as i16);
            self.next += self.down;
        }
        let drop = (self.next / self.up).saturating_sub(self.taps - 1);
        let drop = drop.min(self.buf.len());
        self.buf.drain(..drop);
        self.next -= drop * self.up;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, freq: f64, n: usize, amp: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                (amp * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin())
                    as i16
            })
            .collect()
    }

    /// Amplitude of `freq` in `x` (least-squares fit of sin/cos), skipping the transient.
    fn amplitude(x: &[i16], rate: u32, freq: f64) -> f64 {
        let (a, b) = fit(x, rate, freq);
        (a * a + b * b).sqrt()
    }

    fn rms(x: &[i16]) -> f64 {
        (x.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
    }

    /// Runs `input` through in uneven chunks (to exercise streaming) and drops the transient.
    fn run(r: &mut Resampler, input: &[i16]) -> Vec<i16> {
        let mut out = Vec::new();
        for chunk in input.chunks(337) {
            r.process(chunk, &mut out);
        }
        let skip = (r.delay_input_samples() * 2.0 * f64::from(r.to_rate())
            / f64::from(r.from_rate())) as usize
            + 10;
        out[skip..].to_vec()
    }

    /// 48k→8k and 48k→16k sweeps: passband within 0.1 dB, stopband >= 60 dB down.
    #[test]
    fn decimation_passband_and_stopband() {
        for (to, pass_top, nyq) in [(8000u32, 3400.0, 4000.0), (16000, 6800.0, 8000.0)] {
            let mut f = 100.0;
            while f <= pass_top {
                let mut r = Resampler::new(48000, to).expect("ratio");
                let y = run(&mut r, &sine(48000, f, 48000 / 2, 10000.0));
                let a = amplitude(&y, to, f);
                let err_db = 20.0 * (a / 10000.0).log10();
                assert!(
                    err_db.abs() < 0.1,
                    "{to}: {f} Hz passband error {err_db:.3} dB"
                );
                f += 250.0;
            }
            let mut f = nyq;
            while f < 24000.0 {
                let mut r = Resampler::new(48000, to).expect("ratio");
                let x = sine(48000, f, 48000 / 2, 10000.0);
                let y = run(&mut r, &x);
                let att = 20.0 * (rms(&y) / rms(&x)).log10();
                assert!(att < -60.0, "{to}: {f} Hz only {att:.1} dB down");
                f += 370.0;
            }
        }
    }

    /// 8k→48k and 16k→48k: tones pass unchanged, images above the input Nyquist are >= 60 dB down.
    #[test]
    fn interpolation_passband_and_images() {
        for from in [8000u32, 16000] {
            let mut f = 200.0;
            while f < 0.85 * f64::from(from) / 2.0 {
                let mut r = Resampler::new(from, 48000).expect("ratio");
                let y = run(&mut r, &sine(from, f, from as usize / 2, 10000.0));
                let a = amplitude(&y, 48000, f);
                assert!((20.0 * (a / 10000.0).log10()).abs() < 0.1, "{from}: {f} Hz");
                // Everything that is not the tone is image or noise.
                let (s, c) = sin_cos_fit(&y, f);
                let resid: Vec<i16> = y
                    .iter()
                    .enumerate()
                    .map(|(i, &v)| {
                        let t = 2.0 * std::f64::consts::PI * f * i as f64 / 48000.0;
                        (f64::from(v) - (s * t.sin() + c * t.cos())) as i16
                    })
                    .collect();
                let img = 20.0 * (rms(&resid) / 7071.0).log10();
                assert!(img < -60.0, "{from}: {f} Hz images at {img:.1} dB");
                f += 700.0;
            }
        }
    }

    /// Least-squares fit of `s*sin + c*cos` at `f` (exact even for a fractional number of cycles).
    fn sin_cos_fit(x: &[i16], f: f64) -> (f64, f64) {
        fit(x, 48000, f)
    }

    fn fit(x: &[i16], rate: u32, f: f64) -> (f64, f64) {
        let (mut ss, mut cc, mut sc, mut ys, mut yc) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, &v) in x.iter().enumerate() {
            let ph = 2.0 * std::f64::consts::PI * f * i as f64 / f64::from(rate);
            let (sn, cs) = ph.sin_cos();
            ss += sn * sn;
            cc += cs * cs;
            sc += sn * cs;
            ys += f64::from(v) * sn;
            yc += f64::from(v) * cs;
        }
        let det = ss * cc - sc * sc;
        ((ys * cc - yc * sc) / det, (yc * ss - ys * sc) / det)
    }

    /// Output length is exact over many calls, and bad rates are refused.
    #[test]
    fn exact_lengths_and_bad_rates() {
        let mut r = Resampler::new(48000, 8000).expect("ratio");
        let mut out = Vec::new();
        for _ in 0..50 {
            r.process(&[0; 960], &mut out);
        }
        assert_eq!(out.len(), 50 * 160);
        let mut r = Resampler::new(8000, 48000).expect("ratio");
        let mut out = Vec::new();
        for _ in 0..50 {
            r.process(&[0; 160], &mut out);
        }
        assert_eq!(out.len(), 50 * 960);
        assert!(Resampler::new(44100, 8000).is_err());
        assert!(Resampler::new(0, 8000).is_err());
    }
}
