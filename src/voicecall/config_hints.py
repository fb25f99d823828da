"""Hints for configuration mistakes: "did you mean" for unknown keys, and top-level typos.

The file is shared with OpenClaw, so a top-level key we do not read is normally OpenClaw's
business and left alone. A key one or two edits away from one of the sections we read
(``gatway`` for ``gateway``) is almost certainly a typo that would otherwise be ignored
silently, leaving the gateway on its defaults; that one is worth a warning.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["did_you_mean", "edit_distance", "top_level_warnings"]

# The top-level sections voicecall reads.
OUR_TOP_LEVEL_KEYS: Final = ("gateway", "plugins", "messages", "models")
# OpenClaw's other top-level sections: never warned about, whatever they resemble.
OPENCLAW_TOP_LEVEL_KEYS: Final = frozenset(
    {
        "$schema",
        "$include",
        "agents",
        "approvals",
        "audio",
        "auth",
        "bindings",
        "broadcast",
        "browser",
        "canvasHost",
        "channels",
        "commands",
        "cron",
        "diagnostics",
        "discovery",
        "env",
        "hooks",
        "logging",
        "media",
        "memory",
        "meta",
        "nodeHost",
        "session",
        "skills",
        "talk",
        "tools",
        "ui",
        "update",
        "web",
        "wizard",
    }
)


def edit_distance(a: str, b: str) -> int:
    """Edits between two keys, case-insensitive: insert, delete, replace, or swap two neighbours.

    (The optimal-string-alignment distance: "prot" is one swap from "port".)
    """
    a, b = a.lower(), b.lower()
    rows = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
    for i in range(len(a) + 1):
        rows[i][0] = i
    for j in range(len(b) + 1):
        rows[0][j] = j
    for i in range(1, len(a) + 1):
        for j in range(1, len(b) + 1):
            cost = a[i - 1] != b[j - 1]
            best = min(rows[i - 1][j] + 1, rows[i][j - 1] + 1, rows[i - 1][j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                best = min(best, rows[i - 2][j - 2] + 1)
            rows[i][j] = best
    return rows[-1][-1]


def did_you_mean(key: str, known: Iterable[str], max_distance: int = 2) -> str | None:
    """The known key closest to ``key`` within ``max_distance`` edits (or a case-only match)."""
    best: tuple[int, str] | None = None
    for candidate in known:
        if candidate == key:
            continue
        distance = edit_distance(key, candidate)
        # Short keys get less room ("host" is not a typo of "port"); long ones a little more
        # ("responseSytemPromt" is still obviously meant).
        allowed = 1 if len(key) <= 4 else max(max_distance, len(candidate) // 6)
        if distance <= allowed and (best is None or distance < best[0]):
            best = (distance, candidate)
    return best[1] if best else None


def top_level_warnings(data: Mapping[str, Any]) -> tuple[str, ...]:
    """A warning for each top-level key that looks like a typo of a section we read."""
    warnings = []
    for key in data:
        if not isinstance(key, str) or key in OUR_TOP_LEVEL_KEYS:
            continue
        if key in OPENCLAW_TOP_LEVEL_KEYS:
            continue
        near = [k for k in OUR_TOP_LEVEL_KEYS if edit_distance(key, k) <= 2]
        if near:
            warnings.append(f'unknown top-level key "{key}" (did you mean "{near[0]}"?)')
    return tuple(warnings)
