"""The notifier's decision stages alone: pure functions over a batch, no broker, no Redis, no Slack.

Each test hands a stage the items and the answers its Redis round trip (or Slack) would give,
and checks what moves on, what stops with which outcome, and what it holds and finishes.
"""

from __future__ import annotations

import pytest
from aiokafka.structs import ConsumerRecord
from notifier_helpers import candidate, opted_in

from beepgpt.contracts import Preferences
from beepgpt.settings import AlertDefaults
from notifier.budget import allowance
from notifier.budget_counter import BudgetAnswer
from notifier.dedup import ClaimState
from notifier.delivery import Posted
from notifier.digest import digest_records
from notifier.held import HeldAlert
from notifier.permissions import ChannelAccess, UserAccess, channel_access, user_access
from notifier.rate_limit import Take
from notifier.stages import (
    SendFailure,
    SendResult,
    Work,
    admit_stage,
    audit_record,
    budget_asks,
    budget_stage,
    channels_to_list,
    claim_stage,
    hold_stage,
    may_read,
    owners_to_ask,
    permission_stage,
    posted_stage,
    record_stage,
    send_stage,
    to_look_up,
    waiting_stage,
)

NOW = 1_709_726_400.0  # 2024-03-06 12:00 UTC
OWNER = "me"
DEFAULTS = AlertDefaults.model_construct()  # 3 a day; 09:00, 13:00, 17:00


def work(user: str, conversation: str = "C0PROJECT:1.1", offset: int = 0) -> Work:
    record: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        "notifications.candidates", 0, offset, 0, 0, None, b"", None, 0, 0, ()
    )
    return Work(record, candidate(user, conversation), f"rec-{offset}", 0.0)


def outcomes(works: list[Work]) -> list[tuple[str, str]]:
    return [(w.rid, w.decision.outcome if w.decision else "-") for w in works]


def admitted(*works: Work, prefs: dict[str, Preferences] | None = None) -> list[Work]:
    table = prefs or {w.user: opted_in(w.user) for w in works}
    return admit_stage(list(works), table.get, NOW).moving


def test_admit_stops_who_did_not_opt_in_and_lets_holds_and_deliveries_on() -> None:
    a, b, c = work("U0A", offset=1), work("U0B", offset=2), work("U0C", offset=3)
    table = {"U0A": opted_in("U0A"), "U0C": opted_in("U0C", paused_until=NOW + 600)}
    gate = admit_stage([a, b, c], table.get, NOW)
    assert gate.moving == [a, c]
    assert outcomes(gate.stopped) == [("rec-2", "not_opted_in")]
    assert b.decision is not None
    assert b.decision.detail == "not opted in"
    assert (a.admission.action, c.admission.action) == ("deliver", "hold")
    assert c.admission.until == NOW + 600
    assert not gate.holds
    assert not gate.finishes


def test_claim_sorts_duplicates_recorded_resumed_taken_over_and_busy() -> None:
    new, dup, rec, own, dead, live = (work("U0A", f"C0P:{i}.1", offset=i) for i in range(6))
    states = [
        None,
        ClaimState("claim", "rec-other", owner="x"),
        ClaimState("done", "rec-2", outcome="sent", dm_channel="D1", dm_ts="9.9"),
        ClaimState("claim", "rec-3", owner=OWNER),
        ClaimState("claim", "rec-4", owner="dead"),
        ClaimState("claim", "rec-5", owner="live"),
    ]
    works = [new, dup, rec, own, dead, live]
    assert owners_to_ask(works, states, OWNER) == ["dead", "live"]
    gate = claim_stage(works, states, {"dead": False, "live": True}, OWNER, NOW)
    assert gate.busy
    assert gate.moving == [new, own, dead, live]
    assert gate.owned == [new, rec, own, dead, live]  # every key but the duplicate's is this record's
    assert outcomes(gate.stopped) == [("rec-1", "deduplicated"), ("rec-2", "sent")]
    assert rec.decision is not None
    assert (rec.decision.dm_channel, rec.decision.dm_ts) == ("D1", "9.9")
    assert (own.resumed, own.takeover) == (True, False)
    assert (dead.resumed, dead.takeover) == (True, True)
    assert not new.resumed
    assert not live.resumed
    assert to_look_up(gate.moving) == [own, dead]


