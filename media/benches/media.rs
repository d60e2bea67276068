//! Media hot-path benchmarks: Opus encode+decode per 20 ms frame at 48 kHz/c10 versus the
//! narrowband (8 kHz) and wideband (16 kHz) transcoding profiles, G.711, G.722, the
//! resampler, and full Opus→PCMU→Opus and Opus→G722→Opus transcodes per frame.

use criterion::{Criterion, black_box, criterion_group, criterion_main};
use media::codec::Codec;
use media::codec::g711;
use media::codec::g722::{G722Decoder, G722Encoder};
use media::codec::opus::{OpusDecoder, OpusEncoder, OpusSettings};
use media::codec::resample::Resampler;
use media::jitter::{Frame, JitterOutput};
use media::transcode::Transcoder;

fn speechish(rate: u32, n: usize) -> Vec<i16> {
    (0..n)
        .map(|i| {
            let t = i as f64 / f64::from(rate);
            let env = 0.5 + 0.5 * (2.0 * std::f64::consts::PI * 4.0 * t).sin();
            (env * (6000.0 * (2.0 * std::f64::consts::PI * 180.0 * t).sin()
                + 3000.0 * (2.0 * std::f64::consts::PI * 720.0 * t).sin()
                + 1500.0 * (2.0 * std::f64::consts::PI * 2100.0 * t).sin())) as i16
        })
        .collect()
}

fn opus_roundtrip(c: &mut Criterion) {
    for (name, s) in [
        ("opus_48k_c10_enc_dec_20ms", OpusSettings::fullband()),
        // the default G.711 path (complexity 1, see OpusSettings::narrowband)
        ("opus_8k_c1_enc_dec_20ms", OpusSettings::narrowband()),
        // the default G.722 path
        ("opus_16k_c1_enc_dec_20ms", OpusSettings::wideband()),
    ] {
        let n = s.frame_samples();
        let pcm = speechish(s.sample_rate, n * 50);
        let mut enc = OpusEncoder::new(s).expect("encoder");
        let mut dec = OpusDecoder::new(s.sample_rate).expect("decoder");
        let mut i = 0;
        let mut pkt = Vec::with_capacity(400);
        let mut out = Vec::with_capacity(n);
        c.bench_function(name, |b| {
            b.iter(|| {
                let f = &pcm[(i % 50) * n..(i % 50 + 1) * n];
                i += 1;
                pkt.clear();
                out.clear();
                enc.encode(black_box(f), &mut pkt).expect("encode");
                dec.decode(&pkt, &mut out).expect("decode");
                black_box(out.len())
            })
        });
    }
}

fn g711_bench(c: &mut Criterion) {
    let pcm = speechish(8000, 160);
    c.bench_function("g711_ulaw_enc_dec_20ms", |b| {
        b.iter(|| {
            let mut acc = 0i32;
            for &s in black_box(&pcm) {
                acc += i32::from(g711::ulaw_decode(g711::ulaw_encode(s)));
            }
            acc
        })
    });
}

fn g722_bench(c: &mut Criterion) {
    let pcm = speechish(16000, 320 * 50);
    let mut enc = G722Encoder::new();
    let mut dec = G722Decoder::new();
    let mut codes = Vec::with_capacity(160);
    let mut out = Vec::with_capacity(320);
    let mut i = 0;
    c.bench_function("g722_enc_dec_20ms", |b| {
        b.iter(|| {
            let f = &pcm[(i % 50) * 320..(i % 50 + 1) * 320];
            i += 1;
            codes.clear();
            out.clear();
            enc.encode(black_box(f), &mut codes).expect("even frame");
            dec.decode(&codes, &mut out);
            black_box(out.len())
        })
    });
}

fn resampler_bench(c: &mut Criterion) {
    let pcm48 = speechish(48000, 960);
    let pcm8 = speechish(8000, 160);
    let mut down = Resampler::new(48000, 8000).expect("ratio");
    let mut up = Resampler::new(8000, 48000).expect("ratio");
    let mut out = Vec::with_capacity(1000);
    c.bench_function("resample_48k_to_8k_20ms", |b| {
        b.iter(|| {
            out.clear();
            down.process(black_box(&pcm48), &mut out);
            out.len()
        })
    });
    c.bench_function("resample_8k_to_48k_20ms", |b| {
        b.iter(|| {
            out.clear();
            up.process(black_box(&pcm8), &mut out);
            out.len()
        })
    });
}

fn transcode_bench(c: &mut Criterion) {
    for (name, pbx, s) in [
        (
            "transcode_opus8k_pcmu_opus8k_20ms",
            Codec::Pcmu,
            OpusSettings::narrowband(),
        ),
        (
            "transcode_opus16k_g722_opus16k_20ms",
            Codec::G722,
            OpusSettings::wideband(),
        ),
        (
            "transcode_opus48k_pcmu_opus48k_20ms",
            Codec::Pcmu,
            OpusSettings::fullband(),
        ),
    ] {
        // Browser packets at the same profile, so the 48k variant includes both resamplers.
        let mut enc = OpusEncoder::new(s).expect("encoder");
        let pcm = speechish(s.sample_rate, s.frame_samples() * 50);
        let pkts: Vec<Vec<u8>> = pcm
            .chunks(s.frame_samples())
            .map(|f| {
                let mut p = Vec::new();
                enc.encode(f, &mut p).expect("encode");
                p
            })
            .collect();
        let mut down = Transcoder::new(Codec::Opus, pbx, 20, s).expect("down");
        let mut up = Transcoder::new(pbx, Codec::Opus, 20, s).expect("up");
        assert!(pbx != Codec::G722 || (!down.resamples() && !up.resamples()));
        let mut i = 0;
        c.bench_function(name, |b| {
            b.iter(|| {
                let p = pkts[i % pkts.len()].clone();
                i += 1;
                down.push(&JitterOutput::Frame(Frame {
                    seq: 0,
                    timestamp: 0,
                    marker: false,
                    payload: p,
                }))
                .expect("down");
                let mut n = 0;
                while let Some(f) = down.poll_frame() {
                    up.push(&JitterOutput::Frame(Frame {
                        seq: 0,
                        timestamp: 0,
                        marker: false,
                        payload: f.payload,
                    }))
                    .expect("up");
                    while let Some(o) = up.poll_frame() {
                        n += o.payload.len();
                    }
                }
                black_box(n)
            })
        });
    }
}

criterion_group!(
    benches,
    opus_roundtrip,
    g711_bench,
    g722_bench,
    resampler_bench,
    transcode_bench
);
criterion_main!(benches);
