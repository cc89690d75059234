"""BotIdentity.fetch: auth.test under the one retry policy; a bad token fails fast, a Slack that
never comes up is a TimeoutError once the start-up allowance is spent. Nothing really sleeps."""

from __future__ import annotations

from typing import Any

import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from ingest.bolt_app import BotIdentity


def _response(data: dict[str, Any], status: int = 200) -> AsyncSlackResponse:
    return AsyncSlackResponse(
        client=None,
        http_verb="POST",
        api_url="auth.test",
        req_args={},
        data=data,
        headers={},
        status_code=status,
    )


class FakeSlack(AsyncWebClient):  # type: ignore[misc]
    def __init__(self, failures: list[Exception]) -> None:
        super().__init__(token="xoxb-test")
        self.failures = failures
        self.calls = 0

    async def auth_test(self, **_: Any) -> AsyncSlackResponse:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return _response({"ok": True, "team_id": "T1", "user_id": "U0BOT", "bot_id": "B1"})


async def test_auth_test_is_retried_until_slack_answers() -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    unavailable = SlackApiError("down", _response({"ok": False, "error": "service_unavailable"}, 503))
    client = FakeSlack([ConnectionError("refused"), unavailable])
    identity = await BotIdentity.fetch(client, 60.0, sleep=sleep)
    assert (identity.team_id, identity.bot_user_id, identity.bot_id) == ("T1", "U0BOT", "B1")
    assert identity.bot_token == "xoxb-test"
    assert client.calls == 3
    assert len(slept) == 2
    assert all(0 <= s <= 0.2 for s in slept)


async def test_a_bad_token_fails_at_once() -> None:
    revoked = SlackApiError("revoked", _response({"ok": False, "error": "token_revoked"}))
    client = FakeSlack([revoked])
    with pytest.raises(SlackApiError):
        await BotIdentity.fetch(client, 60.0)
    assert client.calls == 1


async def test_giving_up_is_a_timeout_naming_the_last_failure() -> None:
    async def sleep(seconds: float) -> None:
        return None

    client = FakeSlack([ConnectionError("refused")] * 1_000)
    with pytest.raises(TimeoutError, match="refused"):
        await BotIdentity.fetch(client, 0.0, sleep=sleep)  # no time allowed: the first failure ends it
    assert client.calls == 1
