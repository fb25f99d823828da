"""The ``voicecall`` command line.

Every command except ``serve``, ``demo``, ``config check`` and ``doctor`` talks to a running
gateway over RPC; none starts a webhook server. Output is text on a terminal and JSON when piped
or with ``--json``; failures are one line on stderr and an exit code from the one table every
command shares (README "Exit codes"): 0 ok, 1 refused or not found, 2 usage or configuration,
3 the gateway is unreachable.

Global options (``--config``, ``--json``, ``--version``) work before or after the subcommand.

Imports are kept to what the command needs, so ``voicecall status`` starts in under 100 ms
(``benchmarks/cli_startup.py``): this module imports only the standard library and the gateway
client at the top; the commands that talk to a running gateway read their few settings with
:mod:`voicecall.client_settings` and fall back to the full loader (attrs/cattrs, imported here
only then) when that quick read cannot decide. ``tests/unit/test_cli_imports.py`` guards this.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

from voicecall import __version__
from voicecall.client_settings import ClientSettings, client_settings, read_client_settings
from voicecall.entrypoints.client import (
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    ClientError,
    GatewayClient,
)
from voicecall.entrypoints.output import (
    COMPLETED_REASONS,
    dump_json,
    format_event,
    format_payload,
    wants_json,
)

if TYPE_CHECKING:
    from voicecall.config import AppConfig

__all__ = ["main"]


def _print(payload: Any, args: argparse.Namespace | None = None) -> None:
    if args is None or wants_json(getattr(args, "json", False), sys.stdout):
        sys.stdout.write(dump_json(payload))
    else:
        sys.stdout.write(format_payload(args.command, payload))
    sys.stdout.flush()


def _text(value: str) -> str:
    """A ``--message``: spoken aloud, so it must say something."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty (it is what the call says)")
    return value