def test_a_recorded_claim_with_an_unknown_outcome_is_audited_as_deduplicated() -> None:
    item = work("U0A")
    gate = claim_stage([item], [ClaimState("done", item.rid, outcome="bogus")], {}, OWNER, NOW)
    assert outcomes(gate.stopped) == [(item.rid, "deduplicated")]
    assert gate.owned == [item]
    assert not gate.busy


def test_a_resumed_alert_already_in_the_digest_queue_stays_there() -> None:
    queued, elsewhere, fresh = (work("U0A", f"C0P:{i}.1", offset=i) for i in range(3))
    queued.resumed = elsewhere.resumed = True
    alert = HeldAlert(
        candidate=queued.candidate,
        record=queued.rid,
        reason="over_budget",
        why="3 a day",
        due=NOW,
        held_at=NOW,
    )
    gate = waiting_stage([queued, elsewhere, fresh], {queued.rid: alert}, NOW)
    assert gate.moving == [elsewhere, fresh]
    assert outcomes(gate.stopped) == [("rec-0", "over_budget")]
    assert queued.decision is not None
    assert queued.decision.detail == "3 a day; waiting for a digest"
    assert [f.state.outcome for f in gate.finishes] == ["over_budget"]
    assert not gate.holds  # already held: not held twice


def test_what_was_posted_before_a_redo_is_only_recorded() -> None:
    a, b = work("U0A", offset=1), work("U0B", offset=2)
    assert posted_stage([a, b], {"rec-2"}) == ([b], [a])


def test_slacks_user_and_channel_objects_say_who_may_read_what() -> None:
    assert user_access({"id": "U0A", "is_restricted": False}).full_member
    assert user_access({"is_restricted": True}).guest == "a guest"
    assert user_access({"is_restricted": True}).refusal is None  # a guest, refused where not a member
    assert user_access({"is_restricted": True, "is_ultra_restricted": True}).guest == "a single-channel guest"
    assert user_access({"deleted": True}).refusal == "a deactivated account"
    assert user_access({"is_bot": True}).refusal == "a bot"
    assert channel_access({"is_channel": True, "is_private": False}).kind == "public"
    assert channel_access({"is_private": True, "is_ext_shared": True}).kind == "private"
    assert channel_access({"is_ext_shared": True}).kind == "shared"
    assert channel_access({"is_im": True, "is_private": True}).kind == "im"
    assert channel_access({"is_mpim": True, "is_private": True}).kind == "mpim"
    assert not channel_access({}).needs_membership
    assert channel_access({"is_private": True}).needs_membership


def test_may_read_fails_closed_on_anything_not_looked_up() -> None:
    full, public, private = UserAccess(), ChannelAccess("public"), ChannelAccess("private")
    assert may_read(full, public, None, "U0A") is None
    assert may_read(full, private, {"U0A"}, "U0A") is None
    assert may_read(full, private, {"U0B"}, "U0A") == "not a member of the private channel"
    assert may_read(full, ChannelAccess("shared"), set(), "U0A") == "not a member of the shared channel"
    guest = UserAccess(guest="a guest")
    assert may_read(guest, public, None, "U0A") is not None  # a guest's channels are looked up
    assert may_read(guest, public, {"U0B"}, "U0A") == "a guest, not a member of the public channel"
    assert may_read(guest, public, {"U0A"}, "U0A") is None  # a guest sees the channels they are in
    assert may_read(guest, private, {"U0A"}, "U0A") is None
    assert may_read(UserAccess("slack: user_not_found"), public, None, "U0A") == (
        "cannot check the recipient (slack: user_not_found)"
    )
    gone = ChannelAccess("unknown", "slack: channel_not_found")
    assert may_read(full, gone, None, "U0A") == "cannot read the channel (slack: channel_not_found)"
    assert may_read(None, public, None, "U0A") is not None
    assert may_read(full, None, None, "U0A") is not None
    assert may_read(full, private, None, "U0A") is not None


