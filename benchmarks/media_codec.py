"""Benchmark: CPU per call-second of two-way media, ours against Pipecat's Twilio serializer.

Both sides do the same work on the same audio, in the same process and run:

* inbound (caller → transcriber): parse Twilio's JSON ``media`` message, base64-decode the
  payload, μ-law → PCM16, resample 8 → 16 kHz. Ours: the Twilio stream dialect,
  ``adapters.audio`` and its soxr ``Resampler``; Pipecat: ``TwilioFrameSerializer.deserialize``
  (audioop + its soxr stream resampler).
* outbound (TTS → caller): PCM16 at 24 kHz → 8 kHz μ-law, base64, JSON. Ours: ``Resampler``,
  ``pcm16_to_ulaw`` and the dialect's ``media``; Pipecat: ``TwilioFrameSerializer.serialize``
  of an ``OutputAudioRawFrame``.

Inbound audio comes as Twilio sends it, 20 ms frames; outbound as a streaming TTS hands it
over, 100 ms chunks. The figure is CPU seconds (process time) per second of call audio, the
median of several interleaved rounds, and the ratio ours / Pipecat (target <= 0.5).

Needs the ``bench`` extra (``pip install -e '.[bench]'``, which brings ``pipecat-ai``).
Run: ``.venv/bin/python benchmarks/media_codec.py [--seconds 60] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import math
import statistics
import time
from collections.abc import Awaitable, Callable

import numpy as np

from voicecall.adapters.audio import Resampler, pcm16_to_ulaw, ulaw_to_pcm16
from voicecall.adapters.telephony.twilio.stream import TwilioStreamDialect
from voicecall.domain.media import StreamMedia

STREAM_SID = "MZ" + "0" * 32


def caller_messages(seconds: float) -> list[str]:
    """Twilio inbound media messages: 20 ms of μ-law each (a 440 Hz tone)."""
    t = np.arange(int(8000 * seconds)) / 8000
    ulaw = pcm16_to_ulaw((8000 * np.sin(2 * math.pi * 440 * t)).astype(np.int16))
    messages = []
    for n, offset in enumerate(range(0, len(ulaw), 160)):
        payload = base64.b64encode(ulaw[offset : offset + 160]).decode()
        messages.append(
            json.dumps(
                {
                    "event": "media",
                    "sequenceNumber": str(n + 2),
                    "media": {
                        "track": "inbound",
                        "chunk": str(n + 1),
                        "timestamp": str(n * 20),
                        "payload": payload,
                    },
                    "streamSid": STREAM_SID,
                }
            )
        )
    return messages


def tts_chunks(seconds: float) -> list[bytes]:
    """TTS output: PCM16 at 24 kHz in 100 ms chunks (a sweep)."""
    t = np.arange(int(24000 * seconds)) / 24000
    pcm = (8000 * np.sin(2 * math.pi * (200 * t + 20 * t * t))).astype("<i2").tobytes()
    step = 4800  # 2400 samples: 100 ms
    return [pcm[i : i + step] for i in range(0, len(pcm), step)]


def ours_inbound(messages: list[str]) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        dialect = TwilioStreamDialect()
        dialect.stream_id = STREAM_SID
        resampler = Resampler(8000, 16000)
        out = 0
        for message in messages:
            for item in dialect.parse(message):
                if isinstance(item, StreamMedia):
                    out += len(resampler.feed(ulaw_to_pcm16(item.payload).tobytes()))
        return out

    return run


def ours_outbound(chunks: list[bytes]) -> Callable[[], Awaitable[int]]:
    async def run() -> int:
        dialect = TwilioStreamDialect()
        dialect.stream_id = STREAM_SID
        resampler = Resampler(24000, 8000)
        out = 0
        for chunk in chunks:
            out += len(dialect.media(pcm16_to_ulaw(resampler.feed(chunk))))
        return out

    return run


def pipecat_inbound(messages: list[str]) -> Callable[[], Awaitable[int]]:
    from pipecat.serializers.twilio import TwilioFrameSerializer

    async def run() -> int:
        serializer = TwilioFrameSerializer(
            STREAM_SID, params=TwilioFrameSerializer.InputParams(auto_hang_up=False)
        )
        # What setup() takes from the pipeline: the transcriber's rate.
        serializer._sample_rate = 16000
        out = 0
        for message in messages:
            frame = await serializer.deserialize(message)
            if frame is not None:
                out += len(frame.audio)
        return out

    return run


def pipecat_outbound(chunks: list[bytes]) -> Callable[[], Awaitable[int]]:
    from pipecat.frames.frames import OutputAudioRawFrame
    from pipecat.serializers.twilio import TwilioFrameSerializer

    async def run() -> int:
        serializer = TwilioFrameSerializer(
            STREAM_SID, params=TwilioFrameSerializer.InputParams(auto_hang_up=False)
        )
        serializer._sample_rate = 16000
        out = 0
        for chunk in chunks:
            frame = OutputAudioRawFrame(audio=chunk, sample_rate=24000, num_channels=1)
            message = await serializer.serialize(frame)
            out += len(message or "")
        return out

    return run


def cpu_seconds(work: Callable[[], Awaitable[int]]) -> float:
    loop = asyncio.new_event_loop()
    try:
        start = time.process_time()
        loop.run_until_complete(work())
        return time.process_time() - start
    finally:
        loop.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=60.0, help="call audio per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    logging.disable(logging.INFO)
    messages, chunks = caller_messages(args.seconds), tts_chunks(args.seconds)
    cases = {
        "inbound": (ours_inbound(messages), pipecat_inbound(messages)),
        "outbound": (ours_outbound(chunks), pipecat_outbound(chunks)),
    }
    print(f"CPU ms per call-second, median of {args.rounds} rounds of {args.seconds:g} s")
    totals = {"ours": 0.0, "pipecat": 0.0}
    for name, (ours, theirs) in cases.items():
        cpu_seconds(ours)  # warm both up (imports, soxr plans)
        cpu_seconds(theirs)
        our_runs, their_runs = [], []
        for _ in range(args.rounds):
            our_runs.append(cpu_seconds(ours))
            their_runs.append(cpu_seconds(theirs))
        mine = statistics.median(our_runs) / args.seconds * 1000
        pipecat = statistics.median(their_runs) / args.seconds * 1000
        totals["ours"] += mine
        totals["pipecat"] += pipecat
        print(f"  {name:<9} ours {mine:7.3f}   pipecat {pipecat:7.3f}   ratio {mine / pipecat:.2f}")
    ratio = totals["ours"] / totals["pipecat"]
    print(
        f"  {'two-way':<9} ours {totals['ours']:7.3f}   pipecat {totals['pipecat']:7.3f}"
        f"   ratio {ratio:.2f}  (target <= 0.50)"
    )


if __name__ == "__main__":
    main()
