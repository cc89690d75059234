"""The interest model: how likely a person is to join a conversation, scored one (person,
conversation) pair at a time.

One class per person (the seed's model) cannot serve a workspace of thousands: its size and
training cost grow with people × examples, and a person who joined after training has no class.
Here the model is a gradient-boosted classifier over features of a *pair* — the person's history
with the conversation's participants, with its channel, with its subject, with the time of day —
so it has the same few parameters whatever the workspace's size, and anyone `Activity` has seen
post can be scored.

Only plausible people are scored: the channel's most active members, the people who usually
answer the conversation's authors, and whoever is mentioned (`candidates`), at most
`CANDIDATES` of them, so the cost per conversation does not grow with the workspace.

Probabilities are calibrated (Platt scaling of the booster's log-odds, fitted on a later slice of
time than the booster), so "40 %" means about four in ten such pairs are followed by the person
joining. Platt rather than isotonic: it is strictly increasing, so the alert threshold keeps the
booster's whole resolution (isotonic steps made a threshold jump from 1,400 DMs to 160). Explanations name the
strongest signals of the pair in words, from the booster's per-feature contributions.

The booster may be an ensemble of several boosters trained alike with different seeds: their
log-odds are averaged (and so are their per-feature contributions, which add up to them). The
seed alone moved one fold's alert volume from 22 to 467 DMs; an average of several draws varies
less than any one of them.

Files (`pairs.lgb.txt`, then `pairs.1.lgb.txt`, ... for further boosters of an ensemble:
LightGBM's text models; `pairs.npz`: calibration, threshold and the number of boosters;
`activity.json` + `profiles.npz`: the activity at the end of training) are plain data: loading a
model never executes code from it.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from beepgpt.contracts import ConversationEvent
from scorer.artifact import ModelFormatError
from scorer.interest.activity import ANSWER_AUTHORS, RECENT_S, Activity, mentioned
from scorer.interest.substance import substance

Matrix = npt.NDArray[np.float32]

CANDIDATES = 40
"""People scored per conversation at most."""

CONTENT_MESSAGES = 5
RECENCY_DECAY = 0.5

BOOSTER_FILE = "pairs.lgb.txt"
PAIRS_FILE = "pairs.npz"


def booster_file(index: int) -> str:
    """The file of the ensemble's `index`-th booster (the first keeps the single-booster name,
    so a directory written before ensembles loads as an ensemble of one)."""
    return BOOSTER_FILE if index == 0 else f"pairs.{index}.lgb.txt"


FEATURES = (
    "channel_activity",
    "channel_share",
    "recent_in_channel",
    "recent_people",
    "recent_joins",
    "minutes_since_in_channel",
    "minutes_since_anywhere",
    "answered_authors",
    "answered_by_authors",
    "answered_first_author",
    "answered_last_author",
    "mentioned",
    "content_similarity",
    "last_message_similarity",
    "joined_similarity",
    "hour_share",
    "joins",
    "messages",
    "conversation_messages",
    "conversation_authors",
    "conversation_minutes",
    "question",
    "in_thread",
    "substance",
)
INDEX = {name: i for i, name in enumerate(FEATURES)}


@dataclass(frozen=True)
class Moment:
    """A conversation as it stands when one of its messages arrives: what a pair is scored on."""

    conversation_id: str
    channel: str
    in_thread: bool
    now: float
    first_ts: float
    authors: tuple[str, ...]
    """distinct authors, oldest first"""
    texts: tuple[str, ...]
    """the latest few messages' texts"""
    vector: npt.NDArray[np.float32] | None
    """recency-weighted mean of the latest messages' vectors"""
    last_vector: npt.NDArray[np.float32] | None
    message_count: int


