"""What each carrier's verifier says about a request, beyond pass or fail (SPEC §4).

The reason of a refusal is what the operator reads in the one log line of a refused webhook,
and ``checked_urls`` tells them which URL the signature was checked against, so both are part
of each verdict. Helpers and vectors come from ``test_carrier_signatures``.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from plivo.utils.signature_v3 import construct_post_url, get_signature_v3

from voicecall.adapters.telephony.plivo import PlivoSignatureVerifier
from voicecall.adapters.telephony.telnyx import TelnyxSignatureVerifier
from voicecall.adapters.telephony.telnyx.verify import public_key_parses
from voicecall.adapters.telephony.twilio import TwilioSignatureVerifier
from voicecall.domain.signed_url import UrlTrustSettings
from voicecall.domain.webhook import WebhookRequest

from . import test_carrier_signatures as sigs

PLIVO_V3_URL = f"https://{sigs.PLIVO_V3_HOST}{sigs.PLIVO_V3_PATH}"
PLIVO_V2_URL = "https://answer.url"
# A string that cannot be encoded as UTF-8: the Plivo SDK raises on it instead of answering.
UNENCODABLE = "\ud800"


def plivo_v3_sign(body: str, nonce: str = sigs.PLIVO_V3_NONCE) -> str:
    """Sign a form body the way Plivo does (its SDK's own V3 construction, repeats kept)."""
    params: dict[str, str | list[str]] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        params.setdefault(key, []).append(value)  # type: ignore[union-attr]
    signed = construct_post_url(PLIVO_V3_URL, params).decode()
    token = sigs.PLIVO_V3_TOKEN.encode()
    return get_signature_v3(token, signed, nonce).decode()


def plivo_v3_form(body: str, signature: str | None = None) -> WebhookRequest:
    return sigs.plivo_v3_request(
        plivo_v3_sign(body) if signature is None else signature, body=body.encode()
    )


# --------------------------------------------------------------------------------------------
# Plivo: why a request was refused or accepted, and against which URL


def test_plivo_v3_valid_verdict_names_the_url_and_version() -> None:
    result = sigs.plivo().verify(sigs.plivo_v3_request())
    assert result.ok
    assert result.reason == "valid Plivo V3 signature"
    assert result.checked_urls == (PLIVO_V3_URL,)


def test_plivo_v2_valid_verdict_names_the_version() -> None:
    result = sigs.plivo(sigs.PLIVO_V2_TOKEN).verify(sigs.plivo_v2_request())
    assert result.ok
    assert result.reason == "valid Plivo V2 signature"


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        pytest.param(
            sigs.plivo_v3_request("AAAA"), "bad Plivo V3 signature", id="bad-v3-signature"
        ),
        pytest.param(sigs.plivo_v3_request(method="PUT"), "method not signed by Plivo", id="put"),
        pytest.param(
            sigs.plivo_v3_request(content_type="application/json"),
            "body not covered by the signature",
            id="json-body",
        ),
        pytest.param(
            sigs.plivo_v3_request(body=b"\xff\xfe"), "body is not UTF-8", id="body-not-utf8"
        ),
    ],
)
def test_plivo_v3_refusal_says_why_and_which_url(request_: WebhookRequest, reason: str) -> None:
    result = sigs.plivo().verify(request_)
    assert result.ok is False
    assert result.reason == reason
    assert result.checked_urls == (PLIVO_V3_URL,)


def test_plivo_v2_refusal_says_why_and_which_url() -> None:
    result = sigs.plivo(sigs.PLIVO_V2_TOKEN).verify(sigs.plivo_v2_request("AAAA"))
    assert result.ok is False
    assert result.reason == "bad Plivo V2 signature"
    assert result.checked_urls == (PLIVO_V2_URL,)


@pytest.mark.parametrize(
    "request_",
    [
        pytest.param(sigs.plivo_v3_request(nonce=None), id="v3-signature-without-nonce"),
        pytest.param(sigs.plivo_v3_request(None), id="v3-nonce-without-signature"),
        pytest.param(sigs.plivo_v2_request(nonce=None), id="v2-signature-without-nonce"),
    ],
)
def test_plivo_half_a_header_pair_is_missing_headers(request_: WebhookRequest) -> None:
    result = sigs.plivo().verify(request_)
    assert result.ok is False
    assert result.reason == "missing Plivo signature headers"


def test_plivo_no_auth_token_says_so() -> None:
    result = sigs.plivo(token="").verify(sigs.plivo_v3_request())
    assert result.ok is False
    assert result.reason == "no Plivo auth token configured"


def test_plivo_half_a_v3_pair_falls_back_to_a_complete_v2_pair() -> None:
    # Only a complete V3 pair is "V3 headers present"; a stray half does not block V2.
    request = sigs.plivo_v2_request(extra_headers=[("X-Plivo-Signature-V3", "AAAA")])
    result = sigs.plivo(sigs.PLIVO_V2_TOKEN).verify(request)
    assert result.ok, result
    assert result.reason == "valid Plivo V2 signature"


