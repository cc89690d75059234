"""The notifier's delivery rules as the replay models them, in plain Python.

Live, these rules run in Redis (a Lua token bucket, a per-day budget counter, dedup keys shared
by every notifier instance); `beepgpt eval alerts` cannot run a Redis per threshold, so it applies
the same arithmetic here. What is modelled:

- one DM per person and conversation (the notifier's dedup key: a person hears of a
  conversation once, whichever of its updates reached them first);
- the token bucket: `burst` DMs at once, refilled at `rate_per_hour` (notifier defaults);
- the daily budget: at most `daily_budget` real-time DMs per person per day (UTC days here; the
  notifier counts the person's local day);
- an alert the bucket or the budget holds back goes into a digest: it is counted as held, not as
  a real-time DM, and it still marks the conversation as told. As in the notifier, a token is
  taken before the budget is looked at, and an alert the bucket refuses on a day whose budget is
  spent is over budget, not rate limited.

Not modelled: quiet hours and pauses (nobody has set any in a replay), Slack failures.
`tests/offline/test_offline_alert_policy.py` runs the same decisions through the notifier's
Redis scripts and asserts both agree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from beepgpt.contracts import DEFAULT_DAILY_BUDGET

Decision = Literal["sent", "deduplicated", "rate_limited", "over_budget"]

DAY_S = 86_400.0


@dataclass(frozen=True)
class PolicySettings:
    rate_per_hour: float = 6.0
    burst: int = 3
    daily_budget: int | None = DEFAULT_DAILY_BUDGET
    """real-time DMs per person per day; None: no budget"""


@dataclass
class DeliveryPolicy:
    settings: PolicySettings = field(default_factory=PolicySettings)
    _told: set[tuple[str, str]] = field(default_factory=set)
    _buckets: dict[str, tuple[float, float]] = field(default_factory=dict)
    _days: dict[tuple[str, int], int] = field(default_factory=dict)

    def decide(self, user: str, subject: str, now: float) -> Decision:
        key = (user, subject)
        if key in self._told:
            return "deduplicated"
        self._told.add(key)
        budget = self.settings.daily_budget
        day = (user, int(now // DAY_S))
        spent = budget is not None and self._days.get(day, 0) >= budget
        if not self._take_token(user, now):
            # the notifier: a day's budget already spent wins over the bucket (the alert waits
            # for the digest time, rather than a catch-up digest minutes later)
            return "over_budget" if spent else "rate_limited"
        if spent:
            return "over_budget"
        self._days[day] = self._days.get(day, 0) + 1
        return "sent"

    def _take_token(self, user: str, now: float) -> bool:
        """The notifier's Lua bucket (`notifier.rate_limit`), step for step."""
        rate = self.settings.rate_per_hour / 3600.0
        burst = float(self.settings.burst)
        tokens, ts = self._buckets.get(user, (burst, now))
        if now > ts:
            tokens = min(burst, tokens + (now - ts) * rate)
            ts = now
        allowed = tokens >= 1
        if allowed:
            tokens -= 1
        self._buckets[user] = (tokens, ts)
        return allowed
