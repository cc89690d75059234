"""The pipeline benchmark's real-chat load: its people recast onto the example workspace's."""

from __future__ import annotations

from bench.pipeline import cast


def test_cast_keeps_turns_and_mentions_and_rotates_the_cast() -> None:
    chat = [
        [("UREAL1", "how do I decode json?"), ("UREAL2", "<@UREAL1> use a Decoder"), ("UREAL1", "thanks")],
        [("UREAL9", "anyone around? cc <@UREAL3|carol>")],
    ]
    first, second = cast(chat, ["UA", "UB", "UC"])
    # The same person keeps one part, a mention names whoever plays the mentioned person.
    assert first == [("UA", "how do I decode json?"), ("UB", "<@UA> use a Decoder"), ("UA", "thanks")]
    # The next conversation starts one further along the cast; a mentioned non-speaker gets a part.
    assert second == [("UB", "anyone around? cc <@UC>")]
