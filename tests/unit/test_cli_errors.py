"""CLI failures: one line on stderr and the exit code from the README's table.

Found by trying the product as a newcomer would: argparse printed its whole usage block before
the error, ``tail --since -1`` exited 0 in silence (the gateway closed the stream with 4400 and
the CLI took that for a normal end), and a typo in the plugin block was reported as "the
gateway is not running" instead of the key at fault.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.frames import Close

from voicecall.entrypoints import cli
from voicecall.entrypoints.client import ClientError


def _one_line(text: str) -> str:
    assert text.count("\n") == 1 and text.endswith("\n"), text
    return text


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["tail", "--since", "-1"], "--since: expected an event number 0 or more, not '-1'"),
        (["tail", "--since", "abc"], "--since: expected an event number 0 or more, not 'abc'"),
        (["tail", "--since", str(2**63)], "expected an event number 0 or more"),
        (["call", "--message", "  "], "--message: must not be empty"),
        (["call", "--mode", "bogus"], "argument --mode: invalid choice: 'bogus'"),
        (["status"], "the following arguments are required: --call-id"),
        (["nosuchcommand"], "invalid choice: 'nosuchcommand'"),
        (["list", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    line = _one_line(captured.err)
    assert needle in line
    assert "--help" in line and not line.startswith("usage:")
    assert captured.out == ""


def test_tail_since_accepts_every_sequence_number_the_gateway_does() -> None:
    assert cli._sequence_number("0") == 0
    assert cli._sequence_number(str(2**63 - 1)) == 2**63 - 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(tmp_path: Path, **plugin: object) -> Path:
    path = tmp_path / "openclaw.json"
    document = {
        "plugins": {
            "entries": {"voice-call": {"config": {"store": str(tmp_path / "store"), **plugin}}}
        },
        "gateway": {"port": _free_port(), "auth": {"token": "t0ken"}},
    }
    path.write_text(json.dumps(document))
    return path


def test_no_gateway_and_a_bad_config_names_the_key_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path, bogus=1)
    assert cli.main(["status", "--call-id", "x", "--config", str(path)]) == 2
    line = _one_line(capsys.readouterr().err)
    assert line == "voicecall: plugins.entries.voice-call.config.bogus: unknown key\n"
    assert not (tmp_path / "store").exists()


def test_no_gateway_and_a_good_config_says_the_gateway_is_not_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path)
    assert cli.main(["list", "--config", str(path)]) == 3
    assert _one_line(capsys.readouterr().err).startswith("voicecall: the gateway is not running")


class _ClosedBy:
    """A socket the gateway closed after the handshake, with ``code`` and ``reason``."""

    def __init__(self, code: int, reason: str) -> None:
        self.close_frame = Close(code, reason)

    def __iter__(self) -> _ClosedBy:
        return self

    def __next__(self) -> str:
        raise ConnectionClosed(self.close_frame, None)


def _stream(code: int, reason: str) -> cli._EventStream:
    stream = object.__new__(cli._EventStream)
    stream.socket = _ClosedBy(code, reason)  # type: ignore[assignment]
    return stream


@pytest.mark.parametrize(
    ("code", "reason", "exit_code"),
    [
        (4400, "since must be 'now' or an integer 0..2^63-1", 2),
        (4401, "unauthorized", 1),
        (4429, "too far behind; reconnect with since=17", 1),
    ],
)
def test_a_refusal_on_the_event_stream_is_an_error(code: int, reason: str, exit_code: int) -> None:
    with pytest.raises(ClientError) as refused:
        list(_stream(code, reason).events())
    assert refused.value.exit_code == exit_code
    assert str(refused.value) == f"the gateway closed the event stream: {reason}"


@pytest.mark.parametrize("code", [1000, 1001])
def test_a_normal_close_of_the_event_stream_just_ends_it(code: int) -> None:
    assert list(_stream(code, "the gateway is shutting down").events()) == []
