"""The notifier's decisions for one batch, as named stages with no I/O.

`Notifier.handle` runs a batch through them in this order, doing each stage's Redis round trip
itself (or through `dedup`, `held`, `rate_limit`, `budget_counter`) and passing the answers in:

1. `admit_stage`: opted in? paused, snoozed or in quiet hours? (preferences + clock);
   `controls_stage`: muted, or below the bar "fewer like this" raised? (`controls`)
2. `claim_stage`: what the dedup claim says (free, a duplicate, recorded, resumed, taken over,
   or another live instance's — then the whole batch waits);
3. `waiting_stage`: a resumed record whose alert already waits in the person's digest queue;
4. `posted_stage`: a record posted before a redo is only recorded, never posted again;
5. `permission_stage`: may the person read the channel the DM would quote? (users.info,
   conversations.info / .members, looked up by `permissions.Permissions`) — else
   `not_permitted`, claim released, nothing held;
6. `hold_stage`: a pause, a snooze or quiet hours hold the alert for a digest;
7. `budget_stage`: the token bucket and the day's budget: send now, `rate_limited` or
   `over_budget`;
8. `send_stage`: what Slack answered: `sent`, `failed` (claim released) or `held` to retry;
9. `record_stage`: the audit of every item, built by `audit_record` (also used by digests).

Each stage takes the items still moving and returns a `Gate`: the items that move on, the items
it stopped (their decision set), the alerts it holds for a digest and the claims it finishes.
A stage only fills in the fields of the batch's own `Work` items.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal, get_args

from aiokafka.structs import ConsumerRecord

from beepgpt.contracts import Candidate, Notification, NotificationOutcome, Preferences
from notifier.budget import Allowance, budget_day, next_digest_at, over_budget_why
from notifier.budget_counter import BudgetAnswer, BudgetAsk
from notifier.controls import controlled
from notifier.decisions import Admission, Verdict, admit, verdict
from notifier.dedup import ClaimState, Finish
from notifier.delivery import Posted
from notifier.held import HeldAlert, HoldReason
from notifier.permissions import ChannelAccess, UserAccess
from notifier.rate_limit import Take

_OUTCOMES = set(get_args(NotificationOutcome))


@dataclass
class Work:
    """One candidate record on its way through a batch."""

    record: ConsumerRecord[bytes, bytes]
    candidate: Candidate
    rid: str
    received: float
    admission: Admission = field(default_factory=lambda: Admission("drop"))
    takeover: bool = False
    resumed: bool = False
    budget_day: str | None = None  # the day whose budget this alert's DM was counted against
    decision: Notification | None = None

    @property
    def user(self) -> str:
        return self.candidate.user

    @property
    def conversation_id(self) -> str:
        return self.candidate.conversation_id


@dataclass
class Gate:
    """What a stage lets through, what it stopped, and the Redis writes the stopped ones need."""

    moving: list[Work] = field(default_factory=list)
    stopped: list[Work] = field(default_factory=list)
    holds: list[HeldAlert] = field(default_factory=list)
    finishes: list[Finish] = field(default_factory=list)


@dataclass
class Claimed(Gate):
    """The claim stage's gate; `owned`: the items whose dedup key is their own record's (all but
    the duplicates); `busy` when another live instance holds a claim of this batch."""

    owned: list[Work] = field(default_factory=list)
    busy: bool = False


@dataclass(frozen=True)
class SendFailure:
    """Slack did not take the DM: `failed` for good, or `retry` later through the digest sweep."""

    kind: Literal["failed", "retry"]
    error: str  # what the audit and the held alert say Slack answered
    detail: str  # the audit's detail


SendResult = Posted | SendFailure


@dataclass
class Permitted(Gate):
    """The permission stage's gate: `releases` are the refused items, whose claims are freed (a
    later candidate counts once the person may read the channel)."""

    releases: list[Work] = field(default_factory=list)


@dataclass
class Sent(Gate):
    """The send stage's gate: `moving` are the sent items; released claims, budget refunds."""

    posted: list[tuple[Work, Posted]] = field(default_factory=list)
    releases: list[Work] = field(default_factory=list)
    refunds: list[tuple[str, str, str]] = field(default_factory=list)  # (user, day, record)


# --- the audit record ---------------------------------------------------------------------------


