"""``serve.bind`` and ``gateway.bind`` must be something a listener can bind.

Found: ``gateway: {bind: "not an ip"}`` passed ``voicecall config check``, then ``serve``
exited 1 with "Name or service not known" and the CLI said the gateway was unreachable (3).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from voicecall.client_settings import read_client_settings
from voicecall.config import ConfigError, load_config

BAD = ["not an ip", "0.0.0.0:80", "http://127.0.0.1", "-host", "a..b", ":::::1", "x" * 254, ""]
GOOD = ["127.0.0.1", "0.0.0.0", "::1", "::", "localhost", "voice-gw.internal", "10.0.0.7"]


def _write(tmp_path: Path, gateway: dict[str, object], **serve: object) -> Path:
    path = tmp_path / "openclaw.json"
    plugin = {"store": str(tmp_path / "store"), **({"serve": serve} if serve else {})}
    document = {"plugins": {"entries": {"voice-call": {"config": plugin}}}, "gateway": gateway}
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("bind", BAD)
def test_a_bind_that_cannot_be_listened_on_is_refused_naming_the_key(
    tmp_path: Path, bind: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        load_config(_write(tmp_path, {}, bind=bind), {})
    assert str(refused.value) == (
        "plugins.entries.voice-call.config.serve.bind: "
        "expected an IP address or a host name to listen on"
    )
    with pytest.raises(ConfigError) as refused:
        load_config(_write(tmp_path, {"bind": bind}), {})
    assert refused.value.path == "gateway.bind"


@pytest.mark.parametrize("bind", BAD)
def test_the_quick_read_steps_back_so_the_loader_names_the_bad_bind(
    tmp_path: Path, bind: str
) -> None:
    assert read_client_settings(str(_write(tmp_path, {"bind": bind})), {}) is None


@pytest.mark.parametrize("bind", [*GOOD, "loopback", "lan"])
def test_addresses_host_names_and_openclaw_names_are_accepted_by_both(
    tmp_path: Path, bind: str
) -> None:
    path = _write(tmp_path, {"bind": bind}, bind=bind if bind in GOOD else "127.0.0.1")
    config = load_config(path, {})
    quick = read_client_settings(str(path), {"VOICECALL_GATEWAY_TOKEN": "t"})
    assert quick is not None
    assert quick.bind == config.gateway.bind
