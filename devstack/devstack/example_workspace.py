"""The example workspace bundled in `data/`: two weeks of generated team chat (six people, channels
`General` and `Project`), its users, and the topics the demo's people follow.

Origin: `slack-generation.parquet` and `slack-generation.users.json` are the generated chat from
the project's shared example data (an LLM wrote a team's conversation hour by hour from
`slack-generation/schedule.jsonl`); `slack-export/` is a small real Slack export. Both are copied
unchanged from the shared data folder.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from beepgpt import message_table
from beepgpt.contracts import FollowedTopic, Preferences

DATA = Path(__file__).resolve().parents[2] / "data"
MESSAGES = DATA / "slack-generation.parquet"
USERS = DATA / "slack-generation.users.json"

# What the demo's people say they care about, in their own words (`/beep follow ...`).
EXAMPLE_FOLLOWS: dict[str, list[str]] = {
    "UBB9D2B01": ["Let me know when people are making streaming technology decisions"],
    "U605AEB3E": ["Alert me about data governance and data quality"],
    "UEA27BBFF": ["machine learning for demand forecasting"],
}


@dataclass(frozen=True)
class ExampleWorkspace:
    """Messages, people and channels of the bundled example, ready to replay."""

    messages: pd.DataFrame
    users: list[dict[str, object]]

    @classmethod
    def load(cls, messages: Path = MESSAGES, users: Path = USERS) -> ExampleWorkspace:
        table = message_table.complete(pd.read_parquet(messages))
        return cls(table, json.loads(users.read_text()))

    @property
    def user_names(self) -> dict[str, str]:
        return {str(u["id"]): str(u.get("real_name") or u.get("name") or u["id"]) for u in self.users}

    def channels(self) -> list[dict[str, object]]:
        """channels.json for the Slack stand-in: the table's channel ids, everyone a member."""
        members = [str(u["id"]) for u in self.users]
        return [
            {"id": name, "name": name.lower(), "members": members, "is_general": name == "General"}
            for name in sorted(self.messages["channel"].unique())
        ]

    def write_standin_files(self, folder: Path) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        users, channels = folder / "users.json", folder / "channels.json"
        users.write_text(json.dumps(self.users))
        channels.write_text(json.dumps(self.channels()))
        return users, channels

    def preferences(self, now: float) -> list[Preferences]:
        """Everyone opted in (they installed the app); some follow topics."""
        return [
            Preferences(
                user=str(u["id"]),
                opted_in=True,
                topics=[
                    FollowedTopic(id=f"t{i + 1}", text=text, created_at=now)
                    for i, text in enumerate(EXAMPLE_FOLLOWS.get(str(u["id"]), []))
                ],
                updated_at=now,
            )
            for u in self.users
        ]

    def days(self, count: int) -> pd.DataFrame:
        """The first `count` days that have messages (the whole table when count <= 0)."""
        if count <= 0:
            return self.messages
        day = pd.to_datetime(self.messages["ts"], unit="s").dt.date
        keep = sorted(day.unique())[:count]
        return self.messages[day.isin(keep)].reset_index(drop=True)
