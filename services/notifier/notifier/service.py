"""The notifier process: candidates in, DMs and an audit of every decision out.

A batch of candidates is decided with a few Redis round trips (preferences gate, dedup claims,
token buckets, daily budgets, held alerts) and Slack's cached word on who may read each channel
(`permissions`: a check Slack cannot answer redoes the batch; nothing unchecked is sent), the DMs are sent concurrently, every decision is
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

import aiohttp
import redis.asyncio as aioredis
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from slack_sdk.web.async_client import AsyncWebClient

from beepgpt.contracts import Candidate, Notification, Preferences, SlackEvent, SlackMessage
from beepgpt.kafka import EventProducer, ensure_topics, header
from beepgpt.kafka.headers import TRACE_ID
from beepgpt.redis_client import REDIS_OUTAGES, check_redis_safety, redis_client
from beepgpt.retry import backoff_delay
from beepgpt.runtime import ConsumerLoop, LeaveUncommitted, Poll, RecordBatch, Runtime
from beepgpt.settings import KafkaSettings, RedisSettings, SlackSettings
from beepgpt.topics import CANDIDATES, FEEDBACK, PREFERENCES, SENT, SLACK_MESSAGES
from notifier import stages
from notifier.budget import allowance
from notifier.budget_counter import BudgetCounter
from notifier.corrections import Change, Corrections, MessageRef, change_of
from notifier.dedup import ClaimState, DedupStore, Finish, conversation_marker, record_id
from notifier.delivery import Delivery, Posted, SentDM
from notifier.digest import DigestSweeper
from notifier.directory import Directory
from notifier.held import HeldAlerts
from notifier.metrics import CANDIDATE_AGE, CORRECTIONS, DECISION_LATENCY, DECISIONS, END_TO_END, REDIS_UP
from notifier.permissions import Permissions, PermissionUnknown
from notifier.preferences import PreferencesTable
from notifier.rate_limit import TokenBucket
from notifier.settings import NotifierSettings
from notifier.slack_sender import DefiniteSlackError, SlackCallError, SlackSender, TransientSlackError
from notifier.stages import Work

log = logging.getLogger(__name__)

SERVICE = "notifier"
REDIS_ERRORS = REDIS_OUTAGES
OWNER_TTL_S = 15
Clock = Callable[[], float]


REDO_BASE_S, REDO_MAX_S = 0.2, 10.0
"""Backoff between redoes of a batch Slack's permission lookups or Kafka failed (beepgpt.retry)."""

BATCH_DRAIN_S = 30.0
"""How long a stop waits for the batch in hand before the work is left to the next owner."""


