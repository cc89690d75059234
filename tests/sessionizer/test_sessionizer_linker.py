"""The reply linker: what it links, that it only looks back, and that a replay repeats it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sessionizer_helpers import links_by_rows

from offline import conversations as listing
from sessionizer import linker as linker_module
from sessionizer import linker_kernel as kernel
from sessionizer.linker import (
    FEATURE_SET,
    FEATURES,
    Linker,
    LinkerModel,
    ModelError,
    _others_between,
    compile_kernels,
    load_model,
    read,
)


def test_the_shipped_model_loads_with_its_window() -> None:
    model = load_model()
    assert model.window_messages == 100
    assert model.window_s == 14_400.0
    assert model.meta["feature_set"] == FEATURE_SET == 3
    assert "Kummerfeld" in model.meta["trained_on"]
    assert model.meta["trained_by"] == "offline.training.linker"


def test_a_model_of_another_feature_set_is_refused() -> None:
    data = load_model().to_dict()
    data["feature_set"] = 1
    with pytest.raises(ModelError):
        LinkerModel.from_dict(data)


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
    late = linker.link("C", "20000.000000", 20000.0, "UB", "<@UA> mount the usb disk")
    assert late.parent_ts is None  # five and a half hours later: past the four-hour window


def test_a_quiet_channel_links_an_answer_minutes_later() -> None:
    """A slow channel: the answer names the asker twenty minutes on."""
    linker = Linker()
    linker.link("C", "1.000000", 1.0, "UA", "how do I mount a usb disk?")
    answer = linker.link("C", "1201.000000", 1201.0, "UB", "<@UA> use the mount command on the usb disk")
    assert answer.parent_ts == "1.000000"


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


def test_others_between_counts_the_other_people_after_each_candidate() -> None:
    """The cumulative-sum form against its definition: distinct authors after the candidate,
    neither the new message's author nor the candidate's, capped at 3."""
    rng = np.random.default_rng(0)
    for _ in range(500):
        users = rng.integers(0, 6, int(rng.integers(1, 30)))
        me = int(rng.integers(0, 6))
        latest = np.array([u not in users[i + 1 :] for i, u in enumerate(users)])
        want = [min(len(set(users[i + 1 :].tolist()) - {me, int(users[i])}), 3) for i in range(len(users))]
        assert _others_between(latest, users == me).tolist() == want


def _chat(n: int, seed: int, *, gap_s: float = 120.0) -> list[tuple[str, float, str, str]]:
    rng = random.Random(seed)
    users = [f"U{i}" for i in range(8)]
    words = ["disk", "mount", "usb", "grub", "kernel", "driver", "wifi", "sound", "xorg", "apt", "package", "install", "error", "boot"]
    cues = ["", "", "", " thanks", " `sudo apt`", " https://x.org", " yes", "hi "]
    out = []
    t = 1_000.0
    for _i in range(n):
        t += rng.uniform(1, gap_s)
        text = " ".join(rng.choice(words) for _ in range(rng.randint(1, 6))) + rng.choice(cues)
        if rng.random() < 0.4:
            text = f"<@{rng.choice(users)}> {text}"
        if rng.random() < 0.1:
            text = f"<@{rng.choice(users)}> <@{rng.choice(users)}> <@{rng.choice(users)}> {text}"
        if rng.random() < 0.2:
            text += "?"
        out.append((f"{t:.6f}", t, rng.choice(users), text))
    return out


@pytest.mark.parametrize("gap_s", [5.0, 120.0, 900.0])
def test_the_fast_linear_scores_equal_the_rows_times_the_weights(gap_s: float) -> None:
    """`link` scores a linear model group by group (`_linear_scores`); training reads the rows
    (`_rows`). Both must give the same score to every candidate and to starting, on busy and
    quiet chat, with a small ring (messages leave it) and a model whose every weight differs."""
    rng = np.random.default_rng(1)
    model = LinkerModel.linear(
        rng.normal(size=len(FEATURES)), window_messages=30, window_s=3_000.0, version="t", meta={}
    )
    linker = Linker(model)
    checked = 0
    for ts, t, user, text in _chat(1_500, seed=11, gap_s=gap_s):
        window = linker._windows.get("C")
        if window is not None:
            said = read(text)
            user_id = linker._user_id(user)
            slots = linker._slots(window, t)
            if len(slots):
                fast, own = linker._linear_scores(window, slots, said, user_id, t)
                rows = model.score(linker._rows(window, slots, said, user_id, t))
                assert np.allclose(fast, rows[:-1], atol=1e-9)
                assert own == pytest.approx(rows[-1], abs=1e-9)
                checked += 1
        linker.link("C", ts, t, user, text)
    assert checked > 1_000


def _net() -> LinkerModel:
    rng = np.random.default_rng(2)
    return LinkerModel(
        hidden=rng.normal(size=(len(FEATURES), 8)), hidden_bias=rng.normal(size=8), output=rng.normal(size=8),
        activation="relu", window_messages=40, window_s=3_600.0, version="t", meta={},
    )


@pytest.mark.parametrize("net", [False, True])
def test_a_replay_from_the_first_message_of_an_open_conversation_decides_the_same(net: bool) -> None:
    """What a restart does: the sessionizer replays from the oldest message of a conversation that
    may still change; every later message must get the same parent as the first time (for the
    shipped linear model and for a feed-forward net alike)."""
    chat = _chat(600, seed=7)
    model = _net() if net else load_model()
    first = Linker(model)
    links = [first.link("C", ts, t, u, x) for ts, t, u, x in chat]
    now = chat[-1][1]
    window = first.model.window_s
    roots = {link.root_ts for (ts, t, _, _), link in zip(chat, links, strict=True) if now - t <= window}
    start = min(i for i, (ts, _, _, _) in enumerate(chat) if ts in roots)
    again = Linker(model)
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


def _links_by_rows(linker: Linker, chat: list[tuple[str, str, float, str, str]]) -> list[tuple[str | None, str]]:
    return [(link.parent_ts, link.root_ts) for link in links_by_rows(linker, chat)]


def _fast_links(linker: Linker, chat: list[tuple[str, str, float, str, str]]) -> list[tuple[str | None, str]]:
    return [(link.parent_ts, link.root_ts) for link in (linker.link(*m) for m in chat)]


def test_exact_ties_are_decided_again_on_numpys_log1p_as_argmax_decides_them(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every candidate scores exactly 0 under a model whose only weight is the start's bias:
    too close to call on the C library's log1p, so `link` decides again with numpy's, and names
    the oldest candidate as `np.argmax` over the rows does."""
    weights = np.zeros(len(FEATURES))
    weights[FEATURES.index("self_bias")] = -1.0
    model = LinkerModel.linear(weights, window_messages=20, window_s=3_000.0, version="t", meta={})
    retries: list[bool] = []
    kernel.compile_lazily()  # before taking `link`, which it replaces
    link = kernel.link

    def counting(*args: Any) -> int:
        retries.append(bool(args[-1]))
        return int(link(*args))

    monkeypatch.setattr(kernel, "link", counting)
    chat = [("C", ts, t, u, x) for ts, t, u, x in _chat(300, seed=5)]
    fast = _fast_links(Linker(model), chat)
    assert sum(retries) > 250  # given_ages: the second call
    assert fast == _links_by_rows(Linker(model), chat)
    assert fast[5][0] == chat[0][1]  # the oldest candidate


