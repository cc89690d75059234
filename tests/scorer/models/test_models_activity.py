"""The interest model's memory: counts that decay, the answer graph, windows, files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scorer.interest.activity import RECENT_S, TAU_S, Activity

T0 = 1_700_000_000.0


def test_a_repeated_message_is_counted_once() -> None:
    activity = Activity(T0)
    assert activity.observe("c1", "CX", "UANA", T0 + 1)
    assert not activity.observe("c1", "CX", "UANA", T0 + 1)  # a live event repeats earlier messages
    assert activity.people["UANA"].messages == 1


def test_counts_decay_with_time() -> None:
    activity = Activity(T0)
    activity.observe("c1", "CX", "UANA", T0)
    assert activity.channel_activity("CX", "UANA", T0) == pytest.approx(1.0)
    assert activity.channel_activity("CX", "UANA", T0 + TAU_S) == pytest.approx(np.exp(-1.0))


def test_posting_after_someone_answers_them_and_is_a_join() -> None:
    activity = Activity(T0)
    activity.observe("c1", "CX", "UANA", T0)
    activity.observe("c1", "CX", "UBO", T0 + 60)
    activity.observe("c1", "CX", "UANA", T0 + 120)
    assert activity.answers("UBO", "UANA", T0 + 120) == pytest.approx(1.0, rel=1e-3)
    assert activity.answers("UANA", "UBO", T0 + 120) == pytest.approx(1.0, rel=1e-3)
    assert activity.top_answerers("UANA", 3) == ["UBO"]
    assert activity.people["UBO"].joins > 0
    assert activity.people["UANA"].joins == 0  # she opened it


def test_recent_activity_is_a_sliding_window() -> None:
    activity = Activity(T0)
    activity.observe("c1", "CX", "UANA", T0)
    activity.observe("c2", "CX", "UBO", T0 + RECENT_S - 10)
    assert activity.recent_in_channel("CX", T0 + RECENT_S - 5) == {"UANA": 1, "UBO": 1}
    assert activity.recent_in_channel("CX", T0 + RECENT_S + 5) == {"UBO": 1}


def test_a_profile_follows_what_someone_writes() -> None:
    activity = Activity(T0)
    for i in range(3):
        activity.observe(f"c{i}", "CX", "UANA", T0 + i, np.array([1.0, 0.0], np.float32))
    profile = activity.people["UANA"].profile
    assert profile is not None
    assert profile[0] == pytest.approx(1.0)
    activity.observe("c9", "CX", "UANA", T0 + 10, np.array([0.0, 1.0], np.float32))
    assert activity.people["UANA"].profile[1] == pytest.approx(0.25)  # type: ignore[index]


def test_saved_activity_loads_the_same(tmp_path: Path) -> None:
    activity = Activity(T0)
    activity.observe("c1", "CX", "UANA", T0, np.array([1.0, 0.0], np.float32))
    activity.observe("c1", "CX", "UBO", T0 + 60, np.array([0.0, 1.0], np.float32))
    activity.save(tmp_path)
    loaded = Activity.load(tmp_path)
    now = T0 + 90
    assert loaded.answers("UBO", "UANA", now) == pytest.approx(activity.answers("UBO", "UANA", now))
    assert loaded.recent_in_channel("CX", now) == activity.recent_in_channel("CX", now)
    assert loaded.members("CX", now) == activity.members("CX", now)
    np.testing.assert_array_equal(loaded.people["UBO"].profile, activity.people["UBO"].profile)  # type: ignore[arg-type]
