"""The ingest service's own settings (`BEEPGPT_INGEST_*`), beside the shared Kafka/Slack/Redis ones."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from beepgpt.contracts import MAX_TEXT_CHARS

# Slack truncates message text at 40,000 characters; anything longer never came from a real
# client, and keeping it whole would only blow up Kafka record sizes downstream. The contract
# holds the bound (`beepgpt.contracts.MAX_TEXT_CHARS`); ingest cuts to it, or to less.
SLACK_MAX_TEXT_CHARS = MAX_TEXT_CHARS


MAX_BODY_BYTES = 1024 * 1024
"""1 MiB: the default limit on an HTTP request's body (`BEEPGPT_INGEST_MAX_BODY_BYTES`)."""


class IngestSettings(BaseSettings):
    """How Slack reaches this service and how much it may hold while Kafka is slow."""

    model_config = SettingsConfigDict(env_prefix="BEEPGPT_INGEST_")

    # Socket Mode needs no public endpoint, so it is the default; HTTP suits a load balancer.
    mode: Literal["socket", "http"] = "socket"
    http_host: str = "0.0.0.0"
    http_port: int = Field(default=3000, ge=0, le=65535)
    http_path: str = "/slack/events"
    # Larger HTTP bodies get 413 before anything is read into memory or checked. Slack's own
    # payloads stay far below it (a message's text is at most 40,000 characters, its blocks about
    # as much again); anything bigger is not an event Slack sends.
    max_body_bytes: int = Field(default=MAX_BODY_BYTES, ge=1024)

    # Slack gets its ack once Kafka has the event's record, or after this many seconds if Kafka
    # (or Redis) is slower: Slack gives up after 3 s, so stay well inside that. 0 acks at once
    # (fastest acks, but a killed process loses what it acked and had not published yet).
    ack_budget_s: float = Field(default=2.0, ge=0, lt=3.0)
    # Events taken but not yet acknowledged by Kafka. When it is full, new events are refused
    # (HTTP 503 / no Socket Mode ack) so that Slack redelivers them later.
    buffer_size: int = Field(default=20_000, ge=1)
    batch_size: int = Field(default=1_000, ge=1)
    publish_backoff_max_s: float = Field(default=2.0, gt=0)

    # Where "have we seen this event_id?" is decided: Redis is shared by every instance and
    # survives restarts; memory is for a single local process only.
    dedup: Literal["redis", "memory"] = "redis"
    # Slack retries an event three times: at once, after 1 minute and after 5 minutes. An hour
    # covers that with room; Redis then holds about (events/s × ttl) small keys.
    dedup_ttl_s: int = Field(default=3600, ge=60)
    dedup_memory_entries: int = Field(default=200_000, ge=1)

    max_text_chars: int = Field(default=SLACK_MAX_TEXT_CHARS, ge=1, le=MAX_TEXT_CHARS)
    # Private channels (Slack's `channel_type: group`) are not read unless this says so: a DM
    # quoting one could show it to someone who is not a member. DMs and group DMs are never read.
    # The same setting decides what `beepgpt import` reads (groups.json and its folders).
    private_channels: bool = False
    # How long start-up keeps retrying auth.test before giving up (Slack or the token is wrong).
    auth_timeout_s: float = Field(default=60.0, gt=0)


class ImportSettings(BaseSettings):
    """Limits `beepgpt import` puts on an export (`BEEPGPT_IMPORT_*`): it is a file someone handed
    over, and a zip's members can expand to far more than the zip (a 204 KB zip of one repeated
    byte is 400 MB read whole), so every member is read under a limit, checked against the size the
    zip declares and again while inflating (a declared size can lie)."""

    model_config = SettingsConfigDict(env_prefix="BEEPGPT_IMPORT_")

    # One day file of one channel: Slack's busiest channels write a few MB a day; 64 MiB leaves
    # room without letting one member take the machine's memory.
    max_member_bytes: int = Field(default=64 * 1024 * 1024, ge=1)
    # Everything read from one export, metadata included: the largest exports seen are a few GB.
    max_total_bytes: int = Field(default=4 * 1024 * 1024 * 1024, ge=1)
    # Uncompressed / compressed size of a zip member; JSON compresses 5-20x, a zip bomb 1000x.
    max_compression_ratio: float = Field(default=200.0, gt=1)
