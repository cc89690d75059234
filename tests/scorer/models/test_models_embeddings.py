"""Embeddings: normalised vectors from the packaged model, and each message embedded once."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
from openai import OpenAI
from prometheus_client import REGISTRY

from devstack.openai_standin import OpenAIStandin
from scorer import embeddings
from scorer.embeddings import (
    PRECISION_ENV,
    LocalEmbedder,
    MessageEmbeddings,
    OpenAIEmbedder,
    bfloat16_is_native,
    resolve_precision,
)
from scorer.openai_api import Backoff


def computed(model: str) -> float:
    return REGISTRY.get_sample_value("beepgpt_scorer_embeddings_computed_total", {"model": model}) or 0.0


def test_local_vectors_are_unit_rows_and_similar_texts_are_close(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed(
        ["Kafka consumer lag is growing", "consumer lag on our Kafka cluster", "my weekend was lovely"]
    )
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


def test_bfloat16_vectors_are_the_float32_space(embedder: LocalEmbedder) -> None:
    """bfloat16 is the default only because its vectors stand in for float32's: trained models,
    caches keyed by `name` and measured topic thresholds all assume one space."""
    texts = [
        "Kafka consumer lag is growing on the orders topic since the deploy",
        "anyone free to review the inventory forecast PR before standup?",
        "my weekend was lovely, we hiked up to the lake",
        "thanks!",
        "the fraud model's precision dropped after we retrained on last week's data " * 12,  # cut at 128
    ]
    float32 = copy.copy(embedder)  # the same loaded model, two precisions: no second load
    float32.precision = "float32"
    bfloat16 = copy.copy(embedder)
    bfloat16.precision = "bfloat16"
    exact, fast = float32.embed(texts), bfloat16.embed(texts)
    assert fast.dtype == np.float32
    assert np.allclose(np.linalg.norm(fast, axis=1), 1.0, atol=1e-5)
    cosines = (exact * fast).sum(axis=1)
    assert cosines.mean() >= 0.9999
    assert cosines.min() >= 0.999
    assert bfloat16.name == float32.name


def test_precision_follows_the_hardware_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(embeddings, "bfloat16_is_native", lambda: True)
    assert resolve_precision("auto", "cpu") == "bfloat16"
    assert resolve_precision("float32", "cpu") == "float32"
    assert resolve_precision("auto", "cuda") == "float32"
    monkeypatch.setattr(embeddings, "bfloat16_is_native", lambda: False)
    assert resolve_precision("auto", "cpu") == "float32"
    assert resolve_precision("bfloat16", "cpu") == "bfloat16"  # forced: the operator's call
    with pytest.raises(ValueError, match=PRECISION_ENV):
        resolve_precision("fp8", "cpu")


def test_bfloat16_hardware_is_read_from_the_cpu_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_bf16 avx512_vnni\n")
    assert bfloat16_is_native(cpuinfo)  # AMD Zen 4: AVX-512 BF16, no AMX
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 amx_bf16 amx_tile\n")
    assert bfloat16_is_native(cpuinfo)  # Intel Sapphire Rapids
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512bw\n")
    assert not bfloat16_is_native(cpuinfo)  # AVX-512 without BF16 emulates it: slower
    assert not bfloat16_is_native(tmp_path / "missing")  # not Linux: torch's probe answers


def test_each_message_is_embedded_once_and_the_metric_shows_it(embedder: LocalEmbedder) -> None:
    store = MessageEmbeddings(embedder)
    keys = [("C1", "1.000100"), ("C1", "1.000200"), ("C2", "1.000100")]
    texts = ["first message", "second message", "third message"]
    before = computed(embedder.name)
    first = store.vectors(keys, texts)
    assert computed(embedder.name) - before == 3
    # asked again, plus one new message: only the new one reaches the model
    again = store.vectors([*keys, ("C2", "1.000300")], [*texts, "fourth message"])
    assert computed(embedder.name) - before == 4
    assert np.array_equal(again[:3], first)
    assert store.computed == 4
    # an edit (same message, new text) is embedded again; the same texts under new ids are not shared
    store.vectors([("C1", "1.000100")], ["first message, edited"])
    assert computed(embedder.name) - before == 5
    assert store.missing(keys, texts) == 1


def test_openai_embedder_batches_and_waits_out_rate_limits(standin: OpenAIStandin) -> None:
    client = OpenAI(api_key="test", base_url=standin.base_url, max_retries=0)
    waits: list[float] = []
    embedder = OpenAIEmbedder(client, batch_size=2, backoff=Backoff(sleep=waits.append))
    standin.faults.add("/v1/embeddings", status=429, retry_after=1.5, times=2)
    before = computed(embedder.name)
    vectors = embedder.embed(["kafka lag", "kafka consumer lag", "weekend hike"])
    assert vectors.shape == (3, 64)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2]
    assert waits == [1.5, 1.5]  # the server's Retry-After, not a guess
    assert standin.count("/v1/embeddings", 429) == 2
    assert standin.count("/v1/embeddings", 200) == 2
    assert computed(embedder.name) - before == 3
