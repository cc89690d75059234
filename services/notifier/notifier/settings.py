"""The notifier's own knobs (`BEEPGPT_NOTIFIER_*`), beside the shared Kafka/Redis/Slack settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from beepgpt.settings import AlertDefaults


class NotifierSettings(AlertDefaults):
    """Limits that shape how often a person is interrupted and how hard we try to reach them.

    Inherited: `daily_budget` (real-time DMs a person gets a day, 3; what is over it waits for
    their next digest time) and `digest_times` (09:00, 13:00, 17:00 in their time zone) for
    everyone who has not chosen their own with `/beep budget` / `/beep digest`.
    """

    model_config = SettingsConfigDict(env_prefix="BEEPGPT_NOTIFIER_")

    group_id: str = "notifier"
    # "At most one DM per (user, conversation) ever": ever is bounded by Redis memory; a
    # conversation that resurfaces after a month is news again.
    dedup_ttl_s: int = Field(default=30 * 24 * 3600, ge=60)
    # Token bucket per user: `burst` DMs at once, refilled at `rate_per_hour`.
    rate_per_hour: float = Field(default=6.0, gt=0)
    burst: int = Field(default=3, ge=1)
    # How often each instance looks for digests that are due (held alerts whose window ended).
    digest_poll_s: float = Field(default=15.0, gt=0)
    digest_max_items: int = Field(default=10, ge=1, le=15)
    # Kafka batch size: a batch is decided with a handful of Redis round trips, but its
    # decisions are published only once its DMs are sent, so a big batch full of DMs is slow
    # to finish (bench: 250 keeps p99 under a second in a burst of DMs at >2,000 candidates/s).
    max_batch: int = Field(default=250, ge=1)
    send_concurrency: int = Field(default=32, ge=1)
    # Slack calls: per-request timeout, then backoff with full jitter between attempts.
    slack_timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=6, ge=1)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=30.0, gt=0)
    # A 429 storm longer than this parks the alert for the retry sweep instead of blocking on it.
    max_rate_limited_wait_s: float = Field(default=600.0, gt=0)
    # After the attempts are spent, a transiently failed alert is retried by the sweep this late.
    retry_later_s: float = Field(default=60.0, gt=0)
    preview_lines: int = Field(default=4, ge=1, le=10)
    directory_ttl_s: float = Field(default=3600.0, gt=0)
    # Who may read what (users.info, conversations.info / .members), remembered this long: a
    # guest made a full member, or someone removed from a private channel, counts after it.
    permission_ttl_s: float = Field(default=600.0, gt=0)
    # Quoted messages as they are now (notifier/corrections.py): an edit or deletion of a quoted
    # message is remembered this long (past the longest pause, 30 days, so a held alert finds
    # it), and a sent DM is redrawn when a message it quotes changes within this long of it.
    change_ttl_s: int = Field(default=31 * 24 * 3600, ge=60)
    correction_ttl_s: int = Field(default=7 * 24 * 3600, ge=60)
    redis_probe_s: float = Field(default=0.5, gt=0)
    redis_timeout_s: float = Field(default=2.0, gt=0)