def test_permission_stops_guests_and_non_members_and_releases_their_claims() -> None:
    member = work("U0A", "C0SECRET:1.1", offset=1)
    outsider = work("U0B", "C0SECRET:1.1", offset=2)
    guest = work("U0G", "C0PROJECT:1.1", offset=3)
    public = work("U0B", "C0PROJECT:1.1", offset=4)
    works = [member, outsider, guest, public]
    channels = {"C0SECRET": ChannelAccess("private"), "C0PROJECT": ChannelAccess("public")}
    assert channels_to_list(works, channels) == ["C0SECRET"]
    users = {"U0A": UserAccess(), "U0B": UserAccess(), "U0G": UserAccess(guest="a guest")}
    assert channels_to_list(works, channels, users) == ["C0PROJECT", "C0SECRET"]  # the guest's too
    members = {"C0SECRET": frozenset({"U0A"}), "C0PROJECT": frozenset({"U0A", "U0B"})}
    gate = permission_stage(works, users, channels, members, NOW)
    assert gate.moving == [member, public]
    assert outcomes(gate.stopped) == [("rec-2", "not_permitted"), ("rec-3", "not_permitted")]
    assert gate.releases == [outsider, guest]
    assert not gate.holds
    assert not gate.finishes
    assert outsider.decision is not None
    assert outsider.decision.detail == "not a member of the private channel; C0SECRET"
    assert guest.decision is not None
    assert guest.decision.detail == "a guest, not a member of the public channel; C0PROJECT"


def test_quiet_hours_and_pauses_hold_for_a_digest() -> None:
    quiet = {"start": "11:00", "end": "13:00", "tz": "UTC"}
    a, b = work("U0A", offset=1), work("U0B", offset=2)
    moving = admitted(a, b, prefs={"U0A": opted_in("U0A", quiet_hours=quiet), "U0B": opted_in("U0B")})
    gate = hold_stage(moving, NOW)
    assert gate.moving == [b]
    assert outcomes(gate.stopped) == [("rec-1", "held")]
    assert a.decision is not None
    assert a.decision.detail == "quiet hours; digest after 2024-03-06 13:00 UTC"
    assert [(h.record, h.reason, h.due) for h in gate.holds] == [("rec-1", "held", NOW + 3600)]
    assert [f.state.outcome for f in gate.finishes] == ["held"]


def test_the_bucket_and_the_budget_send_rate_limit_or_hold_for_the_digest_time() -> None:
    go, slow, spent = work("U0A", offset=1), work("U0B", offset=2), work("U0C", offset=3)
    works = admitted(go, slow, spent)
    allowances = {w.user: allowance(opted_in(w.user), DEFAULTS) for w in works}
    takes = [Take(True, 0.0), Take(False, 120.0), Take(True, 0.0)]
    asks = budget_asks(works, takes, allowances, NOW)
    assert [(a.day, a.record, a.limit, a.take) for a in asks] == [
        ("2024-03-06", "rec-1", 3, True),
        ("2024-03-06", "rec-2", 3, False),
        ("2024-03-06", "rec-3", 3, True),
    ]
    answers = [BudgetAnswer(True, 1), BudgetAnswer(True, 2), BudgetAnswer(False, 3)]
    gate = budget_stage(works, takes, allowances, asks, answers, NOW)
    assert gate.moving == [go]
    assert go.decision is None
    assert go.budget_day == "2024-03-06"
    assert outcomes(gate.stopped) == [("rec-2", "rate_limited"), ("rec-3", "over_budget")]
    assert slow.decision is not None
    assert "in 120s" in slow.decision.detail
    assert spent.decision is not None
    assert spent.decision.detail == (
        "over the daily budget: 3 of 3 real-time DMs on 2024-03-06 (UTC); digest at 2024-03-06 13:00 UTC"
    )
    assert [(h.record, h.reason, h.due) for h in gate.holds] == [
        ("rec-2", "rate_limited", NOW + 120),
        ("rec-3", "over_budget", NOW + 3600),
    ]
    assert [f.state.outcome for f in gate.finishes] == ["rate_limited", "over_budget"]