def test_plivo_v3_empty_entries_in_the_signature_list_are_skipped() -> None:
    for header in (f",{sigs.PLIVO_V3_POST_SIG}", f" , ,{sigs.PLIVO_V3_POST_SIG}"):
        result = sigs.plivo().verify(sigs.plivo_v3_request(header))
        assert result.ok, header
        assert result.replay_key == f"plivo-v3:{sigs.PLIVO_V3_NONCE}:{sigs.PLIVO_V3_POST_SIG}"


def test_plivo_v3_a_signature_the_sdk_cannot_process_is_refused() -> None:
    result = sigs.plivo().verify(sigs.plivo_v3_request(UNENCODABLE))
    assert result.ok is False
    assert result.reason == "bad Plivo V3 signature"


def test_plivo_v2_a_signature_the_sdk_cannot_process_is_refused() -> None:
    result = sigs.plivo(sigs.PLIVO_V2_TOKEN).verify(sigs.plivo_v2_request(UNENCODABLE))
    assert result.ok is False
    assert result.reason == "bad Plivo V2 signature"


def test_plivo_v3_get_is_checked_over_its_url_alone() -> None:
    # A GET's fields travel in the query; whatever body it carries is not part of the check.
    signature = sigs.PLIVO_V3_VECTORS[3][3]
    plain = sigs.plivo_v3_request(signature, method="GET")
    with_body = WebhookRequest(
        method=plain.method,
        path=plain.path,
        query=plain.query,
        headers=plain.headers,
        body=b"stray=1",
        peer=plain.peer,
    )
    assert sigs.plivo().verify(plain).ok
    assert sigs.plivo().verify(with_body).ok


@pytest.mark.parametrize(
    "body",
    [
        pytest.param("CallUUID=abc&CallerName=", id="blank-field"),
        pytest.param("CallUUID=abc&Digits=2&Digits=1", id="repeated-field"),
        pytest.param("CallUUID=abc&Digits=2&Digits=1&Digits=3", id="field-three-times"),
    ],
)
def test_plivo_v3_form_fields_are_signed_as_plivo_signs_them(body: str) -> None:
    assert sigs.plivo().verify(plivo_v3_form(body)).ok
    # ...and the signature covers every one of them.
    other = body.replace("abc", "abd")
    assert not sigs.plivo().verify(plivo_v3_form(other, plivo_v3_sign(body))).ok


def test_plivo_v3_blank_field_is_covered_by_the_signature() -> None:
    signed_without_blank = plivo_v3_sign("CallUUID=abc")
    request = plivo_v3_form("CallUUID=abc&CallerName=", signed_without_blank)
    assert not sigs.plivo().verify(request).ok


def test_plivo_v3_form_content_type_with_several_parameters() -> None:
    content_type = "application/x-www-form-urlencoded; charset=UTF-8; boundary=x"
    assert sigs.plivo().verify(sigs.plivo_v3_request(content_type=content_type)).ok


def test_plivo_adopted_public_url_is_the_url_checked() -> None:
    verifier = PlivoSignatureVerifier(sigs.PLIVO_V3_TOKEN, UrlTrustSettings())
    request = sigs.plivo_v3_request(host="127.0.0.1:8080")
    assert not verifier.verify(request).ok
    verifier.adopt_public_url(f"https://{sigs.PLIVO_V3_HOST}")
    result = verifier.verify(request)
    assert result.ok, result
    assert result.checked_urls == (PLIVO_V3_URL,)


# --------------------------------------------------------------------------------------------
# Twilio


def test_twilio_valid_verdict_says_so() -> None:
    assert sigs.twilio().verify(sigs.twilio_request()).reason == "valid Twilio signature"


def test_twilio_adopted_public_url_is_the_url_checked() -> None:
    verifier = TwilioSignatureVerifier(sigs.TWILIO_TOKEN, UrlTrustSettings())
    request = sigs.twilio_request(host="127.0.0.1:8080")
    assert not verifier.verify(request).ok
    verifier.adopt_public_url("https://mycompany.com")
    result = verifier.verify(request)
    assert result.ok, result
    assert result.checked_urls == ("https://mycompany.com/myapp.php?foo=1&bar=2",)


TWILIO_URL = "https://mycompany.com/myapp.php?foo=1&bar=2"
TWILIO_PATH_UNENCODABLE = sigs.TWILIO_PATH + UNENCODABLE


