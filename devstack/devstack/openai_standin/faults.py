"""Failures on demand: rate limits (429 with `Retry-After`) and server errors, by request path."""

from __future__ import annotations

import fnmatch
import itertools
import threading
from dataclasses import dataclass
from typing import Any


@dataclass
class Fault:
    """Answer requests whose path matches `path` (shell pattern) with `status`, `times` times
    (None: until removed). A 429 carries `Retry-After: retry_after` (seconds)."""

    id: int
    path: str = "*"
    status: int = 429
    retry_after: float | None = 0.0
    times: int | None = 1
    hits: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times

    def response(self) -> tuple[int, dict[str, Any], dict[str, str]]:
        headers: dict[str, str] = {}
        if self.status == 429:
            kind, code, message = "requests", "rate_limit_exceeded", "Rate limit reached (stand-in fault)"
            if self.retry_after is not None:
                headers["retry-after"] = f"{self.retry_after:g}"
        else:
            kind, code, message = "server_error", None, "The server had an error (stand-in fault)"
        return (
            self.status,
            {"error": {"message": message, "type": kind, "param": None, "code": code}},
            headers,
        )

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


class Faults:
    """Active faults, consulted in the order they were added (thread-safe: tests add them from
    their own thread while the server runs in another)."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def add(
        self, path: str = "*", *, status: int = 429, retry_after: float | None = 0.0, times: int | None = 1
    ) -> Fault:
        if not 400 <= status <= 599:
            raise ValueError(f"a fault answers an error status, not {status}")
        with self._lock:
            fault = Fault(next(self._ids), path, status, retry_after, times)
            self._faults.append(fault)
            return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, path: str) -> Fault | None:
        """The first live fault for `path`, counted as used."""
        with self._lock:
            for fault in self._faults:
                if not fault.exhausted and fnmatch.fnmatchcase(path, fault.path):
                    fault.hits += 1
                    return fault
        return None

    def to_list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults]
