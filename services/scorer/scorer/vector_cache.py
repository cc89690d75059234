"""A persistent vector cache by text: a message is embedded once per machine, not once per run.

`beepgpt train` and `beepgpt eval` embed a whole history (all-MiniLM-L6-v2 does about 150
messages/s on a 2-core CPU, so a 15,000-message workspace costs minutes) and a second run on the
same data used to embed all of it again. Vectors depend only on the embedding model and the exact
text, so they are kept on disk keyed by (vector space, sha256 of the text), one SQLite file per
vector space under a cache directory:

- `BEEPGPT_EMBEDDING_CACHE=DIR` chooses the directory, `BEEPGPT_EMBEDDING_CACHE=off` disables the
  cache; unset, it is `$XDG_CACHE_HOME/beepgpt/embeddings` (`~/.cache/beepgpt/embeddings`);
- the vector space is `Embedder.name` plus the embedder's `cache_variant` (the local model's
  precision, an OpenAI endpoint's host), and every row records its dimension, which reads must
  match: vectors of two models, two precisions or two dimensions are never mixed;
- writes are one transaction per embedding batch and reads are bulk `IN (...)` queries, in WAL
  mode with a busy timeout so concurrent trainings read while one writes and wait for each other's
  writes (SQLite's locking; not for network filesystems, where WAL is unsupported);
- the cache is an optimisation, never a source of truth: a file that cannot be opened or read, or
  holds a row that is not a finite unit vector of the right size, is reported once with a warning
  and treated as empty (that row recomputed), and a failed write only costs a later recomputation.

Stdlib `sqlite3` because it already gives atomic batched transactions, concurrent readers and
multi-process locking; a key-value library (LMDB, diskcache) would add a dependency for nothing
this needs.
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from scorer.embeddings import Embedder, Matrix, MessageEmbeddings, Vector

log = logging.getLogger(__name__)

CACHE_ENV = "BEEPGPT_EMBEDDING_CACHE"
OFF_VALUES = frozenset({"off", "none", "no", "false", "0"})
SCHEMA_VERSION = "1"
READ_CHUNK = 500
"""Digests per `IN (...)` query: under SQLite's oldest host-parameter limit (999), and large
enough that reading a 15,000-message history is 30 queries."""
BUSY_TIMEOUT_S = 30.0
"""How long a writer waits for another process's transaction before giving up on one batch (a
batch of 256 vectors commits in milliseconds, so only a stuck process makes this matter)."""
UNIT_TOLERANCE = 1e-3
"""How far from unit length a stored vector may be (float32 normalisation is good to ~1e-6): a
row beyond it was damaged, and is recomputed."""
PAGE_SIZE = 8192


def default_directory(environ: Mapping[str, str] = os.environ) -> Path:
    """`$XDG_CACHE_HOME/beepgpt/embeddings`, or `~/.cache/...` (the XDG spec ignores a relative
    `XDG_CACHE_HOME`, so this does too)."""
    xdg = environ.get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "beepgpt" / "embeddings"


def cache_directory(setting: str | None = None, environ: Mapping[str, str] = os.environ) -> Path | None:
    """The cache directory for a setting (a flag's value, else `BEEPGPT_EMBEDDING_CACHE`), or
    None when the cache is switched off."""
    value = setting if setting is not None else environ.get(CACHE_ENV, "")
    if value.strip().lower() in OFF_VALUES:
        return None
    if not value.strip():
        return default_directory(environ)
    return Path(value).expanduser()


def text_digest(text: str) -> bytes:
    """sha256 of the exact text. `surrogatepass` because a Slack export's JSON may carry a lone
    surrogate (half an emoji) that strict UTF-8 refuses: such a text is still a valid key."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def vector_space(embedder: Embedder) -> str:
    """The cache's identity of an embedder's vectors: `name`, and `cache_variant` when the
    embedder has one (vectors that are comparable but not bit-identical, such as the local
    model's bfloat16 and float32 runs, are cached apart so a warm run reproduces a cold one)."""
    variant = str(getattr(embedder, "cache_variant", "") or "")
    return f"{embedder.name}|{variant}" if variant else embedder.name


def file_name(space: str) -> str:
    """A readable, filesystem-safe file name; the hash suffix keeps two spaces whose readable
    parts sanitise alike in separate files."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", space).strip("._")[:80] or "space"
    return f"{readable}-{hashlib.sha256(space.encode()).hexdigest()[:10]}.sqlite3"


class VectorCache:
    """One vector space's vectors by text, in one SQLite file.

    Thread-safe (one connection behind a lock); processes coordinate through SQLite's locks.
    After the first failure to open or read the file every call is a no-op: one warning, then
    the run goes on as if the cache were empty.
    """

    def __init__(self, path: Path, space: str) -> None:
        self.path = path
        self.space = space
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._broken = False
        self._bad_rows_reported = False

    @classmethod
    def for_embedder(cls, embedder: Embedder, directory: Path) -> VectorCache:
        space = vector_space(embedder)
        return cls(directory / file_name(space), space)

    @property
    def usable(self) -> bool:
        return not self._broken

    def __repr__(self) -> str:
        return f"VectorCache({str(self.path)!r}, {self.space!r})"

    def close(self) -> None:
        with self._lock:
            if self._connection is not None:
                self._connection.close()
                self._connection = None

    def __enter__(self) -> VectorCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get_many(self, texts: Iterable[str], dimension: int | None = None) -> dict[str, Vector]:
        """The cached vectors of those texts that have one (of `dimension` when given).

        Rows are checked before use (right size, finite, unit length): a row failing that is
        left out, so it is recomputed and overwritten, never returned.
        """
        by_digest: dict[bytes, str] = {text_digest(text): text for text in texts}
        if not by_digest:
            return {}
        with self._lock:
            connection = self._open()
            if connection is None:
                return {}
            rows: list[tuple[bytes, int, bytes]] = []
            digests = list(by_digest)
            try:
                for start in range(0, len(digests), READ_CHUNK):
                    chunk = digests[start : start + READ_CHUNK]
                    marks = ",".join("?" * len(chunk))
                    query = f"SELECT digest, dim, vector FROM vectors WHERE digest IN ({marks})"
                    args: list[Any] = list(chunk)
                    if dimension is not None:
                        query += " AND dim = ?"
                        args.append(dimension)
                    rows.extend(connection.execute(query, args).fetchall())
            except sqlite3.Error as error:
                self._fail("cannot be read", error)
                return {}
        return self._decode(rows, by_digest)

    def put_many(self, texts: Sequence[str], matrix: Matrix) -> None:
        """Store one batch of vectors in one transaction (a failure costs only this batch)."""
        if len(texts) != len(matrix):
            raise ValueError(f"{len(texts)} texts for {len(matrix)} vectors")
        if not texts:
            return
        rows = np.ascontiguousarray(matrix, dtype=np.float32)
        dim = int(rows.shape[1])
        records = [(text_digest(text), dim, row.tobytes()) for text, row in zip(texts, rows, strict=True)]
        with self._lock:
            connection = self._open()
            if connection is None:
                return
            try:
                with _transaction(connection):
                    connection.executemany(
                        "INSERT OR REPLACE INTO vectors (digest, dim, vector) VALUES (?, ?, ?)", records
                    )
            except sqlite3.OperationalError as error:
                if "locked" in str(error) or "busy" in str(error):
                    log.warning(
                        "embedding cache %s: another process held it for %.0f s; %d vectors not stored",
                        self.path,
                        BUSY_TIMEOUT_S,
                        len(records),
                    )
                    return
                self._fail("cannot be written", error)
            except sqlite3.Error as error:
                self._fail("cannot be written", error)

    def count(self) -> int:
        """Rows stored (for tests and reports); 0 when the file is unusable."""
        with self._lock:
            connection = self._open()
            if connection is None:
                return 0
            try:
                return int(connection.execute("SELECT count(*) FROM vectors").fetchone()[0])
            except sqlite3.Error as error:
                self._fail("cannot be read", error)
                return 0

    def _open(self) -> sqlite3.Connection | None:
        """The connection, opened and checked on first use; None once the file proved unusable."""
        if self._broken:
            return None
        if self._connection is not None:
            return self._connection
        connection: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(
                self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
            )
            # takes effect on a new file only: a 384-float row costs 1.7 KB on 8 KiB pages
            # against 2.2 KB on the default 4 KiB ones (measured), where two rows fill a page
            connection.execute(f"PRAGMA page_size={PAGE_SIZE}")
            # the first query reads the header: a file that is not a database fails here
            connection.execute("PRAGMA journal_mode=WAL").fetchone()
            connection.execute("PRAGMA synchronous=NORMAL")
            with _transaction(connection):
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
                )
                connection.execute(
                    "CREATE TABLE IF NOT EXISTS vectors "
                    "(digest BLOB NOT NULL, dim INTEGER NOT NULL, vector BLOB NOT NULL, "
                    "PRIMARY KEY (digest, dim))"
                )
                connection.executemany(
                    "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
                    [("schema", SCHEMA_VERSION), ("space", self.space)],
                )
            meta = dict(connection.execute("SELECT key, value FROM meta").fetchall())
        except (OSError, sqlite3.Error) as error:
            if connection is not None:
                connection.close()
            self._fail("cannot be opened", error)
            return None
        if meta.get("space") != self.space or meta.get("schema") != SCHEMA_VERSION:
            connection.close()
            self._fail(
                "belongs to another vector space or schema",
                f"space {meta.get('space')!r} schema {meta.get('schema')!r}, "
                f"expected {self.space!r} schema {SCHEMA_VERSION!r}",
            )
            return None
        self._connection = connection
        return connection

    def _fail(self, what: str, error: object) -> None:
        """Report once and stop using the file: a broken cache must cost speed, not the run."""
        log.warning(
            "embedding cache %s %s (%s): treating it as empty for this run; "
            "delete the file to rebuild it, or set %s=off",
            self.path,
            what,
            error,
            CACHE_ENV,
        )
        self._broken = True
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    def _decode(
        self, rows: list[tuple[bytes, int, bytes]], by_digest: Mapping[bytes, str]
    ) -> dict[str, Vector]:
        """Rows → vectors, keeping only well-formed unit rows (zero rows too: `normalise` keeps
        an empty text's zero vector zero)."""
        found: dict[str, Vector] = {}
        bad = 0
        by_dim: dict[int, list[tuple[str, bytes]]] = {}
        for digest, dim, blob in rows:
            text = by_digest.get(bytes(digest))
            if text is None or dim <= 0 or len(blob) != 4 * dim:
                bad += 1
                continue
            by_dim.setdefault(int(dim), []).append((text, bytes(blob)))
        for dim, items in by_dim.items():
            matrix = (
                np.frombuffer(b"".join(blob for _, blob in items), dtype=np.float32).reshape(-1, dim).copy()
            )
            norms = np.linalg.norm(matrix, axis=1)
            good = np.isfinite(matrix).all(axis=1) & (
                (np.abs(norms - 1.0) <= UNIT_TOLERANCE) | (norms == 0.0)
            )
            bad += int((~good).sum())
            for (text, _), row, ok in zip(items, matrix, good, strict=True):
                if ok:
                    found[text] = row
        if bad and not self._bad_rows_reported:
            self._bad_rows_reported = True
            log.warning(
                "embedding cache %s: %d malformed vectors ignored (they are recomputed)", self.path, bad
            )
        return found


@contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    """One explicit transaction (the connection is in autocommit mode, so without it each row
    would be its own). IMMEDIATE takes the write lock at the start, waiting out another writer
    through the busy timeout, rather than failing when a read lock cannot be upgraded."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if connection.in_transaction:  # some errors (a full disk) have rolled it back already
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def add_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """`--embedding-cache DIR` / `--no-embedding-cache`, for every command that embeds a history."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--embedding-cache",
        metavar="DIR",
        help=f"directory of the on-disk vector cache by text (default: ${CACHE_ENV}, "
        "else $XDG_CACHE_HOME/beepgpt/embeddings)",
    )
    group.add_argument(
        "--no-embedding-cache",
        action="store_true",
        help=f"embed every message, read and write no vector cache (also {CACHE_ENV}=off)",
    )


def cache_from_args(args: argparse.Namespace, embedder: Embedder) -> VectorCache | None:
    """The cache the command line (then the environment) asks for, or None when it is off."""
    if getattr(args, "no_embedding_cache", False):
        return None
    directory = cache_directory(getattr(args, "embedding_cache", None))
    return None if directory is None else VectorCache.for_embedder(embedder, directory)


def cached_store(args: argparse.Namespace, embedder: Embedder) -> MessageEmbeddings:
    """A fresh message store backed by the cache the command line asks for."""
    from scorer.embeddings import MessageEmbeddings

    return MessageEmbeddings(embedder, cache_from_args(args, embedder))


def cache_from_environment(embedder: Embedder, environ: Mapping[str, str] = os.environ) -> VectorCache | None:
    directory = cache_directory(None, environ)
    return None if directory is None else VectorCache.for_embedder(embedder, directory)
