"""Slack's request signing (`v0`): how an HTTP endpoint knows a request came from Slack.

The signature is HMAC-SHA256 over `v0:{timestamp}:{raw body}` keyed by the app's signing secret,
sent as `X-Slack-Signature: v0=<hex>` with `X-Slack-Request-Timestamp`. Receivers reject
signatures that do not match and timestamps more than five minutes away from their clock.
"""

from __future__ import annotations

import hashlib
import hmac
import time

MAX_CLOCK_SKEW_S = 5 * 60


def signature(signing_secret: str, timestamp: int | str, body: bytes | str) -> str:
    raw = body.encode() if isinstance(body, str) else body
    base = f"v0:{timestamp}:".encode() + raw
    return "v0=" + hmac.new(signing_secret.encode(), base, hashlib.sha256).hexdigest()


def signed_headers(
    signing_secret: str,
    body: bytes | str,
    *,
    timestamp: int | None = None,
    bad_signature: bool = False,
    stale: bool = False,
) -> dict[str, str]:
    """Headers for one request. `stale` signs correctly but ten minutes in the past;
    `bad_signature` signs with the wrong secret."""
    ts = timestamp if timestamp is not None else int(time.time())
    if stale:
        ts -= 2 * MAX_CLOCK_SKEW_S
    secret = signing_secret + "-wrong" if bad_signature else signing_secret
    return {"X-Slack-Request-Timestamp": str(ts), "X-Slack-Signature": signature(secret, ts, body)}


def is_valid(
    signing_secret: str,
    timestamp: str | None,
    body: bytes | str,
    received: str | None,
    *,
    now: float | None = None,
) -> bool:
    """The receiving side's check, for stand-in endpoints and tests."""
    if not timestamp or not received:
        return False
    try:
        skew = abs((now if now is not None else time.time()) - int(timestamp))
    except ValueError:
        return False
    if skew > MAX_CLOCK_SKEW_S:
        return False
    return hmac.compare_digest(signature(signing_secret, timestamp, body), received)
