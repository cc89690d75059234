"""The scorer service's configuration, from `BEEPGPT_SCORER_*` environment variables.

Thresholds default to None, meaning "whatever the model directory says": the models issue picks
them from measured precision/recall and records them beside the weights, so a setting here is an
operator's override, not the place a default is guessed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from scorer.pipeline import MAX_INTEREST_CANDIDATES

ScorerName = Literal["interest", "topic"]
ScoreOn = Literal["updated", "closed", "both"]


class ScorerSettings(BaseSettings):
    """What the scorer runs, on which events, and how hard it works per batch."""

    model_config = SettingsConfigDict(env_prefix="BEEPGPT_SCORER_")

    group_id: str = "scorer"
    # The Scorer implementation, as `module:async_callable(settings) -> Scorer`. The default runs
    # the trained models of `model_dir`; another implementation (a rules-only scorer, the
    # deterministic one the service tests run in a subprocess) plugs in here without code changes.
    factory: str = "scorer.scoring:build"
    scorers: frozenset[ScorerName] = frozenset({"interest", "topic"})
    # `updated` alerts while the conversation is still going; the notifier's (user, conversation)
    # dedup makes the repeated candidates of later updates harmless.
    score_on: ScoreOn = "updated"
    interest_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    topic_threshold: float | None = Field(default=None, ge=-1.0, le=1.0)
    max_interest_candidates: int = Field(default=MAX_INTEREST_CANDIDATES, ge=0)
    model_dir: Path = Path("models/demo")
    model_poll_s: float = Field(default=30.0, gt=0)
    # Records taken from Kafka per batch; the model calls of the whole batch go together.
    batch_size: int = Field(default=64, ge=1)
    # Under load a batch often holds several updates of one busy conversation; scoring only the
    # newest spares the models work nobody would see. Off, every event is scored (the benchmark
    # turns it off to measure the cost per message honestly).
    coalesce: bool = True
    # An idle poll waits this long for a first record (a batch with records waits no longer than
    # `batch_linger_ms`), and it bounds how long SIGTERM waits for the loop to notice.
    poll_ms: int = Field(default=200, ge=1)
    # Once a poll returned records, wait up to this long for more to fill the batch: the model
    # costs per call as well as per message (bfloat16 converts the weights on every call), and
    # under load a full batch is worth a few milliseconds; idle, an alert waits at most this long.
    batch_linger_ms: int = Field(default=20, ge=0)
    cache_max_messages: int = Field(default=50_000, ge=1)
    max_attempts: int = Field(default=4, ge=1)
    retry_backoff_s: float = Field(default=0.5, ge=0)
    retry_backoff_max_s: float = Field(default=10.0, ge=0)
    preview_lines: int = Field(default=3, ge=0)
    # Bots are never candidates: these user ids (Slack's own, BeepGPT's bot user), and any `B…` id.
    bot_users: frozenset[str] = frozenset({"USLACKBOT"})
    preferences_ready_timeout_s: float = Field(default=60.0, gt=0)
    # Follow the `feedback` topic so that "useful / not useful" clicks move each follower's
    # topic line (the Kafka settings come from the environment, as the service's own do).
    learn_from_feedback: bool = True
    # A rebalance waits this long for the batch in hand; a commit gives up after this long. Both
    # bound what would otherwise be a wait on each other (the batch's commit needs the group,
    # the group's rebalance waits for the batch); giving up costs only a re-scored batch.
    rebalance_wait_s: float = Field(default=10.0, gt=0)
    commit_timeout_s: float = Field(default=10.0, gt=0)

    def scores(self, kind: str) -> bool:
        """Whether an event of this kind (`updated` or `closed`) is scored."""
        return self.score_on == "both" or self.score_on == kind
