"""Print the mutation score of the last ``mutmut run``, not counting the mutants listed in
``mutation/equivalent.md`` (each with the reason it cannot be killed).

Run from the repository root after ``mutmut run`` (``make mutation`` does both). Exits 1 when
fewer than 90% of the non-equivalent mutants were killed, or when the list names a mutant
that no longer survives (a stale entry hides nothing, but it misleads the reader).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

TARGET = 0.90
EQUIVALENT = Path(__file__).with_name("equivalent.md")


def main() -> int:
    listing = subprocess.run(
        [str(Path(sys.executable).with_name("mutmut")), "results", "--all", "true"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    status = dict(re.findall(r"^\s+(\S+): (.+)$", listing, flags=re.MULTILINE))
    equivalent = set(re.findall(r"^- `([^`]+)`", EQUIVALENT.read_text(), flags=re.MULTILINE))
    counts = Counter(status.values())
    killed = counts["killed"] + counts["timeout"]
    surviving = {name for name, state in status.items() if state not in {"killed", "timeout"}}
    stale = sorted(equivalent - surviving)
    judged = len(status) - counts["skipped"] - len(equivalent & surviving)
    score = killed / judged if judged else 0.0
    print(f"mutants: {len(status)} ({dict(counts)})")
    print(f"equivalent (listed in {EQUIVALENT.name}): {len(equivalent & surviving)}")
    print(f"mutation score: {killed}/{judged} non-equivalent mutants killed ({score:.1%})")
    for name in sorted(surviving - equivalent):
        print(f"  not killed: {name} ({status[name]})")
    for name in stale:
        print(f"  listed as equivalent but not surviving: {name}")
    return 0 if score >= TARGET and not stale else 1


if __name__ == "__main__":
    sys.exit(main())
