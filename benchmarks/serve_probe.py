"""Run ``voicecall serve`` in this process with a memory probe: what grows, and where.

A diagnostic for the soak (``benchmarks/soak.py --probe``), with no RPC of its own: every
``VOICECALL_PROBE_INTERVAL`` seconds (default 30) a callback on the server's own event loop
appends to ``VOICECALL_PROBE_OUT`` (default stderr). It runs on the loop, not in a thread, so
it sees the tables between two steps of the server, never halfway through one; the loop stalls
while it samples (the time it took is printed), so soak figures taken under the probe are not
the soak's figures.

* RSS, and with ``VOICECALL_PROBE_FRAMES`` > 0 (frames per trace; default 0, off) the bytes
  tracemalloc traces and the source lines whose allocations grew most since the last sample;
* the live object count per type, for the types that grew most;
* where the loop's pending tasks are waiting (their innermost frame in our code), counted;
* with ``VOICECALL_PROBE_PROFILE`` set to a path, a cProfile of the whole run (the event
  loop's thread) written there at exit, for ``python -m pstats``;
* for every live object of a ``voicecall`` class, the length of each of its container
  attributes (dict, set, list, deque), summed per ``Class.attribute``: a per-call table
  that is never trimmed shows up here as a number that only climbs.

    python benchmarks/serve_probe.py --config openclaw.json serve
"""

from __future__ import annotations

import asyncio
import collections
import cProfile
import gc
import os
import sys
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any, TextIO

_CONTAINERS = (dict, set, list, collections.deque, frozenset)


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _voicecall_tables(objects: list[Any]) -> Counter[str]:
    sizes: Counter[str] = Counter()
    for obj in objects:
        cls = type(obj)
        module = cls.__dict__.get("__module__")
        if not isinstance(module, str) or not module.startswith("voicecall"):
            continue
        sizes[f"{cls.__name__} (instances)"] += 1
        attributes = getattr(obj, "__dict__", None)
        if attributes is None:
            slots = getattr(cls, "__slots__", ())
            attributes = {name: getattr(obj, name, None) for name in slots}
        for name, value in list(attributes.items()):
            if isinstance(value, _CONTAINERS):
                sizes[f"{cls.__name__}.{name}"] += len(value)
    return sizes


def _task_waits() -> Counter[str]:
    """Each pending task's innermost frame in our code (else its innermost frame)."""
    waits: Counter[str] = Counter()
    for task in asyncio.all_tasks():
        frames = []
        awaiting: Any = task.get_coro()
        while awaiting is not None:  # down the await chain; get_stack() gives only the top
            frame = getattr(awaiting, "cr_frame", None) or getattr(awaiting, "gi_frame", None)
            if frame is not None:
                frames.append(frame)
            inner = getattr(awaiting, "cr_await", None)
            awaiting = inner if inner is not None else getattr(awaiting, "gi_yieldfrom", None)
        ours = [f for f in frames if "/voicecall/" in f.f_code.co_filename] or frames[-1:]
        if ours:
            frame = ours[-1]
            name = frame.f_code.co_filename.rsplit("/src/", 1)[-1]
            waits[f"{name}:{frame.f_lineno} {frame.f_code.co_name}"] += 1
    return waits


class Probe:
    def __init__(self, out: TextIO, interval: float) -> None:
        self.out = out
        self.interval = interval
        self.t0 = time.monotonic()
        self.snapshot: tracemalloc.Snapshot | None = None
        self.types: Counter[str] = Counter()

    def sample(self) -> None:
        started = time.monotonic()
        objects = gc.get_objects()
        types = Counter(type(o).__name__ for o in objects)
        tables = _voicecall_tables(objects)
        del objects
        snapshot = None
        lines = [f"== probe at {time.monotonic() - self.t0:.0f} s: RSS {_rss_mb():.1f} MB"]
        if tracemalloc.is_tracing():
            snapshot = tracemalloc.take_snapshot().filter_traces(
                [tracemalloc.Filter(False, tracemalloc.__file__)]
            )
            lines.append(f"   traced {tracemalloc.get_traced_memory()[0] / 2**20:.1f} MB")
        if self.snapshot is not None and snapshot is not None:
            lines.append("-- allocations that grew most since the last sample:")
            for stat in snapshot.compare_to(self.snapshot, "lineno")[:12]:
                lines.append(f"   {stat}")
        grown = Counter({name: n - self.types.get(name, 0) for name, n in types.items()})
        lines.append("-- object types that grew most (count now, +growth):")
        for name, delta in grown.most_common(12):
            lines.append(f"   {name}: {types[name]} (+{delta})")
        lines.append("-- where the loop's tasks wait (innermost voicecall frame, count):")
        for where, count in _task_waits().most_common(15):
            lines.append(f"   {count:5d}  {where}")
        lines.append("-- voicecall tables (summed lengths):")
        for name, size in sorted(tables.items()):
            if size:
                lines.append(f"   {name}: {size}")
        lines.append(f"   (the sample held the loop {time.monotonic() - started:.2f} s)")
        self.out.write("\n".join(lines) + "\n")
        self.out.flush()
        self.snapshot, self.types = snapshot, types

    def tick(self) -> None:
        try:
            self.sample()
        except Exception as err:  # a probe must never take the server down
            self.out.write(f"probe failed: {err!r}\n")
            self.out.flush()
        asyncio.get_running_loop().call_later(self.interval, self.tick)


def main() -> int:
    frames = int(os.environ.get("VOICECALL_PROBE_FRAMES", "0"))
    if frames > 0:
        tracemalloc.start(frames)
    target = os.environ.get("VOICECALL_PROBE_OUT")
    out = open(target, "a", encoding="utf-8") if target else sys.stderr
    probe = Probe(out, float(os.environ.get("VOICECALL_PROBE_INTERVAL", "30")))
    from voicecall.entrypoints import server
    from voicecall.entrypoints.cli import main as voicecall

    make_loop = server._loop_factory()

    def probed_loop() -> asyncio.AbstractEventLoop:
        loop = make_loop() if make_loop is not None else asyncio.new_event_loop()
        loop.call_later(probe.interval, probe.tick)
        return loop

    server._loop_factory = lambda: probed_loop  # type: ignore[assignment]
    sys.argv = ["voicecall", *sys.argv[1:]]
    profile_to = os.environ.get("VOICECALL_PROBE_PROFILE")
    if not profile_to:
        return int(voicecall() or 0)
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return int(voicecall() or 0)
    finally:
        profiler.disable()
        profiler.dump_stats(profile_to)


if __name__ == "__main__":
    sys.exit(main())
