"""Slack failure handling against the stand-in: 429 Retry-After, 5xx backoff, definite errors,
and a post that timed out but went through is not posted again."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from notifier_helpers import candidate
from slack_sdk.web.async_client import AsyncWebClient

from devstack.slack_standin import SlackStandin
from notifier.delivery import Delivery
from notifier.directory import Directory
from notifier.settings import NotifierSettings
from notifier.slack_sender import DefiniteSlackError, SlackSender, TransientSlackError


class FakeTime:
    """monotonic() and sleep() for the sender: sleeping moves time, nothing really waits."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest_asyncio.fixture
async def client(standin: SlackStandin) -> AsyncIterator[AsyncWebClient]:
    web = AsyncWebClient(token=standin.bot_token, base_url=standin.api_url, retry_handlers=[], timeout=5)
    yield web


def sender(client: AsyncWebClient, clock: FakeTime, **overrides: object) -> SlackSender:
    settings = NotifierSettings(backoff_base_s=0.5, backoff_cap_s=8, max_attempts=4, **overrides)  # type: ignore[arg-type]
    return SlackSender(client, settings, sleep=clock.sleep, jitter=lambda: 1.0, monotonic=clock.monotonic)


async def test_429_waits_for_retry_after_and_succeeds(standin: SlackStandin, client: AsyncWebClient) -> None:
    clock = FakeTime()
    standin.faults.rate_limit("users.info", times=3, retry_after=7)
    body = await sender(client, clock).call("users.info", {"user": "U0ALICE"})
    assert body["user"]["name"] == "alice"
    assert clock.sleeps == [7, 7, 7]
    assert standin.call_count("users.info") == 4


async def test_a_429_storm_longer_than_allowed_is_transient(
    standin: SlackStandin, client: AsyncWebClient
) -> None:
    clock = FakeTime()
    standin.faults.rate_limit("users.info", times=100, retry_after=30)
    with pytest.raises(TransientSlackError) as raised:
        await sender(client, clock, max_rate_limited_wait_s=100).call("users.info", {"user": "U0ALICE"})
    assert raised.value.error == "ratelimited"
    assert sum(clock.sleeps) <= 100


async def test_5xx_backs_off_exponentially_then_gives_up(
    standin: SlackStandin, client: AsyncWebClient
) -> None:
    clock = FakeTime()
    standin.faults.add("users.info", status=503, times=None)
    with pytest.raises(TransientSlackError) as raised:
        await sender(client, clock).call("users.info", {"user": "U0ALICE"})
    assert raised.value.status == 503
    assert clock.sleeps == [1.0, 2.0, 4.0]  # full jitter pinned at its ceiling
    assert standin.call_count("users.info") == 4


async def test_definite_errors_are_not_retried_and_reported_once(
    standin: SlackStandin, client: AsyncWebClient
) -> None:
    clock = FakeTime()
    slack = sender(client, clock)
    with pytest.raises(DefiniteSlackError) as raised:
        await slack.call("users.info", {"user": "U0NOBODY"})
    assert raised.value.error == "user_not_found"
    assert standin.call_count("users.info") == 1
    assert slack.report_once(raised.value, "U0NOBODY")
    assert not slack.report_once(raised.value, "U0NOBODY")
    standin.revoke_token()
    with pytest.raises(DefiniteSlackError) as revoked:
        await slack.call("users.info", {"user": "U0ALICE"})
    assert revoked.value.token_problem
    assert slack.report_once(revoked.value, "U0ALICE")
    assert not slack.report_once(revoked.value, "U0BOB")  # one report for the token, not per user


async def test_a_post_that_timed_out_but_landed_is_not_posted_twice(standin: SlackStandin) -> None:
    client = AsyncWebClient(token=standin.bot_token, base_url=standin.api_url, retry_handlers=[], timeout=1)
    settings = NotifierSettings(backoff_base_s=0.01, backoff_cap_s=0.01, max_attempts=4)

    async def until_landed(_: float) -> None:
        # The backoff "sleep" lasts until the slow post has landed: that is the race to cover.
        await standin.wait_for_posts(1, timeout=10, method="chat.postMessage")

    slack = SlackSender(client, settings, sleep=until_landed)
    delivery = Delivery(slack, Directory(slack, 60))
    # The stand-in carries the post out, but answers after the client gave up waiting.
    standin.faults.add("chat.postMessage", delay=1.5, times=1)
    posted, _ = await delivery.alert(candidate("U0BOB"), "marker-1")
    posts = standin.recorder.find_posts(method="chat.postMessage")
    assert len(posts) == 1
    assert posted.ts == posts[0].ts
    assert standin.call_count("chat.postMessage") == 1
    assert standin.call_count("conversations.history") == 1
