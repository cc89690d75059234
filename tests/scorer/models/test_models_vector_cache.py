"""The on-disk vector cache: a history is embedded once per machine, not once per run.

A deterministic hashing embedder stands in for the model (these tests count what reaches it;
the real model is not loaded), and every cache lives in the test's own directory.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from offline.evaluation.cli import parser as eval_parser
from offline.training.cli import parser as train_parser
from offline.training.pipeline import prepare
from scorer.embeddings import Matrix, MessageEmbeddings
from scorer.vector_cache import (
    CACHE_ENV,
    VectorCache,
    cache_directory,
    cache_from_args,
    cache_from_environment,
    text_digest,
    vector_space,
)

ROOT = Path(__file__).resolve().parents[3]


class HashingEmbedder:
    """Bag of hashed words → a unit vector; the same in every process, and it counts its texts."""

    def __init__(self, name: str = "hash", dimension: int = 32, variant: str = "") -> None:
        self.name = name
        self.dimension = dimension
        self.cache_variant = variant
        self.texts: list[str] = []

    def embed(self, texts: list[str]) -> Matrix:
        self.texts.extend(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()) or [""]:
                digest = hashlib.blake2b(f"{self.name}:{word}".encode(), digest_size=4).digest()
                out[row, int.from_bytes(digest, "big") % self.dimension] += 1.0
        unit: Matrix = (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)
        return unit


def keyed(texts: list[str]) -> list[tuple[str, str]]:
    return [("C1", f"{i}.000100") for i in range(len(texts))]


TEXTS = ["the deploy failed", "kafka lag is growing", "thanks!", "thanks!", "lunch?", "the deploy failed"]


def test_a_second_prepare_over_the_same_history_computes_nothing(small_history: Path, tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    notes: list[str] = []

    def run() -> tuple[Matrix, MessageEmbeddings]:
        store = MessageEmbeddings(embedder, VectorCache.for_embedder(embedder, tmp_path))
        prepared = prepare(small_history, embedder, progress=False, store=store, say=notes.append)
        return prepared.vectors, store

    cold, first = run()
    computed_cold = len(embedder.texts)
    assert computed_cold == first.last_run.computed > 0
    assert computed_cold == len(set(embedder.texts))  # every distinct text once, repeats included
    assert first.last_run.messages == 320
    warm, second = run()  # a new process would start exactly so: a fresh store, the same directory
    assert len(embedder.texts) == computed_cold
    assert (second.last_run.computed, second.last_run.cached) == (0, computed_cold)
    assert np.array_equal(cold, warm)
    assert "embeddings: 320 messages, 0 cached" in notes[1]
    assert f"{computed_cold} cached, 0 computed" in notes[-1]
    assert str(tmp_path) in notes[-1]


def test_missing_counts_only_texts_neither_cached_nor_repeated(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    cache = VectorCache.for_embedder(embedder, tmp_path)
    MessageEmbeddings(embedder, cache).vectors(keyed(TEXTS[:2]), TEXTS[:2])
    store = MessageEmbeddings(embedder, cache)
    assert store.missing(keyed(TEXTS), TEXTS) == 2  # "thanks!" and "lunch?"; repeats count once
    before = len(embedder.texts)
    vectors = store.vectors(keyed(TEXTS), TEXTS)
    assert embedder.texts[before:] == ["lunch?", "thanks!"]  # sorted by length, each once
    run = store.last_run
    assert (run.messages, run.cached, run.computed, run.repeated) == (6, 2, 2, 2)
    assert np.array_equal(vectors[2], vectors[3])
    assert np.array_equal(vectors[0], vectors[5])


def test_an_edited_message_is_embedded_and_its_old_text_stays_cached(tmp_path: Path) -> None:
    embedder = HashingEmbedder()
    cache = VectorCache.for_embedder(embedder, tmp_path)
    store = MessageEmbeddings(embedder, cache)
    keys = keyed(TEXTS[:3])
    first = store.vectors(keys, TEXTS[:3])
    edited = ["the deploy failed again", *TEXTS[1:3]]
    again = store.vectors(keys, edited)
    assert embedder.texts[-1] == "the deploy failed again"
    assert (store.last_run.stored, store.last_run.computed) == (2, 1)
    assert not np.array_equal(first[0], again[0])
    # the edit is undone: the old text's vector comes back from disk, not from the model
    before = len(embedder.texts)
    reverted = store.vectors(keys, TEXTS[:3])
    assert len(embedder.texts) == before
    assert store.last_run.cached == 1
    assert np.array_equal(reverted, first)


def test_two_models_never_share_vectors(tmp_path: Path) -> None:
    texts = ["kafka lag is growing", "lunch?"]
    a, b = HashingEmbedder("space-a"), HashingEmbedder("space-b")
    bf16, fp32 = HashingEmbedder("local", variant="bfloat16"), HashingEmbedder("local", variant="float32")
    wide = HashingEmbedder("space-a", dimension=64)  # same name, another dimension
    for embedder in (a, b, bf16, fp32, wide):
        vectors = MessageEmbeddings(embedder, VectorCache.for_embedder(embedder, tmp_path)).vectors(
            keyed(texts), texts
        )
        assert sorted(embedder.texts) == sorted(texts)  # nothing came from another model's rows
        assert vectors.shape == (2, embedder.dimension)
    assert len({vector_space(e) for e in (a, b, bf16, fp32)}) == 4
    assert len(list(tmp_path.glob("*.sqlite3"))) == 4  # `wide` shares a's file, never its rows
    assert VectorCache.for_embedder(a, tmp_path).get_many(texts, 64).keys() == set(texts)
    assert VectorCache.for_embedder(a, tmp_path).count() == 4


@pytest.mark.parametrize("damage", ["not a database", "truncated"])
def test_a_corrupt_cache_file_is_reported_and_treated_as_empty(
    damage: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = HashingEmbedder()
    cache = VectorCache.for_embedder(embedder, tmp_path)
    if damage == "truncated":  # a real cache cut in half (a disk filled up, a copy interrupted)
        many = [f"message number {i}" for i in range(2000)]
        MessageEmbeddings(embedder, cache).vectors(keyed(many), many)
        cache.close()
        cache.path.write_bytes(cache.path.read_bytes()[: cache.path.stat().st_size // 2])
        embedder.texts.clear()
        cache = VectorCache.for_embedder(embedder, tmp_path)
    else:
        cache.path.write_bytes(b"this is not a database, just bytes " * 200)
    with caplog.at_level(logging.WARNING, logger="scorer.vector_cache"):
        store = MessageEmbeddings(embedder, cache)
        vectors = store.vectors(keyed(TEXTS), TEXTS)
        store.vectors(keyed(["one more"]), ["one more"])  # still a no-op cache, no second warning
    assert vectors.shape == (6, 32)
    assert embedder.texts == [*sorted(dict.fromkeys(TEXTS), key=len), "one more"]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert str(cache.path) in warnings[0]
    assert "treating it as empty" in warnings[0]
    assert not cache.usable
    assert "unusable" in store.cache_note


def test_a_malformed_row_is_recomputed_never_returned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = HashingEmbedder()
    cache = VectorCache.for_embedder(embedder, tmp_path)
    good = MessageEmbeddings(embedder, cache).vectors(keyed(TEXTS[:2]), TEXTS[:2])
    cache.close()
    with sqlite3.connect(cache.path) as raw:  # a row of the right size that is not a unit vector
        raw.execute(
            "UPDATE vectors SET vector = ? WHERE digest = ?",
            (np.full(32, 3.0, dtype=np.float32).tobytes(), text_digest(TEXTS[0])),
        )
        raw.execute("UPDATE vectors SET vector = ? WHERE digest = ?", (b"short", text_digest(TEXTS[1])))
    raw.close()
    with caplog.at_level(logging.WARNING, logger="scorer.vector_cache"):
        store = MessageEmbeddings(embedder, VectorCache.for_embedder(embedder, tmp_path))
        vectors = store.vectors(keyed(TEXTS[:2]), TEXTS[:2])
    assert store.last_run.computed == 2
    assert np.array_equal(vectors, good)
    assert "2 malformed vectors ignored" in caplog.text
    repaired = MessageEmbeddings(embedder, VectorCache.for_embedder(embedder, tmp_path))
    repaired.vectors(keyed(TEXTS[:2]), TEXTS[:2])
    assert repaired.last_run.cached == 2  # the recomputed rows replaced the bad ones


def test_the_cache_can_be_switched_off_and_moved(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    embedder = HashingEmbedder()
    monkeypatch.setenv(CACHE_ENV, "off")
    assert cache_from_environment(embedder) is None
    assert cache_from_args(train_parser().parse_args(["data", "--out", "m"]), embedder) is None
    # a flag beats the environment
    flagged = cache_from_args(
        train_parser().parse_args(["data", "--out", "m", "--embedding-cache", str(tmp_path)]), embedder
    )
    assert flagged is not None
    assert flagged.path.parent == tmp_path
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "elsewhere"))
    moved = cache_from_environment(embedder)
    assert moved is not None
    assert moved.path.parent == tmp_path / "elsewhere"
    monkeypatch.delenv(CACHE_ENV)
    assert (
        cache_from_args(train_parser().parse_args(["d", "--out", "m", "--no-embedding-cache"]), embedder)
        is None
    )
    interest = eval_parser().parse_args(["interest", "--data", "d", "--no-embedding-cache"])
    topics = eval_parser().parse_args(
        ["topics", "--data", "d", "--topics", "t", "--labels", "l", "--embedding-cache", "x"]
    )
    assert cache_from_args(interest, embedder) is None
    assert cache_from_args(topics, embedder) is not None
    with pytest.raises(SystemExit):
        train_parser().parse_args(["data", "--out", "m", "--no-embedding-cache", "--embedding-cache", "x"])
    # off: nothing written anywhere, everything computed each time
    for _ in range(2):
        MessageEmbeddings(embedder, cache_directory_or_none("off", embedder)).vectors(keyed(TEXTS), TEXTS)
    assert len(embedder.texts) == 2 * len(set(TEXTS))
    assert not (tmp_path / "elsewhere").exists()


def cache_directory_or_none(setting: str, embedder: HashingEmbedder) -> VectorCache | None:
    directory = cache_directory(setting)
    return None if directory is None else VectorCache.for_embedder(embedder, directory)


def test_the_default_directory_follows_xdg() -> None:
    assert cache_directory("", {"XDG_CACHE_HOME": "/var/cache/me"}) == Path(
        "/var/cache/me/beepgpt/embeddings"
    )
    assert cache_directory(None, {"XDG_CACHE_HOME": "relative"}) == Path.home() / ".cache/beepgpt/embeddings"
    assert cache_directory(None, {CACHE_ENV: "OFF"}) is None


WRITER = """
import sys
import numpy as np
from pathlib import Path
from scorer.vector_cache import VectorCache

