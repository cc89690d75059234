"""The demo's summary: message → DM latency runs until Slack has the DM, not until the decision."""

from __future__ import annotations

import pytest

from beepgpt.contracts import Notification
from devstack.demo import Tally


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
