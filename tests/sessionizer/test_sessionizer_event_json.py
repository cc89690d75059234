"""The live path's event JSON is the contract's JSON, byte for byte (sessionizer/event_json.py)."""

from __future__ import annotations

import json

import pytest

from beepgpt.contracts import ConversationEvent
from beepgpt.topics import CONVERSATIONS, encode
from sessionizer.conversation import ConversationBook
from sessionizer.event_json import FIELDS
from sessionizer.query import Change, Closed

AWKWARD = [
    "plain words",
    'quotes " and \\ backslashes',
    "new\nlines\tand\r\x00control\x1f",
    "ünïcödé — “typographic” 日本語 🚀",
    "</script> & <@U123|name> `code` *bold*",
    "",
    "x" * 5000,
]


def change(
    kind: str, ts: str, text: str | None, *, user: str = "U1", time_ns: int = 0, **extra: object
) -> Change:
    fields: dict[str, object] = {
        "key": "C1",
        "kind": kind,
        "channel": "C1",
        "thread_ts": None,
        "first_ts": "1700000000.000100",
        "ts": ts,
        "user": user,
        "text": text,
        "reactions": 0,
        "offset": int(float(ts) * 10) % 100_000,
        "time_ns": time_ns or int(float(ts) * 1e9),
    }
    fields.update(extra)
    return Change(**fields)  # type: ignore[arg-type]


def test_the_envelope_lists_the_contracts_fields_in_order() -> None:
    # A field added to ConversationEvent must be added to event_json too: this fails until it is.
    assert tuple(ConversationEvent.model_fields) == FIELDS


@pytest.mark.parametrize("window", [3, None])
def test_every_event_of_a_conversation_encodes_as_the_contract_does(window: int | None) -> None:
    book = ConversationBook(window)
    outputs = [
        change("new", f"1700000000.{100 + i:06d}", text, user=f"U{i % 3}") for i, text in enumerate(AWKWARD)
    ]
    outputs.append(change("edited", "1700000000.000105", 'edited ✎ "text"'))
    outputs.append(change("reaction", "1700000000.000106", None, reactions=2))
    outputs.append(change("new", "1700000000.000200", "after the reaction", user="U9"))
    outputs.append(change("deleted", "1700000000.000104", None))
    outputs.append(change("new", "1700000000.000300", "after the deletion"))
    emitted = [e for e in map(book.apply, outputs) if e is not None]
    closed = book.apply(Closed(key="C1", time_ns=1_700_000_001_000_000_000))
    assert closed is not None
    emitted.append(closed)
    assert [e.kind for e in emitted][-1] == "closed"
    for one in emitted:
        at = 1_700_000_123.456789
        fast = one.encoded(emitted_at=at)
        contract = encode(one.event.model_copy(update={"emitted_at": at}))
        assert fast == contract
        assert CONVERSATIONS.decode(fast) == one.event.model_copy(update={"emitted_at": at})
    # the window's bound and the edits are in what was published
    last_update = json.loads(emitted[-2].encoded())
    texts = [m["text"] for m in last_update["messages"]]
    assert "after the deletion" in texts
    if window is not None:
        assert len(texts) == window
    else:
        assert 'edited ✎ "text"' in texts  # edited
        assert AWKWARD[4] not in texts  # deleted


def test_an_emitted_event_does_not_change_with_its_conversation() -> None:
    book = ConversationBook(20)
    first = book.apply(change("new", "1700000000.000100", "one"))
    book.apply(change("new", "1700000000.000200", "two"))
    assert first is not None
    assert [m["text"] for m in json.loads(first.encoded())["messages"]] == ["one"]
    assert [m.text for m in first.event.messages] == ["one"]
