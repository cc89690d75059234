"""Who may see what, end to end: real broker, real Redis, the Slack stand-in with a guest and a
private channel. A DM quotes a conversation only to a full member who can read its channel."""

from __future__ import annotations

import time

from notifier_helpers import FakeClock, candidate, decisions, opted_in, posted_alerts, publish, wait_until
from prometheus_client import REGISTRY
from test_notifier_service import ALICE, BOB, CAROL, DAVE, running

from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from devstack.slack_standin import SlackStandin
from devstack.slack_standin.workspace import Channel, User
from notifier.permissions import TtlCache
from notifier.settings import NotifierSettings

GUEST = "U0GUEST"
SECRET = "C0SECRET"


def private_channel_and_guest(standin: SlackStandin) -> None:
    """#secret: Alice, Carol and the bot; a multi-channel guest who is in #random only."""
    ws = standin.workspace
    ws.add_user(User(id=GUEST, name="gus", real_name="Gus Guest", is_restricted=True))
    ws.channels["C0RANDOM"].members.append(GUEST)
    ws.add_channel(Channel(id=SECRET, name="secret", is_private=True, members=[ALICE, CAROL, ws.bot_user_id]))


def calls(standin: SlackStandin, method: str, **args: str) -> int:
    return sum(
        1
        for c in standin.recorder.calls
        if c.method == method and all(str(c.args.get(k)) == v for k, v in args.items())
    )


async def test_a_guest_and_a_non_member_get_no_dm_and_nothing_held_a_member_does(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    private_channel_and_guest(standin)
    secret = f"{SECRET}:1700000000.000100"
    people = [opted_in(u) for u in (GUEST, BOB, CAROL)]
    paused = opted_in(DAVE, paused_until=time.time() + 86400)
    await publish(
        kafka_topics,
        [
            *people,
            paused,
            candidate(GUEST),  # #project is public, but a guest sees only the channels they are in
            candidate(GUEST, "C0RANDOM:1700000000.000100"),  # ... such as #random
            candidate(BOB, secret),  # not in #secret
            candidate(DAVE, secret),  # paused and not in #secret: not even held
            candidate(CAROL, secret),  # a member
            candidate(BOB),  # a full member, a public channel
        ],
    )
    refused_before = REGISTRY.get_sample_value(
        "beepgpt_notifier_decisions_total", {"outcome": "not_permitted"}
    )
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings) as notifier:
        found = await decisions(kafka_topics, 6)
        await standin.wait_for_posts(3, method="chat.postMessage")
        held = await notifier.held.held(DAVE)
    outcomes = {(d.user, d.conversation_id.split(":")[0]): (d.outcome, d.detail) for d in found}
    assert outcomes == {
        (GUEST, "C0PROJECT"): ("not_permitted", "a guest, not a member of the public channel; C0PROJECT"),
        (GUEST, "C0RANDOM"): ("sent", "topic"),
        (BOB, SECRET): ("not_permitted", f"not a member of the private channel; {SECRET}"),
        (DAVE, SECRET): ("not_permitted", f"not a member of the private channel; {SECRET}"),
        (CAROL, SECRET): ("sent", "topic"),
        (BOB, "C0PROJECT"): ("sent", "topic"),
    }
    assert held == []
    refused = REGISTRY.get_sample_value("beepgpt_notifier_decisions_total", {"outcome": "not_permitted"})
    assert refused_before is not None  # a series from the start, derived from the contract
    assert refused == refused_before + 3
    assert sorted(posted_alerts(standin)) == sorted(
        [
            ("D" + CAROL[1:], secret),
            ("D" + BOB[1:], "C0PROJECT:1700000000.000100"),
            ("D" + GUEST[1:], "C0RANDOM:1700000000.000100"),
        ]
    )
    assert calls(standin, "conversations.members", channel=SECRET) == 1
    # a public channel's members are listed only for a guest recipient
    assert calls(standin, "conversations.members", channel="C0PROJECT") == 1


