"""The model directory, loaded at start and swapped without a restart when a new version appears.

The scorer reads `BEEPGPT_SCORER_MODEL_DIR` (a model directory, or a symlink such as
`/models/current` that a deployment repoints). Every `model_poll_s` it takes a cheap fingerprint
of what the path points at (the resolved path and the names, sizes and mtimes of its files); only
when that changes does it load the directory again, in a worker thread so the event loop and the
consumer's heartbeats keep going. The swap is one reference assignment between batches' reads:
a batch in progress finishes with the model it started with. A load that fails (a half-written
directory, a format version this code does not read) is counted and logged and the current model
stays; the next poll tries again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from scorer.metrics import ERRORS, MODEL_INFO, MODEL_LOADS

log = logging.getLogger(__name__)

M = TypeVar("M")

Fingerprint = tuple[str, tuple[tuple[str, int, int], ...]]


def fingerprint(path: Path) -> Fingerprint:
    """What changes when a model directory is replaced or rewritten, read without loading it."""
    resolved = path.resolve()
    files: list[tuple[str, int, int]] = []
    if resolved.is_dir():
        for item in sorted(resolved.rglob("*")):
            if item.is_file():
                stat = item.stat()
                files.append((str(item.relative_to(resolved)), stat.st_size, stat.st_mtime_ns))
    return str(resolved), tuple(files)


class ModelWatcher(Generic[M]):
    """Holds the model loaded from `path` and replaces it when the directory changes."""

    def __init__(
        self,
        path: Path,
        load: Callable[[Path], M],
        version_of: Callable[[M], str],
        *,
        poll_s: float = 30.0,
        on_swap: Callable[[M, M], None] | None = None,
    ) -> None:
        self.path = path
        self._load = load
        self._version_of = version_of
        self._poll_s = poll_s
        self._on_swap = on_swap
        self._model: M | None = None
        self._version: str | None = None
        self._fingerprint: Fingerprint | None = None
        self._task: asyncio.Task[None] | None = None
        self.last_error: Exception | None = None

    @property
    def current(self) -> M:
        if self._model is None:
            raise RuntimeError("no model loaded yet: call start() first")
        return self._model

    @property
    def version(self) -> str | None:
        return self._version

    async def start(self) -> None:
        """Load the model (raising if it cannot be: a scorer without a model is not ready) and
        start polling for new versions."""
        if not await self.check():
            raise RuntimeError(
                f"could not load a model from {self.path}: {self.last_error}"
            ) from self.last_error
        self._task = asyncio.create_task(self._poll(), name="model-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check(self) -> bool:
        """Load the directory again if it changed; True when a model is in place afterwards."""
        try:
            seen = await asyncio.to_thread(fingerprint, self.path)
        except OSError as error:
            self.last_error = error
            log.warning("model directory unreadable", extra={"path": str(self.path), "error": str(error)})
            return self._model is not None
        if seen == self._fingerprint:
            return True
        try:
            model = await asyncio.to_thread(self._load, self.path)
            version = self._version_of(model)
        except Exception as error:
            self.last_error = error
            MODEL_LOADS.labels("failed").inc()
            ERRORS.labels("model_load").inc()
            log.error(
                "model load failed; keeping the current model",
                extra={
                    "path": str(self.path),
                    "current": self._version,
                    "error": f"{type(error).__name__}: {error}",
                },
            )
            return self._model is not None
        previous, previous_version = self._model, self._version
        self._model, self._version, self._fingerprint = model, version, seen
        MODEL_LOADS.labels("loaded").inc()
        if previous_version is not None:
            MODEL_INFO.labels(previous_version, str(self.path)).set(0)
        MODEL_INFO.labels(version, str(self.path)).set(1)
        if previous is not None and self._on_swap is not None:
            self._on_swap(previous, model)
        log.info("model loaded", extra={"path": seen[0], "version": version, "previous": previous_version})
        return True

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)  # a polling period, not synchronisation
            await self.check()
