"""The model directory: what `beepgpt train` writes and the scorer loads, and its format version.

    models/<name>/
      manifest.json   format + format_version, version, kind (local | openai), embedder,
                      the data's fingerprint, the files below
      labels.json     the label map: user ids (with names) in class order, then "nobody"
      settings.json   the settings training used (so a rerun can reproduce it)
      metrics.json    training and validation figures
      pairs.lgb.txt   pairs kind: the pair interest model (LightGBM's text format)
      pairs.N.lgb.txt pairs kind, format 4: the ensemble's further boosters (N = 1, 2, ...)
      pairs.npz       pairs kind: its calibration, threshold, feature names (format 4: and the
                      number of boosters)
      activity.json   pairs kind: the workspace's activity at the end of training
      profiles.npz    pairs kind: each person's profile vector then
      interest.npz    local kind (formats 1-2): the per-person classifier's weights
      openai.json     openai kind: the fine-tuning files, job id and resulting model id
      space.npz       the embedding space's workspace statistics the topic matcher uses
      lexicon.json    format 2: the workspace's word statistics the topic matcher uses

The manifest is written last, so a directory without one is "not finished" (an OpenAI job that
is still running, a crashed run) rather than a broken model. A reader refuses a manifest whose
`format_version` it does not know, with a message that says what to do, instead of misreading
arrays laid out by another version.

Versions: 1 had no `lexicon.json` (topic scores from embeddings alone, with that score's own
threshold recorded in `settings.json`); 2 adds it (embeddings and words, `scorer.topics.lexical`).
This code reads both: a version-1 directory keeps scoring topics the way it was measured. A
scorer that only knows version 1 refuses a version-2 directory, rather than applying its
threshold to the other score. 3 adds the `pairs` kind (`scorer.interest.pairs`, what `beepgpt
train` writes); a scorer that knows only 1 and 2 refuses it rather than guessing at its files.
4 lets the pair model be an ensemble of boosters (`pairs.N.lgb.txt`, their count in `pairs.npz`):
a scorer that knows only 3 would score with the first booster alone under the ensemble's
calibration and threshold, so it refuses 4; this code reads a version-3 directory as an ensemble
of one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

FORMAT = "beepgpt-model"
FORMAT_VERSION = 4
READABLE_VERSIONS = (1, 2, 3, 4)
"""Versions this code loads (see the module's docstring for what changed)."""

ModelKind = Literal["pairs", "local", "openai"]

MANIFEST = "manifest.json"
LABELS = "labels.json"
SETTINGS = "settings.json"
METRICS = "metrics.json"


class ModelFormatError(Exception):
    """The directory is not a model this code can read; the message says why and what to do."""


@dataclass(frozen=True)
class DataFingerprint:
    """Which history a model learned from: enough to tell two trainings' data apart."""

    sha256: str
    messages: int
    first_ts: float | None
    last_ts: float | None
    source: str = ""


@dataclass(frozen=True)
class Manifest:
    version: str
    kind: ModelKind
    embedder: str
    data: DataFingerprint
    created_at: str
    files: tuple[str, ...] = ()
    format: str = FORMAT
    format_version: int = FORMAT_VERSION
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["files"] = list(self.files)
        out["extra"] = dict(self.extra)
        return out

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> Manifest:
        return cls(
            version=str(raw["version"]),
            kind=raw["kind"],
            embedder=str(raw["embedder"]),
            data=DataFingerprint(**raw["data"]),
            created_at=str(raw["created_at"]),
            files=tuple(raw.get("files", ())),
            format=str(raw["format"]),
            format_version=int(raw["format_version"]),
            extra=dict(raw.get("extra", {})),
        )


def fingerprint_rows(rows: Iterable[tuple[str, str, str, str]], *, source: str = "") -> DataFingerprint:
    """SHA-256 over (channel, ts, user, text) rows in a canonical order, plus counts and span."""
    ordered = sorted(rows, key=lambda row: (float(row[1]), row[0], row[1]))
    digest = hashlib.sha256()
    for channel, ts, user, text in ordered:
        digest.update(json.dumps([channel, ts, user, text], ensure_ascii=False).encode())
        digest.update(b"\n")
    return DataFingerprint(
        sha256=digest.hexdigest(),
        messages=len(ordered),
        first_ts=float(ordered[0][1]) if ordered else None,
        last_ts=float(ordered[-1][1]) if ordered else None,
        source=source,
    )


def new_version(name: str, data: DataFingerprint, now: datetime | None = None) -> str:
    """`<name>@<UTC time>-<data hash>`: sortable, and says which data it came from."""
    when = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return f"{name}@{when}-{data.sha256[:8]}"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_json(path: Path, value: Any) -> None:
    """JSON, readable by people (sorted keys, indented), written whole or not at all."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelFormatError(f"{path.parent} lacks {path.name}") from None
    except json.JSONDecodeError as error:
        raise ModelFormatError(f"{path} is not valid JSON: {error}") from None


def write_manifest(directory: Path, manifest: Manifest) -> None:
    files = tuple(sorted(p.name for p in directory.iterdir() if p.is_file() and p.name != MANIFEST))
    final = replace(manifest, files=files)
    write_json(directory / MANIFEST, final.to_json())


def read_manifest(directory: Path) -> Manifest:
    """The manifest of a model directory, after checking it is one this code reads."""
    if not directory.is_dir():
        raise ModelFormatError(f"no model directory at {directory}; train one with `beepgpt train`")
    path = directory / MANIFEST
    if not path.exists():
        raise ModelFormatError(
            f"{directory} has no {MANIFEST}: it is not a BeepGPT model directory, or its training has not "
            f"finished (an OpenAI fine-tuning job still running? `beepgpt train --openai --out {directory}` "
            "resumes following it)"
        )
    raw = read_json(path)
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise ModelFormatError(f"{path} is not a {FORMAT} manifest")
    found = raw.get("format_version")
    if found not in READABLE_VERSIONS:
        raise ModelFormatError(
            f"{directory} holds model format version {found}, but this scorer reads version "
            f"{', '.join(map(str, READABLE_VERSIONS[:-1]))} or {READABLE_VERSIONS[-1]}; retrain it with this version's `beepgpt train`, or run the scorer "
            "version that wrote it"
        )
    try:
        manifest = Manifest.from_json(raw)
    except (KeyError, TypeError, ValueError) as error:
        raise ModelFormatError(f"{path} is incomplete or malformed: {error!r}") from None
    missing = [name for name in manifest.files if not (directory / name).exists()]
    if missing:
        raise ModelFormatError(f"{directory} lacks {missing}, which its manifest lists")
    return manifest


@contextmanager
def staged_directory(out: Path) -> Iterator[Path]:
    """A fresh directory beside `out` to write a model into; it replaces `out` only when the
    block finishes without an error, so a reader never sees a half-written model."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield stage
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    replace_directory(stage, out)


def replace_directory(new: Path, out: Path) -> None:
    """Move `new` to `out`, removing what was there. Two renames: a reader polling `out` may see
    it missing for an instant (and keeps its current model), never a mix of two versions."""
    old: Path | None = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(new, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
