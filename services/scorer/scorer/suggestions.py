"""Topics suggested from a person's own history: their conversations, grouped by meaning and named.

The scorer owns the message vectors, so the core lives here; `beepgpt suggest` and
`beepgpt eval suggestions` (offline) call it over a history table, and `publish_suggestions`'s
records reach the Slack app through the compacted `user.suggestions` topic
(docs/suggestions.md). Everything in this module is pure: vectors and texts in, suggestions out.

How (each choice has a reason rather than a fitted figure; the example workspace is the only
labelled data there is, see docs/suggestions.md for what was measured):

- **Whose conversations**: only those the person wrote in (not merely read), so the suggestions
  say what *they* talk about; the caller passes only conversations of public channels, so an
  example never quotes anyone's private history.
- **A conversation's vector**: the mean of its message vectors, each centred on the workspace's
  mean message vector and re-normalised first, as the topic matcher does (`EmbeddingSpace`):
  every message of a workspace shares its jargon's direction, and what tells its subjects apart
  is what is left.
- **Groups**: agglomerative clustering, average linkage on cosine distance (no assumption of
  round clusters of equal size, which KMeans makes and conversation subjects do not obey), with
  the number of groups chosen by the silhouette score among 2..n/`CONVERSATIONS_PER_GROUP`: a
  topic worth suggesting is a subject the person came back to about ten times, and the silhouette
  keeps rising with ever smaller groups, so the range, not the score, has to bound them.
- **Too small to matter**: a group of fewer than `MIN_CONVERSATIONS` conversations (or
  `MIN_SHARE` of the person's) is dropped; the rest are ranked by size — what they talk about
  most comes first.
- **Names**: class-based TF-IDF (BERTopic's c-TF-IDF): each group's words weighted by how
  often the group uses them against how common they are in the whole workspace's conversations,
  so "streaming" (everywhere in a streaming team) loses to "fraud detection" (one subject).
  The top terms, a phrase before the words it contains, make a name of a few plain words.
- **Already followed**: a group whose conversations mostly match a followed topic (cosine of
  the topic's vector and the centred conversation vector at the matcher's default embedding
  threshold), or whose name is a followed text, is left out.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from beepgpt.contracts import ConversationEvent
from scorer.embeddings import Matrix, Vector, normalise

CONVERSATIONS_PER_GROUP = 10
"""The number of groups is at most a person's conversations over this: a subject they came back
to about ten times is a topic; fewer, and the silhouette's preference for tiny tight groups
(it rises with every split of a small workspace) would decide instead."""

MIN_CONVERSATIONS = 3
"""A group of fewer conversations is a coincidence, not a subject."""

MIN_SHARE = 0.03
"""...nor is a group under 3% of the person's conversations (matters for long histories)."""

MAX_SUGGESTIONS = 5
NAME_TERMS = 3
EXAMPLES = 2
FOLLOWED_THRESHOLD = 0.178
"""A conversation matches a followed topic at the matcher's default embedding-only threshold
(`scorer.topics.matcher.DEFAULT_THRESHOLDS` for the local model)."""

FIRST_LINE_CHARS = 120

_STOP_TEXT = """
    a about above after again against all also am an and any are aren as at be because been before
    being below between both but by can could did do does doing don down during each even ever
    every few for from further get got had has have having he her here hers herself him himself
    his how i if in into is isn it its itself just let ll me might more most much must my myself
    need no nor not now of off on once only or other our ours ourselves out over own really re
    same she should so some such sure than that the their theirs them themselves then there these
    they this those through to too under until up us ve very was we well were what when where
    which while who whom why will with would yes yet you your yours yourself yourselves
    great good thanks thank hi hey hello morning everyone team guys ok okay yeah think like
    let's lets agree absolutely definitely totally right idea ideas point points make sounds
    way things thing going want know see look looking use using used one two also maybe
    able sure important great let excellent awesome fantastic nice glad happy today
    discuss discussed discussing discussion discussions hour hours productive break shift focus
    continue start started thread meeting afternoon everybody folks insights insight suggestion
"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
"""English function words and the chat's own filler ("great idea!", "sounds good", "let's
continue the discussion after a short break"): words any group of any team uses, which c-TF-IDF
would weigh down anyway but which must never make up a name."""

_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#.-]*[A-Za-z0-9+#]|[A-Za-z]")


@dataclass(frozen=True)
class Example:
    """A conversation behind a suggestion, as people recognise it."""

    conversation_id: str
    channel: str
    first_ts: str
    first_line: str


@dataclass(frozen=True)
class Suggestion:
    """A topic drawn from a person's conversations: its name, the conversations behind it."""

    name: str
    members: tuple[str, ...]
    """conversation ids, oldest first"""
    examples: tuple[Example, ...]
    terms: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class SuggestionSettings:
    max_suggestions: int = MAX_SUGGESTIONS
    conversations_per_group: int = CONVERSATIONS_PER_GROUP
    min_conversations: int = MIN_CONVERSATIONS
    min_share: float = MIN_SHARE
    name_terms: int = NAME_TERMS
    examples: int = EXAMPLES
    followed_threshold: float = FOLLOWED_THRESHOLD