@pytest.mark.parametrize(
    ("request_", "reason"),
    [
        pytest.param(sigs.twilio_request(None), "missing X-Twilio-Signature", id="no-header"),
        pytest.param(sigs.twilio_request(""), "missing X-Twilio-Signature", id="empty-header"),
        pytest.param(
            sigs.twilio_request(body=b"\xff\xfe"), "body is not UTF-8", id="body-not-utf8"
        ),
        pytest.param(
            sigs.twilio_request(content_type="application/json"),
            "body not covered by the signature",
            id="json-without-body-hash",
        ),
        pytest.param(
            sigs.twilio_request(content_type=None),
            "body not covered by the signature",
            id="body-without-content-type",
        ),
    ],
)
def test_twilio_refusal_says_why(request_: WebhookRequest, reason: str) -> None:
    result = sigs.twilio().verify(request_)
    assert result.ok is False
    assert result.reason == reason
    assert result.checked_urls == ()


def test_twilio_no_auth_token_says_so() -> None:
    result = sigs.twilio(token="").verify(sigs.twilio_request())
    assert result.ok is False
    assert result.reason == "no Twilio auth token configured"


def test_twilio_bad_signature_lists_every_url_tried() -> None:
    result = sigs.twilio().verify(sigs.twilio_request("AAAA", host="mycompany.com:8443"))
    assert result.ok is False
    assert result.reason == "bad Twilio signature"
    assert result.checked_urls == (
        "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
        TWILIO_URL,
    )


def test_twilio_a_request_the_sdk_cannot_process_is_refused() -> None:
    # The SDK raises on text it cannot encode; verify never raises and refuses instead.
    result = sigs.twilio().verify(sigs.twilio_request(path=TWILIO_PATH_UNENCODABLE))
    assert result.ok is False
    assert result.reason == "bad Twilio signature"


def test_twilio_first_url_match_reports_only_that_url() -> None:
    result = sigs.twilio().verify(sigs.twilio_request())
    assert result.ok
    assert result.checked_urls == (TWILIO_URL,)


def test_twilio_host_header_port_variant_is_tried() -> None:
    # The match on a variant reports every URL tried, in order.
    # Signed with the Host header's port; rebuilt (forwarded host) without it.
    signed = "https://mycompany.com:8443/myapp.php?foo=1&bar=2"
    signature = sigs.RequestValidator(sigs.TWILIO_TOKEN).compute_signature(
        signed, sigs.TWILIO_PARAMS
    )
    request = sigs.twilio_request(
        signature,
        host="mycompany.com:8443",
        extra_headers=[("X-Forwarded-Host", "mycompany.com")],
        peer=sigs.TRUSTED_PROXY,
    )
    result = sigs.twilio(sigs.BEHIND_PROXY).verify(request)
    assert result.ok, result
    assert result.checked_urls == (TWILIO_URL, signed)
    assert result.replay_key == f"twilio:{signature}"


def test_twilio_empty_body_is_checked_over_the_url_alone() -> None:
    signature = sigs.RequestValidator(sigs.TWILIO_TOKEN).compute_signature(TWILIO_URL, {})
    for content_type in (None, "application/json"):
        request = sigs.twilio_request(signature, body=b"", content_type=content_type)
        result = sigs.twilio().verify(request)
        assert result.ok, (content_type, result)


def test_twilio_form_content_type_with_several_parameters() -> None:
    content_type = "application/x-www-form-urlencoded; charset=utf-8; boundary=x"
    assert sigs.twilio().verify(sigs.twilio_request(content_type=content_type)).ok


def test_twilio_form_content_type_in_capitals() -> None:
    content_type = "  Application/X-WWW-Form-URLEncoded "
    assert sigs.twilio().verify(sigs.twilio_request(content_type=content_type)).ok


def test_twilio_body_hash_in_the_query_takes_precedence_over_a_form_type() -> None:
    request = sigs.twilio_request(
        sigs.TWILIO_JSON_SIG,
        query=f"{sigs.TWILIO_QUERY}&bodySHA256={sigs.TWILIO_JSON_HASH}",
        body=sigs.TWILIO_JSON_BODY.encode(),
    )
    assert sigs.twilio().verify(request).ok


# --------------------------------------------------------------------------------------------
# Telnyx


def test_telnyx_twelve_digit_timestamp_is_well_formed() -> None:
    timestamp = "999999999999"
    verifier = TelnyxSignatureVerifier(sigs.PUBLIC_KEY_B64, clock_now=lambda: int(timestamp))
    result = verifier.verify(sigs.telnyx_request(timestamp=timestamp))
    assert result.ok, result
    thirteen = TelnyxSignatureVerifier(sigs.PUBLIC_KEY_B64, clock_now=lambda: 10**12)
    assert thirteen.verify(sigs.telnyx_request(timestamp=str(10**12))).reason == (
        "malformed telnyx-timestamp"
    )


@pytest.mark.parametrize(
    ("key", "parses"),
    [
        pytest.param(sigs.PUBLIC_KEY_B64, True, id="portal-key"),
        pytest.param("", False, id="empty"),
        pytest.param("AAAA", False, id="too-short"),
        pytest.param("not base64!", False, id="not-base64"),
    ],
)
def test_telnyx_public_key_parses(key: str, parses: bool) -> None:
    assert public_key_parses(key) is parses
