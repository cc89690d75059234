"""Each image installs only pinned, hashed packages: its lock agrees with its requirements.txt.

A lock (`services/<service>/requirements.lock`, made with `uv pip compile --generate-hashes`,
docs/operations.md "Locks") pins every package the image installs, transitive ones included.
These tests fail when a pin in a requirements file changes without the lock being made again,
when a lock entry has no hash, or when a Dockerfile installs anything but the lock.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from deploy_helpers import REPO

SERVICES = ("ingest", "sessionizer", "scorer", "notifier")
# torch comes from PyTorch's CPU index in the scorer's Dockerfile (not hash-locked); PyPI's torch
# would bring these CUDA packages, which must never be in a lock.
NOT_LOCKED = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*)$")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(path: Path) -> dict[str, str]:
    """name -> version of a requirements file's `name==version` lines (following `-r`)."""
    found: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            found |= pins(path.parent / line[3:].strip())
        elif line:
            match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(?:\[[^\]]*\])?==([^\s;]+)", line)
            assert match, f"{path.relative_to(REPO)}: not an exact pin: {line!r}"
            found[normalize(match.group(1))] = match.group(2)
    return found


def lock_entries(path: Path) -> dict[str, tuple[str, int]]:
    """name -> (version, number of hashes) of a uv/pip-compile lock."""
    entries: dict[str, tuple[str, int]] = {}
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    for line in text.splitlines():
        if not line or line.startswith((" ", "#")):
            continue
        match = re.match(r"([A-Za-z0-9_.\-]+)==(\S+)", line)
        assert match, f"{path.relative_to(REPO)}: not a pinned entry: {line[:80]!r}"
        entries[normalize(match.group(1))] = (match.group(2), line.count("--hash=sha256:"))
    return entries


def requirements(service: str) -> dict[str, str]:
    return pins(REPO / "shared" / "requirements.txt") | pins(REPO / "services" / service / "requirements.txt")


LOCKS = [(service, f"services/{service}/requirements.lock", (service,)) for service in SERVICES] + [
    ("offline", "offline/requirements.lock", SERVICES)
]
"""(image, lock, the services whose requirements it holds): the trainer image (offline/) holds
every service package it drives, and offline's own requirements."""


@pytest.mark.parametrize(("service", "lock", "sources"), LOCKS, ids=[lock for _, lock, _ in LOCKS])
def test_the_lock_pins_every_requirement_at_its_version_with_hashes(
    service: str, lock: str, sources: tuple[str, ...]
) -> None:
    entries = lock_entries(REPO / lock)
    wanted: dict[str, str] = {}
    for source in sources:
        wanted |= requirements(source)
    if service == "offline":
        wanted |= pins(REPO / "offline" / "requirements.txt")
    problems = [
        f"{name}=={version}: lock has {entries[name][0] if name in entries else 'nothing'}"
        for name, version in wanted.items()
        if not NOT_LOCKED.match(name) and entries.get(name, ("",))[0] != version
    ]
    assert problems == [], f"{lock} is out of date (docs/operations.md, Locks): {problems}"
    assert [name for name, (_, hashes) in entries.items() if hashes == 0] == []
    assert [name for name in entries if NOT_LOCKED.match(name)] == []


def test_the_trainer_lock_agrees_with_the_scorer_runtime_lock() -> None:
    """Training and serving load the same model code: the same versions of everything."""
    runtime = lock_entries(REPO / "services/scorer/requirements.lock")
    train = lock_entries(REPO / "offline/requirements.lock")
    assert runtime.keys() <= train.keys()
    assert {n: v for n, (v, _) in runtime.items() if train[n][0] != v} == {}


IMAGES = {service: f"services/{service}" for service in SERVICES} | {"offline": "offline"}


@pytest.mark.parametrize("image", sorted(IMAGES))
def test_the_image_installs_only_its_lock(image: str) -> None:
    folder = IMAGES[image]
    text = (REPO / folder / "Dockerfile").read_text()
    installs = [
        line for line in text.splitlines() if "pip install" in line and not line.lstrip().startswith("#")
    ]
    locked = f"pip install --require-hashes --no-deps -r {folder}/requirements.lock && pip check"
    assert any(locked in line for line in installs)
    for line in installs:
        # Besides the locks: the project's own packages and the CPU torch, both without deps.
        assert "--no-deps" in line, line
        assert "requirements.txt" not in line, line


def test_the_scorer_installs_the_cpu_torch_of_its_requirements() -> None:
    text = (REPO / "services" / "scorer" / "Dockerfile").read_text()
    version = re.search(r"^ARG TORCH_VERSION=(\S+)", text, re.MULTILINE)
    assert version
    assert version.group(1) == pins(REPO / "services/scorer/requirements.txt")["torch"]
    assert re.search(r"pip install --no-deps --index-url https://download\.pytorch\.org/whl/cpu", text)