# --- vectors -------------------------------------------------------------------------------------


def took_part(event: ConversationEvent, user: str) -> bool:
    """Whether `user` wrote in the conversation (reading it, or being mentioned, is not enough)."""
    return any(m.user == user for m in event.messages)


def conversation_vector(messages: Matrix, centre: Vector | None) -> Vector:
    """A conversation's direction: its centred, re-normalised message vectors' mean, unit length."""
    rows = np.asarray(messages, dtype=np.float32)
    if centre is not None:
        rows = normalise(rows - centre)
    out: Vector = normalise(rows.mean(axis=0))[0]
    return out


# --- grouping ------------------------------------------------------------------------------------


def cluster(vectors: Matrix, max_groups: int) -> np.ndarray:
    """Group labels for unit `vectors`: average-linkage agglomerative clustering on cosine
    distance, the number of groups the best silhouette among 2..max_groups (one group when
    there are too few vectors to split)."""
    from sklearn.cluster import AgglomerativeClustering
    from sklearn.metrics import silhouette_score

    n = len(vectors)
    top = min(max_groups, n - 1)
    if top < 2:
        return np.zeros(n, dtype=int)
    best: tuple[float, np.ndarray] | None = None
    for k in range(2, top + 1):
        labels = AgglomerativeClustering(n_clusters=k, metric="cosine", linkage="average").fit_predict(
            vectors
        )
        if len(set(labels.tolist())) < 2:
            continue
        score = float(silhouette_score(vectors, labels, metric="cosine"))
        if best is None or score > best[0]:
            best = (score, labels)
    return best[1] if best is not None else np.zeros(n, dtype=int)


# --- naming --------------------------------------------------------------------------------------


def words(text: str) -> list[str]:
    """Lower-case words of a message, Slack markup (mentions, links, emoji) left out."""
    plain = re.sub(r"<[^>]*>|:[a-z0-9_+-]+:", " ", text)
    return [w.lower().strip(".-") for w in _WORD.findall(plain)]


def terms(text: str) -> list[str]:
    """The words and two-word phrases a name may use: no stop word in them, none a bare number."""
    found = [w for w in words(text) if w not in STOP_WORDS and len(w) > 2 and not w.isdigit()]
    kept = words(text)
    phrases = [
        f"{a} {b}"
        for a, b in itertools.pairwise(kept)
        if a not in STOP_WORDS and b not in STOP_WORDS and len(a) > 2 and len(b) > 2
    ]
    return found + phrases


class Namer:
    """Class-based TF-IDF against a background: the whole workspace's conversations.

    weight(t, group) = tf(t, group) / |group| * log(1 + A / f(t)), with f(t) the term's count
    over the background and A its average count of terms per conversation (BERTopic's c-TF-IDF,
    with the background in place of the other classes: a person's few groups alone would make
    a word common to all of *their* subjects look distinctive)."""

    def __init__(self, background: Sequence[str]) -> None:
        counts: dict[str, int] = {}
        total = 0
        for text in background:
            for term in terms(text):
                counts[term] = counts.get(term, 0) + 1
                total += 1
        self._frequency = counts
        self._average = total / max(1, len(background))

    def weights(self, texts: Sequence[str]) -> dict[str, float]:
        tf: dict[str, int] = {}
        for text in texts:
            for term in terms(text):
                tf[term] = tf.get(term, 0) + 1
        size = max(1, sum(tf.values()))
        return {
            t: c / size * math.log(1 + self._average / max(1, self._frequency.get(t, 0) + c))
            for t, c in tf.items()
            if c >= 2  # a word said once is not what a group is about
        }

    def name(self, texts: Sequence[str], n_terms: int = NAME_TERMS) -> tuple[str, tuple[str, ...]]:
        """A few plain words naming the group: its best terms, a phrase first and the words it
        already holds not repeated, joined with commas."""
        ranked = sorted(self.weights(texts).items(), key=lambda kv: (-kv[1], kv[0]))
        chosen: list[str] = []
        for term, _ in ranked:
            if len(chosen) >= n_terms:
                break
            parts = {_singular(w) for w in term.split()}
            if any(parts <= {_singular(w) for w in c.split()} for c in chosen):
                continue  # "fraud" after "fraud detection"
            # a phrase replaces its word
            chosen = [c for c in chosen if not {_singular(w) for w in c.split()} <= parts]
            chosen.append(term)
        return ", ".join(chosen), tuple(chosen)


