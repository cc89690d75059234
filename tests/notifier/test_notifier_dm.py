"""The DM's text and Block Kit: readable previews, safe cuts, Slack's limits, feedback buttons."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from beepgpt.contracts import Candidate, FeedbackButton, PreviewLine
from devstack.slack_standin.blocks import block_problems
from ingest.slack_app.feedback_buttons import feedback_from
from notifier import dm, mrkdwn

USERS = {"U1": "alice", "U2": "bob"}
CHANNELS = {"C9": "project"}


def candidate(**overrides: object) -> Candidate:
    fields: dict[str, object] = {
        "user": "U3",
        "conversation_id": "C9:1700000000.000100",
        "version": 2,
        "channel": "C9",
        "latest_ts": "1700000100.000200",
        "score": 0.9,
        "score_space": "all-MiniLM-L6-v2",
        "reason": "topic",
        "explanation": "matches your topic “streaming decisions”",
        "topic_id": "t1",
        "preview": [
            PreviewLine(
                user="U1", text="should we move to <#C9|project> & use Kafka?", ts="1700000000.000100"
            ),
            PreviewLine(
                user="U2", text="<@U1> yes, see <https://example.com/adr|the ADR>", ts="1700000100.000200"
            ),
        ],
    }
    fields.update(overrides)
    return Candidate.model_validate(fields)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("hi <@U1>", "hi @alice"),
        ("hi <@U7|zed>", "hi @zed"),
        ("hi <@U7>", "hi @someone"),
        ("in <#C9>", "in #project"),
        ("in <#C8|ops>", "in #ops"),
        ("<!here> look", "@here look"),
        ("<!subteam^S1|@devs> ping", "@devs ping"),
        ("<!date^1392734382^{date}|Feb 18>", "Feb 18"),
        ("a &lt;b&gt; &amp; c", "a &lt;b&gt; &amp; c"),
        ("see <https://x.io/a?b=1&amp;c=2|docs>", "see <https://x.io/a?b=1&c=2|docs>"),
        ("bare <https://x.io>", "bare <https://x.io|https://x.io>"),
        ("line\none\n\n```code```", "line one `code`"),
        ("<javascript:alert(1)|x>", "javascript:alert(1)|x"),
    ],
)
def test_slack_markup_is_rendered_readably(raw: str, expected: str) -> None:
    assert mrkdwn.readable(raw, USERS, CHANNELS, 500) == expected


def test_no_raw_mention_codes_survive() -> None:
    text = mrkdwn.readable("<@U1> <@U2> <@W123> <#C1> <!channel>", USERS, {}, 500)
    assert "<@" not in text
    assert "<#" not in text
    assert "<!" not in text


def test_cuts_respect_utf16_units_and_never_split_characters() -> None:
    family = "👨\u200d👩\u200d👧"
    text = "ok " + family * 50
    cut = mrkdwn.truncate(text, 20)
    assert mrkdwn.utf16_len(cut) <= 20
    assert cut.endswith("…")
    body = cut[:-1].rstrip()
    assert not body.endswith("\u200d")
    # Whole family emoji or none: the body is "ok" plus complete sequences.
    assert body.removeprefix("ok").strip().replace(family, "") == ""
    flags = "🇫🇷" * 10
    assert len(mrkdwn.truncate(flags, 9).removesuffix("…")) % 2 == 0
    assert (
        mrkdwn.truncate("e\u0301" * 10, 6).removesuffix("…").count("e")
        == len(mrkdwn.truncate("e\u0301" * 10, 6).removesuffix("…")) // 2
    )


def test_escaped_text_is_cut_between_escapes() -> None:
    out = mrkdwn.to_mrkdwn([mrkdwn.Span("&" * 100)], 23)
    assert mrkdwn.utf16_len(out) <= 23
    assert out.removesuffix("…").replace("&amp;", "") == ""


def test_lone_surrogates_and_control_characters_are_dropped() -> None:
    assert mrkdwn.clean("a\ud800b\x00c\nd") == "a?bc\nd"


def test_alert_blocks_show_channel_authors_preview_why_and_buttons() -> None:
    message = dm.alert(candidate(), dm.Names(USERS, CHANNELS), "https://slack/link", "m1")
    assert block_problems(message.blocks) == []
    text = json.dumps(message.blocks)
    assert "#project" in text
    assert "@alice" in text
    assert "@bob" in text
    assert "<@U1>" not in text
    assert "streaming decisions" in text
    actions = message.blocks[-2]
    assert actions["block_id"] == "beepgpt:m1"
    ids = [e["action_id"] for e in actions["elements"]]
    assert ids == [dm.OPEN_ACTION, dm.USEFUL_ACTION, dm.NOT_USEFUL_ACTION]
    value = json.loads(actions["elements"][1]["value"])
    assert value == {
        "conversation_id": "C9:1700000000.000100",
        "reason": "topic",
        "topic_id": "t1",
        "score": 0.9,  # the scorer learns the topic's line from the click with it
        "space": "all-MiniLM-L6-v2",  # measured in this model: the scorer leaves out other models' scores
    }
    assert actions["elements"][2]["value"] == actions["elements"][1]["value"]
    assert "@bob in #project" in message.text


def test_feedback_buttons_carry_the_score_compactly_and_never_an_impossible_one() -> None:
    assert json.loads(dm.feedback_value(candidate(score=0.1234567891234)))["score"] == 0.123457
    assert json.loads(dm.feedback_value(candidate(score=1.0000000001)))["score"] == 1.0  # float32 noise
    for impossible in (float("nan"), float("inf"), 1.5, -3.0):
        with pytest.raises(ValidationError):  # the contract refuses it before any DM is drawn
            candidate(score=impossible)
    interest = json.loads(
        dm.feedback_value(candidate(reason="interest", topic_id=None, score=0.71, score_space=None))
    )
    assert interest == {"conversation_id": "C9:1700000000.000100", "reason": "interest", "score": 0.71}
    # a topic id too long for Slack's 2,000 characters goes; the score and the rest stay
    long_topic = dm.feedback_value(candidate(topic_id="t" * 3_000))
    assert len(long_topic) <= dm.MAX_BUTTON_VALUE
    assert json.loads(long_topic) == {
        "conversation_id": "C9:1700000000.000100",
        "reason": "topic",
        "score": 0.9,
        "space": "all-MiniLM-L6-v2",
    }
    # an absurd id whose JSON escapes grow it still fits
    assert len(dm.feedback_value(candidate(conversation_id="\x01" * 1_900))) <= dm.MAX_BUTTON_VALUE
    digest = dm.digest([dm.DigestEntry(candidate(score=0.33), None, "m1")], "d1", dm.Names(), "quiet hours")
    buttons = [e for b in digest.blocks if b["type"] == "actions" for e in b["elements"]]
    assert [json.loads(e["value"])["score"] for e in buttons] == [0.33] * 6  # feedback and controls


def test_ingest_reads_every_button_the_notifier_writes_through_the_one_contract() -> None:
    """Both sides speak `FeedbackButton`: what ingest makes of a click is what the alert carried,
    also for the cut-down values of absurdly long ids."""
    for alert, whole in (
        (candidate(), True),
        (candidate(reason="interest", topic_id=None, score_space=None), True),
        (candidate(topic_id="t" * 3_000), False),  # the topic id goes
        (candidate(conversation_id="\x01" * 1_900), False),  # only a cut id stays
    ):
        actions = dm.alert(alert, dm.Names(), "https://l", "m").blocks[-2]
        for button in actions["elements"][1:]:
            feedback = feedback_from({"user": {"id": "U3"}}, button)
            assert feedback is not None
            assert feedback.useful == (button["action_id"] == dm.USEFUL_ACTION)
            carried = FeedbackButton.decode(button["value"])[0]
            assert (feedback.conversation_id, feedback.topic_id, feedback.score, feedback.score_space) == (
                carried.conversation_id, carried.topic_id, carried.score, carried.score_space,
            )  # fmt: skip
            assert alert.conversation_id.startswith(feedback.conversation_id)
            if whole:
                assert (feedback.reason, feedback.topic_id, feedback.score, feedback.score_space) == (
                    alert.reason, alert.topic_id, round(alert.score, 6), alert.score_space,
                )  # fmt: skip


def test_huge_and_odd_text_stays_within_slack_limits() -> None:
    with pytest.raises(ValidationError):  # a lone surrogate never reaches a DM: the contract refuses it
        PreviewLine(user="U1", text="\ud83d", ts="1.000001")
    huge = "x" * 5_000 + "<@U1>" + "&" * 4_000 + "\ufffd" + "🎉" * 2_000
    lines = [PreviewLine(user=f"U{i}", text=huge, ts=f"1.{i:06d}") for i in range(10)]
    big = candidate(preview=lines, explanation="because " + "&<>" * 3_000, topic_id="t" * 3_000)
    message = dm.alert(
        big, dm.Names({f"U{i}": "n" * 80 for i in range(10)}, {}), "https://l", "m", preview_lines=10
    )
    assert block_problems(message.blocks) == []
    assert len(message.text) <= 300
    digest = dm.digest(
        [dm.DigestEntry(big, "https://l", f"m{i}") for i in range(30)], "d1", dm.Names(), "quiet hours"
    )
    assert block_problems(digest.blocks) == []
    assert "And 20 more" in json.dumps(digest.blocks)


def test_empty_preview_and_unknown_channel() -> None:
    message = dm.alert(candidate(preview=[], explanation=""), dm.Names(), None, "m")
    assert block_problems(message.blocks) == []
    assert "<#C9>" in message.blocks[0]["text"]["text"]  # Slack renders it as a channel link
    assert all(e["action_id"] != dm.OPEN_ACTION for e in message.blocks[-2]["elements"])


def test_find_block_recognises_our_message_in_history() -> None:
    message = dm.alert(candidate(), dm.Names(), None, "mark")
    history = [{"ts": "1.1", "blocks": []}, {"ts": "1.2", "blocks": message.blocks}]
    assert dm.find_block(history, dm.marker_block_id("mark")) == history[1]
    assert dm.find_block(history, dm.marker_block_id("other")) is None


def test_every_alert_ends_with_its_controls_carrying_the_alerts_button_value() -> None:
    from beepgpt.contracts import CONTROL_ACTIONS

    message = dm.alert(candidate(), dm.Names(), "https://l", "m1")
    controls = message.blocks[-1]
    assert controls["block_id"] == dm.controls_block_id("m1") == "beepgpt:m1:controls"
    assert [e["action_id"] for e in controls["elements"]] == list(CONTROL_ACTIONS)
    assert [e["text"]["text"] for e in controls["elements"]] == [
        "Mute this conversation",
        "Fewer like this",
        "Snooze 1 hour",
        "Snooze until tomorrow",
    ]
    assert {e["value"] for e in controls["elements"]} == {dm.feedback_value(candidate())}
    assert dm.find_block([{"blocks": message.blocks}], dm.marker_block_id("m1")) is not None  # still found
