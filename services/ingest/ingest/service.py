"""The ingest service: wires Kafka, dedup, the buffer, the Bolt app and its adapter.

Its start-up steps run through the shared runtime (`beepgpt.runtime`), which also serves the ops
endpoints and handles signals when ingest runs as a process. Start order: topics and producer,
dedup, publisher, Slack identity (auth.test), Bolt app, and only then the adapter that lets Slack
in. Stop order is the reverse of taking work: the adapter first (no new deliveries), then the
buffer drains to Kafka, then the producer flushes and closes (docs/operations.md: finish
in-flight work, close). Each of those steps bounds itself (`shutdown_timeout_s`) and the drain
counts what it could not deliver (`lost`), rather than a grace period cutting the shutdown short.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from slack_sdk.web.async_client import AsyncWebClient

from beepgpt.kafka import EventProducer, ensure_topics
from beepgpt.redis_client import check_redis_safety
from beepgpt.runtime import Resource, Runtime
from beepgpt.settings import KafkaSettings, RedisSettings, ServiceSettings, SlackSettings
from beepgpt.topics import SLACK_MESSAGES
from ingest.bolt_app import BotIdentity, build_app
from ingest.dedup import Dedup, MemoryDedup, RedisDedup
from ingest.http_events import HttpEventsAdapter
from ingest.intake import SOURCE, Intake
from ingest.listeners import Register
from ingest.normalize import Rules
from ingest.publisher import Publisher
from ingest.settings import IngestSettings
from ingest.socket_mode import SocketModeAdapter

log = logging.getLogger(__name__)


# Collect the young generation every 50,000 net allocations instead of CPython's 700 (and the
# older ones after 20 of those, not 10). See `tune_garbage_collector`.
GC_THRESHOLDS = (50_000, 20, 20)


def tune_garbage_collector() -> None:
    """Make the cyclic garbage collector cheap for a service with thousands of waiting deliveries.

    Every delivery waits (a suspended task holding its request, context and record) until Kafka
    has its record, so at a few thousand events/s thousands of live objects outlive each young
    collection, and CPython's default thresholds then run collections, full ones included, every
    few hundred events: measured at a third of the CPU per event in `bench.ingest`. Freezing
    what start-up allocated (modules, the Bolt app, pydantic schemas: never garbage) keeps it out
    of full collections, and larger thresholds collect less often; memory in reference cycles
    waits a little longer to be freed. Call once, after start-up.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class ConfigurationError(Exception):
    """A required setting (usually a secret) is missing; the message names it, never its value."""