def audit_record(
    candidate: Candidate,
    outcome: NotificationOutcome,
    detail: str,
    now: float,
    posted: Posted | None = None,
) -> Notification:
    """The `notifications.sent` record of one decision, for an alert or an alert in a digest."""
    return Notification(
        user=candidate.user,
        conversation_id=candidate.conversation_id,
        outcome=outcome,
        detail=detail,
        reason=candidate.reason,
        dm_channel=posted.channel if posted else None,
        dm_ts=posted.ts if posted else None,
        candidate_created_at=candidate.created_at,
        latest_ts=candidate.latest_ts,
        decided_at=now,
    )


def decide(
    work: Work, outcome: NotificationOutcome, detail: str, now: float, posted: Posted | None = None
) -> Work:
    """Set the item's decision; returns it (a stopped or sent item)."""
    work.decision = audit_record(work.candidate, outcome, detail, now, posted)
    return work


def held_alert(work: Work, reason: HoldReason, why: str, due: float, now: float) -> HeldAlert:
    return HeldAlert(candidate=work.candidate, record=work.rid, reason=reason, why=why, due=due, held_at=now)


def finish(work: Work, outcome: str, posted: Posted | None = None) -> Finish:
    state = ClaimState(
        "done",
        work.rid,
        outcome=outcome,
        dm_channel=posted.channel if posted else "",
        dm_ts=posted.ts if posted else "",
    )
    return Finish(work.user, work.conversation_id, state)


def utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


# --- the stages ---------------------------------------------------------------------------------


def admit_stage(works: Sequence[Work], preferences: Callable[[str], Preferences | None], now: float) -> Gate:
    """Read each person's preferences: not opted in stops here (`not_opted_in`, no claim taken)."""
    gate = Gate()
    for work in works:
        work.admission = admit(preferences(work.user), now)
        if work.admission.action == "drop":
            gate.stopped.append(decide(work, "not_opted_in", work.admission.why, now))
        else:
            gate.moving.append(work)
    return gate


def controls_stage(
    works: Sequence[Work], preferences: Callable[[str], Preferences | None], now: float
) -> Gate:
    """The person's controls (`controls.controlled`): a muted conversation or channel stops as
    `muted`, an alert under the bar their "fewer like this" raised as `down_weighted`; like
    `not_opted_in`, no claim is taken (after an unmute, a later candidate counts)."""
    gate = Gate()
    for work in works:
        stop = controlled(preferences(work.user), work.candidate, now)
        if stop is None:
            gate.moving.append(work)
        else:
            gate.stopped.append(decide(work, stop[0], stop[1], now))
    return gate


def owners_to_ask(works: Sequence[Work], states: Sequence[ClaimState | None], owner: str) -> list[str]:
    """The other instances whose unfinished claims on these records need an "alive?" answer."""
    return [
        s.owner
        for w, s in zip(works, states, strict=True)
        if s is not None and s.kind == "claim" and s.record == w.rid and s.owner != owner
    ]


def claim_stage(
    works: Sequence[Work],
    states: Sequence[ClaimState | None],
    alive: Mapping[str, bool],
    owner: str,
    now: float,
) -> Claimed:
    """What each dedup claim attempt found (`states`, aligned with `works`): a duplicate stops
    (`deduplicated`), a finished record stops with its recorded outcome, this process's own or a
    dead one's unfinished claim resumes, a live one's makes the batch wait (`busy`)."""
    gate = Claimed()
    for work, state in zip(works, states, strict=True):
        outcome = verdict(state, work.rid, owner, alive.get(state.owner, False) if state else False)
        if outcome is Verdict.DUPLICATE:
            gate.stopped.append(decide(work, "deduplicated", "already decided for this conversation", now))
            continue
        gate.owned.append(work)
        if outcome is Verdict.RECORDED and state is not None:
            recorded: NotificationOutcome = (
                state.outcome if state.outcome in _OUTCOMES else "deduplicated"  # type: ignore[assignment]
            )
            posted = Posted(state.dm_channel, state.dm_ts) if state.dm_ts else None
            gate.stopped.append(decide(work, recorded, "recorded before a restart", now, posted))
            continue
        if outcome is Verdict.WAIT:
            gate.busy = True
        elif outcome is Verdict.TAKEOVER:
            work.takeover = work.resumed = True
        elif outcome is Verdict.RESUME:
            work.resumed = True
        gate.moving.append(work)
    return gate


