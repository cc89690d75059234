"""Which offset of a partition is safe to commit, and what a replay from it must not repeat.

The committed offset is where the next owner of the partition (this process after a restart,
another instance after a rebalance) replays from, so it has to be a *clean cut*: every
conversation that may still change starts at or after it, and no conversation straddles it.
A cut inside a closed conversation would make the replay rebuild that conversation's tail as a
conversation of its own (a channel conversation with the wrong first message).

The commit's metadata carries two marks, so the replay does not publish again what was
published: `processed` (rows below it had their `updated` events published) and `closed_until`
(closes up to that event time were published). In linked mode a third, `linker_from`, is where
the replay starts reading: the records from there up to the committed offset only refill the
reply linker's window (`feeder.Feeder.warm`), so every replayed message is linked over the
window it had the first time (`feeder.LinkedFlow`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass

from sessionizer.conversation import Span

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayMarks:
    """What was published before the replay starts: see the module docstring."""

    processed: int = -1
    closed_until_ns: int = -1
    linker_from: int = -1
    """Linked mode: the first record the reply linker's window needs (-1: none before the cut)."""

    def encode(self) -> str:
        return json.dumps(
            {"processed": self.processed, "closed_until_ns": self.closed_until_ns, "linker_from": self.linker_from}
        )

    @classmethod
    def decode(cls, metadata: str | None) -> ReplayMarks:
        """Marks from commit metadata; anything unreadable means "nothing known", never an error."""
        if not metadata:
            return cls()
        try:
            data = json.loads(metadata)
            # Marks written before linked mode had `linker_from`: no window to refill.
            return cls(int(data["processed"]), int(data["closed_until_ns"]), int(data.get("linker_from", -1)))
        except (ValueError, KeyError, TypeError):
            log.warning(
                "unreadable commit metadata, replaying without suppression", extra={"metadata": metadata}
            )
            return cls()


@dataclass(frozen=True)
class CommitPoint:
    """An offset that is safe to commit now, with the marks that go with it."""

    offset: int
    marks: ReplayMarks


class CleanCut:
    """Tracks closed conversations' offset spans until the committed offset has passed them."""

    def __init__(self, start: int) -> None:
        self.committed = start
        self._spans: list[Span] = []

    def add(self, spans: list[Span]) -> None:
        self._spans.extend(spans)

    def cut(self, processed: int, oldest_open: int | None) -> int:
        """The highest offset ≤ `processed` and ≤ every open conversation's first row that no
        closed conversation straddles.

        `processed` is the offset after the last row the query has fully handled.
        """
        candidate = processed if oldest_open is None else min(processed, oldest_open)
        # One pass from the latest-starting span down: lowering the cut to a span's start can
        # only make spans that start even earlier straddle it, and those come later.
        for span in sorted(self._spans, key=lambda s: s.first_offset, reverse=True):
            if span.first_offset < candidate <= span.last_offset:
                candidate = span.first_offset
        candidate = max(candidate, self.committed)
        self._spans = [s for s in self._spans if s.last_offset >= candidate]
        return candidate

    def committed_to(self, offset: int) -> None:
        self.committed = max(self.committed, offset)
