"""Failures on demand: rate limits, server errors, slow answers and Slack errors.

The notifier must survive a 429 storm, 5xx answers, timeouts and per-user errors without losing or
duplicating a DM, and `beepgpt import --from-slack` a storm of 429s in the middle of an export and
a hard failure after some pages; these are the knobs their tests turn. A fault matches by method
name (shell-style pattern) and optionally by request arguments, and fires a limited number of
times: it can let the first `after` matching calls through (a failure N pages in) and fire on
every `every`-th matching call only (a storm that lets some calls through, as Slack's does).
"""

from __future__ import annotations

import fnmatch
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_DEFAULT_ERRORS = {
    429: "ratelimited",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


@dataclass
class Fault:
    """One injected failure.

    - `status=429` answers `{"ok": false, "error": "ratelimited"}` with `Retry-After` (seconds).
    - `status=5xx` answers that status with a Slack-shaped error body.
    - `error="channel_not_found"` alone answers HTTP 200 with that Slack error.
    - `delay` alone makes the call slow and then carries it out, like a Slack request whose answer
      came too late for the client: retrying it is how duplicates happen. With a status or an
      error the delay comes first and the call is not carried out.
    """

    id: int
    method: str = "*"
    status: int | None = None
    error: str | None = None
    retry_after: int | None = None
    delay: float = 0.0
    times: int | None = 1
    args: Mapping[str, str] = field(default_factory=dict)
    after: int = 0
    every: int = 1
    hits: int = 0
    seen: int = 0  # matching calls, fired or let through

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    @property
    def fails(self) -> bool:
        return self.status is not None or self.error is not None

    def matches(self, method: str, args: Mapping[str, Any]) -> bool:
        if self.exhausted or not fnmatch.fnmatchcase(method, self.method):
            return False
        return all(str(args.get(k, "")) == str(v) for k, v in self.args.items())

    def fires(self) -> bool:
        """Count one matching call; whether this one is answered with the fault (past the first
        `after` calls, on every `every`-th one)."""
        self.seen += 1
        beyond = self.seen - self.after
        return beyond > 0 and (beyond - 1) % self.every == 0

    def response(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        """HTTP status, JSON body and headers to answer with."""
        status = self.status or 200
        error = self.error or _DEFAULT_ERRORS.get(status, "internal_error")
        headers: dict[str, str] = {}
        if status == 429:
            headers["Retry-After"] = str(self.retry_after if self.retry_after is not None else 1)
        return status, {"ok": False, "error": error}, headers

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "method": self.method,
            "status": self.status,
            "error": self.error,
            "retry_after": self.retry_after,
            "delay": self.delay,
            "times": self.times,
            "args": dict(self.args),
            "after": self.after,
            "every": self.every,
            "hits": self.hits,
        }


class Faults:
    """The active faults, consulted in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)

    def add(
        self,
        method: str = "*",
        *,
        status: int | None = None,
        error: str | None = None,
        retry_after: int | None = None,
        delay: float = 0.0,
        times: int | None = 1,
        args: Mapping[str, str] | None = None,
        after: int = 0,
        every: int = 1,
    ) -> Fault:
        """e.g. `faults.add(method="chat.postMessage", status=429, retry_after=1, times=5)`;
        `times=None` keeps the fault until it is removed; `after=3` lets the first three matching
        calls through; `every=2` fires on every other matching call (`times` counts firings)."""
        if status is None and error is None and delay <= 0:
            raise ValueError("a fault needs a status, an error or a delay")
        if after < 0 or every < 1:
            raise ValueError("after must be 0 or more and every 1 or more")
        if status is not None and not 200 <= status <= 599:
            raise ValueError(f"unexpected HTTP status {status}")
        if retry_after is not None and status is None:
            status = 429
        fault = Fault(
            id=next(self._ids),
            method=method,
            status=status,
            error=error,
            retry_after=retry_after,
            delay=delay,
            times=times,
            args=dict(args or {}),
            after=after,
            every=every,
        )
        self._faults.append(fault)
        return fault

    def rate_limit(self, method: str, *, times: int = 1, retry_after: int = 1) -> Fault:
        return self.add(method, status=429, retry_after=retry_after, times=times)

    def rate_limit_storm(
        self, method: str = "conversations.*", *, times: int | None = 50, every: int = 2, retry_after: int = 0
    ) -> Fault:
        """A storm: `times` answers of 429 (None: until removed) with `Retry-After`, on every `every`-th call of the
        matching methods, so that work goes on between them and a client must wait out each."""
        return self.add(method, status=429, retry_after=retry_after, times=times, every=every)

    def take(self, method: str, args: Mapping[str, Any]) -> Fault | None:
        """The first matching fault, counted as used."""
        for fault in self._faults:
            if fault.matches(method, args) and fault.fires():
                fault.hits += 1
                return fault
        return None

    def remove(self, fault: Fault) -> None:
        self._faults = [f for f in self._faults if f.id != fault.id]

    def clear(self) -> None:
        self._faults.clear()

    @property
    def active(self) -> list[Fault]:
        return [f for f in self._faults if not f.exhausted]

    def __len__(self) -> int:
        return len(self.active)