def _columns() -> int:
    """The terminal's width as ``shutil.get_terminal_size`` finds it, without importing shutil.

    argparse builds a help formatter for every ``add_argument`` (to check metavars), and the
    default one imports ``shutil`` (and with it ``bz2`` and ``lzma``) to learn the width.
    """
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    if columns > 0:
        return columns
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns or 80  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def _sequence_number(value: str) -> int:
    """A ``tail --since``: an event sequence number, as the gateway's ``/events`` takes it."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number < 2**63:
        raise argparse.ArgumentTypeError(f"expected an event number 0 or more, not {value!r}")
    return number


class _Parser(argparse.ArgumentParser):
    """argparse with the terminal width found cheaply; subcommand parsers are of this class too."""

    def _get_formatter(self) -> argparse.HelpFormatter:
        # The CLI uses argparse's default formatter everywhere.
        return argparse.HelpFormatter(self.prog, width=_columns())

    def error(self, message: str) -> NoReturn:
        # README "Exit codes": each failure is one line on stderr. argparse's own error()
        # prints the whole usage block first; the pointer to --help replaces it.
        self.exit(EXIT_USAGE, f"{self.prog}: {message} (see '{self.prog} --help')\n")


def _parser() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the subcommand is not overwritten by the subcommand's
    # own (absent) copy of it, so `voicecall --config F list` and `voicecall list --config F`
    # mean the same.
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help="config file (else $VOICECALL_CONFIG, else ~/.openclaw/openclaw.json)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="JSON output even on a terminal (it is the default when piped)",
    )
    common.add_argument("--version", action="version", version=f"voicecall {__version__}")

    parser = _Parser(
        prog="voicecall", description="Give an AI agent a telephone.", parents=[common]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("serve", parents=[common], help="run the gateway in the foreground")
    commands.add_parser(
        "mcp", parents=[common], help="the voice_call tool for MCP hosts, on stdio (needs serve)"
    )

    call = commands.add_parser("call", parents=[common], help="place an outbound call")
    call.add_argument("--to", help="E.164 number (default: toNumber)")
    call.add_argument("--message", type=_text, help="what to say (optional with --agent)")
    call.add_argument("--mode", choices=["notify", "conversation"])
    call.add_argument(
        "--agent",
        metavar="GOAL",
        type=_text,
        help="the phone agent holds the conversation itself towards GOAL",
    )
    call.add_argument(
        "--follow",
        action="store_true",
        help="print the call's states and transcript until it ends (exit 0 if it completed)",
    )

    cont = commands.add_parser(
        "continue", parents=[common], help="speak, then wait for the caller's reply"
    )
    cont.add_argument("--call-id", required=True)
    cont.add_argument("--message", required=True, type=_text)

    speak = commands.add_parser("speak", parents=[common], help="speak without waiting")
    speak.add_argument("--call-id", required=True)
    speak.add_argument("--message", required=True, type=_text)

    end = commands.add_parser("end", parents=[common], help="hang up a call")
    end.add_argument("--call-id", required=True)

    status = commands.add_parser("status", parents=[common], help="one call's state")
    status.add_argument("--call-id", required=True)

    listing = commands.add_parser("list", parents=[common], help="calls, newest first")
    listing.add_argument("--active", action="store_true", help="live calls only")
    listing.add_argument("--limit", type=int, default=100)

    tail = commands.add_parser("tail", parents=[common], help="follow call events live")
    tail.add_argument(
        "--since",
        type=_sequence_number,
        default=None,
        metavar="N",
        help="first replay the events after event N (0: everything); default: from now",
    )

    config_cmd = commands.add_parser("config", parents=[common], help="inspect the configuration")
    config_what = config_cmd.add_subparsers(dest="what", required=True, metavar="WHAT")
    config_what.add_parser(
        "check",
        parents=[common],
        help="validate, and show the resolved config (secrets redacted) and each value's source",
    )

    commands.add_parser(
        "doctor",
        parents=[common],
        help="check that a real carrier will reach this gateway and be accepted (read-only)",
    )

    simulate = commands.add_parser(
        "simulate", parents=[common], help="mock carrier: simulate a carrier-side event"
    )
    what = simulate.add_subparsers(dest="what", required=True, metavar="WHAT")
    inbound = what.add_parser("inbound", parents=[common], help="someone rings us")
    inbound.add_argument("--from", dest="from_number", required=True)
    inbound.add_argument("--to", dest="to_number")

    pairing = commands.add_parser(
        "pairing", parents=[common], help="who may call in: approve or deny pairing codes"
    )
    pairing_what = pairing.add_subparsers(dest="what", required=True, metavar="WHAT")
    pairing_what.add_parser(
        "list", parents=[common], help="pending pairing codes and approved numbers"
    )
    approve = pairing_what.add_parser(
        "approve", parents=[common], help="let the caller who heard CODE call from now on"
    )
    approve.add_argument("code", metavar="CODE")
    deny = pairing_what.add_parser("deny", parents=[common], help="refuse the request for CODE")
    deny.add_argument("code", metavar="CODE")
    revoke = pairing_what.add_parser(
        "revoke", parents=[common], help="forget an approved number (it must pair again)"
    )
    revoke.add_argument("number", metavar="NUMBER")

    expose = commands.add_parser(
        "expose", parents=[common], help="publish the webhook path with Tailscale"
    )
    expose.add_argument("--mode", required=True, choices=["serve", "funnel", "off"])

    demo = commands.add_parser(
        "demo", parents=[common], help="a scripted tour on the offline mock carrier"
    )
    demo.add_argument("--keep", action="store_true", help="keep the demo's temporary files")
    demo.add_argument(
        "--carrier",
        choices=["mock", "twilio", "telnyx", "plivo"],
        default="mock",
        help="mock (offline) or a real adapter against its simulated carrier",
    )
    demo.add_argument(
        "--streaming",
        action="store_true",
        help="speak and listen over the carrier's media stream, with a barge-in",
    )
    return parser


class _EventStream:
    """The gateway's ``/events`` WebSocket, opened before anything it should see happens."""

    def __init__(self, client: GatewayClient, since: int | None) -> None:
        from websockets.exceptions import InvalidStatus
        from websockets.sync.client import connect

        headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
        query = "now" if since is None else str(since)
        try:
            self.socket = connect(f"{client.ws_url}?since={query}", additional_headers=headers)
        except InvalidStatus:
            raise ClientError(
                "the gateway refused the event stream (check gateway.auth.token)"
            ) from None
        except OSError as err:
            if isinstance(err, ConnectionRefusedError) or "refused" in str(err).lower():
                raise ClientError(
                    f"the gateway is not running at {client.base_url} "
                    "(start it with 'voicecall serve')",
                    EXIT_UNREACHABLE,
                ) from None
            raise ClientError(
                f"cannot reach the gateway at {client.base_url}: {err}", EXIT_UNREACHABLE
            ) from None

    def events(self) -> Iterator[dict[str, Any]]:
        """Events until the gateway ends the stream (keepalives skipped).

        Raises:
            ClientError: the gateway closed the stream with one of its refusals (4400 a bad
                ``since``, 4401 a bad token, 4429 too far behind), with the gateway's reason.
        """
        from websockets.exceptions import ConnectionClosed

        try:
            for message in self.socket:
                event = json.loads(message)
                if isinstance(event, dict) and event.get("type") != "keepalive":
                    yield event
        except ConnectionClosed as closed:
            received = closed.rcvd
            if received is not None and 4000 <= received.code < 5000:
                code = EXIT_USAGE if received.code == 4400 else EXIT_NOT_FOUND
                raise ClientError(
                    f"the gateway closed the event stream: {received.reason or received.code}",
                    code,
                ) from None
            return

    def close(self) -> None:
        self.socket.close()


