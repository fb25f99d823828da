"""The media stream token (SPEC §4 "Media streams", ``domain/media.py``):
``base64url(call_id|expires|nonce) . base64url(HMAC-SHA256)``, read back into the call and the
expiry it was minted for, or a one-line reason it is refused (never an exception).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import string

import pytest

from voicecall.domain.media import StreamGrant, mint_stream_token, read_stream_token

SECRET = b"s" * 32
MALFORMED = "malformed stream token"
# The token travels in URLs and carrier parameters: base64url without padding, one dot.
URL_SAFE_TOKEN = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")
ENDINGS = string.ascii_letters + string.digits + "-_~"


def _unpadded(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _signed(payload: bytes) -> str:
    """A token over ``payload`` with a valid signature, whatever the payload holds."""
    mac = hmac.new(SECRET, b"voicecall-stream|" + payload, hashlib.sha256).digest()
    return f"{_unpadded(payload)}.{_unpadded(mac)}"


def test_every_minted_token_is_url_safe_and_reads_back() -> None:
    # Payloads of every length mod 3 and 4, ending in every letter and digit, so each last
    # base64url character and each amount of missing padding occurs.
    for i in range(3000):
        call_id = f"call-{'x' * (i % 13)}{i}"
        nonce = f"n{i}{ENDINGS[i % len(ENDINGS)]}"
        token = mint_stream_token(SECRET, call_id, 2_000_000_000.0, nonce)
        assert URL_SAFE_TOKEN.fullmatch(token), token
        assert read_stream_token(SECRET, token, 1_000_000_000.0) == StreamGrant(
            call_id, 2_000_000_000.0, nonce
        )


def test_a_token_minted_by_the_spec_format_is_read() -> None:
    assert read_stream_token(SECRET, _signed(b"call-7|1000|abc"), 999.0) == StreamGrant(
        "call-7", 1000.0, "abc"
    )


@pytest.mark.parametrize(("call_id", "nonce"), [("a|b", "n"), ("a", "n|1"), ("|", "|")])
def test_a_separator_in_the_call_id_or_the_nonce_is_refused(call_id: str, nonce: str) -> None:
    with pytest.raises(ValueError, match=r"^call ids and nonces may not contain '\|'$"):
        mint_stream_token(SECRET, call_id, 1000.0, nonce)


def test_a_token_is_valid_up_to_and_including_its_expiry() -> None:
    token = mint_stream_token(SECRET, "call-1", 1000.0, "n1")
    assert read_stream_token(SECRET, token, 1000.0) == StreamGrant("call-1", 1000.0, "n1")
    assert read_stream_token(SECRET, token, 1000.001) == "expired stream token"


def test_a_token_of_512_characters_is_read_and_a_longer_one_is_malformed() -> None:
    # Payload 351 bytes -> 468 characters; a dot and a 43-character signature: 512.
    call_id = "c" * (351 - len("|1000|n"))
    token = mint_stream_token(SECRET, call_id, 1000.0, "n")
    assert len(token) == 512
    assert read_stream_token(SECRET, token, 999.0) == StreamGrant(call_id, 1000.0, "n")
    # 513 characters that decode cleanly: refused for its length before any signature check.
    too_long = "A" * 468 + "." + "A" * 44
    assert len(too_long) == 513
    assert read_stream_token(SECRET, too_long, 999.0) == MALFORMED


@pytest.mark.parametrize("token", [None, 42, b"a.b"])
def test_a_token_that_is_not_text_is_malformed_not_an_error(token: object) -> None:
    assert read_stream_token(SECRET, token, 999.0) == MALFORMED  # type: ignore[arg-type]


@pytest.mark.parametrize("token", ["", "nodot", "a.b.c", "..", "x" * 600])
def test_a_token_without_exactly_one_dot_is_malformed(token: str) -> None:
    assert read_stream_token(SECRET, token, 999.0) == MALFORMED


@pytest.mark.parametrize("token", ["a.AAAA", "AAAA.a", "AAAAA.AAAA"])
def test_a_token_that_is_not_base64url_is_malformed(token: str) -> None:
    assert read_stream_token(SECRET, token, 999.0) == MALFORMED


@pytest.mark.parametrize(
    "payload",
    [b"call-1|1000", b"call-1|1000|n|extra", b"call-1|soon|n", b"call-1|10.5|n", b"\xff|1000|n"],
)
def test_a_signed_payload_that_is_not_call_expiry_nonce_is_malformed(payload: bytes) -> None:
    assert read_stream_token(SECRET, _signed(payload), 999.0) == MALFORMED
