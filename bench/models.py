"""Models: raw embedding throughput, training time, and the evaluation figures, on this machine.

- `embedding_throughput`: the packaged all-MiniLM-L6-v2 alone encoding the example workspace's
  messages (batch 64, texts sorted by length as training does) — the ceiling every scorer
  figure is compared with;
- `train_seconds`: `beepgpt train data/slack-generation.parquet` end to end in-process (read, shared
  query, embed every message once, fit, write the model directory), model loading excluded;
- `scale_fit_seconds` / `scale_peak_rss`: the pair model's fit on a generated workspace of
  200,000 messages and 5,000 people (`bench/workspace.py`; vectors given, as from the cache);
- `elmlang_*`: where `../shared/data/real-chat/elmlang-general` is beside the checkout, the fit
  on that real chat with its vectors cached (the first run embeds and fills the cache);
- the evaluation figures of `beepgpt eval interest` (default 80/20 time split) and
  `beepgpt eval topics` on the committed development set (default threshold, best thresholds,
  5 feedback shots), computed on the same embedded history so each message is embedded once.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "slack-generation.parquet"
DEVSET = ROOT / "offline" / "devset"


def record(metric: str, value: float, unit: str) -> dict[str, Any]:
    return {"benchmark": "models", "metric": metric, "value": value, "unit": unit}


def run() -> list[dict[str, Any]]:
    import pandas as pd

    from offline.evaluation import interest as interest_eval
    from offline.evaluation import topics as topics_eval
    from offline.evaluation.cli import split_time
    from offline.training.pairs import fit
    from offline.training.pipeline import (
        conversation_texts,
        conversation_vectors,
        prepare,
        replay_stream,
        workspace_lexicon,
        workspace_space,
        write_pair_model,
    )
    from scorer.model_dir import shared_local_embedder
    from scorer.topics.matcher import TopicMatcher

    records = []
    started = time.perf_counter()
    embedder = shared_local_embedder()
    records.append(record("embedding_model_load_seconds", time.perf_counter() - started, "s"))

    texts = pd.read_parquet(DATA)["text"].astype(str).tolist()
    ordered = sorted(texts, key=len)
    embedder.embed(ordered[:64])  # warm-up: first-call allocations are not throughput
    started = time.perf_counter()
    embedder.embed(ordered)
    seconds = time.perf_counter() - started
    records.append(record("embedding_throughput", len(ordered) / seconds, "texts/s"))

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        prepared = prepare(DATA, embedder, progress=False, say=lambda _: None)
        _, metrics = write_pair_model(prepared, Path(tmp) / "bench", say=None)
        records.append(record("train_seconds", time.perf_counter() - started, "s"))
    records.append(record("train_examples", float(metrics["examples"]["fit"]), "examples"))

    records.extend(scale_records())
    records.extend(elmlang_records(embedder))

    stream = replay_stream(prepared)
    cut = split_time([e.ts for e in prepared.examples], None, 0.2)
    model, _ = fit(stream, prepared.vectors, end=cut, names=dict(prepared.vocab.names))
    report = interest_eval.evaluate_pairs(stream, prepared.vectors, model, cut, sorted(set(stream.users)))
    for ranker in report.rankers:
        name = ranker.name.replace(" ", "_")
        records.append(record(f"interest_mrr_{name}", ranker.all.mrr, "MRR"))
        records.append(record(f"interest_top1_{name}", ranker.all.top1, "share"))
    records.append(record("interest_join_probability_ece", report.nobody.ece, "ECE"))

    # the product's matcher: embeddings and the workspace's words, as the scorer loads it
    matcher = TopicMatcher(embedder, workspace_space(prepared), lexicon=workspace_lexicon(prepared))
    topics = topics_eval.read_topics(DEVSET / "topics.json")
    labels = topics_eval.read_labels(DEVSET / "labels.jsonl")
    topic_report = topics_eval.evaluate(
        matcher,
        conversation_vectors(prepared),
        topics,
        labels,
        shots=5,
        draws=20,
        texts=conversation_texts(prepared),
    )
    records.append(record("topics_macro_f1_default_threshold", topic_report.macro_f1_default, "F1"))
    records.append(record("topics_macro_f1_best_per_topic", topic_report.macro_f1_best_per_topic, "F1"))
    records.append(record("topics_macro_f1_best_single_threshold", topic_report.macro_f1_best_global, "F1"))
    if topic_report.few_shot is not None:
        records.append(record("topics_macro_f1_5_feedback_shots", topic_report.few_shot.macro_f1, "F1"))
    return records


def peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale_records() -> list[dict[str, Any]]:
    """The pair model's fit on 200,000 generated messages of 5,000 people (target < 5 minutes)."""
    from bench.workspace import generate
    from offline.training.pairs import fit

    stream, vectors = generate()
    before = peak_rss_mb()
    started = time.perf_counter()
    _, metrics = fit(stream, vectors, say=lambda line: print(line, flush=True))
    return [
        record("scale_fit_seconds", time.perf_counter() - started, "s"),
        record("scale_examples_seconds", metrics["timings"]["examples_seconds"], "s"),
        record("scale_people", float(len(set(stream.users))), "people"),
        record("scale_messages", float(len(stream.users)), "messages"),
        record("scale_peak_rss", max(before, peak_rss_mb()), "MB"),
    ]


def elmlang_records(embedder: Any) -> list[dict[str, Any]]:
    """The fit on real chat with its vectors cached (target < 20 s); nothing without the data."""
    from offline.training.pairs import fit
    from offline.training.pipeline import prepare, replay_stream

    data = ROOT.parent / "shared" / "data" / "real-chat" / "elmlang-general"
    if not data.is_dir():
        return []
    from scorer.embeddings import MessageEmbeddings
    from scorer.vector_cache import cache_from_environment

    def store() -> MessageEmbeddings:  # a new store each time: only the on-disk cache carries over
        return MessageEmbeddings(embedder, cache_from_environment(embedder))

    prepare(data, embedder, progress=False, say=lambda _: None, store=store())  # fills the cache
    started = time.perf_counter()
    prepared = prepare(data, embedder, progress=False, say=lambda _: None, store=store())
    prepare_seconds = time.perf_counter() - started
    started = time.perf_counter()
    fit(replay_stream(prepared), prepared.vectors)
    return [
        record("elmlang_prepare_cached_seconds", prepare_seconds, "s"),
        record("elmlang_fit_seconds", time.perf_counter() - started, "s"),
    ]
