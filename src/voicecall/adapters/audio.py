"""The audio path's one home: G.711 μ-law, resampling and 20 ms telephony frames.

Every carrier's media stream carries G.711 μ-law, 8 kHz mono, in 20 ms frames of 160 bytes
(SPEC §5). numpy and soxr are confined to this module: μ-law goes through two lookup tables
built once with numpy from the G.711 segment law, and rate conversion is soxr's (a maintained
library, not a hand-rolled filter). Nothing here blocks for long: a 20 ms frame costs
microseconds, so callers run it on the event loop.
"""

from __future__ import annotations

from typing import Final

import numpy as np
import soxr

__all__ = [
    "FRAME_BYTES",
    "FRAME_MS",
    "SAMPLE_RATE",
    "ULAW_SILENCE",
    "Resampler",
    "frames",
    "pcm16_to_ulaw",
    "ulaw_to_pcm16",
]

SAMPLE_RATE: Final = 8000
FRAME_MS: Final = 20
FRAME_BYTES: Final = SAMPLE_RATE * FRAME_MS // 1000  # one byte per μ-law sample: 160
ULAW_SILENCE: Final = 0xFF  # μ-law code for a zero sample

_BIAS: Final = 0x84
# G.711 μ-law works on 14-bit magnitudes: the top of each of the eight segments.
_SEGMENT_ENDS: Final = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_CLIP_14: Final = 8159


def _build_tables() -> tuple[np.ndarray, np.ndarray]:
    # Decoding: the 256 codes of ITU-T G.711 μ-law to linear 16-bit.
    codes = np.arange(256, dtype=np.int32)
    inverted = ~codes & 0xFF
    sign = inverted & 0x80
    exponent = (inverted >> 4) & 0x07
    mantissa = inverted & 0x0F
    magnitude = (((mantissa << 3) + _BIAS) << exponent) - _BIAS
    decode = np.where(sign != 0, -magnitude, magnitude).astype(np.int16)

    # Encoding: every 16-bit sample (indexed as uint16) to its code, from the 14-bit value as
    # G.711 defines it (the same codes as CPython's audioop.lin2ulaw).
    samples = np.arange(65536, dtype=np.int32)
    samples = np.where(samples >= 32768, samples - 65536, samples) >> 2
    mask = np.where(samples < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(samples), _CLIP_14) + (_BIAS >> 2)
    segment = np.searchsorted(_SEGMENT_ENDS, magnitude)
    mantissa = (magnitude >> np.minimum(segment + 1, 8)) & 0x0F
    code = np.where(segment >= 8, 0x7F, (segment << 4) | mantissa) ^ mask
    return decode, code.astype(np.uint8)


_DECODE, _ENCODE = _build_tables()


def ulaw_to_pcm16(data: bytes) -> np.ndarray:
    """μ-law bytes to signed 16-bit samples."""
    return _DECODE.take(np.frombuffer(data, dtype=np.uint8))


def pcm16_to_ulaw(samples: np.ndarray | bytes) -> bytes:
    """Signed 16-bit samples (an int16 array, or little-endian bytes) to μ-law bytes."""
    if isinstance(samples, bytes | bytearray | memoryview):
        samples = np.frombuffer(samples, dtype="<i2")
    return bytes(_ENCODE[samples.astype(np.int16, copy=False).view(np.uint16)])


def frames(data: bytes, *, pad: bool = True) -> list[bytes]:
    """Cut μ-law audio into 160-byte frames; the last is padded with silence when ``pad``."""
    out = [data[i : i + FRAME_BYTES] for i in range(0, len(data), FRAME_BYTES)]
    if pad and out and len(out[-1]) < FRAME_BYTES:
        out[-1] = out[-1] + bytes([ULAW_SILENCE]) * (FRAME_BYTES - len(out[-1]))
    return out


class Resampler:
    """Streaming rate conversion of 16-bit mono audio (soxr), chunk by chunk.

    Args:
        in_rate: the source's sample rate (e.g. 24000 for OpenAI ``pcm``).
        out_rate: the rate wanted (8000 for a carrier, 16000 for a transcriber).
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="int16", quality="HQ")
        self._carry = b""

    def feed(self, pcm: bytes, *, last: bool = False) -> np.ndarray:
        """Resample the next chunk of little-endian 16-bit audio; ``last`` flushes the tail."""
        if self._carry or len(pcm) % 2:
            data = self._carry + pcm
            usable = len(data) - (len(data) % 2)  # a chunk may split a sample in two
            self._carry = data[usable:]
            pcm = data[:usable]
        # A (frames, 1) array goes straight to soxr; a 1-D one costs a reshape each way.
        samples = np.frombuffer(pcm, dtype="<i2").reshape(-1, 1)
        out: np.ndarray = self._stream.resample_chunk(samples, last=last)
        return out.reshape(-1)
