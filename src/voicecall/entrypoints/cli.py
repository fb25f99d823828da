"""The ``voicecall`` command line.

Every command except ``serve`` and ``demo`` talks to a running gateway over RPC; none starts
a webhook server. Output is JSON on stdout; failures are one line on stderr and a non-zero
exit (1: the gateway is not running or refused, 2: bad configuration or usage).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from voicecall.config import AppConfig, ConfigError, load_config
from voicecall.entrypoints.client import ClientError, GatewayClient

__all__ = ["main"]


def _print(payload: Any) -> None:
    sys.stdout.write(json.dumps(payload, indent=2) + "\n")
    sys.stdout.flush()


def _long_timeout(config: AppConfig) -> float:
    voice = config.voice
    return (voice.transcript_timeout_ms + voice.ring_timeout_ms) / 1000 + 30


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", help="config file (else $VOICECALL_CONFIG)")

    parser = argparse.ArgumentParser(
        prog="voicecall", description="Give an AI agent a telephone.", parents=[common]
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("serve", parents=[common], help="run the gateway in the foreground")
    commands.add_parser(
        "mcp", parents=[common], help="the voice_call tool for MCP hosts, on stdio (needs serve)"
    )

    call = commands.add_parser("call", parents=[common], help="place an outbound call")
    call.add_argument("--to", help="E.164 number (default: toNumber)")
    call.add_argument("--message", required=True)
    call.add_argument("--mode", choices=["notify", "conversation"])

    cont = commands.add_parser(
        "continue", parents=[common], help="speak, then wait for the caller's reply"
    )
    cont.add_argument("--call-id", required=True)
    cont.add_argument("--message", required=True)

    speak = commands.add_parser("speak", parents=[common], help="speak without waiting")
    speak.add_argument("--call-id", required=True)
    speak.add_argument("--message", required=True)

    end = commands.add_parser("end", parents=[common], help="hang up a call")
    end.add_argument("--call-id", required=True)

    status = commands.add_parser("status", parents=[common], help="one call's state")
    status.add_argument("--call-id", required=True)

    listing = commands.add_parser("list", parents=[common], help="calls, newest first")
    listing.add_argument("--active", action="store_true", help="live calls only")
    listing.add_argument("--limit", type=int, default=100)

    tail = commands.add_parser("tail", parents=[common], help="follow call events live")
    tail.add_argument("--since", type=int, default=0, metavar="N", help="replay after event N")

    simulate = commands.add_parser(
        "simulate", parents=[common], help="mock carrier: simulate a carrier-side event"
    )
    what = simulate.add_subparsers(dest="what", required=True, metavar="WHAT")
    inbound = what.add_parser("inbound", parents=[common], help="someone rings us")
    inbound.add_argument("--from", dest="from_number", required=True)
    inbound.add_argument("--to", dest="to_number")

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


def _tail(client: GatewayClient, since: int) -> int:
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    from websockets.sync.client import connect

    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    try:
        with connect(f"{client.ws_url}?since={since}", additional_headers=headers) as socket:
            for message in socket:
                event = json.loads(message)
                if event.get("type") == "keepalive":
                    continue
                sys.stdout.write(json.dumps(event) + "\n")
                sys.stdout.flush()
    except (ConnectionRefusedError, OSError) as err:
        if isinstance(err, ConnectionRefusedError) or "refused" in str(err).lower():
            raise ClientError(
                f"the gateway is not running at {client.base_url} (start it with 'voicecall serve')"
            ) from None
        raise ClientError(f"lost the gateway: {err}") from None
    except InvalidStatus:
        raise ClientError(
            "the gateway refused the event stream (check gateway.auth.token)"
        ) from None
    except ConnectionClosed:
        pass
    except KeyboardInterrupt:
        pass
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "demo":
        # The demo writes and uses its own throw-away config; the operator's is not touched.
        from voicecall.entrypoints.demo import run_demo

        return run_demo(keep=args.keep, carrier_name=args.carrier, streaming=args.streaming)
    config = load_config(args.config, os.environ)
    if args.command == "serve":
        from voicecall.entrypoints.server import serve

        return serve(config)
    if args.command == "mcp":
        from voicecall.entrypoints.mcp_server import run_stdio

        return run_stdio(config)
    if args.command == "expose":
        from voicecall.entrypoints.expose import ExposeError, expose

        try:
            _print(expose(config, args.mode))
        except ExposeError as err:
            raise ClientError(str(err)) from None
        return 0
    client = GatewayClient(config)
    if args.command == "call":
        params = {"to": args.to, "message": args.message, "mode": args.mode}
        _print(client.call("voicecall.initiate", {k: v for k, v in params.items() if v}))
    elif args.command == "continue":
        _print(
            client.call(
                "voicecall.continue",
                {"callId": args.call_id, "message": args.message},
                timeout=_long_timeout(config),
            )
        )
    elif args.command == "speak":
        _print(
            client.call(
                "voicecall.speak",
                {"callId": args.call_id, "message": args.message},
                timeout=_long_timeout(config),
            )
        )
    elif args.command == "end":
        _print(client.call("voicecall.end", {"callId": args.call_id}))
    elif args.command == "status":
        _print(client.call("voicecall.status", {"callId": args.call_id}))
    elif args.command == "list":
        _print(client.call("voicecall.list", {"active": args.active, "limit": args.limit}))
    elif args.command == "tail":
        return _tail(client, args.since)
    elif args.command == "simulate":
        params = {"from": args.from_number}
        if args.to_number:
            params["to"] = args.to_number
        _print(client.call("voicecall.simulateInbound", params))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except ConfigError as err:
        print(f"voicecall: {err}", file=sys.stderr)
        return 2
    except ClientError as err:
        print(f"voicecall: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        return 130
