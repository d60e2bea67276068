//! G.722 bit-exactness against an independent implementation: the PyPI package
//! `g722` 1.2.8 (a C extension of Steve Underwood's spandsp G.722, driven by
//! `tests/g722/reference.py`).
//!
//! Three inputs: a speech WAV made by espeak-ng (16 kHz), the same speech
//! amplified eight times with clipping followed by a full-scale chirp to 7.9 kHz
//! (drives every saturation and limiter path), and 40,000 random code bytes for
//! the decoder. Our encoder must produce the reference's codes byte for byte, and
//! our decoder the reference decoder's PCM sample for sample. Missing Python or
//! the package is a failure naming the fix (scripts/install-deps.sh), not a skip.

use std::path::{Path, PathBuf};
use std::process::Command;

use media::codec::g722::{G722Decoder, G722Encoder};

const TEXT: &str = "Thank you for calling Acme Bank. For opening hours, press one. \
                    To speak with support, please stay on the line.";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `reference.py <verb> <src> <dst>`.
fn reference(verb: &str, src: &Path, dst: &Path) {
    let script = root().join("tests/g722/reference.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(verb)
        .arg(src)
        .arg(dst)
        .output()
        .expect("python3 runs (install it with scripts/install-deps.sh)");
    assert!(
        out.status.success(),
        "{} {verb} failed: {}{}",
        script.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The PCM of a 16-bit mono WAV (walks the chunks: sox may add LIST chunks).
fn read_wav(path: &Path) -> Vec<i16> {
    let b = std::fs::read(path).expect("wav readable");
    assert!(b.len() > 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WAVE");
    let mut i = 12;
    while i + 8 <= b.len() {
        let len = u32::from_le_bytes([b[i + 4], b[i + 5], b[i + 6], b[i + 7]]) as usize;
        if &b[i..i + 4] == b"data" {
            let data = &b[i + 8..(i + 8 + len).min(b.len())];
            return data
                .chunks_exact(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
        }
        i += 8 + len + (len & 1);
    }
    panic!("no data chunk in {}", path.display());
}

fn write_wav(path: &Path, pcm: &[i16]) {
    let data_len = (pcm.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + pcm.len() * 2);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes()); // PCM
    b.extend_from_slice(&1u16.to_le_bytes()); // mono
    b.extend_from_slice(&16000u32.to_le_bytes());
    b.extend_from_slice(&32000u32.to_le_bytes());
    b.extend_from_slice(&2u16.to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in pcm {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).expect("wav written");
}

fn read_pcm(path: &Path) -> Vec<i16> {
    std::fs::read(path)
        .expect("pcm readable")
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn first_mismatch<T: PartialEq>(a: &[T], b: &[T]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

/// Encodes `pcm` (whole file, fresh state) with both implementations, then decodes the
/// reference's codes with both; everything must match exactly.
fn check_wav(dir: &Path, name: &str, wav: &Path) -> usize {
    let mut pcm = read_wav(wav);
    pcm.truncate(pcm.len() & !1);
    let ref_codes = dir.join(format!("{name}.g722"));
    reference("encode", wav, &ref_codes);
    let expected = std::fs::read(&ref_codes).expect("reference codes");
    let mut ours = Vec::new();
    G722Encoder::new()
        .encode(&pcm, &mut ours)
        .expect("even number of samples");
    assert_eq!(ours.len(), pcm.len() / 2);
    if let Some(i) = first_mismatch(&ours, &expected) {
        panic!(
            "{name}: encoder differs at code {i} of {} (ours {:?}, reference {:?})",
            expected.len(),
            ours.get(i),
            expected.get(i)
        );
    }
    check_decode(dir, name, &ref_codes);
    expected.len()
}

fn check_decode(dir: &Path, name: &str, codes_path: &Path) -> Vec<i16> {
    let codes = std::fs::read(codes_path).expect("codes");
    let ref_pcm = dir.join(format!("{name}.raw"));
    reference("decode", codes_path, &ref_pcm);
    let expected = read_pcm(&ref_pcm);
    let mut ours = Vec::new();
    G722Decoder::new().decode(&codes, &mut ours);
    if let Some(i) = first_mismatch(&ours, &expected) {
        panic!(
            "{name}: decoder differs at sample {i} of {} (ours {:?}, reference {:?})",
            expected.len(),
            ours.get(i),
            expected.get(i)
        );
    }
    ours
}

#[test]
fn g722_bit_exact_with_reference() {
    let dir = std::env::temp_dir().join(format!("namecall-g722-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // 1. plain speech
    let speech = labkit::speech_wav(TEXT, 16000, "g722-reference").expect("speech wav");
    let n = check_wav(&dir, "speech", &speech);
    assert!(n > 16000 * 3, "speech too short: {n} codes");

    // 2. clipped speech and a full-scale chirp: saturation, limiters, high band at full level
    let mut loud: Vec<i16> = read_wav(&speech)
        .iter()
        .map(|&s| (i32::from(s) * 8).clamp(-32768, 32767) as i16)
        .collect();
    let chirp_len = 3 * 16000;
    let mut phase = 0.0f64;
    for i in 0..chirp_len {
        let f = 50.0 + 7850.0 * i as f64 / chirp_len as f64;
        phase += 2.0 * std::f64::consts::PI * f / 16000.0;
        loud.push((32767.0 * phase.sin()).round() as i16);
    }
    let loud_wav = dir.join("loud.wav");
    write_wav(&loud_wav, &loud);
    check_wav(&dir, "loud", &loud_wav);

    // 3. arbitrary code bytes: every code is valid input to the decoder
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..40_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect();
    let random_path = dir.join("random.g722");
    std::fs::write(&random_path, &random).expect("write codes");
    let pcm = check_decode(&dir, "random", &random_path);
    assert_eq!(pcm.len(), 80_000);

    let _ = std::fs::remove_dir_all(&dir);
}
