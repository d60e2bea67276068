//! The fuzz property (`fuzz/fuzz_targets/parse_check.rs`) without libfuzzer:
//! random bytes and random mutations of the RFC 4475 messages, from a fixed
//! seed. `SIP_FUZZ_ITERS` raises the iteration count (default 10 000 each).

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[path = "../fuzz/fuzz_targets/parse_check.rs"]
mod parse_check;

fn iterations() -> usize {
    std::env::var("SIP_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn corpus() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rfc4475");
    let mut out: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("rfc4475 dir")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "sip"))
        .map(|e| std::fs::read(e.path()).expect("read fixture"))
        .collect();
    out.sort();
    assert_eq!(out.len(), 49);
    out
}

/// Bytes that matter to the SIP grammar, so mutations hit parser branches.
const INTERESTING: &[u8] = b"\r\n \t:;,=<>\"\\/@?&%[]*0123456789SIPsipz9hG4bK.-";

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for _ in 0..iterations() {
        let len = rng.random_range(0..256);
        let data: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        parse_check::check(&data);
    }
}

#[test]
fn mutated_torture_messages_keep_the_properties() {
    let corpus = corpus();
    let mut rng = StdRng::seed_from_u64(4475);
    for _ in 0..iterations() {
        let mut m = corpus[rng.random_range(0..corpus.len())].clone();
        for _ in 0..rng.random_range(1..5) {
            if m.is_empty() {
                break;
            }
            let i = rng.random_range(0..m.len());
            match rng.random_range(0..5) {
                0 => m[i] = INTERESTING[rng.random_range(0..INTERESTING.len())],
                1 => m.insert(i, INTERESTING[rng.random_range(0..INTERESTING.len())]),
                2 => {
                    let end = (i + rng.random_range(1..16)).min(m.len());
                    m.drain(i..end);
                }
                3 => m[i] = rng.random(),
                _ => m.truncate(i),
            }
        }
        parse_check::check(&m);
    }
}
