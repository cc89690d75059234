"""The reply linker: what it links, that it only looks back, and that a replay repeats it."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pandas as pd
import pytest

from offline import conversations as listing
from sessionizer.linker import Linker, load_model, read


def test_the_shipped_model_loads_with_its_window() -> None:
    model = load_model()
    assert model.window_messages == 50
    assert model.window_s == 1800.0
    assert "Kummerfeld" in model.meta["trained_on"]


def test_a_mention_of_a_recent_author_links_to_their_message() -> None:
    linker = Linker()
    assert linker.link("C", "1.000000", 1.0, "UA", "how do I mount a usb disk?").parent_ts is None
    linker.link("C", "2.000000", 2.0, "UB", "what is the best irc client?")
    answer = linker.link("C", "3.000000", 3.0, "UC", "<@UA> use the mount command on the usb disk")
    assert answer.parent_ts == "1.000000"
    assert answer.root_ts == "1.000000"


def test_nothing_older_than_the_window_is_a_candidate() -> None:
    linker = Linker()
    linker.link("C", "1.000000", 1.0, "UA", "how do I mount a usb disk?")
    late = linker.link("C", "5000.000000", 5000.0, "UA", "<@UA> mount the usb disk")
    assert late.parent_ts is None  # 83 minutes later: past the 30-minute window


def test_channels_never_link_across() -> None:
    linker = Linker()
    linker.link("C1", "1.000000", 1.0, "UA", "how do I mount a usb disk?")
    assert linker.link("C2", "2.000000", 2.0, "UB", "<@UA> mount the usb disk").parent_ts is None


def test_cues_are_read_from_text() -> None:
    said = read("<@U1> thanks! see https://x.org and `sudo mount`?")
    assert said.mentions == ("U1",)
    assert said.thanks
    assert said.url
    assert said.code
    assert said.question


def _chat(n: int, seed: int) -> list[tuple[str, float, str, str]]:
    rng = random.Random(seed)
    users = [f"U{i}" for i in range(8)]
    words = ["disk", "mount", "usb", "grub", "kernel", "driver", "wifi", "sound", "xorg", "apt", "package", "install", "error", "boot"]
    out = []
    t = 1_000.0
    for _i in range(n):
        t += rng.uniform(1, 120)
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6)))
        if rng.random() < 0.4:
            text = f"<@{rng.choice(users)}> {text}"
        if rng.random() < 0.2:
            text += "?"
        out.append((f"{t:.6f}", t, rng.choice(users), text))
    return out


def test_a_replay_from_the_first_message_of_an_open_conversation_decides_the_same() -> None:
    """What a restart does: the sessionizer replays from the oldest message of a conversation that
    may still change; every later message must get the same parent as the first time."""
    chat = _chat(600, seed=7)
    first = Linker()
    links = [first.link("C", ts, t, u, x) for ts, t, u, x in chat]
    now = chat[-1][1]
    window = first.model.window_s
    roots = {link.root_ts for (ts, t, _, _), link in zip(chat, links, strict=True) if now - t <= window}
    start = min(i for i, (ts, _, _, _) in enumerate(chat) if ts in roots)
    again = Linker()
    replayed = [again.link("C", ts, t, u, x) for ts, t, u, x in chat[start:]]
    by_ts = dict(zip((c[0] for c in chat), links, strict=True))
    open_again = [
        (ts, link) for (ts, t, _, _), link in zip(chat[start:], replayed, strict=True)
        if by_ts[ts].root_ts in roots
    ]
    assert open_again  # the check covers messages
    assert all(by_ts[ts] == link for ts, link in open_again)


@pytest.fixture
def busy() -> pd.DataFrame:
    rows = [
        (1700000000.0001, "UA", "how do I mount a usb disk in ubuntu?"),
        (1700000030.0001, "UC", "anyone know a good irc client for gnome?"),
        (1700000060.0001, "UB", "<@UA> try sudo mount /dev/sdb1 /mnt for the usb disk"),
        (1700000090.0001, "UD", "<@UC> xchat is a good irc client"),
    ]
    return pd.DataFrame(
        {"ts": [r[0] for r in rows], "thread_ts": [None] * 4, "channel": ["C"] * 4,
         "user": [r[1] for r in rows], "text": [r[2] for r in rows]}
    )


def test_conversations_command_lists_linked_conversations(
    busy: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "busy.parquet"
    busy.to_parquet(path)
    assert listing.main([str(path), "--mode", "gap"]) == 0
    gap_lines = capsys.readouterr().out.splitlines()
    assert listing.main([str(path), "--mode", "linked"]) == 0
    linked_lines = capsys.readouterr().out.splitlines()
    assert len(gap_lines) == 1
    assert len(linked_lines) == 2
    members = sorted(sorted(m["user"] for m in json.loads(line)["messages"]) for line in linked_lines)
    assert members == [["UA", "UB"], ["UC", "UD"]]
