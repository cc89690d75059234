"""Planning a batch of records, the message embedding cache, retries and model swaps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord
from scorer_service_helpers import conversation

from beepgpt.topics import CONVERSATIONS, encode
from scorer.batching import plan
from scorer.message_cache import MessageCache, MessageRef, Vector
from scorer.model_watch import ModelWatcher
from scorer.retry import retrying


def _record(value: bytes, offset: int, partition: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=CONVERSATIONS.name,
        partition=partition,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=[],
    )


def test_a_batch_keeps_the_newest_scored_version_of_each_conversation() -> None:
    a1 = conversation("C1:1.000000", [("U1", "a")], version=1)
    a2 = conversation("C1:1.000000", [("U1", "a"), ("U2", "b")], version=2)
    a3 = conversation("C1:1.000000", [("U1", "a"), ("U2", "b")], kind="closed", version=3)
    b1 = conversation("C2:1.000000", [("U1", "c")], version=1)
    records = [_record(encode(e), i) for i, e in enumerate([a1, b1, a2, a3])]
    records.append(_record(b"not json", 4))
    records.append(_record(encode(b1), 9, partition=2))  # a redelivered older copy

    batch = plan(records, CONVERSATIONS.decode, lambda kind: kind == "updated")
    assert [(w.event.conversation_id, w.event.version) for w in batch.work] == [
        ("C1:1.000000", 2),
        ("C2:1.000000", 1),
    ]
    assert batch.closed == ["C1:1.000000"]
    assert (batch.superseded, batch.not_scored, len(batch.poison)) == (2, 1, 1)
    assert batch.offsets == {
        TopicPartition(CONVERSATIONS.name, 0): 5,
        TopicPartition(CONVERSATIONS.name, 2): 10,
    }


def test_without_coalescing_every_scored_event_is_kept_in_order() -> None:
    a1 = conversation("C1:1.000000", [("U1", "a")], version=1)
    a2 = conversation("C1:1.000000", [("U1", "a"), ("U2", "b")], version=2)
    batch = plan([_record(encode(a1), 0), _record(encode(a2), 1)], CONVERSATIONS.decode, bool, coalesce=False)
    assert [w.event.version for w in batch.work] == [1, 2]
    assert batch.superseded == 0


class CountingEmbedder:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def __call__(self, texts: list[str]) -> list[Vector]:
        self.texts.extend(texts)
        return [np.full(2, len(t), dtype=np.float32) for t in texts]


def _refs(conversation_id: str, *texts: str) -> list[MessageRef]:
    return [MessageRef(conversation_id, f"{i}.0", text) for i, text in enumerate(texts)]


def test_each_message_is_embedded_once_across_updates_and_again_when_edited() -> None:
    cache, embed = MessageCache(max_messages=100), CountingEmbedder()
    cache.embed(_refs("c1", "hello", "world"), embed)
    vectors = cache.embed(_refs("c1", "hello", "world", "again"), embed)
    assert embed.texts == ["hello", "world", "again"]
    assert [float(v[0]) for v in vectors] == [5.0, 5.0, 5.0]
    cache.embed(_refs("c1", "hello", "WORLD!", "again"), embed)  # message 1.0 was edited
    assert embed.texts[-1] == "WORLD!"
    assert (cache.stats.hits, cache.stats.misses) == (2 + 2, 2 + 1 + 1)
    assert cache.stats.hit_rate == 0.5


def test_closed_conversations_are_evicted_and_the_bound_evicts_the_least_recent() -> None:
    cache, embed = MessageCache(max_messages=4), CountingEmbedder()
    cache.embed(_refs("old", "a", "b"), embed)
    cache.embed(_refs("mid", "c"), embed)
    cache.embed(_refs("new", "d", "e"), embed)  # 5 > 4: "old" goes
    assert len(cache) == 3
    cache.evict("mid")
    assert len(cache) == 2
    cache.embed(_refs("old", "a", "b"), embed)
    assert embed.texts[-2:] == ["a", "b"]  # embedded again: it had been evicted


def test_identical_texts_in_one_call_are_embedded_once() -> None:
    cache, embed = MessageCache(max_messages=100), CountingEmbedder()
    cache.embed([*_refs("c1", "+1"), *_refs("c2", "+1")], embed)
    assert embed.texts == ["+1"]
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)  # misses count what the model computed


async def test_retrying_gives_up_after_the_attempts_and_raises_the_last_error() -> None:
    calls: list[int] = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"attempt {len(calls)}")
        return "ok"

    assert await retrying(flaky, attempts=3, base=0, cap=0) == "ok"
    calls.clear()
    with pytest.raises(RuntimeError, match="attempt 2"):
        await retrying(flaky, attempts=2, base=0, cap=0)


async def test_a_new_model_version_is_swapped_in_and_a_broken_one_keeps_the_old(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "version.txt").write_text("v1")

    def load(path: Path) -> str:
        text = (path / "version.txt").read_text()
        if text == "broken":
            raise ValueError("format version 99 is not supported")
        return text

    swaps: list[tuple[str, str]] = []
    watcher = ModelWatcher(
        model_dir, load, lambda m: m, poll_s=3600, on_swap=lambda a, b: swaps.append((a, b))
    )
    await watcher.start()
    try:
        assert (watcher.current, watcher.version) == ("v1", "v1")
        assert await watcher.check()  # unchanged: no reload
        (model_dir / "version.txt").write_text("v2-longer")
        await watcher.check()
        assert watcher.current == "v2-longer"
        (model_dir / "version.txt").write_text("broken")
        assert await watcher.check()
        assert watcher.current == "v2-longer"
        assert swaps == [("v1", "v2-longer")]
    finally:
        await watcher.stop()


async def test_a_symlinked_model_dir_follows_its_target(tmp_path: Path) -> None:
    for name in ("v1", "v2"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "version.txt").write_text(name)
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "v1")
    watcher = ModelWatcher(current, lambda p: (p / "version.txt").read_text(), lambda m: m, poll_s=3600)
    await watcher.start()
    try:
        current.unlink()
        current.symlink_to(tmp_path / "v2")
        await watcher.check()
        assert watcher.version == "v2"
    finally:
        await watcher.stop()
