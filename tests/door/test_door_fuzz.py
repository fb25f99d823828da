"""Property-based requests at the door: whatever arrives, never a 5xx, and without a valid
signature never a state change.

This fuzz mostly exercises the router (404/405) and the missing-header refusal; the one that
reaches signature verification is ``test_door_signed_fuzz.py``. One door serves all examples:
nothing here may change its state (that is the assertion), so examples cannot affect each other.
"""

from __future__ import annotations

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from .conftest import Door

METHODS = st.sampled_from(["POST", "GET", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"])
PATHS = st.one_of(
    st.sampled_from(["/myapp.php", "/myapp.php/", "/myapp.php?foo=1", "/", "/rpc", "/myapp.PHP"]),
    st.text(alphabet="abc/%?=&.-_~", max_size=40).map(lambda p: "/" + p),
)
HEADER_NAMES = st.sampled_from(
    [
        "X-Twilio-Signature",
        "X-Forwarded-Host",
        "X-Forwarded-Proto",
        "X-Original-Host",
        "ngrok-forwarded-host",
        "Host",
        "Content-Type",
        "X-Plivo-Signature-V3",
        "telnyx-signature-ed25519",
        "telnyx-timestamp",
        "X-Custom",
    ]
)
HEADER_VALUES = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
BODIES = st.one_of(
    st.binary(max_size=512),
    st.dictionaries(
        st.sampled_from(["CallSid", "SpeechResult", "CallStatus", "SequenceNumber", "Malformed"]),
        st.text(max_size=20),
    ).map(lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode("utf-8", "replace")),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=METHODS,
    path=PATHS,
    headers=st.dictionaries(HEADER_NAMES, HEADER_VALUES, max_size=6),
    body=BODIES,
)
async def test_random_requests_never_5xx_and_never_change_state(
    door_under_fuzz: Door, method: str, path: str, headers: dict[str, str], body: bytes
) -> None:
    assert door_under_fuzz.client is not None
    try:
        response = await door_under_fuzz.client.request(method, path, content=body, headers=headers)
    except UnicodeEncodeError:
        return  # httpx itself refuses such headers; nothing reached the server
    event(f"status {response.status_code}")  # see --hypothesis-show-statistics
    assert response.status_code < 500, (response.status_code, response.text)
    assert door_under_fuzz.carrier.applied == []
    assert await door_under_fuzz.transcript() == []
    assert await door_under_fuzz.log_size() == 0
