#!/usr/bin/env python3
"""Independent G.722 reference for media/tests/g722_reference.rs.

Uses the PyPI package `g722` (1.2.8: a C extension built from Steve Underwood's
spandsp G.722 code, module name `G722`) at 64 kbit/s, 16 kHz.

  reference.py encode IN.wav OUT.g722   16-bit mono 16 kHz WAV -> G.722 codes
  reference.py decode IN.g722 OUT.raw   G.722 codes -> 16-bit little-endian PCM

Each call starts from a fresh codec state, as the Rust side does.
"""

import array
import sys
import wave


def codec():
    try:
        import G722
    except ImportError:
        sys.exit("python module G722 missing: pip install g722==1.2.8 (scripts/install-deps.sh)")
    return G722.G722(16000, 64000)


def encode(src, dst):
    with wave.open(src, "rb") as w:
        if (w.getnchannels(), w.getsampwidth(), w.getframerate()) != (1, 2, 16000):
            sys.exit(f"{src}: need 16-bit mono 16 kHz, got {w.getparams()}")
        pcm = array.array("h")
        pcm.frombytes(w.readframes(w.getnframes()))
    if sys.byteorder != "little":
        pcm.byteswap()
    if len(pcm) % 2:
        pcm = pcm[:-1]
    with open(dst, "wb") as f:
        f.write(codec().encode(pcm))


def decode(src, dst):
    with open(src, "rb") as f:
        codes = f.read()
    pcm = array.array("h", codec().decode(codes))
    if sys.byteorder != "little":
        pcm.byteswap()
    with open(dst, "wb") as f:
        f.write(pcm.tobytes())


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("encode", "decode"):
        sys.exit(__doc__)
    {"encode": encode, "decode": decode}[sys.argv[1]](sys.argv[2], sys.argv[3])
