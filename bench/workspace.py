"""A generated workspace of any size, for the training-time benchmark (`bench/models.py`).

Real chat of thousands of people is not something the project can ship, so the scale figure is
measured on a generated one with the shape that matters to the pair model's cost: people who are
members of a few channels each, activity that is heavy for a few and light for most, conversations
of a few messages where earlier speakers come back and regulars answer, and message vectors that
carry their channel's subject. The conversations are laid out directly (no Kaskada query): the
benchmark times the fit, not the shared query, which `bench/sessionizer.py` measures.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from offline.training.history import ConversationRows
from offline.training.replay import Stream, stream_of

DAY = 86_400.0


def generate(
    messages: int = 200_000,
    people: int = 5_000,
    channels: int = 250,
    days: float = 90.0,
    dimension: int = 384,
    seed: int = 11,
) -> tuple[Stream, npt.NDArray[np.float32]]:
    rng = np.random.default_rng(seed)
    # heavy-tailed activity (a few regulars, many occasional posters), every person in 3 channels
    activity = (rng.pareto(1.5, people) + 1.0).clip(1, 200)
    joined = [rng.choice(channels, size=3, replace=False) for _ in range(people)]
    crowds: list[list[int]] = [[] for _ in range(channels)]
    for person, chosen in enumerate(joined):
        for channel in chosen:
            crowds[int(channel)].append(person)
    members = [np.array(c or [0], dtype=np.int64) for c in crowds]
    subjects = rng.normal(size=(channels, dimension)).astype(np.float32)
    users: list[str] = []
    chans: list[str] = []
    times: list[float] = []
    topic: list[int] = []
    conversations: list[ConversationRows] = []
    start = 1_700_000_000.0
    while len(users) < messages:
        channel = int(rng.integers(channels))
        crowd = members[channel]
        weights = activity[crowd] / activity[crowd].sum()
        t = start + float(rng.uniform(0, days * DAY))
        length = min(int(rng.geometric(0.25)), messages - len(users))
        speakers = [int(rng.choice(crowd, p=weights))]
        rows = []
        for index in range(length):
            if index:
                t += float(rng.exponential(120.0))
                if rng.random() < 0.6 and len(speakers) > 1:
                    speakers.append(speakers[int(rng.integers(len(speakers) - 1))])
                else:
                    speakers.append(int(rng.choice(crowd, p=weights)))
            users.append(f"U{speakers[-1]:05d}")
            chans.append(f"C{channel:04d}")
            times.append(t)
            topic.append(channel)
            rows.append(len(users) - 1)
        conversations.append(ConversationRows(f"C{channel:04d}", times[rows[0]], tuple(rows)))
    vectors = subjects[topic] + rng.normal(scale=1.5, size=(len(users), dimension)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [""] * len(users)
    return stream_of(users, chans, times, texts, [False] * len(users), conversations), vectors