directory, first, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
cache = VectorCache(directory / "shared.sqlite3", "hash")
for start in range(first, first + count, 50):
    texts = [f"message {i}" for i in range(start, start + 50)]
    rows = np.stack([np.roll(np.eye(1, 32, dtype=np.float32)[0], i % 32) for i in range(start, start + 50)])
    cache.put_many(texts, rows)
print(cache.usable)
"""


def test_concurrent_writers_leave_a_readable_cache(tmp_path: Path) -> None:
    """Two processes and two threads write overlapping batches into one file at once."""
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), str(first), "1000"],
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT / "services" / "scorer")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for first in (0, 500)
    ]

    def write(first: int) -> None:
        cache = VectorCache(tmp_path / "shared.sqlite3", "hash")
        for start in range(first, first + 500, 50):
            texts = [f"message {i}" for i in range(start, start + 50)]
            rows = np.stack(
                [np.roll(np.eye(1, 32, dtype=np.float32)[0], i % 32) for i in range(start, start + 50)]
            )
            cache.put_many(texts, rows)
        assert cache.usable
        cache.close()

    threads = [threading.Thread(target=write, args=(first,)) for first in (250, 1000)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, err
        assert out.strip() == "True", err
    cache = VectorCache(tmp_path / "shared.sqlite3", "hash")
    texts = [f"message {i}" for i in range(1500)]
    found = cache.get_many(texts, 32)
    assert len(found) == 1500 == cache.count()
    assert all(int(np.argmax(found[f"message {i}"])) == i % 32 for i in range(1500))
    with sqlite3.connect(cache.path) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    raw.close()


class Undeclared:
    """An embedder that states no dimension (as OpenAI's: known only from its answers)."""

    def __init__(self, inner: HashingEmbedder) -> None:
        self.inner = inner
        self.name = inner.name

    def embed(self, texts: list[str]) -> Matrix:
        return self.inner.embed(texts)


def test_rows_of_another_dimension_are_recomputed_when_the_embedder_states_none(tmp_path: Path) -> None:
    wide = HashingEmbedder("endpoint", dimension=64)
    MessageEmbeddings(wide, VectorCache.for_embedder(wide, tmp_path)).vectors(
        keyed(["old text"]), ["old text"]
    )
    narrow = HashingEmbedder("endpoint", dimension=32)
    store = MessageEmbeddings(Undeclared(narrow), VectorCache.for_embedder(narrow, tmp_path))
    vectors = store.vectors(keyed(["old text", "new text"]), ["old text", "new text"])
    assert vectors.shape == (2, 32)
    assert sorted(narrow.texts) == ["new text", "old text"]
    assert (store.last_run.cached, store.last_run.computed) == (0, 2)
