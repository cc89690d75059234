"""The linker's fast path decides exactly as its plain definition, on real chat.

`Linker.link` scores a linear model in compiled code, group by group over the window's arrays
(`linker_kernel`, which also keeps the window's bookkeeping), and reads text with patterns tried
only where they can match (`read`). Both are optimisations of
a definition that training uses too: `read_plainly` for the cues, and the feature rows
(`Linker.candidates`, what `offline.training.linker` fits the shipped model on) times the
model's weights for the scores. On the annotated Ubuntu IRC corpus and on elmlang #general,
the fast path must find the same cues and name the same parent for every message.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sessionizer_helpers import links_by_rows

from offline.evaluation.conversations.data import people_messages
from offline.tables import load_table
from sessionizer.linker import Linker, load_model, read, read_plainly

REAL_CHAT = Path("/work/shared/data/real-chat")
UBUNTU = REAL_CHAT / "ubuntu-irc-train"
ELM = REAL_CHAT / "elmlang-general"

FlowMessage = tuple[str, str, float, str, str]


def _flow(path: Path, channels: int | None = None) -> list[FlowMessage]:
    """(channel, ts, sent_s, user, text) of the people's flow messages (no thread replies), in
    table order, of the first `channels` channels (all: None)."""
    table = load_table(path)
    if channels is not None:
        keep = sorted(table["channel"].unique())[:channels]
        table = table[table["channel"].isin(keep)].reset_index(drop=True)
    return [
        (str(channel), str(ts), float(ts), str(user), str(text))
        for channel, ts, thread_ts, user, text in people_messages(table)
        if not isinstance(thread_ts, str) or thread_ts == ts
    ]


@pytest.mark.parametrize("path", [UBUNTU, ELM], ids=["ubuntu", "elmlang"])
def test_read_finds_the_cues_of_its_plain_definition(path: Path) -> None:
    texts = [str(t) for t in load_table(path)["text"]]
    assert len(texts) > 10_000
    assert [t for t in texts if read(t) != read_plainly(t)] == []


def test_cues_edge_cases_read_the_same() -> None:
    """What each skipped pattern needs: markup, prompts, paths, file names, case, non-ASCII."""
    texts = [
        "", "   ", "`x`", " $ ls", "\t# rm -rf", "#channel", "SUDO Apt-Get install", "apt-get", "aptitude",
        "see /usr/bin/", "/etc/x", "foo.SH", "é.py", "a.pyc", ".py", "x .py", "İ.py", "http://x", "HTTPS://a",
        "www.x", "WWW.x", "<@U1> thanks!", "<@U1|bob> <@U2> thx", "<http://a.sh|link>", "Thank you", "thanx",
        "ty", "typo", "appreciated", "Cheers?", "Hi all", "hey", "OK then", "it works", "is there a way",
        "<not markup", "a > b < c",
    ]
    assert [t for t in texts if read(t) != read_plainly(t)] == []


def test_the_fast_links_equal_the_feature_rows_times_the_weights_on_ubuntu() -> None:
    """Every message of 60 Ubuntu chunks (busy, with mentions, code and links; rings that fill
    and wrap) gets the parent and conversation its feature rows give under the shipped model."""
    messages = _flow(UBUNTU, channels=60)
    assert len(messages) > 30_000
    assert load_model().activation == "identity"  # so `link` takes the fast path
    fast = Linker()
    assert [fast.link(*m) for m in messages] == links_by_rows(Linker(), messages)


def test_the_fast_links_equal_the_feature_rows_times_the_weights_on_elmlang() -> None:
    """The same on another community's chat: one busy channel, short messages, Slack markup."""
    messages = _flow(ELM)
    assert len(messages) > 10_000
    fast = Linker()
    assert [fast.link(*m) for m in messages] == links_by_rows(Linker(), messages)