def test_long_messages_and_a_small_vocabulary_bound_change_no_link(monkeypatch: pytest.MonkeyPatch) -> None:
    """The window's id pool grows when messages of hundreds of words come (and wraps around), and
    word ids are renumbered when the vocabulary passes its bound (words of messages gone from
    every window lose theirs): the same links as the rows."""
    rng = random.Random(3)
    shared = [f"word{i}" for i in range(300)]

    def words(k: int) -> str:
        count = rng.choice([2, 10, 400])
        return " ".join(rng.sample(shared, min(count, 20)) + [f"only{k}x{j}" for j in range(count)])

    chat = [
        (f"C{k % 3}", ts, t, u, x + " " + words(k))
        for k, (ts, t, u, x) in enumerate(_chat(900, seed=9, gap_s=30.0))
    ]
    monkeypatch.setattr(linker_module, "_VOCABULARY_MIN", 4_096)
    compactions = []
    compact = Linker._compact

    def counting(self: Linker) -> None:
        compactions.append(len(self._words))
        compact(self)

    monkeypatch.setattr(Linker, "_compact", counting)
    small = Linker()
    fast = _fast_links(small, chat)
    assert len(compactions) >= 3
    assert len(small._words) < len(set().union(*(read(m[4]).words for m in chat))) / 2
    assert max(len(w.pool) for w in small._windows.values()) > 1024  # grown
    monkeypatch.setattr(linker_module, "_VOCABULARY_MIN", 1 << 17)
    assert fast == _links_by_rows(Linker(), chat) == _fast_links(Linker(), chat)


def test_the_kernel_compiles_before_the_first_message() -> None:
    assert compile_kernels() < 120.0
