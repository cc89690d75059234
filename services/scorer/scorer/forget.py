"""Forgetting a person in saved model versions: their activity and profiles.

`beepgpt forget <user> --model-dir DIR` (`offline/offline/forget.py`) calls these; running
scorers keep their in-memory copy until the next model swap or restart.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

from scorer.interest.activity import ACTIVITY_FILE, PROFILES_FILE, Activity


class NoModel(ValueError):
    """A path given as a model directory holds no model version."""


def model_versions(paths: Sequence[Path]) -> list[Path]:
    """The model versions under `paths` (a version, or a directory of versions), each once.

    Checked before anything is removed, so a mistyped directory stops the command early."""
    out: list[Path] = []
    for path in paths:
        if (path / ACTIVITY_FILE).exists():
            found = [path]
        elif path.is_dir():
            found = sorted(p for p in path.iterdir() if (p / ACTIVITY_FILE).exists())
        else:
            found = []
        if not found:
            raise NoModel(f"{path} holds no model activity ({ACTIVITY_FILE})")
        # a `current` symlink to a version already listed is the same version
        out.extend(real for real in (p.resolve() for p in found) if real not in out)
    return out


def forget_model_versions(versions: Sequence[Path], user: str) -> dict[str, bool]:
    """Remove `user` from each version's activity and profiles; version → whether it held any.

    The files are written next to the old ones and moved over them, so a scorer loading the
    version meanwhile reads either the old files or the new ones, never half of one."""
    out: dict[str, bool] = {}
    for version in versions:
        loaded = Activity.load(version)
        found = bool(loaded.forget(user))
        if found:
            with tempfile.TemporaryDirectory(dir=version, prefix=".forget-") as staging:
                loaded.save(Path(staging))
                for name in (PROFILES_FILE, ACTIVITY_FILE):
                    os.replace(Path(staging) / name, version / name)
        out[str(version)] = found
    return out