class OwnerBusy(Exception):
    """A live instance holds an unfinished claim on a record of this batch: wait for it."""


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
        self._drawn: dict[str, SentDM] = {}
        self._claimed: dict[str, tuple[str, str]] = {}
        self._orphans: dict[str, tuple[str, str]] = {}
        # Counters for operators' logs and for tests that must know a redo really happened.
        self.decided = 0
        self.redone_batches = 0
        self.owner_waits = 0
        self.permission_waits = 0
        runtime = self.runtime = Runtime(SERVICE, ready=self._serving, drain_timeout_s=BATCH_DRAIN_S)
        runtime.step("log", stop=self._log_stopped)  # first registered: its undo runs last
        runtime.step(
            "topics", lambda: ensure_topics(kafka, [CANDIDATES, SENT, PREFERENCES, FEEDBACK, SLACK_MESSAGES])
        )
        runtime.step("clients", self._connect, self._disconnect)
        runtime.add(self._producer, "producer")
        runtime.step("preferences", self._read_preferences, lambda: self.preferences.stop())
        runtime.step("redis", lambda: self._wait_for_redis(None), self._retire)
        runtime.step(
            "redis-safety",
            lambda: check_redis_safety(redis_settings, service=SERVICE, needs_persistence=True),
        )
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
        # Edits and deletions of messages a DM may quote (notifier/corrections.py): a group of its
        # own on slack.messages, so a slow Slack during a redraw never holds up the alerts.
        self.corrections_loop: ConsumerLoop[SlackEvent] = ConsumerLoop(
            runtime,
            kafka,
            group_id=f"{self.settings.group_id}-corrections",
            topic=SLACK_MESSAGES,
            producer=self._producer,
            step=self._correct_until_done,
            poll=Poll(timeout_ms=500, max_records=500),
            name="corrections",
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
        self._redis = redis_client(
            self.redis_settings,
            socket_timeout=settings.redis_timeout_s,
            socket_connect_timeout=settings.redis_timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        prefix = self.redis_settings.key_prefix
        self.dedup = DedupStore(self._redis, prefix, settings.dedup_ttl_s)
        self.bucket = TokenBucket(self._redis, prefix, settings.rate_per_hour / 3600.0, settings.burst)
        self.held = HeldAlerts(self._redis, prefix)
        self.budget = BudgetCounter(self._redis, prefix)
        self.corrections = Corrections(
            self._redis, prefix, change_ttl_s=settings.change_ttl_s, sent_ttl_s=settings.correction_ttl_s
        )
        self._http = aiohttp.ClientSession()
        client = AsyncWebClient(
            token=self.slack.bot_token.get_secret_value() if self.slack.bot_token else None,
            base_url=self.slack.api_url,
            timeout=int(max(1, settings.slack_timeout_s)),
            session=self._http,
            retry_handlers=[],
        )
        self.sender = SlackSender(client, settings)
        self.permissions = Permissions(self.sender, settings.permission_ttl_s)
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
            permissions=self.permissions,
            corrections=self.corrections,
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
        self._drawn.clear()
        self._claimed.clear()
        attempt = 0
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
            except PermissionUnknown as error:
                # Fail closed without losing the candidates: nothing of the batch is decided,
                # its offsets stay uncommitted, and the redo resumes its own claims.
                self.redone_batches += 1
                self.permission_waits += 1
                log.warning(
                    "slack could not say who may read a channel; redoing the batch",
                    extra={"method": error.method, "error": error.error},
                )
                attempt += 1
                await self.loop.idle(backoff_delay(attempt, REDO_BASE_S, REDO_MAX_S))
            except OwnerBusy:
                self.owner_waits += 1
                log.info("waiting for another instance to finish a claim")
                await self.loop.idle(1.0)
            except KafkaError as error:
                self.redone_batches += 1
                log.warning("publishing decisions failed; redoing the batch", extra={"error": str(error)})
                attempt += 1
                await self.loop.idle(backoff_delay(attempt, REDO_BASE_S, REDO_MAX_S))

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
        """Block until Redis takes a write again; nothing is decided or sent meanwhile.

        The probe is the owner heartbeat (a write), not PING: a replica during a failover answers
        PING but refuses writes (READONLY), and work redone against it would fail again at once."""
        assert self._redis is not None
        first = True
        while not self.runtime.stopping:
            try:
                await self.dedup.heartbeat(self.owner, OWNER_TTL_S)
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

    # --- deciding a batch -------------------------------------------------------------------

    def _rid(self, record: ConsumerRecord[bytes, bytes]) -> str:
        return record_id(self.settings.group_id, record.topic, record.partition, record.offset)

    async def handle(self, batch: RecordBatch[Candidate]) -> None:
        """Decide, send and publish one batch (decoded, its poison dead-lettered by the loop),
        stage by stage (`stages`), each stage's Redis round trip done here for the whole batch.
        Raises on Redis/Kafka trouble; safe to redo."""
        now = self.clock()
        received = time.monotonic()
        works = [Work(record, candidate, self._rid(record), received) for record, candidate in batch.values()]

        admitted = stages.admit_stage(works, self.preferences.get, now)
        wanted = stages.controls_stage(admitted.moving, self.preferences.get, now)
        claimed = await self._claim(wanted.moving, now)
        already = stages.to_look_up(claimed.moving)
        found = await self.held.find_many([(w.user, w.conversation_id) for w in already])
        waiting = stages.waiting_stage(
            claimed.moving, {w.rid: a for w, a in zip(already, found, strict=True) if a is not None}, now
        )
        senders, fresh = stages.posted_stage(waiting.moving, self._sent)
        permitted = await self._permit(fresh, now)
        holding = stages.hold_stage(permitted.moving, now)
        delivering = holding.moving
        takes = await self.bucket.take_many([w.user for w in delivering], now)
        allowances = {w.user: allowance(self.preferences.get(w.user), self.settings) for w in delivering}
        asks = stages.budget_asks(delivering, takes, allowances, now)
        answers = await self.budget.take_many(asks, now)
        budgeted = stages.budget_stage(delivering, takes, allowances, asks, answers, now)
        await self.held.hold_many([*holding.holds, *budgeted.holds])
        await self.dedup.finish_many([*waiting.finishes, *holding.finishes, *budgeted.finishes])
        for work in permitted.releases:
            await self.dedup.release(work.user, work.conversation_id, work.rid)

        sent = stages.send_stage(
            await self._send_all([*senders, *budgeted.moving]), now, self.settings.retry_later_s
        )
        await self.held.hold_many(sent.holds)
        await self.dedup.finish_many(sent.finishes)
        for work in sent.releases:
            await self.dedup.release(work.user, work.conversation_id, work.rid)
        await self.budget.refund_many(sent.refunds)

        await self._publish_batch(batch, stages.record_stage(works))

    async def _claim(self, works: list[Work], now: float) -> stages.Claimed:
        """Take the dedup keys (`stages.claim_stage` says what each answer means); a live
        instance's unfinished claim makes the batch wait."""
        claims = [(w.user, w.conversation_id, ClaimState("claim", w.rid, owner=self.owner)) for w in works]
        states = await self.dedup.claim_many(claims)
        alive = await self.dedup.alive(stages.owners_to_ask(works, states, self.owner))
        claimed = stages.claim_stage(works, states, alive, self.owner, now)
        for work in claimed.owned:
            self._claimed[work.rid] = (work.user, work.conversation_id)
        if claimed.busy:
            raise OwnerBusy
        return claimed

    async def _permit(self, works: list[Work], now: float) -> stages.Permitted:
        """Look up who may read what (cached), then `stages.permission_stage` decides; raises
        `PermissionUnknown` when Slack could not answer, so the batch is redone."""
        if not works:
            return stages.Permitted()
        users = await self.permissions.users(w.user for w in works)
        channels = await self.permissions.channels(w.candidate.channel for w in works)
        members = await self.permissions.members(stages.channels_to_list(works, channels, users))
        return stages.permission_stage(works, users, channels, members, now)

    async def _send_all(self, works: list[Work]) -> list[tuple[Work, stages.SendResult]]:
        """Post the DMs concurrently (a DM posted before a redo is not posted again), each drawn
        from its conversation as it is now (`corrections`), and remember what each quotes."""
        gate = asyncio.Semaphore(self.settings.send_concurrency)
        current = await self.corrections.apply([work.candidate for work in works])

        async def one(work: Work, candidate: Candidate) -> tuple[Work, stages.SendResult]:
            posted = self._sent.get(work.rid)
            if posted is not None:
                return work, posted
            async with gate:
                try:
                    posted, drawn = await self.delivery.alert(
                        candidate,
                        conversation_marker(work.user, work.conversation_id),
                        look_first=work.takeover,
                    )
                except DefiniteSlackError as error:
                    self.sender.report_once(error, work.user)
                    return work, stages.SendFailure("failed", error.error, f"slack: {error.error}")
                except TransientSlackError as error:
                    detail = f"slack unavailable ({error.error}); retrying later"
                    return work, stages.SendFailure("retry", error.error, detail)
                except Exception as error:  # a bug must not lose the alert either
                    log.exception("sending an alert failed unexpectedly", extra={"user": work.user})
                    return work, stages.SendFailure(
                        "retry", type(error).__name__, "unexpected error; retrying later"
                    )
            self._sent[work.rid] = posted
            self._drawn[work.rid] = drawn
            return work, posted

        results = list(await asyncio.gather(*(one(w, c) for w, c in zip(works, current, strict=True))))
        # After the posts, outside them: a Redis outage here redoes the batch, which posts nothing
        # again (`_sent`) and remembers what it quoted then.
        remembered = [
            (work, result, drawn)
            for work, result in results
            if isinstance(result, Posted) and (drawn := self._drawn.get(work.rid)) is not None
        ]
        await self.corrections.remember([(posted, drawn) for _, posted, drawn in remembered])
        # A change that came between drawing and remembering found no DM to redraw: look again.
        drawn_from = [d.entries[0][0] for _, _, d in remembered]
        now_current = await self.corrections.apply([w.candidate for w, _, _ in remembered])
        for (_, posted, _), used, now in zip(remembered, drawn_from, now_current, strict=True):
            if now != used:
                await self._redraw(posted)
        return results

    # --- corrections: quoted messages edited or deleted after a DM ----------------------------

    async def _correct_until_done(self, batch: RecordBatch[SlackEvent]) -> None:
        """Remember the batch's edits and deletions and redraw the DMs quoting them; a Redis
        outage waits and redoes it (the batch's offsets are committed only once it is done)."""
        changes: dict[MessageRef, Change] = {}
        for _, event in batch.values():
            if isinstance(event, SlackMessage) and (change := change_of(event)) is not None:
                changes[(event.channel, event.ts)] = change
        while changes:
            if self.runtime.stopping:
                raise LeaveUncommitted
            try:
                for posted in (await self.corrections.record(changes)).values():
                    await self._redraw(posted)
                return
            except REDIS_ERRORS as error:
                await self._wait_for_redis(error)

    async def _redraw(self, posted: Posted) -> None:
        """Draw a sent DM again from its conversations as they are now, and update it in Slack."""
        sent = await self.corrections.sent(posted)
        if sent is None:
            return  # older than the correction window
        current = await self.corrections.apply([candidate for candidate, _ in sent.entries])
        redrawn = sent.model_copy(
            update={"entries": [(c, marker) for c, (_, marker) in zip(current, sent.entries, strict=True)]}
        )
        try:
            await self.delivery.update(posted, await self.delivery.draw(redrawn))
        except SlackCallError as error:  # deleted by its reader, or Slack refuses: nothing to fix
            CORRECTIONS.labels("failed").inc()
            log.info("a DM could not be corrected", extra={"user": sent.user, "error": error.error})
            return
        CORRECTIONS.labels("redrawn").inc()

    async def _publish_batch(
        self, batch: RecordBatch[Candidate], decided: list[tuple[Work, Notification]]
    ) -> None:
        for work, decision in decided:
            trace = header(work.record.headers, TRACE_ID)
            await batch.send(SENT, work.user, decision, trace_id=trace)
        await batch.flush()
        done = time.monotonic()
        now = self.clock()
        for work, decision in decided:
            DECISIONS.labels(decision.outcome).inc()
            DECISION_LATENCY.observe(done - work.received)
            CANDIDATE_AGE.observe(max(0.0, now - work.candidate.created_at))
            with contextlib.suppress(ValueError):
                END_TO_END.observe(max(0.0, now - float(work.candidate.latest_ts)))
        self.decided += len(decided)

    async def _publish(self, decisions: Sequence[Notification]) -> None:
        """Publish decisions made outside a batch (digests) and wait for the broker."""
        futures = [await self._producer.send_soon(SENT, d.user, d) for d in decisions]
        await asyncio.gather(*futures)

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
