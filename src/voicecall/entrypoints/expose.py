"""``voicecall expose``: publish the webhook path through Tailscale Serve or Funnel.

Only the carrier path is published (``--set-path``), never the gateway listener, so RPC stays
private whatever is exposed. Uses the Tailscale CLI (1.52+ syntax) on this machine.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

from voicecall.config import AppConfig
from voicecall.entrypoints.client import connect_host

__all__ = ["ExposeError", "expose"]


class ExposeError(Exception):
    pass


def _run(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise ExposeError(f"'tailscale {' '.join(args)}' did not finish within 60 s") from None


def _dns_name(binary: str) -> str | None:
    status = _run(binary, "status", "--json")
    if status.returncode != 0:
        return None
    try:
        name = json.loads(status.stdout)["Self"]["DNSName"]
    except (ValueError, KeyError, TypeError):
        return None
    return str(name).rstrip(".") or None


def expose(config: AppConfig, mode: str) -> dict[str, Any]:
    """Publish (``serve``: tailnet only; ``funnel``: the internet) or withdraw (``off``)."""
    binary = shutil.which("tailscale")
    if binary is None:
        raise ExposeError("tailscale is not installed or not on PATH")
    serve = config.voice.serve
    path = serve.path
    target = f"http://{connect_host(serve.bind)}:{serve.port}{path}"
    if mode == "off":
        results = [_run(binary, kind, f"--set-path={path}", "off") for kind in ("funnel", "serve")]
        if all(result.returncode != 0 for result in results):
            raise ExposeError(results[-1].stderr.strip() or "tailscale refused to remove the path")
        return {"mode": "off", "path": path}
    done = _run(binary, mode, "--bg", "--yes", f"--set-path={path}", target)
    if done.returncode != 0:
        raise ExposeError(done.stderr.strip() or f"tailscale {mode} failed")
    name = _dns_name(binary)
    public_url = f"https://{name}{path}" if name else None
    answer: dict[str, Any] = {"mode": mode, "path": path, "target": target, "publicUrl": public_url}
    if public_url and config.voice.public_url != public_url:
        answer["hint"] = f"set plugins.entries.voice-call.config.publicUrl to {public_url}"
    return answer