def _show_event(event: dict[str, Any], as_json: bool) -> None:
    sys.stdout.write(dump_json(event, compact=True) if as_json else format_event(event))
    sys.stdout.flush()


def _tail(client: GatewayClient, since: int | None, as_json: bool) -> int:
    stream = _EventStream(client, since)
    try:
        for event in stream.events():
            _show_event(event, as_json)
    except KeyboardInterrupt:
        pass
    finally:
        stream.close()
    return 0


def _call_and_follow(client: GatewayClient, params: dict[str, Any], as_json: bool) -> int:
    """Place a call and show its events until it ends; 0 if it completed, else 1.

    The stream is opened (from now) before the call is placed, so its first event is not missed.
    """
    stream = _EventStream(client, None)
    try:
        placed = client.call("voicecall.initiate", params)
        call_id = placed.get("callId")
        if as_json:
            sys.stdout.write(dump_json({"placed": placed}, compact=True))
        else:
            sys.stdout.write(f"call {call_id} placed\n")
        sys.stdout.flush()
        reason: str | None = None
        for event in stream.events():
            if event.get("callId") != call_id:
                continue
            _show_event(event, as_json)
            data = event.get("data") or {}
            if event.get("type") == "call.state" and data.get("endReason"):
                reason = str(data["endReason"])
                break
    finally:
        stream.close()
    if reason is None:
        raise ClientError("the gateway ended the event stream before the call ended")
    return 0 if reason in COMPLETED_REASONS else EXIT_NOT_FOUND


def _config_path(args: argparse.Namespace) -> str | None:
    return getattr(args, "config", None)


def _run(args: argparse.Namespace) -> int:
    as_json = wants_json(getattr(args, "json", False), sys.stdout)
    if args.command == "demo":
        # The demo writes and uses its own throw-away config; the operator's is not touched.
        from voicecall.entrypoints.demo import run_demo

        return run_demo(keep=args.keep, carrier_name=args.carrier, streaming=args.streaming)
    if args.command == "config":
        from voicecall.entrypoints.config_check import run_config_check

        return run_config_check(_config_path(args), os.environ, as_json=as_json)
    if args.command == "doctor":
        from voicecall.entrypoints.doctor import run_doctor_command

        return run_doctor_command(_config_path(args), os.environ, as_json=as_json)
    if args.command in _GATEWAY_COMMANDS:
        return _gateway_command(args, as_json, _client_settings(args))
    config = _load_config(args)
    if args.command == "serve":
        from voicecall.entrypoints.server import serve

        return serve(config)
    if args.command == "mcp":
        from voicecall.entrypoints.mcp_server import run_stdio

        return run_stdio(config)
    if args.command == "expose":
        from voicecall.entrypoints.expose import ExposeError, expose

        try:
            _print(expose(config, args.mode), args)
        except ExposeError as err:
            raise ClientError(str(err)) from None
        return 0
    raise AssertionError(f"unhandled command {args.command!r}")