def to_look_up(works: Sequence[Work]) -> list[Work]:
    """The resumed items, whose alert may already wait in the digest queue (`waiting_stage`)."""
    return [w for w in works if w.resumed]


def waiting_stage(works: Sequence[Work], found: Mapping[str, HeldAlert], now: float) -> Gate:
    """Unfinished work of an earlier attempt may already wait in the digest queue (`found`, by
    record id): keep it there rather than take a token and send it now as well."""
    gate = Gate()
    for work in works:
        alert = found.get(work.rid) if work.resumed else None
        if alert is None or alert.record != work.rid:
            gate.moving.append(work)
            continue
        outcome: NotificationOutcome = (
            alert.reason if alert.reason in ("rate_limited", "over_budget") else "held"
        )
        gate.finishes.append(finish(work, outcome))
        gate.stopped.append(decide(work, outcome, f"{alert.why}; waiting for a digest", now))
    return gate


def posted_stage(works: Sequence[Work], posted: Collection[str]) -> tuple[list[Work], list[Work]]:
    """(already posted, the rest): a record posted before a redo (Redis failed after the post)
    is only recorded, never posted again, whatever the preferences say now."""
    return [w for w in works if w.rid in posted], [w for w in works if w.rid not in posted]


def may_read(
    user: UserAccess | None, channel: ChannelAccess | None, members: Collection[str] | None, who: str
) -> str | None:
    """Why `who` may not be shown a conversation of this channel, or None when they may: an
    active, human member of the workspace, and — unless the channel is public, or whatever the
    channel for a guest — one of its members. Anything not looked up (None) refuses: the check
    fails closed."""
    if user is None:
        return "not checked: no answer about the person"
    if user.refusal is not None:
        if user.refusal.startswith("slack"):
            return f"cannot check the recipient ({user.refusal})"
        return f"the recipient is {user.refusal}"
    if channel is None:
        return "not checked: no answer about the channel"
    if channel.refusal is not None:
        return f"cannot read the channel ({channel.refusal})"
    if not channel.needs_membership and user.guest is None:
        return None
    if members is None:
        return f"not checked: no member list of the {channel.kind} channel"
    if who not in members:
        return f"{f'{user.guest}, ' if user.guest else ''}not a member of the {channel.kind} channel"
    return None


def channels_to_list(
    works: Sequence[Work],
    channels: Mapping[str, ChannelAccess],
    users: Mapping[str, UserAccess] | None = None,
) -> list[str]:
    """The channels whose member list the permission stage needs (see `channels_needing_members`)."""
    return channels_needing_members([(w.user, w.candidate.channel) for w in works], channels, users)


def channels_needing_members(
    recipients: Sequence[tuple[str, str]],
    channels: Mapping[str, ChannelAccess],
    users: Mapping[str, UserAccess] | None = None,
) -> list[str]:
    """Of the (user, channel) pairs, the readable channels whose members decide: those that are
    not public, and public ones a guest among the recipients would be shown."""
    users = users or {}
    guests_in = {c for u, c in recipients if (person := users.get(u)) and person.guest is not None}
    return sorted(
        c
        for c in {c for _, c in recipients}
        if (a := channels.get(c)) and a.refusal is None and (a.needs_membership or c in guests_in)
    )


def permission_stage(
    works: Sequence[Work],
    users: Mapping[str, UserAccess],
    channels: Mapping[str, ChannelAccess],
    members: Mapping[str, Collection[str]],
    now: float,
) -> Permitted:
    """Who may see what (`may_read`, over the lookups passed in): a refused item stops as
    `not_permitted` before anything is held or sent, and its claim is released."""
    gate = Permitted()
    for work in works:
        channel = work.candidate.channel
        why = may_read(users.get(work.user), channels.get(channel), members.get(channel), work.user)
        if why is None:
            gate.moving.append(work)
            continue
        gate.releases.append(work)
        gate.stopped.append(decide(work, "not_permitted", f"{why}; {channel}", now))
    return gate