@dataclass
class IngestService:
    ingest: IngestSettings = field(default_factory=IngestSettings)
    kafka: KafkaSettings = field(default_factory=KafkaSettings)
    slack: SlackSettings = field(default_factory=SlackSettings)
    redis: RedisSettings = field(default_factory=RedisSettings)
    service: ServiceSettings = field(default_factory=ServiceSettings)
    extra_listeners: Sequence[Register] = ()
    companions: Sequence[Resource] = ()
    """Started before ingest takes anything and stopped after it: what `extra_listeners` need
    (the Slack experience's preferences table is loaded before the app takes its first command)."""

    def __post_init__(self) -> None:
        self.producer: EventProducer | None = None
        self.dedup: Dedup | None = None
        self.publisher: Publisher | None = None
        self.intake: Intake | None = None
        self.identity: BotIdentity | None = None
        self.adapter: SocketModeAdapter | HttpEventsAdapter | None = None
        self.lost = 0
        """Events accepted but never published, counted by the last stop (0 normally)."""
        runtime = self.runtime = Runtime("ingest", ready=self._taking_events)
        runtime.step("log", stop=self._log_stopped)  # first registered: its undo runs last
        for companion in self.companions:
            runtime.add(companion)
        runtime.step("secrets", self._check_secrets)
        runtime.step(
            "redis-safety",
            lambda: check_redis_safety(
                self.redis, service="ingest", needs_persistence=False, all_keys_expire=True
            ),
        )
        runtime.step("kafka", self._start_kafka, self._stop_kafka)
        runtime.step("publisher", self._start_publisher, self._drain)
        runtime.step("slack", self._connect_slack, self._disconnect_slack)
        runtime.step("started", self._log_started)

    def _secrets(self) -> tuple[str, str, str]:
        bot = self.slack.bot_token.get_secret_value() if self.slack.bot_token else ""
        app = self.slack.app_token.get_secret_value() if self.slack.app_token else ""
        signing = self.slack.signing_secret.get_secret_value() if self.slack.signing_secret else ""
        if not bot:
            raise ConfigurationError("SLACK_BOT_TOKEN is not set (needed for auth.test)")
        if self.ingest.mode == "socket" and not app:
            raise ConfigurationError("SLACK_APP_TOKEN (xapp-...) is not set; Socket Mode needs it")
        if self.ingest.mode == "http" and not signing:
            raise ConfigurationError("SLACK_SIGNING_SECRET is not set; the HTTP Events API needs it")
        return bot, app, signing

    async def start(self) -> None:
        """Every start-up step; one that fails undoes those before it and raises."""
        await self.runtime.start()

    async def stop(self) -> int:
        """Stop taking events, drain the buffer to Kafka, close. Returns events lost (0 normally)."""
        await self.runtime.stop()
        return self.lost

    # --- start-up steps and their undo -----------------------------------------------------------

    async def _check_secrets(self) -> None:
        self._bot_token, self._app_token, self._signing_secret = self._secrets()

    async def _start_kafka(self) -> None:
        await ensure_topics(self.kafka, [SLACK_MESSAGES])
        self.producer = EventProducer(self.kafka, SOURCE)
        await self.producer.start()
        self.dedup = self._make_dedup()
        if not await self.dedup.ping():
            log.warning("dedup store unreachable at start; events will wait in the buffer")

    async def _stop_kafka(self) -> None:
        producer, self.producer = self.producer, None
        dedup, self.dedup = self.dedup, None
        if producer is not None:
            try:
                await asyncio.wait_for(producer.stop(), self.service.shutdown_timeout_s)
            except TimeoutError:
                log.error("Kafka producer did not close in time")
        if dedup is not None:
            await dedup.close()

    async def _start_publisher(self) -> None:
        assert self.producer is not None
        assert self.dedup is not None
        self.publisher = Publisher(
            self.producer,
            self.dedup,
            capacity=self.ingest.buffer_size,
            batch_size=self.ingest.batch_size,
            backoff_max_s=self.ingest.publish_backoff_max_s,
            ack_budget_s=self.ingest.ack_budget_s,
        )
        await self.publisher.start()

    async def _drain(self) -> None:
        publisher, self.publisher = self.publisher, None
        if publisher is not None:
            log.info("draining buffer", extra={"depth": publisher.depth})
            self.lost += await publisher.stop(self.service.shutdown_timeout_s)

    async def _connect_slack(self) -> None:
        assert self.publisher is not None
        web = AsyncWebClient(token=self._bot_token, base_url=self.slack.api_url)
        self.identity = await BotIdentity.fetch(web, self.ingest.auth_timeout_s)
        rules = Rules.from_settings(
            self.ingest, bot_users=frozenset(u for u in (self.identity.bot_user_id,) if u)
        )
        self.intake = Intake(self.publisher, rules, max_record_bytes=self.kafka.max_request_size)
        app = build_app(
            self.intake,
            self.identity,
            signing_secret=self._signing_secret,
            api_url=self.slack.api_url,
            extra_listeners=self.extra_listeners,
        )
        if self.ingest.mode == "socket":
            self.adapter = SocketModeAdapter(app, self.intake, self._app_token, self.slack.api_url)
        else:
            self.adapter = HttpEventsAdapter(
                app,
                self.intake,
                signing_secret=self._signing_secret,
                host=self.ingest.http_host,
                port=self.ingest.http_port,
                path=self.ingest.http_path,
                max_body_bytes=self.ingest.max_body_bytes,
            )
        await self.adapter.start()

    async def _disconnect_slack(self) -> None:
        adapter, self.adapter = self.adapter, None
        if adapter is not None:
            await adapter.stop()

    async def _log_started(self) -> None:
        assert self.identity is not None
        log.info(
            "ingest started",
            extra={
                "mode": self.ingest.mode,
                "team": self.identity.team_id,
                "bot_user": self.identity.bot_user_id,
            },
        )

    async def _log_stopped(self) -> None:
        log.info("ingest stopped", extra={"lost": self.lost})

    def _make_dedup(self) -> Dedup:
        if self.ingest.dedup == "redis":
            return RedisDedup(self.redis, self.ingest.dedup_ttl_s)
        log.warning("in-memory dedup: retries reaching another instance or a restarted one are not caught")
        return MemoryDedup(self.ingest.dedup_ttl_s, self.ingest.dedup_memory_entries)

    def ready(self) -> bool:
        """Taking events and able to pass them on: adapter up, buffer not full, Kafka/Redis answering."""
        return self.runtime.ready

    def _taking_events(self) -> bool:
        return (
            self.adapter is not None
            and self.adapter.ready
            and self.publisher is not None
            and self.publisher.healthy
            and self.publisher.accepting
        )

    @property
    def http_port(self) -> int | None:
        return self.adapter.port if isinstance(self.adapter, HttpEventsAdapter) else None