async def test_the_second_candidate_is_checked_from_the_cache(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    private_channel_and_guest(standin)
    await publish(kafka_topics, [opted_in(CAROL), candidate(CAROL, f"{SECRET}:1.1")])
    async with running(kafka_topics, redis_settings, slack_settings, notifier_settings):
        first = await decisions(kafka_topics, 1)
        before = [
            calls(standin, "users.info", user=CAROL),
            calls(standin, "conversations.info", channel=SECRET),
            calls(standin, "conversations.members", channel=SECRET),
        ]
        await publish(kafka_topics, [candidate(CAROL, f"{SECRET}:2.2")])
        both = await decisions(kafka_topics, 2)
        after = [
            calls(standin, "users.info", user=CAROL),
            calls(standin, "conversations.info", channel=SECRET),
            calls(standin, "conversations.members", channel=SECRET),
        ]
    assert [d.outcome for d in first] == ["sent"]
    assert [d.outcome for d in both] == ["sent", "sent"]
    assert before[0] >= 1
    assert before[2] == 1
    assert after == before


async def test_slack_failing_the_check_sends_nothing_and_loses_nothing(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    """users.info answers 500 for Bob, past every retry: the batch is redone, no DM goes out,
    nothing is decided; once Slack answers, the alert is sent once."""
    settings = notifier_settings.model_copy(update={"max_attempts": 2})
    outage = standin.faults.add("users.info", status=500, times=None, args={"user": BOB})
    await publish(kafka_topics, [opted_in(BOB), candidate(BOB)])
    async with running(kafka_topics, redis_settings, slack_settings, settings) as notifier:
        await wait_until(lambda: notifier.permission_waits >= 2, what="the batch redone twice")
        assert standin.recorder.find_posts(method="chat.postMessage") == []
        assert notifier.decided == 0
        standin.faults.remove(outage)
        found = await decisions(kafka_topics, 1, idle=1.0)
    assert [d.outcome for d in found] == ["sent"]
    assert len(posted_alerts(standin)) == 1


async def test_a_digest_checks_again_and_leaves_out_what_may_no_longer_be_read(
    kafka_topics: KafkaSettings,
    redis_settings: RedisSettings,
    slack_settings: SlackSettings,
    notifier_settings: NotifierSettings,
    standin: SlackStandin,
) -> None:
    """Carol, paused, has two alerts held; she leaves #secret before her digest goes: the digest
    holds only #project, and the #secret alert is audited `not_permitted`."""
    private_channel_and_guest(standin)
    settings = notifier_settings.model_copy(update={"permission_ttl_s": 0.001})  # ask Slack again
    clock = FakeClock()
    secret, project = f"{SECRET}:1.1", "C0PROJECT:2.2"
    await publish(kafka_topics, [opted_in(CAROL, paused_until=clock.now + 86_400)])
    await publish(kafka_topics, [candidate(CAROL, secret), candidate(CAROL, project)])
    async with running(kafka_topics, redis_settings, slack_settings, settings, clock) as notifier:
        assert [d.outcome for d in await decisions(kafka_topics, 2)] == ["held", "held"]
        standin.workspace.channels[SECRET].members.remove(CAROL)
        await publish(kafka_topics, [opted_in(CAROL)])
        await notifier.preferences.wait_for(CAROL, lambda p: p.paused_until is None)
        assert await notifier.digests.sweep() == 1
        found = await decisions(kafka_topics, 4)
        assert await notifier.held.held(CAROL) == []
    later = {d.conversation_id: (d.outcome, d.detail) for d in found[2:]}
    assert later[project] == ("digest", "1 alert(s) in one digest")
    assert later[secret][0] == "not_permitted"
    assert later[secret][1].startswith("not a member of the private channel")
    assert posted_alerts(standin) == [("D" + CAROL[1:], project)]


def test_the_permission_cache_forgets_after_its_ttl_and_stays_bounded() -> None:
    now = [0.0]
    cache: TtlCache[str, int] = TtlCache(600.0, max_entries=2, clock=lambda: now[0])
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1
    cache.put("c", 3)  # full: the oldest entry goes
    assert len(cache) == 2
    assert cache.get("a") is None
    assert cache.get("c") == 3
    now[0] = 600.0
    assert cache.get("b") is None
    assert cache.get("c") is None