def test_slack_answers_sent_failed_or_retry_later_and_refund_the_days_dm() -> None:
    ok, gone, later, replayed = (work(f"U0{i}", offset=i) for i in range(4))
    ok.budget_day = gone.budget_day = later.budget_day = "2024-03-06"  # `replayed` spent none
    results: list[tuple[Work, SendResult]] = [
        (ok, Posted("D1", "5.5")),
        (gone, SendFailure("failed", "user_not_found", "slack: user_not_found")),
        (later, SendFailure("retry", "ratelimited", "slack unavailable (ratelimited); retrying later")),
        (replayed, SendFailure("retry", "RuntimeError", "unexpected error; retrying later")),
    ]
    gate = send_stage(results, NOW, retry_later_s=60)
    assert gate.moving == [ok]
    assert gate.posted == [(ok, Posted("D1", "5.5"))]
    assert ok.decision is not None
    assert (ok.decision.outcome, ok.decision.dm_ts) == ("sent", "5.5")
    assert outcomes(gate.stopped) == [("rec-1", "failed"), ("rec-2", "held"), ("rec-3", "held")]
    assert gate.releases == [gone]
    assert [(h.record, h.reason, h.why, h.due) for h in gate.holds] == [
        ("rec-2", "retry", "slack: ratelimited", NOW + 60),
        ("rec-3", "retry", "slack: RuntimeError", NOW + 60),
    ]
    assert [(f.state.record, f.state.outcome, f.state.dm_ts) for f in gate.finishes] == [
        ("rec-2", "held", ""),
        ("rec-3", "held", ""),
        ("rec-0", "sent", "5.5"),
    ]
    assert gate.refunds == [("U01", "2024-03-06", "rec-1"), ("U02", "2024-03-06", "rec-2")]


def test_record_keeps_the_batch_order_and_refuses_an_undecided_item() -> None:
    a, b = work("U0A", offset=1), work("U0B", offset=2)
    nobody: dict[str, Preferences] = {}
    admit_stage([a, b], nobody.get, NOW)  # nobody opted in: both decided
    assert [(w.rid, d.outcome) for w, d in record_stage([a, b])] == [
        ("rec-1", "not_opted_in"),
        ("rec-2", "not_opted_in"),
    ]
    with pytest.raises(ValueError, match="rec-3"):
        record_stage([work("U0C", offset=3)])


def test_an_alert_and_a_digest_share_one_audit_record_with_latest_ts() -> None:
    alert = candidate("U0A", latest_ts="1700000200.000300")
    record = audit_record(alert, "sent", "topic", NOW, Posted("D1", "5.5"))
    assert (record.user, record.conversation_id, record.outcome, record.detail) == (
        "U0A",
        alert.conversation_id,
        "sent",
        "topic",
    )
    assert (record.dm_channel, record.dm_ts, record.latest_ts) == ("D1", "5.5", "1700000200.000300")
    assert (record.reason, record.candidate_created_at, record.decided_at) == (
        alert.reason,
        alert.created_at,
        NOW,
    )
    held = [
        HeldAlert(candidate=alert, record="rec-1", reason="held", why="quiet hours", due=NOW, held_at=NOW),
        HeldAlert(
            candidate=candidate("U0A", "C0GENERAL:2.2"),
            record="rec-2",
            reason="held",
            why="",
            due=NOW,
            held_at=NOW,
        ),
    ]
    digest = digest_records(held, "digest", "2 alert(s) in one digest", NOW, Posted("D1", "7.7"))
    assert [d.latest_ts for d in digest] == ["1700000200.000300", "1700000100.000200"]
    assert [d.dm_ts for d in digest] == ["7.7", "7.7"]
    assert digest[0] == audit_record(alert, "digest", "2 alert(s) in one digest", NOW, Posted("D1", "7.7"))
    dropped = digest_records(held, "not_opted_in", "opted out before the digest was due", NOW, None)
    assert [(d.dm_channel, d.latest_ts) for d in dropped] == [
        (None, "1700000200.000300"),
        (None, "1700000100.000200"),
    ]