# The commands that only talk to a running gateway: they need its address and token, no more.
_GATEWAY_COMMANDS = frozenset(
    {"call", "continue", "speak", "end", "status", "list", "tail", "pairing", "simulate"}
)


def _load_config(args: argparse.Namespace) -> AppConfig:
    """The full loader: every key validated, warnings printed."""
    from voicecall.config import load_config

    config = load_config(_config_path(args), os.environ)
    for warning in getattr(config, "warnings", ()):
        print(f"voicecall: warning: {warning}", file=sys.stderr)
    return config


def _config_problem(args: argparse.Namespace) -> str | None:
    """What the full loader finds wrong with the config file, if anything.

    Gateway commands read only the gateway's few settings (issue 12: fast start-up), so a
    mistake elsewhere in the file goes unseen while the gateway answers; when it does not, this
    names the mistake (on the error path only, where start-up time no longer matters).
    """
    from voicecall.config import ConfigError, load_config

    try:
        load_config(_config_path(args), os.environ)
    except ConfigError as err:
        return str(err)
    return None


def _client_settings(args: argparse.Namespace) -> ClientSettings:
    quick = read_client_settings(_config_path(args), os.environ)
    return quick if quick is not None else client_settings(_load_config(args))


def _gateway_command(args: argparse.Namespace, as_json: bool, settings: ClientSettings) -> int:
    client = GatewayClient(settings)
    if args.command == "call":
        if not args.message and not args.agent:
            raise ClientError("call needs --message, or --agent GOAL", 2)
        params = {
            "to": args.to,
            "message": args.message,
            "mode": args.mode,
            "agentGoal": args.agent,
        }
        params = {k: v for k, v in params.items() if v}
        if args.follow:
            return _call_and_follow(client, params, as_json)
        _print(client.call("voicecall.initiate", params), args)
    elif args.command == "continue":
        _print(
            client.call(
                "voicecall.continue",
                {"callId": args.call_id, "message": args.message},
                timeout=settings.reply_timeout_s,
            ),
            args,
        )
    elif args.command == "speak":
        _print(
            client.call(
                "voicecall.speak",
                {"callId": args.call_id, "message": args.message},
                timeout=settings.reply_timeout_s,
            ),
            args,
        )
    elif args.command == "end":
        _print(client.call("voicecall.end", {"callId": args.call_id}), args)
    elif args.command == "status":
        answer = client.call("voicecall.status", {"callId": args.call_id})
        _print(answer, args)
        if not answer.get("found"):
            # Scripts still get {"found": false}; the exit code agrees with end/continue.
            print(f"voicecall: no call with id {args.call_id!r}", file=sys.stderr)
            return EXIT_NOT_FOUND
    elif args.command == "list":
        _print(client.call("voicecall.list", {"active": args.active, "limit": args.limit}), args)
    elif args.command == "tail":
        return _tail(client, args.since, as_json)
    elif args.command == "pairing":
        if args.what == "list":
            _print(client.call("voicecall.pairing.list", {}), args)
        elif args.what == "revoke":
            _print(client.call("voicecall.pairing.revoke", {"number": args.number}), args)
        else:
            _print(client.call(f"voicecall.pairing.{args.what}", {"code": args.code}), args)
    elif args.command == "simulate":
        params = {"from": args.from_number}
        if args.to_number:
            params["to"] = args.to_number
        _print(client.call("voicecall.simulateInbound", params), args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ClientError as err:
        if err.exit_code == EXIT_UNREACHABLE and args.command in _GATEWAY_COMMANDS:
            problem = _config_problem(args)
            if problem is not None:
                # No gateway can be running on a file the loader refuses, and 'start it with
                # voicecall serve' would only lead to this error: say it now.
                print(f"voicecall: {problem}", file=sys.stderr)
                return EXIT_USAGE
        print(f"voicecall: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as err:
        # Only a command that ran the full loader can get here with a ConfigError, so the
        # config module is imported for the check, not at start-up.
        from voicecall.config import ConfigError

        if not isinstance(err, ConfigError):
            raise
        print(f"voicecall: {err}", file=sys.stderr)
        return EXIT_USAGE