def content_vector(vectors: Matrix) -> npt.NDArray[np.float32] | None:
    """The subject of the latest messages: their vectors, newer ones weighing more."""
    if len(vectors) == 0:
        return None
    rows = vectors[-CONTENT_MESSAGES:]
    weights = np.exp(-RECENCY_DECAY * np.arange(len(rows) - 1, -1, -1, dtype=np.float32))
    mean = (weights / weights.sum()) @ rows
    norm = float(np.linalg.norm(mean))
    return (mean / norm).astype(np.float32) if norm > 0 else None


def moment_of(conversation: ConversationEvent, vectors: Matrix) -> Moment:
    """The live conversation event as a `Moment` (`vectors`: one row per message, in order)."""
    authors: list[str] = []
    for user in [*conversation.participants, *(m.user for m in conversation.messages)]:
        if user not in authors:
            authors.append(user)
    messages = conversation.messages
    return Moment(
        conversation_id=conversation.conversation_id,
        channel=conversation.channel,
        in_thread=conversation.thread_ts is not None,
        now=float(conversation.last_ts),
        first_ts=float(conversation.first_ts),
        authors=tuple(authors),
        texts=tuple(m.text for m in messages[-CONTENT_MESSAGES:]),
        vector=content_vector(vectors) if len(vectors) else None,
        last_vector=_unit(vectors[-1]) if len(vectors) else None,
        message_count=conversation.message_count,
    )


def candidates(
    activity: Activity,
    moment: Moment,
    *,
    limit: int = CANDIDATES,
    allowed: Collection[str] | None = None,
    exclude: Collection[str] | None = None,
) -> list[str]:
    """The people worth scoring: who was active in the channel in the last hours, its most active
    members, the usual answerers of the conversation's latest authors, and the mentioned — minus
    those already in it."""
    excluded = set(moment.authors if exclude is None else exclude)
    recent = activity.recent_in_channel(moment.channel, moment.now)
    pool = dict.fromkeys(sorted(recent, key=lambda u: (-recent[u], u)))
    pool.update(dict.fromkeys(activity.top_in_channel(moment.channel, limit, moment.now)))
    for author in moment.authors[-ANSWER_AUTHORS:]:
        pool.update(dict.fromkeys(activity.top_answerers(author, 10)))
    pool.update(dict.fromkeys(u for u in sorted(mentioned(moment.texts)) if u in activity.people))
    chosen = [u for u in pool if u not in excluded and (allowed is None or u in allowed)]
    if len(chosen) <= limit:
        return chosen
    decay = activity.decay(moment.now)
    counts = activity.channel_counts.get(moment.channel, {})
    talked = mentioned(moment.texts)

    def prior(user: str) -> float:
        affinity = sum(activity.answered.get(user, {}).get(a, 0.0) for a in moment.authors)
        return (
            (user in talked) * 1e300
            + recent.get(user, 0) * 1e100
            + (counts.get(user, 0.0) + affinity) * decay
        )

    return sorted(chosen, key=prior, reverse=True)[:limit]


