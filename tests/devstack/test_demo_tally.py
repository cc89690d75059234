"""The demo's summary: message → DM latency runs until Slack has the DM, not until the decision;
what the daily budget held back is counted."""

from __future__ import annotations

import pytest

from beepgpt.contracts import ConversationEvent, ConversationMessage, Notification
from devstack.demo import Tally, demo_daily_budget


def sent(latest_ts: str, decided_at: float, dm_ts: str | None) -> Notification:
    return Notification(
        user="U1",
        conversation_id="C1:100.000000",
        outcome="sent",
        latest_ts=latest_ts,
        decided_at=decided_at,
        dm_channel="D1" if dm_ts else None,
        dm_ts=dm_ts,
    )


def test_latency_ends_when_slack_took_the_dm() -> None:
    tally = Tally(names={})
    # decided 0.2 s after the message, posted (Slack's ts) 0.5 s after it
    tally.on_notification(sent("100.000000", decided_at=100.2, dm_ts="100.500000"))
    assert tally.latencies == [pytest.approx(0.5)]


def test_without_a_dm_ts_the_decision_time_is_what_there_is() -> None:
    tally = Tally(names={})
    tally.on_notification(sent("100.000000", decided_at=100.25, dm_ts=None))
    assert tally.latencies == [pytest.approx(0.25)]


def test_the_summary_counts_what_the_budget_held() -> None:
    tally = Tally(names={})
    for i, outcome in enumerate(["sent", "over_budget", "over_budget", "rate_limited"]):
        note = Notification(user="U1", conversation_id=f"C1:{i}.000000", outcome=outcome, decided_at=100.0)
        tally.on_notification(note)
    summary = tally.summary(messages=4)
    assert "  held by the budget     2\n" in summary
    assert "  held / rate limited    0 / 1\n" in summary
    assert "  DMs sent               1\n" in summary


def test_each_replayed_day_gets_the_default_budget() -> None:
    assert demo_daily_budget(1) == 3
    assert demo_daily_budget(2) == 6
    assert demo_daily_budget(0) == demo_daily_budget(40) == 50  # the highest a person may choose


def test_the_summary_counts_dms_followed_by_the_person_joining() -> None:
    def update(conversation: str, participants: list[str], version: int) -> ConversationEvent:
        message = ConversationMessage(ts="100.000000", user=participants[0], text="hi")
        return ConversationEvent(
            kind="updated",
            conversation_id=conversation,
            channel="C1",
            first_ts="100.000000",
            last_ts="100.000000",
            version=version,
            messages=[message],
            participants=participants,
            message_count=1,
        )

    tally = Tally(names={})
    for user, conversation in [("U2", "C1:1.000000"), ("U3", "C1:1.000000"), ("U2", "C1:2.000000")]:
        tally.on_notification(
            Notification(user=user, conversation_id=conversation, outcome="sent", decided_at=100.0)
        )
    tally.on_conversation(update("C1:1.000000", ["U1", "U2"], 2))  # U2 joined after the DM
    tally.on_conversation(update("C1:1.000000", ["U1", "U2"], 3))  # counted once
    tally.on_conversation(update("C1:2.000000", ["U1"], 2))  # U2 did not join this one
    tally.on_conversation(update("C1:3.000000", ["U3"], 1))  # never DMed about it
    assert tally.joined_after_dm == {("U2", "C1:1.000000")}
    assert "  ... then joined        1 " in tally.summary(messages=3)


def test_the_summary_counts_the_controls_and_lists_what_was_used() -> None:
    heard: list[str] = []
    tally = Tally(names={})
    tally.listeners.append(lambda note: heard.append(note.outcome))
    for i, outcome in enumerate(["muted", "muted", "snoozed", "down_weighted", "digest"]):
        note = Notification(user="U1", conversation_id=f"C1:{i}.000000", outcome=outcome, decided_at=100.0)
        tally.on_notification(note)
    tally.controls_used.append("Ana typed `/beep mute <#General|general>`")
    summary = tally.summary(messages=5)
    assert heard == ["muted", "muted", "snoozed", "down_weighted", "digest"]
    assert "  muted / snoozed        2 / 1\n" in summary
    assert "  fewer like this        1 (below the bar a click raised)\n" in summary
    assert "  in digests             1\n" in summary
    assert summary.endswith("  controls used\n    Ana typed `/beep mute <#General|general>`")
