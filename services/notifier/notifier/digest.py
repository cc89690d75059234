"""Delivering what was held back: one digest DM per person once they may be interrupted again.

Every instance sweeps periodically; a per-user lock in Redis makes one of them do each person.
A person is due when their earliest held alert may go (quiet hours over, pause or snooze over,
a token back in the bucket, Slack worth retrying, their digest time for alerts over their daily
budget — for everything, on a digest-only schedule). At that moment their preferences are read
again: still quiet means later, opted out means the alerts are dropped (and audited as such), a
digest schedule changed meanwhile moves the digest, and an alert the person has muted since (or
asked fewer of) is audited `muted` (`down_weighted`) and left out.
A digest takes a token from the bucket like any DM but never counts against the daily budget.
Who may read what is checked again when the digest goes (a held alert may wait for days): an
alert whose channel the person may no longer read is audited `not_permitted` and left out, and
when Slack cannot say, the digest waits like one Slack did not take.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence

from pydantic import ValidationError

from beepgpt.contracts import Notification, NotificationOutcome
from notifier.budget import Allowance, allowance, next_digest_at
from notifier.controls import controlled
from notifier.corrections import Corrections
from notifier.decisions import admit
from notifier.dedup import conversation_marker
from notifier.delivery import Delivery, Posted
from notifier.held import HeldAlert, HeldAlerts, Inflight
from notifier.metrics import DECISIONS, DIGESTS, HELD_USERS
from notifier.permissions import Permissions, PermissionUnknown
from notifier.preferences import PreferencesTable
from notifier.rate_limit import TokenBucket
from notifier.settings import NotifierSettings
from notifier.slack_sender import DefiniteSlackError, TransientSlackError
from notifier.stages import audit_record, channels_needing_members, may_read

log = logging.getLogger(__name__)

Publish = Callable[[Sequence[Notification]], Awaitable[None]]

_WHY = {
    "held": "Held back while you were away",
    "rate_limited": "Held back so you were not interrupted too often",
    "over_budget": "Held back: you had your DMs for today",
    "retry": "Delayed because Slack was unavailable",
}


def digest_why(alerts: Sequence[HeldAlert]) -> str:
    """One line saying why these alerts come late ("quiet hours", "your 3 DMs for today", ...)."""
    return "; ".join(
        _why_of(reason, [a for a in alerts if a.reason == reason]) for reason in _reasons(alerts)
    )


def _reasons(alerts: Sequence[HeldAlert]) -> list[str]:
    return sorted({a.reason for a in alerts})


def _why_of(reason: str, alerts: Sequence[HeldAlert]) -> str:
    if reason == "held":
        causes = sorted({part for a in alerts for part in a.why.split(" and ") if part})
        if causes:
            words = [cause.replace("paused", "pause").replace("snoozed", "snooze") for cause in causes]
            return f"Held back during your {' and '.join(words)}"
    if reason == "over_budget":
        latest = max(alerts, key=lambda a: a.held_at)  # the budget in force when the last one came
        if latest.why:
            return f"Held back: {latest.why}"
    return _WHY[reason]


def digest_title(alerts: Sequence[HeldAlert]) -> str:
    """A scheduled digest is "Your digest"; one after quiet hours, a pause or a limit is news
    of while the person was away."""
    return "Your digest" if _reasons(alerts) == ["over_budget"] else "While you were away"


def ready_at(alerts: Sequence[HeldAlert], allowed: Allowance, now: float) -> float:
    """When these held alerts may go out as a digest: now, unless every one of them waits for
    the person's digest time (over the budget), then the first digest time after the earliest
    was held — read with the schedule the person has *now*, so a changed schedule moves it.

    Any other held alert makes it now: its own gate (quiet hours, the bucket) is checked by the
    sweep, and the over-budget alerts travel along with a digest that goes out anyway — except
    for someone on a digest-only schedule (a daily budget of 0: "three times a day", "once a
    day"), for whom every alert, held by quiet hours or a pause or a snooze too, joins the next
    digest time: a digest when a quiet window ends would be the interruption they chose not to
    have.
    """
    if not alerts:
        return now
    if allowed.daily_budget > 0 and any(a.reason != "over_budget" for a in alerts):
        return now
    return max(now, min(next_digest_at(allowed, a.held_at) for a in alerts))


def digest_records(
    alerts: Sequence[HeldAlert],
    outcome: NotificationOutcome,
    detail: str,
    now: float,
    posted: Posted | None,
) -> list[Notification]:
    """The audit of a digest: one record per alert in it, built as a real-time alert's is."""
    return [audit_record(alert.candidate, outcome, detail, now, posted) for alert in alerts]


class DigestSweeper:
    """Finds people whose held alerts are due and sends each of them one digest."""

    def __init__(
        self,
        held: HeldAlerts,
        bucket: TokenBucket,
        preferences: PreferencesTable,
        delivery: Delivery,
        publish: Publish,
        settings: NotifierSettings,
        owner: str,
        clock: Callable[[], float] = time.time,
        permissions: Permissions | None = None,
        corrections: Corrections | None = None,
    ) -> None:
        self._held = held
        self._corrections = corrections
        self._permissions = permissions
        self._bucket = bucket
        self._preferences = preferences
        self._delivery = delivery
        self._publish = publish
        self._settings = settings
        self._owner = owner
        self._clock = clock
        self._sent: dict[str, Posted] = {}
        # Long enough to cover the slowest send (a 429 storm plus every backoff), so a live
        # instance never has its digest taken over mid-send.
        self._lease_s = (
            settings.max_rate_limited_wait_s + settings.max_attempts * settings.backoff_cap_s + 60.0
        )

    async def sweep(self, limit: int = 200) -> int:
        """One pass over the due people; returns how many digests went out."""
        now = self._clock()
        users = await self._held.due_users(now, limit)
        HELD_USERS.set(await self._held.pending_users())
        if not users:
            return 0
        gate = asyncio.Semaphore(self._settings.send_concurrency)

        async def one(user: str) -> bool:
            async with gate:
                try:
                    return await self._user(user, now)
                except ValidationError as error:
                    await self._set_aside(user, error, now)
                    return False

        results = await asyncio.gather(*(one(user) for user in users), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result  # Redis went away: the caller waits for it
        return sum(1 for result in results if result is True)

    async def _set_aside(self, user: str, error: ValidationError, now: float) -> None:
        """One person's held alerts cannot be read: quarantine them, not the sweep (before, one
        unreadable entry ended every sweep, so nobody got a digest)."""
        reason = f"{error.title}: {error.errors()[0]['msg'] if error.errors() else error}"
        moved = await self._held.quarantine(user, reason, now)
        DIGESTS.labels("quarantined").inc()
        log.error(
            "held alerts unreadable; set aside for an operator",
            extra={"user": user, "entries": moved, "error": reason[:200]},
        )

    async def _user(self, user: str, now: float) -> bool:
        if not await self._held.lock(user, self._owner, self._lease_s):
            return False
        try:
            return await self._deliver(user, now)
        finally:
            await self._held.unlock(user, self._owner)

    async def _deliver(self, user: str, now: float) -> bool:
        prefs = self._preferences.get(user)
        admission = admit(prefs, now)
        if admission.action == "hold" and admission.until is not None:
            await self._held.reschedule(user, admission.until)
            return False
        if admission.action == "deliver":
            due = ready_at(await self._held.held(user), allowance(prefs, self._settings), now)
            if due > now:
                await self._held.reschedule(user, due)
                return False
            take = await self._bucket.take(user, now)
            if not take.allowed:
                await self._held.reschedule(user, now + take.wait_s)
                return False
        digest_id = uuid.uuid4().hex
        inflight = await self._held.begin(user, digest_id, self._owner, now)
        if inflight is None:
            return False
        if admission.action == "drop":
            await self._close(user, inflight, "not_opted_in", "opted out before the digest was due", None)
            return False
        resumed = inflight.id != digest_id
        # The person's controls as they are now: an alert held before a mute (or a "fewer like
        # this") is audited as such and left out — unless the digest is resumed, when it may
        # already have been posted with it.
        unwanted: list[tuple[HeldAlert, NotificationOutcome, str]] = []
        wanted: list[HeldAlert] = []
        for held_alert in inflight.alerts:
            stop = None if resumed else controlled(prefs, held_alert.candidate, now)
            if stop is None:
                wanted.append(held_alert)
            else:
                unwanted.append((held_alert, stop[0], f"{stop[1]}; left out of the digest"))
        try:
            alerts, refused = await self._permitted(wanted)
            refused = [*unwanted, *refused]
        except PermissionUnknown as error:
            DIGESTS.labels("retry").inc()
            log.info("digest delayed: permission check", extra={"user": user, "error": error.error})
            await self._held.reschedule(user, now + self._settings.retry_later_s)
            return False
        if not alerts:
            await self._close(user, inflight, "digest", "", None, refused)
            return False
        posted = self._sent.get(inflight.id)
        if posted is None:
            in_order = sorted(alerts, key=lambda a: a.held_at)
            # Drawn from the conversations as they are now: a line deleted since it was held is
            # not quoted, an edit is shown as edited.
            held = [a.candidate for a in in_order]
            current = await self._corrections.apply(held) if self._corrections is not None else held
            entries = [
                (candidate, conversation_marker(candidate.user, candidate.conversation_id))
                for candidate in current
            ]
            try:
                posted, drawn = await self._delivery.digest(
                    user,
                    entries,
                    inflight.id,
                    digest_why(alerts),
                    title=digest_title(alerts),
                    max_items=self._settings.digest_max_items,
                    look_first=resumed,
                )
            except DefiniteSlackError as error:
                self._delivery.sender.report_once(error, user)
                DIGESTS.labels("failed").inc()
                await self._close(user, inflight, "failed", f"slack: {error.error}", None, refused)
                return False
            except TransientSlackError as error:
                DIGESTS.labels("retry").inc()
                log.info("digest delayed", extra={"user": user, "error": error.error})
                await self._held.reschedule(user, now + self._settings.retry_later_s)
                return False
            self._sent[inflight.id] = posted
            if self._corrections is not None:
                await self._corrections.remember([(posted, drawn)])
        DIGESTS.labels("sent").inc()
        detail = f"{len(alerts)} alert(s) in one digest"
        await self._close(user, inflight, "digest", detail, posted, refused)
        return True

    async def _permitted(
        self, alerts: Sequence[HeldAlert]
    ) -> tuple[list[HeldAlert], list[tuple[HeldAlert, NotificationOutcome, str]]]:
        """(the alerts the person may still read, the others with why not), looked up again
        (cached); raises `PermissionUnknown` when Slack cannot say."""
        if self._permissions is None:
            return list(alerts), []
        users = await self._permissions.users(a.candidate.user for a in alerts)
        channels = await self._permissions.channels(a.candidate.channel for a in alerts)
        listed = channels_needing_members(
            [(a.candidate.user, a.candidate.channel) for a in alerts], channels, users
        )
        members = await self._permissions.members(listed)
        allowed: list[HeldAlert] = []
        refused: list[tuple[HeldAlert, NotificationOutcome, str]] = []
        for alert in alerts:
            who, channel = alert.candidate.user, alert.candidate.channel
            why = may_read(users.get(who), channels.get(channel), members.get(channel), who)
            if why is None:
                allowed.append(alert)
            else:
                refused.append((alert, "not_permitted", f"{why}; {channel}; left out of the digest"))
        return allowed, refused

    async def _close(
        self,
        user: str,
        inflight: Inflight,
        outcome: NotificationOutcome,
        detail: str,
        posted: Posted | None,
        refused: Sequence[tuple[HeldAlert, NotificationOutcome, str]] = (),
    ) -> None:
        """Audit every alert of the digest, then forget it (in that order: a crash re-audits);
        `refused` are those left out, with their own outcome (`not_permitted`, `muted`, …)."""
        now = self._clock()
        left_out = {id(a) for a, _, _ in refused}
        kept = [a for a in inflight.alerts if id(a) not in left_out]
        decisions = digest_records(kept, outcome, detail, now, posted)
        decisions += [audit_record(a.candidate, left, why, now) for a, left, why in refused]
        await self._publish(decisions)
        for decision in decisions:
            DECISIONS.labels(decision.outcome).inc()
        await self._held.finish(user, inflight.id)
        self._sent.pop(inflight.id, None)
