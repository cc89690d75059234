"""What the deploy tests share: where things are, running the tools, importing deploy/'s scripts."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VALIDATE = DEPLOY / "validate.sh"


def run(*args: str | Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run a command from the repository root, with this interpreter as validate.sh's PY."""
    return subprocess.run(
        [str(a) for a in args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PY": sys.executable},
    )


def load_script(path: Path) -> ModuleType:
    """Import one of deploy/'s scripts (they are files, not a package) to test its functions."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module