def _singular(word: str) -> str:
    """ "recommendations" and "recommendation" name one thing (a plural is not a second term)."""
    return word[:-1] if len(word) > 4 and word.endswith("s") and not word.endswith("ss") else word


# --- suggestions ---------------------------------------------------------------------------------


def first_line(event: ConversationEvent) -> str:
    """The conversation's first message, first line, cut short."""
    text = (
        event.messages[0].text.strip().splitlines()[0]
        if event.messages and event.messages[0].text.strip()
        else ""
    )
    return text if len(text) <= FIRST_LINE_CHARS else text[: FIRST_LINE_CHARS - 1].rstrip() + "…"


def suggest(
    user: str,
    events: Sequence[ConversationEvent],
    vectors: Sequence[Vector],
    namer: Namer,
    *,
    followed: Sequence[str] = (),
    followed_vectors: Matrix | None = None,
    settings: SuggestionSettings | None = None,
) -> list[Suggestion]:
    """The person's suggested topics, best first.

    `events` are the public conversations `user` took part in and `vectors` their
    `conversation_vector`s (same order); `followed` the texts of topics they follow and
    `followed_vectors` those texts embedded (unit rows), to leave what they follow out."""
    rules = settings or SuggestionSettings()
    if len(events) != len(vectors):
        raise ValueError(f"{len(events)} conversations for {len(vectors)} vectors")
    if not events:
        return []
    matrix = np.stack(vectors).astype(np.float32)
    max_groups = max(2, len(events) // rules.conversations_per_group)
    labels = cluster(matrix, max_groups)
    smallest = max(rules.min_conversations, math.ceil(rules.min_share * len(events)))
    groups: dict[int, list[int]] = {}
    for i, label in enumerate(labels.tolist()):
        groups.setdefault(int(label), []).append(i)
    kept = sorted(
        (members for members in groups.values() if len(members) >= smallest),
        key=lambda members: (-len(members), min(float(events[i].first_ts) for i in members)),
    )
    known = {text.casefold() for text in followed}
    out: list[Suggestion] = []
    for members in kept:
        if len(out) >= rules.max_suggestions:
            break
        if (
            followed_vectors is not None
            and len(followed_vectors)
            and _followed(matrix[members], followed_vectors, rules.followed_threshold)
        ):
            continue
        ordered = sorted(members, key=lambda i: float(events[i].first_ts))
        texts = [m.text for i in ordered for m in events[i].messages]
        name, name_terms = namer.name(texts, rules.name_terms)
        if not name or name.casefold() in known:
            continue
        out.append(
            Suggestion(
                name=name,
                members=tuple(events[i].conversation_id for i in ordered),
                examples=tuple(_examples(events, ordered, matrix, rules.examples)),
                terms=name_terms,
            )
        )
    return out


def _followed(members: Matrix, topics: Matrix, threshold: float) -> bool:
    """Whether most of a group's conversations already match one followed topic."""
    scores = members @ topics.T  # conversations x topics
    return bool(((scores >= threshold).mean(axis=0) > 0.5).any())


def _examples(
    events: Sequence[ConversationEvent], members: list[int], matrix: Matrix, n: int
) -> list[Example]:
    """The `n` conversations closest to the group's centre: the most typical, not the first."""
    centre = matrix[members].mean(axis=0)
    closest = sorted(members, key=lambda i: -float(matrix[i] @ centre))[:n]
    return [
        Example(
            conversation_id=events[i].conversation_id,
            channel=events[i].channel,
            first_ts=events[i].first_ts,
            first_line=first_line(events[i]),
        )
        for i in sorted(closest, key=lambda i: float(events[i].first_ts))
    ]
