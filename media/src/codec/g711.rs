//! G.711 mu-law and A-law (ITU-T G.711), table-driven.
//!
//! Decoding is a 256-entry table; encoding is a table indexed by the top 14 (mu-law) or
//! 13 (A-law) bits of the sample, so the hot path of the transcoder is two loads per sample.
//! The tables are built at compile time from the reference segment algorithm.

const BIAS: i32 = 0x84;
const CLIP: i32 = 32635;

const fn ulaw_encode_ref(sample: i32) -> u8 {
    // G.711 mu-law works on 14-bit input: drop the two low bits first (as the Sun
    // reference does), which also fixes how negative values round.
    let sample = (sample >> 2) << 2;
    let sign = if sample < 0 { 0x80 } else { 0 };
    let mut s = if sample < 0 { -sample } else { sample };
    if s > CLIP {
        s = CLIP;
    }
    s += BIAS;
    let mut exp = 7;
    let mut mask = 0x4000;
    while exp > 0 && s & mask == 0 {
        exp -= 1;
        mask >>= 1;
    }
    let mant = (s >> (exp + 3)) & 0x0f;
    !(sign | (exp << 4) as u8 | mant as u8)
}

const fn ulaw_decode_ref(code: u8) -> i16 {
    let u = !code;
    let exp = ((u >> 4) & 7) as i32;
    let mant = (u & 0x0f) as i32;
    let mag = (((mant << 3) + BIAS) << exp) - BIAS;
    if u & 0x80 != 0 {
        -mag as i16
    } else {
        mag as i16
    }
}

const fn alaw_encode_ref(sample: i32) -> u8 {
    // Work on the 13-bit magnitude as G.711 does.
    let (sign, mut s) = if sample >= 0 {
        (0x80u8, sample >> 3)
    } else {
        (0u8, (-sample - 1) >> 3)
    };
    if s > 0xfff {
        s = 0xfff;
    }
    let code = if s < 32 {
        (s >> 1) as u8
    } else {
        let mut exp = 1;
        while s >> (exp + 5) != 0 {
            exp += 1;
        }
        ((exp << 4) as u8) | ((s >> exp) & 0x0f) as u8
    };
    (code | sign) ^ 0x55
}

const fn alaw_decode_ref(code: u8) -> i16 {
    let a = code ^ 0x55;
    let exp = ((a >> 4) & 7) as i32;
    let mant = (a & 0x0f) as i32;
    let mag = if exp == 0 {
        (mant << 4) + 8
    } else {
        ((mant << 4) + 0x108) << (exp - 1)
    };
    if a & 0x80 != 0 {
        mag as i16
    } else {
        -mag as i16
    }
}

const ULAW_DEC: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = ulaw_decode_ref(i as u8);
        i += 1;
    }
    t
};

const ALAW_DEC: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_ref(i as u8);
        i += 1;
    }
    t
};

// Index = sample >> 2 (14 bits, offset by 8192); the bottom two bits never change the code.
static ULAW_ENC: [u8; 16384] = {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        t[i] = ulaw_encode_ref(((i as i32) - 8192) << 2);
        i += 1;
    }
    t
};

// Index = sample >> 3 (13 bits, offset by 4096); A-law ignores the bottom three bits.
static ALAW_ENC: [u8; 8192] = {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = alaw_encode_ref(((i as i32) - 4096) << 3);
        i += 1;
    }
    t
};

/// Encodes one linear sample as mu-law.
#[inline]
pub fn ulaw_encode(sample: i16) -> u8 {
    ULAW_ENC[((i32::from(sample) >> 2) + 8192) as usize]
}

/// Decodes one mu-law byte.
#[inline]
pub fn ulaw_decode(code: u8) -> i16 {
    ULAW_DEC[usize::from(code)]
}

/// Encodes one linear sample as A-law.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    ALAW_ENC[((i32::from(sample) >> 3) + 4096) as usize]
}

/// Decodes one A-law byte.
#[inline]
pub fn alaw_decode(code: u8) -> i16 {
    ALAW_DEC[usize::from(code)]
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reference points from G.711 / the Sun reference code: silence and full scale.
    #[test]
    fn g711_reference_values() {
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x7f), 0);
        assert_eq!(ulaw_decode(0x80), 32124);
        assert_eq!(ulaw_decode(0x00), -32124);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xaa), 32256);
        assert_eq!(alaw_decode(0x2a), -32256);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
    }

    /// Every code decodes and re-encodes to itself (except mu-law's negative zero).
    #[test]
    fn g711_code_round_trip() {
        for c in 0..=255u8 {
            if c != 0x7f {
                assert_eq!(ulaw_encode(ulaw_decode(c)), c, "ulaw {c:#x}");
            }
            assert_eq!(alaw_encode(alaw_decode(c)), c, "alaw {c:#x}");
        }
    }

    /// Tables agree with the reference algorithm and quantisation error stays within one step.
    #[test]
    fn g711_monotonic_and_bounded_error() {
        let mut prev_u = i16::MIN;
        let mut prev_a = i16::MIN;
        for s in (i16::MIN..=i16::MAX).step_by(7) {
            assert_eq!(ulaw_encode(s), ulaw_encode_ref(i32::from(s)));
            assert_eq!(alaw_encode(s), alaw_encode_ref(i32::from(s)));
            let u = ulaw_decode(ulaw_encode(s));
            let a = alaw_decode(alaw_encode(s));
            assert!(u >= prev_u && a >= prev_a, "monotonic at {s}");
            prev_u = u;
            prev_a = a;
            // Log quantisation: error bounded by ~1/16 of magnitude plus the smallest step.
            let tol = (i32::from(s).abs() / 16) + 16;
            if i32::from(s).abs() < 32000 {
                assert!(
                    (i32::from(u) - i32::from(s)).abs() <= tol,
                    "ulaw {s} -> {u}"
                );
                assert!(
                    (i32::from(a) - i32::from(s)).abs() <= tol,
                    "alaw {s} -> {a}"
                );
            }
        }
    }
}
