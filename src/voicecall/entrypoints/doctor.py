"""``voicecall doctor``: will a real carrier reach this gateway, and will it be accepted?

Each check prints ✓ or ✗ with the fix; ``--json`` gives the same as data. Exit 0 when every
check passes, 1 otherwise (2 is left to usage errors). Nothing here changes state: the store is
inspected, not written; ports are probed by binding and closing; the carrier is asked one
read-only GET; and the self-test request carries ``?voicecallSelfTest``, which the webhook door
answers with 200 and no side effect once the signature verified (``webhook_app.py``).

The signed self-test is the point of the command. For Twilio and Plivo, whose signatures are
HMACs under our own token, the doctor signs a request exactly as the carrier would and sends it to
the public URL (``publicUrl``, or the ngrok domain); it has to come back through the proxy or
tunnel to our door and verify there. A wrong ``publicUrl``, a proxy that rewrites the host or a
forwarded-host mismatch fails here, naming the URL that was checked. Telnyx signs with a private
key we never hold, so for Telnyx the doctor checks that an unsigned request to the public URL is
refused 401 by *our* door, that ``telnyx.publicKey`` parses, and that this machine's clock is
within Telnyx's 300 s window of the carrier's (the API answer's ``Date`` header).
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import attrs
import httpx

from voicecall.adapters.telephony import carrier_probe
from voicecall.adapters.telephony.carrier_probe import AccountAnswer, SignedRequest
from voicecall.adapters.telephony.telnyx.verify import public_key_parses
from voicecall.config import AppConfig, ConfigError, load_config, resolve_config_path
from voicecall.entrypoints.client import connect_host

__all__ = ["Check", "DoctorReport", "run_doctor", "run_doctor_command"]

SELF_TEST_QUERY = "voicecallSelfTest=1"
# The door's answers (webhook_app.py): what tells our door from any other server.
_SELF_TEST_VERIFIED = "voicecall self-test verified"
_DOOR_MISSING_SIGNATURE = "missing signature"
# Telnyx refuses webhooks whose timestamp is more than 5 minutes off (SPEC §4).
TELNYX_CLOCK_WINDOW_S = 300.0
_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


@attrs.frozen
class Check:
    """One line of the report: what was checked, whether it passed, and the fix if not."""

    name: str
    ok: bool
    detail: str
    fix: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"check": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


@attrs.frozen
class DoctorReport:
    source: str
    provider: str | None
    checks: tuple[Check, ...]

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def as_json(self) -> dict[str, Any]:
        return {
            "config": self.source,
            "provider": self.provider,
            "ok": self.ok,
            "checks": [check.as_json() for check in self.checks],
        }

    def as_text(self) -> str:
        lines = [f"voicecall doctor: {self.source} (provider {self.provider or '?'})"]
        for check in self.checks:
            lines.append(f"{'✓' if check.ok else '✗'} {check.name}: {check.detail}")
            if not check.ok and check.fix:
                lines.append(f"    fix: {check.fix}")
        failed = sum(not check.ok for check in self.checks)
        lines.append(
            "all checks passed" if not failed else f"{failed} of {len(self.checks)} checks failed"
        )
        return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ the store


def check_store(config: AppConfig) -> Check:
    """The store exists as a 0700 directory we can write, with every file in it 0600 (or can
    be created so); only inspected."""
    store = Path(config.voice.store_path)
    name = "store"
    if not store.exists():
        parent = next((p for p in store.parents if p.exists()), None)
        if parent is not None and parent.is_dir() and os.access(parent, os.W_OK | os.X_OK):
            return Check(name, True, f"{store} does not exist yet; serve will create it (0700)")
        return Check(
            name,
            False,
            f"{store} does not exist and {parent} is not a writable directory",
            f"create it: mkdir -p -m 700 {store}, or set store to a writable directory",
        )
    if not store.is_dir():
        return Check(name, False, f"{store} is not a directory", "point store at a directory")
    if not os.access(store, os.W_OK | os.X_OK):
        return Check(
            name, False, f"{store} is not writable by this user", f"chown it or fix: {store}"
        )
    mode = stat.S_IMODE(store.stat().st_mode)
    if mode != 0o700:
        return Check(
            name,
            False,
            f"{store} has mode {mode:04o}; call state must be private (0700)",
            f"chmod 700 {store}",
        )
    loose = []
    for path in sorted(store.rglob("*")):
        try:
            info = path.lstat()
        except OSError:
            continue
        want = 0o700 if stat.S_ISDIR(info.st_mode) else 0o600
        if stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode):
            if stat.S_IMODE(info.st_mode) & ~want:
                loose.append(f"{path.relative_to(store)} ({stat.S_IMODE(info.st_mode):04o})")
    if loose:
        return Check(
            name,
            False,
            f"{store}: readable by others: {', '.join(loose[:5])}"
            + (f" and {len(loose) - 5} more" if len(loose) > 5 else ""),
            f"chmod -R go-rwx {store}",
        )
    return Check(name, True, f"{store} is writable, 0700, files 0600")


# ------------------------------------------------------------------------------ the ports


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        # As the server binds: a listener in TIME_WAIT is not "in use".
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _gateway_health(http: httpx.Client, config: AppConfig) -> dict[str, Any] | None:
    url = f"http://{connect_host(config.gateway.bind)}:{config.gateway.port}/health"
    try:
        answer = http.get(url, timeout=httpx.Timeout(3.0))
        data = answer.json()
    except (httpx.HTTPError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("ok") is True else None


def check_ports(config: AppConfig, http: httpx.Client) -> tuple[Check, bool]:
    """Each listener's port is free, or held by our running gateway. Also says whether a
    gateway of ours is running (the self-test needs one)."""
    voice = config.voice
    health = _gateway_health(http, config)
    running = health is not None
    listeners = (
        ("serve", voice.serve.bind, voice.serve.port),
        ("gateway", config.gateway.bind, config.gateway.port),
    )
    busy = [f"{what} {bind}:{port}" for what, bind, port in listeners if not _port_free(bind, port)]
    if not busy:
        return Check("ports", True, "webhook and gateway ports are free"), False
    if running:
        assert health is not None
        provider = health.get("provider")
        if provider != voice.provider:
            return (
                Check(
                    "ports",
                    False,
                    f"a voicecall gateway holds {', '.join(busy)} but runs provider {provider}, "
                    f"not {voice.provider}",
                    "restart 'voicecall serve' with this config",
                ),
                True,
            )
        return Check("ports", True, f"in use by the running voicecall gateway ({provider})"), True
    return (
        Check(
            "ports",
            False,
            f"in use by another program: {', '.join(busy)}",
            "stop that program, or change serve.port / gateway.port",
        ),
        False,
    )


# ------------------------------------------------------------------------------ the carrier


def _credentials(config: AppConfig, http: httpx.Client) -> tuple[Check, AccountAnswer | None]:
    voice = config.voice
    name = "carrier credentials"
    if voice.provider == "mock":
        return Check(name, True, "mock carrier: no account to check"), None
    missing: list[str] = []
    answer: AccountAnswer
    if voice.provider == "twilio":
        sid, token = voice.twilio.account_sid, voice.twilio.auth_token
        missing = [k for k, v in (("accountSid", sid), ("authToken", token)) if not v]
        if missing:
            fix = (
                "set twilio.accountSid and twilio.authToken "
                "(or TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN)"
            )
            return Check(name, False, f"missing twilio.{', twilio.'.join(missing)}", fix), None
        assert sid and token
        answer = carrier_probe.check_twilio_account(http, voice.twilio.api_base_url, sid, token)
        fix = "copy Account SID and Auth Token from the Twilio console (Account info)"
    elif voice.provider == "plivo":
        auth_id, token = voice.plivo.auth_id, voice.plivo.auth_token
        missing = [k for k, v in (("authId", auth_id), ("authToken", token)) if not v]
        if missing:
            fix = "set plivo.authId and plivo.authToken (or PLIVO_AUTH_ID, PLIVO_AUTH_TOKEN)"
            return Check(name, False, f"missing plivo.{', plivo.'.join(missing)}", fix), None
        assert auth_id and token
        answer = carrier_probe.check_plivo_account(http, voice.plivo.api_base_url, auth_id, token)
        fix = "copy Auth ID and Auth Token from the Plivo console overview"
    else:
        key, connection = voice.telnyx.api_key, voice.telnyx.connection_id
        missing = [k for k, v in (("apiKey", key), ("connectionId", connection)) if not v]
        if missing:
            fix = (
                "set telnyx.apiKey and telnyx.connectionId "
                "(or TELNYX_API_KEY, TELNYX_CONNECTION_ID)"
            )
            return Check(name, False, f"missing telnyx.{', telnyx.'.join(missing)}", fix), None
        assert key and connection
        answer = carrier_probe.check_telnyx_application(
            http, voice.telnyx.api_base_url, key, connection
        )
        fix = (
            "use an API key from Telnyx 'API Keys' and the id of the Call Control application "
            "(Voice > Programmable Voice) as telnyx.connectionId"
        )
    if answer.ok:
        return Check(name, True, f"{answer.detail} by {answer.url}"), answer
    if answer.status is None:
        fix = f"check the network and {voice.provider}.apiBaseUrl"
    return Check(name, False, answer.detail, fix), answer


# ------------------------------------------------------------------------------ the public path


def public_webhook_url(config: AppConfig) -> str | None:
    """The URL a carrier calls: ``publicUrl``, else the fixed ngrok domain with ``serve.path``."""
    voice = config.voice
    if voice.public_url:
        return voice.public_url
    if voice.tunnel.provider == "ngrok" and voice.tunnel.ngrok_domain:
        return f"https://{voice.tunnel.ngrok_domain}{voice.serve.path}"
    return None


def _with_self_test(url: str) -> str:
    parts = urlsplit(url)
    query = f"{parts.query}&{SELF_TEST_QUERY}" if parts.query else SELF_TEST_QUERY
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def _post(http: httpx.Client, url: str, signed: SignedRequest | None) -> httpx.Response | str:
    try:
        if signed is None:
            return http.post(
                url, content=b"{}", headers={"content-type": "application/json"}, timeout=_TIMEOUT
            )
        return http.post(url, content=signed.body, headers=signed.headers, timeout=_TIMEOUT)
    except httpx.HTTPError as err:
        return f"nothing answered at {url}: {err or type(err).__name__}"


_UNREACHED_FIX = (
    "start 'voicecall serve' with this config; check that publicUrl (or the tunnel) forwards "
    "to serve.bind:serve.port and serve.path"
)


def _self_test(config: AppConfig, http: httpx.Client, running: bool) -> list[Check]:
    voice = config.voice
    name = "signed self-test" if voice.provider in ("twilio", "plivo") else "public URL"
    if voice.provider == "mock":
        return [Check(name, True, "mock carrier: it signs nothing and needs no public URL")]
    base = public_webhook_url(config)
    if base is None:
        fix = "set publicUrl to the exact URL the carrier calls (or tunnel.ngrokDomain)"
        if voice.tunnel.provider != "none":
            fix += "; a tunnel's URL is known only to the running gateway"
        return [Check(name, False, "no public URL to check", fix)]
    if voice.skip_signature_verification:
        # An unsigned or self-signed request would then be applied as a real webhook.
        return [
            Check(
                name,
                False,
                "skipSignatureVerification is on: a real carrier's requests would not be "
                "verified, and the self-test is not sent",
                "remove skipSignatureVerification",
            )
        ]
    url = _with_self_test(base)
    if not running:
        return [
            Check(
                name,
                False,
                f"no voicecall gateway is running to answer {url}",
                "start 'voicecall serve' with this config, then run doctor again",
            )
        ]
    if voice.provider == "twilio":
        sid, token = voice.twilio.account_sid, voice.twilio.auth_token
        if not (sid and token):
            return [Check(name, False, "no Twilio credentials to sign with", "see above")]
        signed = carrier_probe.twilio_signed_request(url, token, {"AccountSid": sid})
        return [_signed_verdict(name, url, _post(http, url, signed))]
    if voice.provider == "plivo":
        token = voice.plivo.auth_token
        if not token:
            return [Check(name, False, "no Plivo auth token to sign with", "see above")]
        signed = carrier_probe.plivo_signed_request(url, token, {"VoicecallSelfTest": "1"})
        return [_signed_verdict(name, url, _post(http, url, signed))]
    return [_telnyx_door(name, url, _post(http, url, None))]


def _signed_verdict(name: str, url: str, answer: httpx.Response | str) -> Check:
    if isinstance(answer, str):
        return Check(name, False, answer, _UNREACHED_FIX)
    if answer.status_code == 200 and answer.text == _SELF_TEST_VERIFIED:
        return Check(
            name,
            True,
            f"a request signed as the carrier signs it, sent to {url}, "
            "came back through our door and verified",
        )
    if answer.status_code == 401:
        return Check(
            name,
            False,
            f"our door refused the signature on {url}: the URL it rebuilt is not the one the "
            "carrier signs (the gateway log names the URL(s) it checked)",
            "make publicUrl exactly the URL the carrier calls; behind a proxy, set "
            "webhookSecurity.trustedProxyIPs and allowedHosts so the forwarded host is used",
        )
    return Check(
        name,
        False,
        f"{url} answered HTTP {answer.status_code}, not our door",
        "publicUrl must end in serve.path and reach this gateway, not another server",
    )


def _telnyx_door(name: str, url: str, answer: httpx.Response | str) -> Check:
    if isinstance(answer, str):
        return Check(name, False, answer, _UNREACHED_FIX)
    if answer.status_code == 401 and answer.text == _DOOR_MISSING_SIGNATURE:
        return Check(name, True, f"an unsigned request to {url} was refused 401 by our door")
    return Check(
        name,
        False,
        f"{url} answered HTTP {answer.status_code} to an unsigned request, not our door's 401",
        "publicUrl must end in serve.path and reach this gateway, not another server",
    )


def _telnyx_checks(
    config: AppConfig, answer: AccountAnswer | None, now: Callable[[], float]
) -> list[Check]:
    telnyx = config.voice.telnyx
    checks = []
    if config.voice.skip_signature_verification:
        checks.append(Check("telnyx.publicKey", True, "not used: skipSignatureVerification is on"))
    elif not telnyx.public_key:
        checks.append(
            Check(
                "telnyx.publicKey",
                False,
                "missing: Telnyx webhooks cannot be verified",
                "copy the public key from Telnyx portal > Keys & Credentials > Public Key",
            )
        )
    elif not public_key_parses(telnyx.public_key):
        checks.append(
            Check(
                "telnyx.publicKey",
                False,
                "does not parse as a base64 Ed25519 public key (32 bytes)",
                "copy it again from Telnyx portal > Keys & Credentials > Public Key",
            )
        )
    else:
        checks.append(Check("telnyx.publicKey", True, "a base64 Ed25519 public key"))
    date = answer.date if answer is not None else None
    carrier_time: float | None = None
    if date:
        try:
            carrier_time = parsedate_to_datetime(date).timestamp()
        except (TypeError, ValueError):
            carrier_time = None
    if carrier_time is None:
        checks.append(
            Check(
                "clock",
                False,
                "could not compare this machine's clock with Telnyx's (no Date from the API)",
                "fix the credentials check above; keep the clock synced (NTP)",
            )
        )
    else:
        skew = now() - carrier_time
        ok = abs(skew) <= TELNYX_CLOCK_WINDOW_S
        checks.append(
            Check(
                "clock",
                ok,
                f"this machine is {skew:+.0f} s from Telnyx's clock "
                f"(webhooks are refused beyond ±{TELNYX_CLOCK_WINDOW_S:.0f} s)",
                None if ok else "sync the clock (timedatectl set-ntp true, or chrony/ntpd)",
            )
        )
    return checks


# ------------------------------------------------------------------------------ the command


def run_doctor(
    config_path: str | None,
    env: Mapping[str, str],
    *,
    http: httpx.Client | None = None,
    now: Callable[[], float] = time.time,
) -> DoctorReport:
    """Every check, in order; later checks are skipped only when the config is invalid."""
    source = str(resolve_config_path(config_path, env))
    try:
        config = load_config(config_path, env)
        # serve refuses a responseModel it cannot resolve (exit 2): so does this check.
        from voicecall.container import model_route

        model_route(config)
    except ConfigError as err:
        return DoctorReport(
            source, None, (Check("config", False, str(err), "fix the file at that path"),)
        )
    own = http is None
    client = http or httpx.Client(follow_redirects=False)
    try:
        detail = "valid" + (f" ({len(config.warnings)} warnings)" if config.warnings else "")
        checks = [Check("config", True, detail)]
        checks.extend(
            Check("config warning", False, warning, "see 'voicecall config check'")
            for warning in config.warnings
        )
        checks.append(check_store(config))
        ports, running = check_ports(config, client)
        checks.append(ports)
        credentials, answer = _credentials(config, client)
        checks.append(credentials)
        checks.extend(_self_test(config, client, running))
        if config.voice.provider == "telnyx":
            checks.extend(_telnyx_checks(config, answer, now))
    finally:
        if own:
            client.close()
    return DoctorReport(config.source, config.voice.provider, tuple(checks))


def run_doctor_command(config_path: str | None, env: Mapping[str, str], *, as_json: bool) -> int:
    """Print the report; 0 when every check passed, 1 otherwise."""
    report = run_doctor(config_path, env)
    if as_json:
        sys.stdout.write(json.dumps(report.as_json(), indent=2, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(report.as_text())
    sys.stdout.flush()
    return 0 if report.ok else 1
