"""The sessionizer's own settings (`BEEPGPT_SESSIONIZER_*`), beside the shared Kafka/service ones.

The conversation rules (gap, thread idle time, window size) are settings rather than constants
because training on history must use exactly the values the live service runs with.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

Mode = Literal["gap", "linked"]
"""How a channel's flow (messages outside threads) becomes conversations (docs/conversations.md)."""


class SessionizerSettings(BaseSettings):
    """Conversation rules (docs/conversations.md) and how the live service drives and checkpoints them."""

    model_config = SettingsConfigDict(env_prefix="BEEPGPT_SESSIONIZER_", populate_by_name=True)

    # --- the rules, shared by history and live ---------------------------------------------------
    conversations: Mode = Field(
        default="gap",
        validation_alias="BEEPGPT_CONVERSATIONS",
        description="gap: a flow conversation ends after gap_s of channel silence; linked: the reply "
        "linker puts each flow message in the conversation of the message it answers, and a "
        "conversation closes after linked_idle_s of its own silence. BEEPGPT_CONVERSATIONS, without "
        "the sessionizer's prefix: `beepgpt conversations` and the evaluation read it as their "
        "default too, so history is built the way the service runs",
    )
    linked_idle_s: float = Field(
        default=1_800.0,
        gt=0,
        description="linked mode: silence that closes a linked conversation, on its own clock. "
        "Shorter than the linker's window (4 hours in the shipped model): a message whose best "
        "candidate's conversation has closed starts one of its own (feeder.LinkedFlow), and a "
        "replay refills the linker's window from before its cut so that it decides the same",
    )
    gap_s: float = Field(default=600.0, gt=0, description="channel silence that ends a conversation")
    thread_idle_s: float = Field(default=1_800.0, gt=0, description="silence that closes a thread")
    max_messages: int = Field(default=20, ge=1, description="latest messages an event carries")
    context_messages: int = Field(default=5, ge=1, description="messages by others in a training prompt")
    thread_resume_s: float = Field(
        default=21_600.0,
        ge=0,
        description="how long a closed thread is remembered, so a reply continues it whole",
    )
    remembered_parents: int = Field(
        default=10_000,
        ge=0,
        description="recent channel messages each partition remembers so that a thread started "
        "live by a reply begins with its parent, as it does in history (none older than "
        "thread_resume_s; about 700 bytes each)",
    )

    # --- the live service --------------------------------------------------------------------------
    group_id: str = "beepgpt-sessionizer"
    clock: Literal["wall", "events"] = Field(
        default="wall",
        description="what heartbeats carry: wall-clock time, or the newest record time seen (replays)",
    )
    heartbeat_s: float = Field(
        default=0.2,
        gt=0,
        description="how often heartbeats move event time; a live query releases a message's "
        "update only when a later row arrives, so on a quiet channel this bounds how long an "
        "early alert waits (a one-row add per partition: cheap)",
    )
    heartbeat_delay_s: float = Field(
        default=2.0,
        ge=0,
        description="heartbeats trail the wall clock by this much, so slightly delayed messages keep their times",
    )
    commit_interval_s: float = Field(default=5.0, gt=0)
    rebuild_after_closed: int = Field(
        default=50_000,
        ge=1,
        description="closed conversations after which a partition's query is rebuilt to release their state",
    )
    max_batch: int = Field(default=2_000, ge=1, description="records fed to the query at once")
    gc_thresholds: tuple[int, int, int] = Field(
        default=(100_000, 50, 1_000),
        description="Python's cyclic garbage collector thresholds (gc.set_threshold) for the service "
        "process. Python's default (700, 10, 10) runs a collection every 700 allocations, and the "
        "service allocates several objects per message: measured in `python -m bench "
        "sessionizer`, 85-99 µs of CPU per message with the default, 72-83 with these, memory "
        "as flat. Reference counting still frees all but cyclic garbage at once.",
    )
