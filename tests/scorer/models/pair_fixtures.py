"""A small replayable workspace whose answers are known, for the pair model's tests.

Two channels. In #infra Ana asks and Bob answers; in #food Cyd asks and Dee answers; Eve posts
monologues in #infra, more than anyone, and nobody answers her. Vectors are one-hot per subject, so the content
features have something to find without loading the embedding model.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from offline.training.history import ConversationRows
from offline.training.replay import Stream, stream_of

START = 1_700_000_000.0
DAY = 86_400.0
SUBJECTS = {"infra": 0, "food": 1, "misc": 2}


def workspace(days: int = 30) -> tuple[Stream, npt.NDArray[np.float32]]:
    users: list[str] = []
    channels: list[str] = []
    times: list[float] = []
    texts: list[str] = []
    subjects: list[int] = []
    conversations: list[ConversationRows] = []

    def say(user: str, channel: str, ts: float, text: str, subject: str) -> int:
        users.append(user)
        channels.append(channel)
        times.append(ts)
        texts.append(text)
        subjects.append(SUBJECTS[subject])
        return len(users) - 1

    for day in range(days):
        base = START + day * DAY + 9 * 3600
        for hour, (channel, asker, answerer, subject) in enumerate(
            [("CINFRA", "UANA", "UBO", "infra"), ("CFOOD", "UCYD", "UDEE", "food")]
        ):
            t = base + hour * 3 * 3600
            rows = [
                say(asker, channel, t, f"question {day} about the {subject} setup?", subject),
                say(answerer, channel, t + 120, f"answer {day}: restart the {subject} thing", subject),
                say(asker, channel, t + 240, "thanks, that worked", subject),
            ]
            conversations.append(ConversationRows(channel, t, tuple(rows)))
        for hour in (1, 7):  # Eve posts more than anyone in #infra, and nobody ever answers her
            t = base + hour * 3600 + 1800
            notes = (
                say("UEVE", "CINFRA", t, f"note to self {day}", "misc"),
                say("UEVE", "CINFRA", t + 60, f"another note {day}", "misc"),
            )
            conversations.append(ConversationRows("CINFRA", t, notes))
    vectors = np.zeros((len(users), 3), dtype=np.float32)
    vectors[np.arange(len(users)), subjects] = 1.0
    stream = stream_of(users, channels, times, texts, [False] * len(users), conversations)
    return stream, vectors
