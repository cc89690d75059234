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
    np.testing.assert_array_equal(loaded.people["UBO"].joined_profile, activity.people["UBO"].joined_profile)  # type: ignore[arg-type]
    assert loaded.people["UBO"].joined_profiled == 1


def test_what_someone_joins_is_the_subject_before_their_own_words() -> None:
    """Bo answers questions about [1, 0] in his own words [0, 1]: his own profile says [0, 1],
    what he joins says [1, 0]; opening a conversation adds nothing to what one joins."""
    activity = Activity(T0)
    question, answer = np.array([1.0, 0.0], np.float32), np.array([0.0, 1.0], np.float32)
    for i in range(3):
        activity.observe(f"q{i}", "CX", "UANA", T0 + 100 * i, question)
        activity.observe(f"q{i}", "CX", "UBO", T0 + 100 * i + 10, answer)
    bo = activity.people["UBO"]
    assert bo.joined_profiled == 3
    np.testing.assert_allclose(bo.joined_profile, question)  # type: ignore[arg-type]
    np.testing.assert_allclose(bo.profile, answer)  # type: ignore[arg-type]
    assert activity.people["UANA"].joined_profile is None


def test_a_conversation_subject_follows_its_latest_messages() -> None:
    """Joining late, after the talk moved on, records where it is now, not how it began."""
    activity = Activity(T0)
    for i in range(8):
        activity.observe(
            "c1",
            "CX",
            "UANA" if i % 2 else "UBO",
            T0 + i,
            np.array([0.0, 1.0], np.float32) if i >= 2 else np.array([1.0, 0.0], np.float32),
        )
    activity.observe("c1", "CX", "UCY", T0 + 20, np.array([1.0, 0.0], np.float32))
    joined = activity.people["UCY"].joined_profile
    assert joined is not None
    assert joined[1] > 0.9 > joined[0]


def test_an_older_profiles_file_without_joined_profiles_still_loads(tmp_path: Path) -> None:
    activity = Activity(T0)
    activity.observe("c1", "CX", "UANA", T0, np.array([1.0, 0.0], np.float32))
    activity.save(tmp_path)
    with np.load(tmp_path / "profiles.npz") as arrays:
        np.savez(tmp_path / "profiles.npz", users=arrays["users"], profiles=arrays["profiles"])
    loaded = Activity.load(tmp_path)
    assert loaded.people["UANA"].profile is not None
    assert loaded.people["UANA"].joined_profile is None


def test_forgetting_someone_drops_them_everywhere_and_keeps_everyone_else(tmp_path: Path) -> None:
    activity = Activity(T0)
    vector = np.ones(4, dtype=np.float32)
    activity.observe("c1", "CX", "UANA", T0, vector)
    activity.observe("c1", "CX", "UBO", T0 + 60, vector)
    activity.observe("c1", "CX", "UANA", T0 + 120, vector)
    activity.observe("c2", "CY", "UCY", T0 + 130, vector)
    activity.observe("c2", "CY", "UANA", T0 + 140, vector)
    bo_in_cx = activity.channel_activity("CX", "UBO", T0 + 150)

    assert activity.forget("UANA")
    assert not activity.forget("UANA")  # nothing left to forget
    assert not activity.forget("UNOBODY")

    now = T0 + 150
    assert "UANA" not in activity.people
    assert all("UANA" not in counts for counts in activity.channel_counts.values())
    assert all("UANA" not in last for last in activity.channel_last.values())
    assert "UANA" not in activity.answered
    assert "UANA" not in activity.answerers
    assert all("UANA" not in edges for edges in (*activity.answered.values(), *activity.answerers.values()))
    assert "UANA" not in activity.recent_in_channel("CX", now)
    assert "UANA" not in activity.recent_joins("CY", now)
    assert "UANA" not in activity.authors_of("c1")
    assert "UANA" not in activity.authors_of("c2")
    assert activity.channel_total("CX", now) == pytest.approx(bo_in_cx)
    # everyone else is as they were
    assert activity.people["UBO"].messages == 1
    assert activity.people["UBO"].profile is not None
    assert activity.channel_activity("CX", "UBO", now) == pytest.approx(bo_in_cx)
    assert activity.recent_in_channel("CY", now) == {"UCY": 1}

    activity.save(tmp_path)
    loaded = Activity.load(tmp_path)
    assert set(loaded.people) == {"UBO", "UCY"}
    assert "UANA" not in loaded.answerers
    assert all("UANA" not in e for e in loaded.answerers.values())
    assert "UANA" not in loaded.recent_in_channel("CX", now)
    with np.load(tmp_path / "profiles.npz") as arrays:
        assert "UANA" not in arrays["users"].tolist()
        assert "UANA" not in arrays["joined_users"].tolist()