def features(activity: Activity, moment: Moment, people: Sequence[str]) -> Matrix:
    """One row per person, columns in `FEATURES` order."""
    out = np.zeros((len(people), len(FEATURES)), dtype=np.float32)
    C = INDEX
    if not people:
        return out
    now = moment.now
    decay = activity.decay(now)
    channel = moment.channel
    counts = activity.channel_counts.get(channel, {})
    last_in = activity.channel_last.get(channel, {})
    total = activity.channel_total(channel, now)
    recent = activity.recent_in_channel(channel, now)
    crowd = float(len(recent))
    answering = activity.recent_joins(channel, now)
    talked = mentioned(moment.texts)
    authors = moment.authors
    first, last = (authors[0], authors[-1]) if authors else ("", "")
    hour = int(now // 3600) % 24
    texts = list(moment.texts)
    question = float(bool(texts) and "?" in texts[-1])
    conversation = (
        math.log1p(moment.message_count),
        float(len(authors)),
        math.log1p(max(0.0, now - moment.first_ts) / 60),
        question,
        float(moment.in_thread),
        min(substance(texts), 30) / 30.0,
    )
    profiles: list[npt.NDArray[np.float32] | None] = []
    joined: list[npt.NDArray[np.float32] | None] = []
    for row, user in enumerate(people):
        person = activity.people.get(user)
        given = activity.answered.get(user, {})
        mine = counts.get(user, 0.0) * decay
        out[row, C["channel_activity"]] = math.log1p(mine)
        out[row, C["channel_share"]] = mine / total if total > 0 else 0.0
        out[row, C["recent_in_channel"]] = recent.get(user, 0)
        out[row, C["recent_people"]] = crowd
        out[row, C["recent_joins"]] = answering.get(user, 0)
        seen_here = last_in.get(user)
        out[row, C["minutes_since_in_channel"]] = (
            math.log1p(max(0.0, now - seen_here) / 60) if seen_here is not None else 15.0
        )
        out[row, C["minutes_since_anywhere"]] = (
            math.log1p(max(0.0, now - person.last_ts) / 60) if person else 15.0
        )
        out[row, C["answered_authors"]] = math.log1p(sum(given.get(a, 0.0) for a in authors) * decay)
        out[row, C["answered_by_authors"]] = math.log1p(
            sum(activity.answered.get(a, {}).get(user, 0.0) for a in authors) * decay
        )
        out[row, C["answered_first_author"]] = math.log1p(given.get(first, 0.0) * decay)
        out[row, C["answered_last_author"]] = math.log1p(given.get(last, 0.0) * decay)
        out[row, C["mentioned"]] = float(user in talked)
        if person is not None:
            out[row, C["hour_share"]] = (person.hours[hour] + 1) / (person.messages + 24)
            out[row, C["joins"]] = math.log1p(person.joins * decay)
            out[row, C["messages"]] = math.log1p(person.messages)
        profiles.append(person.profile if person is not None else None)
        joined.append(person.joined_profile if person is not None else None)
        out[row, C["conversation_messages"] :] = conversation
    if moment.vector is not None and moment.last_vector is not None:
        _similarities(
            out,
            profiles,
            {"content_similarity": moment.vector, "last_message_similarity": moment.last_vector},
        )
        _similarities(out, joined, {"joined_similarity": moment.vector})
    return out


def _similarities(
    out: Matrix,
    profiles: Sequence[npt.NDArray[np.float32] | None],
    columns: Mapping[str, npt.NDArray[np.float32]],
) -> None:
    """Cosine of each known profile with each of the moment's vectors, into the named columns."""
    known = [i for i, p in enumerate(profiles) if p is not None]
    if not known:
        return
    matrix = np.stack([profiles[i] for i in known])  # type: ignore[misc]
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    matrix = matrix / norms[:, None]
    for name, vector in columns.items():
        out[known, INDEX[name]] = matrix @ vector


def _unit(vector: npt.NDArray[np.float32]) -> npt.NDArray[np.float32] | None:
    norm = float(np.linalg.norm(vector))
    return (vector / norm).astype(np.float32) if norm > 0 else None


# --- the model ---------------------------------------------------------------------------------


class PairModel:
    """Calibrated join probabilities for (person, conversation) pairs, over live activity."""

    def __init__(
        self,
        boosters: Sequence[object],
        calibration: tuple[float, float],
        threshold: float,
        activity: Activity,
        names: Mapping[str, str] | None = None,
        *,
        limit: int = CANDIDATES,
    ) -> None:
        if not boosters:
            raise ValueError("a pair model needs at least one booster")
        self._boosters = list(boosters)
        self.calibration = (float(calibration[0]), float(calibration[1]))
        """(slope, intercept) on the booster's log-odds"""
        self.threshold = float(threshold)
        self.activity = activity
        self.names = dict(names or {})
        self.limit = limit
        self._last: tuple[str, int, Moment, list[str], Matrix] | None = None

    # --- scoring ------------------------------------------------------------------------------

    @property
    def boosters(self) -> int:
        return len(self._boosters)

    def raw(self, rows: Matrix) -> npt.NDArray[np.float64]:
        """The boosters' uncalibrated probability: the logistic of their mean log-odds (with one
        booster, exactly its own probability)."""
        if len(rows) == 0:
            return np.zeros(0)
        margins = [
            np.asarray(b.predict(rows, raw_score=True), dtype=np.float64)  # type: ignore[attr-defined]
            for b in self._boosters
        ]
        mean: npt.NDArray[np.float64] = np.mean(margins, axis=0)
        return 1.0 / (1.0 + np.exp(-mean))

    def calibrate(self, raw: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        slope, intercept = self.calibration
        return platt(raw, slope, intercept)

    def predict(self, rows: Matrix) -> npt.NDArray[np.float64]:
        return self.calibrate(self.raw(rows))

    def score_moment(
        self, moment: Moment, allowed: Collection[str] | None = None
    ) -> tuple[list[str], npt.NDArray[np.float64], Matrix]:
        people = candidates(self.activity, moment, limit=self.limit, allowed=allowed)
        rows = features(self.activity, moment, people)
        return people, self.predict(rows), rows

    def observe(self, conversation: ConversationEvent, vectors: Matrix | None = None) -> None:
        """Count the conversation's messages not counted yet (live events repeat earlier ones)."""
        for index, message in enumerate(conversation.messages):
            vector = (
                vectors[index] if vectors is not None and len(vectors) == len(conversation.messages) else None
            )
            self.activity.observe(
                conversation.conversation_id, conversation.channel, message.user, float(message.ts), vector
            )
        if conversation.kind == "closed":
            self.activity.closed(conversation.conversation_id)

    def forget(self, conversation_id: str) -> None:
        """The conversation closed: its authors are no longer needed (its counts stay)."""
        self.activity.closed(conversation_id)

    def probabilities(
        self,
        conversation: ConversationEvent,
        vectors: Matrix,
        audience: Collection[str] | None = None,
    ) -> dict[str, float]:
        """Join probability of each plausible person (within `audience` when given)."""
        self.observe(conversation, vectors)
        moment = moment_of(conversation, vectors)
        people, probs, rows = self.score_moment(moment, audience)
        self._last = (conversation.conversation_id, conversation.version, moment, people, rows)
        return {user: float(p) for user, p in zip(people, probs, strict=True)}

    def signals(self, conversation: ConversationEvent, user: str, probability: float) -> tuple[str, ...]:
        """The strongest reasons of the last `probabilities` call for this person, in words."""
        last = self._last
        if last is None or last[:2] != (conversation.conversation_id, conversation.version):
            return ()
        _, _, moment, people, rows = last
        if user not in people:
            return ()
        row = rows[people.index(user)]
        contributions = np.mean(
            [
                np.asarray(b.predict(row[None, :], pred_contrib=True))[0][: len(FEATURES)]  # type: ignore[attr-defined]
                for b in self._boosters
            ],
            axis=0,
        )
        return explain(self.activity, moment, user, row, contributions, self.names)

    # --- files --------------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        for index, booster in enumerate(self._boosters):
            booster.save_model(str(directory / booster_file(index)))  # type: ignore[attr-defined]
        np.savez(
            directory / PAIRS_FILE,
            calibration=np.array(self.calibration, dtype=np.float64),
            threshold=np.float64(self.threshold),
            features=np.array(FEATURES, dtype=str),
            limit=np.int64(self.limit),
            boosters=np.int64(len(self._boosters)),
        )
        self.activity.save(directory)

    @classmethod
    def load(cls, directory: Path, names: Mapping[str, str] | None = None) -> PairModel:
        import lightgbm

        for name in (BOOSTER_FILE, PAIRS_FILE):
            if not (directory / name).exists():
                raise ModelFormatError(f"{directory} lacks {name}")
        with np.load(directory / PAIRS_FILE, allow_pickle=False) as arrays:
            stored = tuple(arrays["features"].tolist())
            if stored != FEATURES:
                raise ModelFormatError(
                    f"{directory} was trained on features {stored}, this scorer computes {FEATURES}; "
                    "retrain it with this version's `beepgpt train`"
                )
            count = int(arrays["boosters"]) if "boosters" in arrays.files else 1
            files = [directory / booster_file(index) for index in range(count)]
            missing = [path.name for path in files if not path.exists()]
            if missing:
                raise ModelFormatError(f"{directory} lacks {missing}: its ensemble has {count} boosters")
            boosters = [lightgbm.Booster(model_file=str(path)) for path in files]
            return cls(
                boosters,
                (float(arrays["calibration"][0]), float(arrays["calibration"][1])),
                float(arrays["threshold"]),
                Activity.load(directory),
                names,
                limit=int(arrays["limit"]),
            )


def trained_features(directory: Path) -> tuple[str, ...] | None:
    """The features a saved pair model was trained on (None: no pair model there). A model of
    other features cannot be served by this version and must be retrained."""
    if not (directory / PAIRS_FILE).exists():
        return None
    with np.load(directory / PAIRS_FILE, allow_pickle=False) as arrays:
        return tuple(arrays["features"].tolist())


def log_odds(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    clipped = np.clip(p, 1e-7, 1 - 1e-7)
    return np.log(clipped / (1 - clipped))


def platt(raw: npt.NDArray[np.float64], slope: float, intercept: float) -> npt.NDArray[np.float64]:
    """Calibrated probabilities from the booster's: a logistic curve on its log-odds."""
    return 1.0 / (1.0 + np.exp(-(slope * log_odds(raw) + intercept)))


# --- explanations ------------------------------------------------------------------------------


def explain(
    activity: Activity,
    moment: Moment,
    user: str,
    row: npt.NDArray[np.float32],
    contributions: npt.NDArray[np.float64],
    names: Mapping[str, str],
    *,
    count: int = 2,
) -> tuple[str, ...]:
    """At most `count` sentences for the features that pushed this pair up the most."""
    words: list[str] = []
    said: set[str] = set()
    for index in np.argsort(-contributions):
        if contributions[index] <= 0 or len(words) == count:
            break
        sentence = _sentence(FEATURES[int(index)], activity, moment, user, row, names)
        if sentence and sentence not in said:
            words.append(sentence)
            said.add(sentence)
    return tuple(words)


def _sentence(
    feature: str,
    activity: Activity,
    moment: Moment,
    user: str,
    row: npt.NDArray[np.float32],
    names: Mapping[str, str],
) -> str:
    channel = f"<#{moment.channel}>"
    if feature in ("answered_authors", "answered_first_author", "answered_last_author"):
        best = max(moment.authors, key=lambda a: activity.answers(user, a, moment.now), default=None)
        times = round(activity.answers(user, best, moment.now)) if best else 0
        if best is None or times < 1:
            return ""
        return f"you answered {names.get(best, f'<@{best}>')} {times} time{'s' * (times != 1)} this month"
    if feature == "answered_by_authors":
        return "people in this conversation often answer you"
    if feature == "mentioned":
        return "you were mentioned" if row[INDEX["mentioned"]] else ""
    if feature in ("content_similarity", "last_message_similarity"):
        return (
            f"close to what you write about in {channel}"
            if row[INDEX["channel_activity"]] > 0
            else ("close to what you write about")
        )
    if feature == "joined_similarity":
        return "like the conversations you usually join"
    if feature == "recent_in_channel" and row[INDEX["recent_in_channel"]] > 0:
        hours = int(RECENT_S // 3600)
        return f"you were active in {channel} in the last {hours} hours"
    if feature in ("channel_activity", "channel_share") and row[INDEX["channel_activity"]] > 0:
        return f"you are one of the most active people in {channel}"
    if feature == "joins" and row[INDEX["joins"]] > 0:
        return "you often join conversations"
    return ""
