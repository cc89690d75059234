"""History → examples → vectors → a model directory: the steps `beepgpt train` and `beepgpt eval`
share, so what is evaluated is exactly what is trained.

Every message of the table is embedded once (`MessageEmbeddings`); prompts, conversations and
the workspace statistics are all built from those rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from offline.training import history
from offline.training.examples import Example, build_examples
from offline.training.local import vocabulary_of
from offline.training.pairs import PairSettings
from offline.training.pairs import fit as fit_pairs
from offline.training.replay import Stream, stream_of
from scorer.artifact import (
    LABELS,
    METRICS,
    SETTINGS,
    DataFingerprint,
    Manifest,
    fingerprint_rows,
    new_version,
    staged_directory,
    utc_now,
    write_json,
    write_manifest,
)
from scorer.embeddings import Embedder, Matrix, MessageEmbeddings
from scorer.interest.features import Vocabulary
from scorer.topics.lexical import Lexicon
from scorer.topics.matcher import CONVERSATION_WEIGHT, LEXICAL_WEIGHT, EmbeddingSpace, default_threshold

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Prepared:
    """A history, read and embedded: everything training and evaluation start from."""

    source: Path
    table: pd.DataFrame
    examples: list[Example]
    vectors: Matrix
    """one row per table row"""
    vocab: Vocabulary
    embedder: Embedder
    data: DataFingerprint
    conversations: list[history.ConversationRows] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)

    def prompt_vectors(self, example: Example) -> Matrix:
        return self.vectors[list(example.prompt_rows)]

    @property
    def dimension(self) -> int:
        return int(self.vectors.shape[1])


def read_user_names(source: Path, users_file: Path | None = None) -> dict[str, str]:
    """user id → display name, from `users.json` (Slack's format) when one can be found:
    the given file, the export's own, or `<table>.users.json` beside a table."""
    candidates = [users_file] if users_file else []
    if source.is_dir():
        candidates.append(source / "users.json")
    else:
        candidates.append(source.with_name(source.stem + ".users.json"))
    for path in candidates:
        if path is not None and path.is_file():
            raw = json.loads(path.read_text())
            return {
                str(u["id"]): str(
                    u.get("real_name") or u.get("profile", {}).get("real_name") or u.get("name") or u["id"]
                )
                for u in raw
                if isinstance(u, dict) and "id" in u
            }
    return {}


@contextmanager
def _bar(total: int, description: str, enabled: bool) -> Iterator[Callable[[int], None]]:
    if not enabled:
        yield lambda n: None
        return
    from tqdm import tqdm

    with tqdm(total=total, desc=description, unit="msg", leave=False) as bar:
        yield bar.update


def prepare(
    source: Path,
    embedder: Embedder,
    *,
    users_file: Path | None = None,
    progress: bool = True,
    store: MessageEmbeddings | None = None,
    say: Callable[[str], None] = history.progress_note,
) -> Prepared:
    timings: dict[str, float] = {}
    started = time.perf_counter()
    found = history.read_history(source)
    table = found.table
    timings["read_and_query_seconds"] = time.perf_counter() - started
    if table.empty:
        raise history.HistoryError(f"{source} holds no messages")
    examples = build_examples(table, found.contexts)
    say(
        f"read {len(table)} messages from {source}: {len(found.conversations)} conversations, "
        f"{len(examples)} examples (shared conversation query)"
    )
    keys = list(zip(table["channel"].astype(str), table["slack_ts"].astype(str), strict=True))
    texts = table["text"].astype(str).tolist()
    # `is None`, not `or`: an empty store (a fresh one carrying a vector cache) is falsy
    embeddings = MessageEmbeddings(embedder) if store is None else store
    started = time.perf_counter()
    to_compute = embeddings.missing(keys, texts)  # texts neither stored nor in the vector cache
    with _bar(to_compute, "embedding messages", progress and to_compute > 0) as advance:
        vectors = embeddings.vectors(keys, texts, batch=256, progress=advance)
    timings["embed_seconds"] = time.perf_counter() - started
    say(embeddings.last_run.summary(timings["embed_seconds"], embeddings.cache_note))
    rows = zip(
        [channel for channel, _ in keys],
        [ts for _, ts in keys],
        table["user"].astype(str),
        texts,
        strict=True,
    )
    data = fingerprint_rows(rows, source=str(source))
    vocab = vocabulary_of(table, read_user_names(source, users_file))
    return Prepared(source, table, examples, vectors, vocab, embedder, data, found.conversations, timings)


def replay_stream(prepared: Prepared) -> Stream:
    """The history as the pair model's training and `beepgpt eval alerts` replay it."""
    table = prepared.table
    threads = table["slack_thread_ts"].tolist()
    slack_ts = table["slack_ts"].astype(str).tolist()
    return stream_of(
        table["user"].astype(str).tolist(),
        table["channel"].astype(str).tolist(),
        table["ts"].astype(float).tolist(),
        table["text"].astype(str).tolist(),
        [isinstance(t, str) and t != s for t, s in zip(threads, slack_ts, strict=True)],
        prepared.conversations,
    )


def write_pair_model(
    prepared: Prepared,
    out: Path,
    *,
    name: str | None = None,
    settings: PairSettings | None = None,
    topic_threshold: float | None = None,
    say: Callable[[str], None] | None = history.progress_note,
) -> tuple[Manifest, dict[str, Any]]:
    """Train the pair interest model on the whole history and write the model directory."""
    settings = settings or PairSettings()
    started = time.perf_counter()
    model, metrics = fit_pairs(
        replay_stream(prepared),
        prepared.vectors,
        settings=settings,
        names=dict(prepared.vocab.names),
        say=say,
    )
    metrics["timings"] = {
        **{k: round(v, 3) for k, v in prepared.timings.items()},
        **metrics["timings"],
        "train_seconds": round(time.perf_counter() - started, 3),
    }
    manifest = Manifest(
        version=new_version(name or out.name, prepared.data),
        kind="pairs",
        embedder=prepared.embedder.name,
        data=prepared.data,
        created_at=utc_now(),
    )
    with staged_directory(out) as stage:
        save_common(
            stage, prepared, {"interest": settings.to_json()}, metrics, topic_threshold=topic_threshold
        )
        model.save(stage)
        write_manifest(stage, manifest)
    return manifest, metrics


def save_common(
    directory: Path,
    prepared: Prepared,
    settings: Mapping[str, Any],
    metrics: Mapping[str, Any],
    *,
    topic_threshold: float | None = None,
) -> None:
    """The files every kind of model directory has: label map, settings (with the topic
    threshold the scorer will use), metrics, and the embedding space's statistics."""
    threshold = (
        default_threshold(prepared.embedder.name, lexical=True)
        if topic_threshold is None
        else topic_threshold
    )
    topics = {
        "threshold": threshold,
        "threshold_source": "measured default (devset calibration topics)"
        if topic_threshold is None
        else "given",
        "conversation_weight": CONVERSATION_WEIGHT,
        "lexical_weight": LEXICAL_WEIGHT,
    }
    write_json(directory / LABELS, prepared.vocab.to_json())
    write_json(directory / SETTINGS, {"embedder": prepared.embedder.name, "topics": topics, **settings})
    write_json(directory / METRICS, dict(metrics))
    workspace_space(prepared).save(directory)
    workspace_lexicon(prepared).save(directory)


def workspace_space(prepared: Prepared) -> EmbeddingSpace:
    """The topic matcher's statistics of this history: mean vector and background sample."""
    ordered = sorted(prepared.conversations, key=lambda c: c.first_ts)
    texts = prepared.table["text"].astype(str).tolist()
    return EmbeddingSpace.of(
        prepared.embedder.name,
        prepared.vectors,
        [prepared.vectors[list(c.rows)] for c in ordered],
        [[texts[r] for r in c.rows] for c in ordered],
    )


def workspace_lexicon(prepared: Prepared) -> Lexicon:
    """The topic matcher's word statistics of this history: how many messages use each stem."""
    return Lexicon.of(prepared.table["text"].astype(str))


def conversation_texts(prepared: Prepared) -> dict[tuple[str, float], list[str]]:
    """Each conversation's message texts (in the order of `conversation_vectors`)."""
    texts = prepared.table["text"].astype(str).tolist()
    return {c.key: [texts[r] for r in c.rows] for c in prepared.conversations}


def conversation_vectors(prepared: Prepared) -> dict[tuple[str, float], Matrix]:
    """Each conversation's message vectors (by the shared query), keyed as the labels are."""
    return {c.key: prepared.vectors[list(c.rows)] for c in prepared.conversations}
