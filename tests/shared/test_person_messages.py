"""One "is this a person's message" rule: ingest (live and import) and the sessionizer (live feeder,
history readers) keep and skip the same subtypes, `reply_broadcast` included."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from beepgpt.contracts import SlackMessage
from beepgpt.person_messages import (
    BOT_SUBTYPES,
    CHANGE_SUBTYPES,
    HOUSEKEEPING_SUBTYPES,
    PERSON_SUBTYPES,
    SubtypeKind,
    is_person_message,
    subtype_kind,
)
from ingest.importer.history import HistoryBuilder
from ingest.normalize import Accepted, Dropped, Rejected, normalize_event
from offline.evaluation.conversations.data import people_messages
from sessionizer.feeder import Fed, Feeder
from sessionizer.rules import CONVERSATIONAL_SUBTYPES, is_conversational

KINDS: dict[str | None, SubtypeKind] = {
    None: SubtypeKind.PERSON,
    "thread_broadcast": SubtypeKind.PERSON,
    "reply_broadcast": SubtypeKind.PERSON,  # thread_broadcast's older name: "also send to #channel"
    "file_share": SubtypeKind.PERSON,
    "me_message": SubtypeKind.PERSON,
    "bot_message": SubtypeKind.BOT,
    "slackbot_response": SubtypeKind.BOT,
    "channel_join": SubtypeKind.HOUSEKEEPING,
    "channel_leave": SubtypeKind.HOUSEKEEPING,
    "channel_topic": SubtypeKind.HOUSEKEEPING,
    "pinned_item": SubtypeKind.HOUSEKEEPING,
    "message_replied": SubtypeKind.HOUSEKEEPING,
    "huddle_thread": SubtypeKind.HOUSEKEEPING,
    "message_changed": SubtypeKind.CHANGE,
    "message_deleted": SubtypeKind.CHANGE,
    "tombstone": SubtypeKind.CHANGE,
    "huddle_started_v9": SubtypeKind.UNKNOWN,  # nothing Slack sends today: unknown, not a person's
}
CHANNEL = "C0GENERAL"
USER = "U0ALICE01"
TS = "1690400001.000100"
PARENT_TS = "1690400000.000001"


def line(subtype: str | None) -> dict[str, Any]:
    """A Slack message event (or export line) of `subtype`, by a person, a reply for broadcasts."""
    event: dict[str, Any] = {"type": "message", "channel": CHANNEL, "user": USER, "text": "hi", "ts": TS}
    if subtype is not None:
        event["subtype"] = subtype
    if subtype in ("thread_broadcast", "reply_broadcast"):
        event["thread_ts"] = PARENT_TS
    return event


@pytest.mark.parametrize("subtype", list(KINDS), ids=str)
def test_each_subtype_has_one_kind(subtype: str | None) -> None:
    assert subtype_kind(subtype) is KINDS[subtype]
    assert is_person_message(subtype, USER) == (KINDS[subtype] is SubtypeKind.PERSON)
    assert not is_person_message(subtype, None)  # no author, nobody's words


def test_the_kinds_do_not_overlap() -> None:
    families = [PERSON_SUBTYPES, BOT_SUBTYPES, HOUSEKEEPING_SUBTYPES, CHANGE_SUBTYPES]
    assert sum(len(f) for f in families) == len(frozenset().union(*families))


@pytest.mark.parametrize("subtype", [s for s in KINDS if KINDS[s] is not SubtypeKind.CHANGE], ids=str)
def test_ingest_keeps_exactly_the_messages_the_sessionizer_takes(subtype: str | None) -> None:
    person = KINDS[subtype] is SubtypeKind.PERSON
    outcome = normalize_event(line(subtype))
    if person:
        assert isinstance(outcome, Accepted)
        assert isinstance(outcome.event, SlackMessage)
        assert (outcome.event.action, outcome.event.subtype) == ("new", subtype)
    elif KINDS[subtype] is SubtypeKind.UNKNOWN:
        assert isinstance(outcome, Rejected)  # dead-lettered, replayable once the rule learns it
        assert outcome.reason == "unknown_subtype"
    else:
        assert isinstance(outcome, Dropped)
        assert outcome.reason == ("bot" if KINDS[subtype] is SubtypeKind.BOT else subtype)
    # `beepgpt import` folds lines through the same normalizer
    history = HistoryBuilder()
    history.add(line(subtype), where="test")
    assert history.counts.kept == int(person)


@pytest.mark.parametrize("subtype", list(KINDS), ids=str)
def test_the_sessionizer_live_and_over_history_takes_only_people_s_messages(subtype: str | None) -> None:
    """A record ingest would not have written (a table from older code, a replayed topic) still
    meets the same rule in the feeder, the query's filter and the history readers."""
    person = KINDS[subtype] is SubtypeKind.PERSON
    message = SlackMessage(channel=CHANNEL, ts=TS, user=USER, text="hi", subtype=subtype)
    assert is_conversational(subtype, USER) == person
    assert (subtype in CONVERSATIONAL_SUBTYPES) == (person and subtype is not None)
    _, fed = Feeder().event(0, message)
    assert fed is (Fed.ACCEPTED if person else Fed.HOUSEKEEPING)
    table = pd.DataFrame(
        {
            "channel": [CHANNEL],
            "slack_ts": [TS],
            "slack_thread_ts": [None],
            "user": [USER],
            "text": ["hi"],
            "subtype": [subtype],
        }
    )
    assert len(list(people_messages(table))) == int(person)


def test_edits_and_deletions_change_a_message_they_never_add_one() -> None:
    edit = {
        "type": "message",
        "subtype": "message_changed",
        "channel": CHANNEL,
        "ts": "1690400099.000200",
        "message": {
            "type": "message",
            "user": USER,
            "text": "hi!",
            "ts": TS,
            "edited": {"ts": "1690400099.0"},
        },
        "previous_message": {"type": "message", "user": USER, "text": "hi", "ts": TS},
    }
    deletion = {"type": "message", "subtype": "message_deleted", "channel": CHANNEL, "deleted_ts": TS,
                "ts": "1690400100.000300", "previous_message": {"user": USER, "ts": TS}}  # fmt: skip
    actions = []
    for event in (edit, deletion):
        outcome = normalize_event(event)
        assert isinstance(outcome, Accepted)
        assert isinstance(outcome.event, SlackMessage)
        actions.append(outcome.event.action)
    assert actions == ["edited", "deleted"]
