"""Progress of `beepgpt import --from-slack` on stderr: a reading of a big workspace takes hours
under Slack's rate limits, so a person must see it move, and see why when it waits.

A tqdm counter of messages read (Slack does not say how many there are, so there is no total),
a line per channel finished, and a line for each rate-limit wait, so a pause of a minute
reads as Slack's and not as a hang. Without a terminal tqdm's bar is off and the lines stay.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm import tqdm

from ingest.importer.slack_api import ChannelState, Progress


class TerminalProgress(Progress):
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._bar: tqdm[None] | None = None
        self.waits = 0
        self.waited_s = 0.0

    def started(self, resumed: bool, channels: int) -> None:
        what = "going on from the checkpoint" if resumed else "reading"
        self._write(f"from Slack: {what}, {channels} channels")
        self._bar = tqdm(
            desc="messages", unit="msg", file=self.stream, disable=None, leave=False, dynamic_ncols=True
        )

    def page(self, channel: str, messages: int) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"#{channel}", refresh=False)
            self._bar.update(messages)

    def channel_done(self, state: ChannelState) -> None:
        pages = f"{state.pages} page" + ("" if state.pages == 1 else "s")
        self._write(f"  #{state.name}: {state.messages} messages in {pages}")

    def waited(self, method: str, seconds: float) -> None:
        self.waits += 1
        self.waited_s += seconds
        self._write(f"  rate limited on {method}: waiting {seconds:g} s as Slack asks (Retry-After)")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def _write(self, line: str) -> None:
        if self._bar is not None:
            self._bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream)
