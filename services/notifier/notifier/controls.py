"""A person's own controls over their alerts, as the notifier applies them: pure rules.

Set from an alert's buttons, `/beep mute` and App Home (ingest writes them into the person's
`Preferences`); read here for every candidate and again for every held alert when its digest
goes, so a click shows in the very next decisions:

- **muted**: the conversation (its subject: the flow and the thread its opening message
  started) or its whole channel → `muted`, nothing sent or held;
- **fewer like this**: a weight on the alert's topic (topic alerts) or channel (interest
  alerts) raises the bar the scorer's score must clear (`raised_bar`) → `down_weighted` below it.

Both are decided before the dedup claim, as opting in is: no key is taken, so after an unmute a
later candidate of the conversation counts. A snooze is a hold like a pause (`quiet_hours`).

Why the notifier and not the scorer applies "fewer like this": every control then shows up in
one audit (`notifications.sent`, counted by outcome), the scorer's scores and the topic lines it
learns from clicks stay its own (the bar is raised, the score is not lowered), and a click takes
effect without any scorer state (the candidate carries the bar it cleared, `Candidate.threshold`).
"""

from __future__ import annotations

from typing import Literal

from beepgpt.contracts import Candidate, Preferences, raised_bar

ControlOutcome = Literal["muted", "down_weighted"]


def controlled(prefs: Preferences | None, candidate: Candidate, now: float) -> tuple[ControlOutcome, str] | None:
    """(outcome, detail) when the person's controls stop this alert, else None.

    A candidate without a threshold (from a scorer older than the field) cannot be weighed and
    goes on: a weight never mutes."""
    if prefs is None:
        return None
    mute = prefs.muted_by(candidate.channel, candidate.conversation_id, now)
    if mute is not None:
        what = "channel" if mute.conversation_id is None else "conversation"
        return "muted", f"you muted this {what}; {candidate.channel}"
    weight = prefs.weight_of(candidate.reason, candidate.channel, candidate.topic_id)
    if weight is None or candidate.threshold is None:
        return None
    bar = raised_bar(candidate.threshold, weight.weight)
    if candidate.score >= bar:
        return None
    about = f"topic {weight.topic_id}" if weight.topic_id is not None else f"channel {weight.channel}"
    return (
        "down_weighted",
        f"fewer like this ({about}, weight {weight.weight:g}): score {candidate.score:.3f}"
        f" below the raised bar {bar:.3f} (was {candidate.threshold:.3f})",
    )
