"""Who the stand-in pretends to be, and the ids and timestamps Slack would mint.

Tests across the project compare ids (team, app, bot user, DM channel) and order messages by
`ts`, so the defaults are fixed and every generated `ts` is unique and strictly increasing even
when two messages are built in the same microsecond.
"""

from __future__ import annotations

import itertools
import secrets
import string
import threading
import time
import uuid
from dataclasses import dataclass

DEFAULT_TEAM_ID = "T0BEEPGPT"
DEFAULT_TEAM_NAME = "BeepGPT Stand-in"
DEFAULT_TEAM_DOMAIN = "beepgpt-standin"
DEFAULT_APP_ID = "A0BEEPGPT"
DEFAULT_BOT_USER_ID = "U0BEEPBOT"
DEFAULT_BOT_ID = "B0BEEPBOT"
DEFAULT_BOT_NAME = "beepgpt"

# Local, made-up credentials: they only ever unlock the stand-in.
DEFAULT_BOT_TOKEN = "xoxb-standin-0000000000-bot"
DEFAULT_APP_TOKEN = "xapp-1-A0BEEPGPT-0000000000-standin"
DEFAULT_SIGNING_SECRET = "standin-signing-secret"
DEFAULT_VERIFICATION_TOKEN = "standinverificationtoken"

_ID_ALPHABET = string.ascii_uppercase + string.digits


@dataclass(frozen=True)
class AppIdentity:
    """The installation every payload refers to: team, app and the app's bot user."""

    team_id: str = DEFAULT_TEAM_ID
    team_domain: str = DEFAULT_TEAM_DOMAIN
    api_app_id: str = DEFAULT_APP_ID
    bot_user_id: str = DEFAULT_BOT_USER_ID
    bot_id: str = DEFAULT_BOT_ID
    verification_token: str = DEFAULT_VERIFICATION_TOKEN
    # Where slash-command and interactive `response_url`s point; the running stand-in sets its own.
    hooks_url: str = "https://hooks.slack.com/"


class TsClock:
    """Mints Slack `ts` strings: wall-clock microseconds, but never the same value twice."""

    def __init__(self) -> None:
        self._last = 0
        self._lock = threading.Lock()

    def next(self) -> str:
        with self._lock:
            now = time.time_ns() // 1_000
            self._last = max(now, self._last + 1)
            return format_ts(self._last)


def format_ts(micros: int) -> str:
    """`1690360175262899` -> `"1690360175.262899"` (Slack always writes six decimals)."""
    return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key for `ts` strings that does not depend on float rounding."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds or 0), int((fraction or "0").ljust(6, "0")[:6])


_ts_clock = TsClock()
_counter = itertools.count(1)


def new_ts() -> str:
    return _ts_clock.next()


def new_id(prefix: str, length: int = 10) -> str:
    """An id shaped like Slack's (`Ev...`, `V...`): prefix plus upper-case letters and digits."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def new_event_id() -> str:
    return new_id("Ev")


def new_envelope_id() -> str:
    return str(uuid.uuid4())


def new_trigger_id() -> str:
    return f"{next(_counter)}.{int(time.time())}.{secrets.token_hex(16)}"
