"""Property-based fuzzing of everything that reads input from outside: Slack events, export
files, DM button values and the records on every topic.

The property is the same everywhere: whatever arrives, the reader answers with a value or with
its own clear refusal (a `Rejected` outcome, a problem, `UnreadableButton`, pydantic's
`ValidationError`), never with another exception — another exception is a crash or a lost record
in the service. Inputs are built from Slack's own shapes with values drawn from hostile ones
(huge and non-finite numbers, lone surrogates, wrong types, deep nesting).

Runs briefly in `make test` (the `ci` profile); `HYPOTHESIS_PROFILE=long make test` (or
`.venv/bin/python -m pytest tests/fuzz`) runs many more examples on demand.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from beepgpt.contracts import FeedbackButton, UnreadableButton
from beepgpt.topics import ALL_TOPICS, Topic
from ingest.importer.sources import SourceError, read_source
from ingest.normalize import Accepted, Dropped, Envelope, Rejected, Rules, normalize_event

# No example database in CI (a clean clone each time); on demand, failures are kept to replay.
settings.register_profile(
    "ci", max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("long", max_examples=5_000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Values a hostile or broken sender could put anywhere.
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["1690400000.000100", "abc", "１２３", "\udfff", "C0GENERAL", "U0ALICE", ""]),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5),
    max_leaves=20,
)
# Slack's field names, so the reader gets past its first checks more often than random keys would.
SLACK_KEYS = (
    "type", "subtype", "channel", "channel_type", "user", "text", "ts", "thread_ts", "event_ts",
    "message", "previous_message", "deleted_ts", "item", "reaction", "bot_id", "files", "blocks",
)  # fmt: skip
slack_like = st.fixed_dictionaries(
    {"type": st.sampled_from(["message", "reaction_added", "reaction_removed", "pin_added"]) | scalars},
    optional={key: json_values for key in SLACK_KEYS if key != "type"},
)


@given(event=slack_like | json_values, event_time=scalars)
def test_any_event_is_normalized_or_refused_with_a_reason(event: Any, event_time: Any) -> None:
    envelope = Envelope(event_id="Ev1", team="T1", event_time=event_time if isinstance(event_time, float) else None)
    outcome = normalize_event(event, envelope, Rules(max_text_chars=1_000))
    assert isinstance(outcome, Accepted | Dropped | Rejected)
    if isinstance(outcome, Accepted):  # what is accepted is a valid record on the wire too
        assert type(outcome.event).model_validate_json(outcome.event.model_dump_json()) == outcome.event
    if isinstance(outcome, Rejected):
        assert outcome.reason


@given(raw=st.text(max_size=300) | json_values.map(json.dumps))
def test_any_button_value_decodes_or_is_refused(raw: str) -> None:
    try:
        button, dropped = FeedbackButton.decode(raw)
    except UnreadableButton:
        return
    assert isinstance(dropped, frozenset)
    assert FeedbackButton.decode(button.encode())[0] == button


@pytest.mark.parametrize("topic", ALL_TOPICS, ids=[t.name for t in ALL_TOPICS])
@given(data=st.data())
def test_any_record_on_a_topic_decodes_or_is_refused(topic: Topic[Any], data: st.DataObject) -> None:
    raw = data.draw(st.binary(max_size=200) | json_values.map(lambda v: json.dumps(v).encode()))
    with contextlib.suppress(ValidationError):
        topic.decode(raw)


@settings(max_examples=25)
@given(files=st.dictionaries(st.sampled_from(["channels.json", "users.json", "general/2024-01-01.json",
                                              "groups.json", "general/x.json", "../up.json"]),
                             st.binary(max_size=300) | json_values.map(lambda v: json.dumps(v).encode()),
                             min_size=1, max_size=4))  # fmt: skip
def test_any_export_is_read_or_refused_with_problems(tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes]) -> None:
    archive = tmp_path_factory.mktemp("export") / "export.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for name, body in files.items():
            zipped.writestr(f"export/{name}", body)
    try:
        imported = read_source(Path(archive))
    except SourceError as error:
        refusal = str(error)
    else:
        assert all(problem.kind and str(problem) for problem in imported.problems)
        return
    assert refusal