def hold_stage(works: Sequence[Work], now: float) -> Gate:
    """A pause, a snooze or quiet hours hold the alert (`held`, or `snoozed` when the person's
    snooze is among the reasons) until they end, for a digest."""
    gate = Gate()
    for work in works:
        if work.admission.action != "hold":
            gate.moving.append(work)
            continue
        until = work.admission.until or now
        outcome: NotificationOutcome = "snoozed" if work.admission.snoozed else "held"
        gate.holds.append(held_alert(work, "held", work.admission.why, until, now))
        gate.finishes.append(finish(work, outcome))
        gate.stopped.append(decide(work, outcome, f"{work.admission.why}; digest after {utc(until)}", now))
    return gate


def budget_asks(
    works: Sequence[Work], takes: Sequence[Take], allowances: Mapping[str, Allowance], now: float
) -> list[BudgetAsk]:
    """After the bucket, the day's budget: a DM the bucket allows spends one of the day's; one it
    refuses only asks whether the day has any left — if not, it waits for the digest time rather
    than for a token (a token would only bring it as a DM the budget forbids)."""
    return [
        BudgetAsk(
            w.user,
            budget_day(allowances[w.user], now),
            w.rid,
            allowances[w.user].daily_budget,
            take=take.allowed,
        )
        for w, take in zip(works, takes, strict=True)
    ]


def budget_stage(
    works: Sequence[Work],
    takes: Sequence[Take],
    allowances: Mapping[str, Allowance],
    asks: Sequence[BudgetAsk],
    answers: Sequence[BudgetAnswer],
    now: float,
) -> Gate:
    """The token bucket's `takes` and the budget's `answers` (aligned with `works`): no budget
    left → `over_budget` until the digest time; budget but no token → `rate_limited` until a
    token is back; both → moves on to be sent, its DM counted against `ask.day`."""
    gate = Gate()
    for work, take, ask, answer in zip(works, takes, asks, answers, strict=True):
        if not answer.allowed:
            allowed = allowances[work.user]
            due = next_digest_at(allowed, now)
            detail = (
                f"over the daily budget: {answer.used} of {allowed.daily_budget} real-time DMs on {ask.day}"
                f" ({allowed.zone.key}); digest at {utc(due)}"
            )
            gate.holds.append(
                held_alert(work, "over_budget", over_budget_why(allowed.daily_budget), due, now)
            )
            gate.finishes.append(finish(work, "over_budget"))
            gate.stopped.append(decide(work, "over_budget", detail, now))
        elif take.allowed:
            work.budget_day = ask.day
            gate.moving.append(work)
        else:
            due = now + take.wait_s
            gate.holds.append(held_alert(work, "rate_limited", "rate limit", due, now))
            gate.finishes.append(finish(work, "rate_limited"))
            detail = f"over the per-user limit; queued for a digest in {take.wait_s:.0f}s"
            gate.stopped.append(decide(work, "rate_limited", detail, now))
    return gate


def send_stage(results: Sequence[tuple[Work, SendResult]], now: float, retry_later_s: float) -> Sent:
    """What Slack answered for each DM: `sent` with where it landed; `failed` releases the claim
    (a later candidate may try again); `retry` is `held` for the sweep after `retry_later_s`.
    Not delivered in real time after all, the day's DM goes back to the person (`refunds`)."""
    gate = Sent()
    retries: list[Work] = []
    for work, result in results:
        if isinstance(result, Posted):
            gate.posted.append((work, result))
            gate.moving.append(decide(work, "sent", work.candidate.reason, now, result))
        elif result.kind == "failed":
            gate.releases.append(work)
            gate.stopped.append(decide(work, "failed", result.detail, now))
        else:
            retries.append(work)
            due = now + retry_later_s
            gate.holds.append(held_alert(work, "retry", f"slack: {result.error}", due, now))
            gate.stopped.append(decide(work, "held", result.detail, now))
    gate.finishes = [finish(w, "held") for w in retries] + [finish(w, "sent", p) for w, p in gate.posted]
    gate.refunds = [
        (w.user, w.budget_day, w.rid) for w in [*gate.releases, *retries] if w.budget_day is not None
    ]
    return gate


def record_stage(works: Sequence[Work]) -> list[tuple[Work, Notification]]:
    """Every item of the batch with its audit record; each must have been decided by now."""
    decided: list[tuple[Work, Notification]] = []
    for work in works:
        if work.decision is None:
            raise ValueError(f"record {work.rid} went through every stage undecided")
        decided.append((work, work.decision))
    return decided
