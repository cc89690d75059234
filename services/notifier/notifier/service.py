"""The notifier process: candidates in, DMs and an audit of every decision out.

A batch of candidates is decided with a few Redis round trips (preferences gate, dedup claims,
token buckets, daily budgets, held alerts), the DMs are sent concurrently, every decision is
published to `notifications.sent`, and only then are the offsets committed. Whatever fails in
between is redone with the same records: the dedup claims say which work was this process's own,
and the DMs already posted are remembered, so a redo neither loses nor repeats a DM (nor spends a
day's budget twice: the budget counts records, `budget_counter`).

Redis is required for every send (no dedup, no DM): when it stops answering, consumption is
paused (the consumer keeps polling so it stays in its group) until Redis answers again.

The runtime (`beepgpt.runtime`) owns start-up and shutdown, the consume loop, the commit and the
wait for the batch in hand on rebalance; this module keeps the notifier's own step: redoing a
batch until it is decided, and deciding it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import get_args

import aiohttp
import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from slack_sdk.web.async_client import AsyncWebClient

from beepgpt.contracts import Candidate, Notification, NotificationOutcome, Preferences
from beepgpt.kafka import EventProducer, ensure_topics, header
from beepgpt.kafka.headers import TRACE_ID
from beepgpt.runtime import ConsumerLoop, LeaveUncommitted, Poll, RecordBatch, Runtime
from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from beepgpt.topics import CANDIDATES, FEEDBACK, PREFERENCES, SENT
from notifier.budget import Allowance, allowance, budget_day, next_digest_at, over_budget_why
from notifier.budget_counter import BudgetAnswer, BudgetAsk, BudgetCounter
from notifier.decisions import Admission, Verdict, admit, verdict
from notifier.dedup import ClaimState, DedupStore, Finish, conversation_marker, record_id
from notifier.delivery import Delivery, Posted
from notifier.digest import DigestSweeper
from notifier.directory import Directory
from notifier.held import HeldAlert, HeldAlerts
from notifier.metrics import CANDIDATE_AGE, DECISION_LATENCY, DECISIONS, END_TO_END, REDIS_UP
from notifier.preferences import PreferencesTable
from notifier.rate_limit import TokenBucket
from notifier.settings import NotifierSettings
from notifier.slack_sender import DefiniteSlackError, SlackSender, TransientSlackError

log = logging.getLogger(__name__)

SERVICE = "notifier"
REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)
OWNER_TTL_S = 15
Clock = Callable[[], float]


BATCH_DRAIN_S = 30.0
"""How long a stop waits for the batch in hand before the work is left to the next owner."""


class OwnerBusy(Exception):
    """A live instance holds an unfinished claim on a record of this batch: wait for it."""


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


class Notifier:
    """One notifier instance; any number may run in the same consumer group."""

    def __init__(
        self,
        kafka: KafkaSettings,
        redis_settings: RedisSettings,
        slack: SlackSettings,
        settings: NotifierSettings | None = None,
        *,
        clock: Clock = time.time,
        owner: str | None = None,
    ) -> None:
        self.kafka = kafka
        self.redis_settings = redis_settings
        self.slack = slack
        self.settings = settings or NotifierSettings()
        self.clock = clock
        self.owner = owner or uuid.uuid4().hex[:16]
        self._producer = EventProducer(kafka, SERVICE)
        self._redis: aioredis.Redis | None = None
        self._http: aiohttp.ClientSession | None = None
        self._redis_ok = False
        self._sent: dict[str, Posted] = {}
        self._claimed: dict[str, tuple[str, str]] = {}
        self._orphans: dict[str, tuple[str, str]] = {}
        # Counters for operators' logs and for tests that must know a redo really happened.
        self.decided = 0
        self.redone_batches = 0
        self.owner_waits = 0
        runtime = self.runtime = Runtime(SERVICE, ready=self._serving, drain_timeout_s=BATCH_DRAIN_S)
        runtime.step("log", stop=self._log_stopped)  # first registered: its undo runs last
        runtime.step("topics", lambda: ensure_topics(kafka, [CANDIDATES, SENT, PREFERENCES, FEEDBACK]))
        runtime.step("clients", self._connect, self._disconnect)
        runtime.add(self._producer, "producer")
        runtime.step("preferences", self._read_preferences, lambda: self.preferences.stop())
        runtime.step("redis", lambda: self._wait_for_redis(None), self._retire)
        # Let the batch in hand finish before partitions move, so claims do not change hands live.
        self.loop: ConsumerLoop[Candidate] = ConsumerLoop(
            runtime,
            kafka,
            group_id=self.settings.group_id,
            topic=CANDIDATES,
            producer=self._producer,
            step=self._handle_until_done,
            poll=Poll(timeout_ms=500, max_records=self.settings.max_batch),
            rebalance_wait_s=kafka.session_timeout_ms / 1000,
            consumer_options={"max_poll_records": self.settings.max_batch},
        )
        runtime.step("started", self._log_started)
        runtime.task("heartbeat", self._heartbeat)
        runtime.task("digests", self._sweep_forever)

    # --- lifecycle --------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        """Serving: preferences read, Redis answering, consumer running."""
        return self.runtime.ready

    def _serving(self) -> bool:
        return self.loop.consuming and self._redis_ok and self.preferences.loaded

    async def start(self) -> None:
        """Connect everything, read the preferences table, then start consuming."""
        await self.runtime.start()

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, then close everything (SIGTERM path)."""
        await self.runtime.stop()

    async def _log_started(self) -> None:
        log.info("notifier started", extra={"owner": self.owner, "group": self.settings.group_id})

    async def _log_stopped(self) -> None:
        log.info("notifier stopped", extra={"owner": self.owner, "decided": self.decided})

    async def wait(self) -> None:
        """Until the consume loop ends (it only ends by `stop` or a fatal error)."""
        await self.runtime.wait()

    async def _connect(self) -> None:
        settings = self.settings
        self._redis = aioredis.Redis.from_url(
            self.redis_settings.url,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        prefix = self.redis_settings.key_prefix
        self.dedup = DedupStore(self._redis, prefix, settings.dedup_ttl_s)
        self.bucket = TokenBucket(self._redis, prefix, settings.rate_per_hour / 3600.0, settings.burst)
        self.held = HeldAlerts(self._redis, prefix)
        self.budget = BudgetCounter(self._redis, prefix)
        self._http = aiohttp.ClientSession()
        client = AsyncWebClient(
            token=self.slack.bot_token.get_secret_value() if self.slack.bot_token else None,
            base_url=self.slack.api_url,
            timeout=int(max(1, settings.slack_timeout_s)),
            session=self._http,
            retry_handlers=[],
        )
        self.sender = SlackSender(client, settings)
        self.delivery = Delivery(
            self.sender,
            Directory(self.sender, settings.directory_ttl_s),
            preview_lines=settings.preview_lines,
        )

    async def _disconnect(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._redis is not None:
            await self._redis.aclose()

    async def _read_preferences(self) -> None:
        self.preferences = PreferencesTable(self.kafka, on_change=self._preferences_changed)
        await self.preferences.start()
        self.digests = DigestSweeper(
            self.held,
            self.bucket,
            self.preferences,
            self.delivery,
            self._publish,
            self.settings,
            self.owner,
            self.clock,
        )

    async def _retire(self) -> None:
        """This instance's claims are nobody's any more: another instance may take them over."""
        with contextlib.suppress(*REDIS_ERRORS):
            await self.dedup.retire(self.owner)

    # --- the step: a batch until it is decided ------------------------------------------------

    async def _handle_until_done(self, batch: RecordBatch[Candidate]) -> None:
        """Decide a batch, redoing it after Redis or Kafka trouble, on the records still ours.

        What the previous batch posted and claimed is forgotten here, once that batch is committed
        (the loop committed it before polling this one).
        """
        self._sent.clear()
        self._claimed.clear()
        delay = 0.2
        while True:
            if self.runtime.stopping:
                raise LeaveUncommitted
            batch = self._still_assigned(batch)
            if not batch.entries:
                return
            try:
                await self._release_orphans()
                await self.handle(batch)
                return
            except REDIS_ERRORS as error:
                self.redone_batches += 1
                await self._wait_for_redis(error)
            except OwnerBusy:
                self.owner_waits += 1
                log.info("waiting for another instance to finish a claim")
                await self.loop.idle(1.0)
            except KafkaError as error:
                self.redone_batches += 1
                log.warning("publishing decisions failed; redoing the batch", extra={"error": str(error)})
                await self.loop.idle(delay)
                delay = min(delay * 2, 10.0)

    def _still_assigned(self, batch: RecordBatch[Candidate]) -> RecordBatch[Candidate]:
        """Drop records of partitions taken away by a rebalance; their claims become orphans."""
        kept = batch.only(self.loop.assignment())
        if len(kept.entries) != len(batch.entries):
            kept_ids = {self._rid(r) for r in kept.records}
            for rid, claim in list(self._claimed.items()):
                if rid not in kept_ids:
                    self._orphans[rid] = claim
                    del self._claimed[rid]
        return kept

    async def _release_orphans(self) -> None:
        """Settle claims on records another instance now owns: record sends, free the rest."""
        for rid, (user, conversation_id) in list(self._orphans.items()):
            posted = self._sent.pop(rid, None)
            if posted is not None:
                state = ClaimState("done", rid, outcome="sent", dm_channel=posted.channel, dm_ts=posted.ts)
                await self.dedup.finish_many([Finish(user, conversation_id, state)])
            else:
                await self.dedup.release(user, conversation_id, rid)
            del self._orphans[rid]

    async def _wait_for_redis(self, error: BaseException | None) -> None:
        """Block until Redis answers PING; nothing is decided or sent meanwhile."""
        assert self._redis is not None
        first = True
        while not self.runtime.stopping:
            try:
                await self._redis.ping()
                break
            except REDIS_ERRORS as failure:
                if first:
                    log.error(
                        "redis unavailable; consumption paused",
                        extra={"error": str(error or failure)[:200]},
                    )
                    first = False
                self._redis_ok = False
                REDIS_UP.set(0)
                await self.loop.idle(self.settings.redis_probe_s)  # before the consumer: a sleep
        if self.runtime.stopping:
            return
        if not first:
            log.info("redis answers again; consumption resumes")
        self._redis_ok = True
        REDIS_UP.set(1)
        with contextlib.suppress(*REDIS_ERRORS):
            await self.dedup.heartbeat(self.owner, OWNER_TTL_S)

    # --- deciding a batch -------------------------------------------------------------------

    def _rid(self, record: ConsumerRecord[bytes, bytes]) -> str:
        return record_id(self.settings.group_id, record.topic, record.partition, record.offset)

    async def handle(self, batch: RecordBatch[Candidate]) -> None:
        """Decide, send and publish one batch (decoded, its poison dead-lettered by the loop).
        Raises on Redis/Kafka trouble; safe to redo."""
        now = self.clock()
        received = time.monotonic()
        works: list[Work] = []
        for record, candidate in batch.values():
            work = Work(record, candidate, self._rid(record), received)
            work.admission = admit(self.preferences.get(candidate.user), now)
            works.append(work)

        for work in works:
            if work.admission.action == "drop":
                work.decision = self._decision(work, "not_opted_in", work.admission.why, now)
        claimants = [w for w in works if w.decision is None]
        await self._claim(claimants, now)

        moving = [w for w in claimants if w.decision is None]
        holds: list[HeldAlert] = []
        finishes: list[Finish] = []
        # Unfinished work of an earlier attempt may already wait in the digest queue: keep it
        # there rather than take a token and send it now as well.
        resumed = [w for w in moving if w.resumed]
        already = await self.held.find_many([(w.user, w.conversation_id) for w in resumed])
        for work, alert in zip(resumed, already, strict=True):
            if alert is not None and alert.record == work.rid:
                outcome: NotificationOutcome = (
                    alert.reason if alert.reason in ("rate_limited", "over_budget") else "held"
                )
                finishes.append(self._finish(work, outcome))
                work.decision = self._decision(work, outcome, f"{alert.why}; waiting for a digest", now)
        moving = [w for w in moving if w.decision is None]
        # Posted before a redo (Redis failed after the post): only record it, never post again,
        # whatever the preferences say now.
        senders: list[Work] = [w for w in moving if w.rid in self._sent]
        moving = [w for w in moving if w.rid not in self._sent]
        for work in moving:
            if work.admission.action == "hold":
                until = work.admission.until or now
                holds.append(self._held_alert(work, "held", work.admission.why, until, now))
                finishes.append(self._finish(work, "held"))
                work.decision = self._decision(
                    work, "held", f"{work.admission.why}; digest after {_utc(until)}", now
                )
        delivering = [w for w in moving if w.decision is None]
        takes = await self.bucket.take_many([w.user for w in delivering], now)
        allowances = {w.user: allowance(self.preferences.get(w.user), self.settings) for w in delivering}
        # After the bucket, the day's budget: a DM the bucket allows spends one of the day's; one
        # it refuses only asks whether the day has any left — if not, it waits for the digest
        # time rather than for a token (a token would only bring it as a DM the budget forbids).
        asks = [
            BudgetAsk(
                w.user,
                budget_day(allowances[w.user], now),
                w.rid,
                allowances[w.user].daily_budget,
                take=take.allowed,
            )
            for w, take in zip(delivering, takes, strict=True)
        ]
        answers = await self.budget.take_many(asks, now)
        for work, take, ask, answer in zip(delivering, takes, asks, answers, strict=True):
            if not answer.allowed:
                holds.append(self._over_budget(work, allowances[work.user], ask, answer, now))
                finishes.append(self._finish(work, "over_budget"))
                continue
            if take.allowed:
                work.budget_day = ask.day
                senders.append(work)
                continue
            due = now + take.wait_s
            holds.append(self._held_alert(work, "rate_limited", "rate limit", due, now))
            finishes.append(self._finish(work, "rate_limited"))
            work.decision = self._decision(
                work,
                "rate_limited",
                f"over the per-user limit; queued for a digest in {take.wait_s:.0f}s",
                now,
            )
        await self.held.hold_many(holds)
        await self.dedup.finish_many(finishes)

        releases, retries, sent = await self._send_all(senders, now)
        retry_holds = [
            self._held_alert(w, "retry", f"slack: {err}", now + self.settings.retry_later_s, now)
            for w, err in retries
        ]
        await self.held.hold_many(retry_holds)
        await self.dedup.finish_many(
            [self._finish(w, "held") for w, _ in retries] + [self._finish(w, "sent", p) for w, p in sent]
        )
        for work in releases:
            await self.dedup.release(work.user, work.conversation_id, work.rid)
        # Not delivered in real time after all (refused for good, or left to a digest, which never
        # counts): the day's DM goes back to the person.
        await self.budget.refund_many(
            [
                (w.user, w.budget_day, w.rid)
                for w in [*releases, *(w for w, _ in retries)]
                if w.budget_day is not None
            ]
        )

        await self._publish_batch(batch, works)

    async def _claim(self, works: list[Work], now: float) -> None:
        """Take the dedup keys; mark duplicates and already-recorded work."""
        claims = [(w.user, w.conversation_id, ClaimState("claim", w.rid, owner=self.owner)) for w in works]
        states = await self.dedup.claim_many(claims)
        others = [
            s.owner
            for w, s in zip(works, states, strict=True)
            if s is not None and s.kind == "claim" and s.record == w.rid and s.owner != self.owner
        ]
        alive = await self.dedup.alive(others)
        busy = False
        for work, state in zip(works, states, strict=True):
            self._claimed[work.rid] = (work.user, work.conversation_id)
            outcome = verdict(state, work.rid, self.owner, alive.get(state.owner, False) if state else False)
            if outcome is Verdict.DUPLICATE:
                self._claimed.pop(work.rid, None)
                work.decision = self._decision(
                    work, "deduplicated", "already decided for this conversation", now
                )
            elif outcome is Verdict.RECORDED and state is not None:
                recorded: NotificationOutcome = (
                    state.outcome if state.outcome in _OUTCOMES else "deduplicated"  # type: ignore[assignment]
                )
                work.decision = self._decision(
                    work,
                    recorded,
                    "recorded before a restart",
                    now,
                    Posted(state.dm_channel, state.dm_ts) if state.dm_ts else None,
                )
            elif outcome is Verdict.WAIT:
                busy = True
            elif outcome is Verdict.TAKEOVER:
                work.takeover = work.resumed = True
            elif outcome is Verdict.RESUME:
                work.resumed = True
        if busy:
            raise OwnerBusy

    async def _send_all(
        self, works: list[Work], now: float
    ) -> tuple[list[Work], list[tuple[Work, str]], list[tuple[Work, Posted]]]:
        """Post the DMs concurrently; sort results into released, retry-later and sent."""
        gate = asyncio.Semaphore(self.settings.send_concurrency)
        releases: list[Work] = []
        retries: list[tuple[Work, str]] = []
        sent: list[tuple[Work, Posted]] = []

        async def one(work: Work) -> None:
            posted = self._sent.get(work.rid)
            if posted is None:
                async with gate:
                    try:
                        posted = await self.delivery.alert(
                            work.candidate,
                            conversation_marker(work.user, work.conversation_id),
                            look_first=work.takeover,
                        )
                    except DefiniteSlackError as error:
                        self.sender.report_once(error, work.user)
                        releases.append(work)
                        work.decision = self._decision(work, "failed", f"slack: {error.error}", now)
                        return
                    except TransientSlackError as error:
                        retries.append((work, error.error))
                        work.decision = self._decision(
                            work, "held", f"slack unavailable ({error.error}); retrying later", now
                        )
                        return
                    except Exception as error:  # a bug must not lose the alert either
                        log.exception("sending an alert failed unexpectedly", extra={"user": work.user})
                        retries.append((work, type(error).__name__))
                        work.decision = self._decision(work, "held", "unexpected error; retrying later", now)
                        return
                self._sent[work.rid] = posted
            sent.append((work, posted))
            work.decision = self._decision(work, "sent", work.candidate.reason, now, posted)

        await asyncio.gather(*(one(work) for work in works))
        return releases, retries, sent

    async def _publish_batch(self, batch: RecordBatch[Candidate], works: list[Work]) -> None:
        for work in works:
            assert work.decision is not None
            trace = header(work.record.headers, TRACE_ID)
            await batch.send(SENT, work.user, work.decision, trace_id=trace)
        await batch.flush()
        done = time.monotonic()
        now = self.clock()
        for work in works:
            assert work.decision is not None
            DECISIONS.labels(work.decision.outcome).inc()
            DECISION_LATENCY.observe(done - work.received)
            CANDIDATE_AGE.observe(max(0.0, now - work.candidate.created_at))
            with contextlib.suppress(ValueError):
                END_TO_END.observe(max(0.0, now - float(work.candidate.latest_ts)))
        self.decided += len(works)

    async def _publish(self, decisions: Sequence[Notification]) -> None:
        """Publish decisions made outside a batch (digests) and wait for the broker."""
        futures = [await self._producer.send_soon(SENT, d.user, d) for d in decisions]
        await asyncio.gather(*futures)

    def _decision(
        self,
        work: Work,
        outcome: NotificationOutcome,
        detail: str,
        now: float,
        posted: Posted | None = None,
    ) -> Notification:
        return Notification(
            user=work.user,
            conversation_id=work.conversation_id,
            outcome=outcome,
            detail=detail,
            reason=work.candidate.reason,
            dm_channel=posted.channel if posted else None,
            dm_ts=posted.ts if posted else None,
            candidate_created_at=work.candidate.created_at,
            latest_ts=work.candidate.latest_ts,
            decided_at=now,
        )

    def _held_alert(self, work: Work, reason: str, why: str, due: float, now: float) -> HeldAlert:
        return HeldAlert(
            candidate=work.candidate,
            record=work.rid,
            reason=reason,  # type: ignore[arg-type]
            why=why,
            due=due,
            held_at=now,
        )

    def _over_budget(
        self, work: Work, allowed: Allowance, ask: BudgetAsk, answer: BudgetAnswer, now: float
    ) -> HeldAlert:
        """Hold an alert over the person's daily budget for their next digest time, and audit it."""
        due = next_digest_at(allowed, now)
        work.decision = self._decision(
            work,
            "over_budget",
            f"over the daily budget: {answer.used} of {allowed.daily_budget} real-time DMs on {ask.day}"
            f" ({allowed.zone.key}); digest at {_utc(due)}",
            now,
        )
        return self._held_alert(work, "over_budget", over_budget_why(allowed.daily_budget), due, now)

    def _finish(self, work: Work, outcome: str, posted: Posted | None = None) -> Finish:
        state = ClaimState(
            "done",
            work.rid,
            outcome=outcome,
            dm_channel=posted.channel if posted else "",
            dm_ts=posted.ts if posted else "",
        )
        return Finish(work.user, work.conversation_id, state)

    # --- background work --------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        while not self.runtime.stopping:
            with contextlib.suppress(*REDIS_ERRORS):
                await self.dedup.heartbeat(self.owner, OWNER_TTL_S)
            await self.runtime.sleep(OWNER_TTL_S / 3)

    async def _sweep_forever(self) -> None:
        while not self.runtime.stopping:
            if self._redis_ok:
                try:
                    await self.digests.sweep()
                except REDIS_ERRORS as error:
                    log.warning("digest sweep skipped: redis", extra={"error": str(error)[:200]})
                except KafkaError as error:
                    log.warning("digest sweep skipped: kafka", extra={"error": str(error)[:200]})
            await self.runtime.sleep(self.settings.digest_poll_s)

    async def _preferences_changed(
        self, user: str, before: Preferences | None, after: Preferences | None
    ) -> None:
        """A pause lifted or quiet hours changed: look at this person's held alerts soon."""
        if self._redis is None or not self._redis_ok or after is None:
            return
        with contextlib.suppress(*REDIS_ERRORS):
            await self.held.expedite(user, self.clock())


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M UTC")


_OUTCOMES = set(get_args(NotificationOutcome))
