"""Reading a standard Slack export — a directory or the zip Slack hands out, with the same result.

Layout: `channels.json` / `users.json` (and `groups.json`, `dms.json`, `mpims.json`) at the top
when present, then one folder per channel holding one JSON file per day (`2023-07-26.json`), each
a list of message objects. Nothing here stops at the first problem: a corrupt file, a channel
listed without a folder, a message that is not an object or a field this reader does not know
becomes a `Problem` naming the file, and reading goes on.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

METADATA_FILES = frozenset(
    {"channels.json", "users.json", "groups.json", "dms.json", "mpims.json", "integration_logs.json",
     "canvases.json", "org_users.json", "huddle_transcripts.json", "file_conversations.json"}
)  # fmt: skip
_DAY_FILE = re.compile(r"\d{4}-\d{2}-\d{2}\.json")

# Fields Slack writes on exported messages. Anything else is reported (once per file), so a
# format change is noticed, and the message is still read.
KNOWN_MESSAGE_FIELDS = frozenset(
    {
        "type", "subtype", "ts", "user", "text", "thread_ts", "parent_user_id", "reply_count",
        "reply_users_count", "latest_reply", "reply_users", "replies", "is_locked", "subscribed",
        "last_read", "client_msg_id", "blocks", "team", "user_team", "source_team", "user_profile",
        "edited", "reactions", "files", "upload", "display_as_bot", "attachments", "bot_id",
        "bot_profile", "username", "icons", "app_id", "inviter", "topic", "purpose", "name",
        "old_name", "hidden", "root", "pinned_to", "pinned_info", "item_type", "item", "channel",
        "x_files", "is_starred", "permalink", "comment", "file", "is_intro", "no_notifications",
        "metadata", "room", "saved", "reply_broadcast", "thread_broadcast", "channel_type",
        "event_ts", "message", "previous_message", "deleted_ts", "parent_message",
        "is_thread_root_unread", "new_broadcast", "unfurl_links", "unfurl_media", "reminder",
        "ai_context", "assistant_app_thread", "has_more", "linked_message", "is_locked_thread",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Problem:
    """Something in the export that could not be read as expected; the import went on."""

    file: str
    kind: str  # corrupt_file | missing_folder | unknown_field | unexpected_file | rejected_message
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.kind}: {self.detail}"


@dataclass(frozen=True)
class ExportLine:
    """One item of a day file (normally a message object), with the channel its folder stands for."""

    where: str  # "general/2023-07-26.json[3]"
    channel: str
    channel_type: str | None
    message: Any


@dataclass
class ExportReader:
    """Iterate `lines()`; afterwards `problems`, `channels`, `users` and `files` describe the export."""

    path: Path
    problems: list[Problem] = field(default_factory=list)
    channels: dict[str, str] = field(default_factory=dict)  # folder name → channel id
    users: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # user id → users.json entry
    files: int = 0

    def __post_init__(self) -> None:
        self._tree = _ZipTree(self.path) if zipfile.is_zipfile(self.path) else _DirTree(self.path)
        names = self._tree.names()
        root = _root(names)
        self._relative = {str(PurePosixPath(n).relative_to(root)) if root else n: n for n in names}
        self._private_types = self._read_metadata(self._relative)

    @property
    def kind(self) -> str:
        return "Slack export zip" if isinstance(self._tree, _ZipTree) else "Slack export directory"

    @property
    def bot_users(self) -> frozenset[str]:
        return frozenset(uid for uid, u in self.users.items() if u.get("is_bot") and uid != "USLACKBOT")

    def lines(self) -> Iterator[ExportLine]:
        """Every item of every day file: folders in name order, days in date order."""
        relative, private_types = self._relative, self._private_types
        folders: dict[str, list[str]] = {}
        for rel in sorted(relative):
            parts = PurePosixPath(rel).parts
            if len(parts) == 1:
                if rel not in METADATA_FILES and rel.endswith(".json"):
                    self.problems.append(Problem(rel, "unexpected_file", "not a known top-level export file"))
                continue
            if len(parts) != 2 or not _DAY_FILE.fullmatch(parts[1]):
                self.problems.append(Problem(rel, "unexpected_file", "not <channel>/<YYYY-MM-DD>.json"))
                continue
            folders.setdefault(parts[0], []).append(rel)
        for name in sorted(set(self.channels) - set(folders)):
            self.problems.append(
                Problem(f"{name}/", "missing_folder", "listed in channels.json but the export has no folder")
            )
        for folder, day_files in sorted(folders.items()):
            channel = self.channels.get(folder, folder)
            for rel in day_files:  # sorted: day files are named by date
                self.files += 1
                yield from self._day_file(rel, relative[rel], channel, private_types.get(folder))

    def _day_file(self, rel: str, name: str, channel: str, channel_type: str | None) -> Iterator[ExportLine]:
        content = self._load(rel, name)
        if content is None:
            return
        if not isinstance(content, list):
            self.problems.append(
                Problem(rel, "corrupt_file", f"expected a list of messages, got {type(content).__name__}")
            )
            return
        unknown: set[str] = set()
        for index, message in enumerate(content):
            if isinstance(message, Mapping):
                unknown.update(k for k in message if k not in KNOWN_MESSAGE_FIELDS)
            # Not an object? The normalizer rejects it like any other malformed event.
            yield ExportLine(f"{rel}[{index}]", channel, channel_type, message)
        for name_ in sorted(unknown):
            self.problems.append(
                Problem(rel, "unknown_field", f"field {name_!r} is not a known message field")
            )

    def _read_metadata(self, relative: dict[str, str]) -> dict[str, str]:
        """channels.json (and groups.json) give folder → id; dms/mpims mark private folders."""
        private: dict[str, str] = {}
        for meta, kind in (
            ("channels.json", None),
            ("groups.json", None),
            ("dms.json", "im"),
            ("mpims.json", "mpim"),
        ):
            if meta not in relative:
                continue
            entries = self._load(meta, relative[meta])
            if not isinstance(entries, list):
                if entries is not None:
                    self.problems.append(Problem(meta, "corrupt_file", "expected a list"))
                continue
            for entry in entries:
                if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
                    self.problems.append(Problem(meta, "malformed_entry", "entry without an id"))
                    continue
                folder = entry.get("name") if isinstance(entry.get("name"), str) else entry["id"]
                if kind is None:
                    self.channels[str(folder)] = entry["id"]
                else:
                    private[str(folder)] = kind
        if "users.json" in relative:
            entries = self._load("users.json", relative["users.json"])
            if isinstance(entries, list):
                self.users = {
                    u["id"]: u for u in entries if isinstance(u, Mapping) and isinstance(u.get("id"), str)
                }
            elif entries is not None:
                self.problems.append(Problem("users.json", "corrupt_file", "expected a list"))
        return private

    def _load(self, rel: str, name: str) -> Any:
        try:
            return json.loads(self._tree.read(name))
        except (ValueError, UnicodeDecodeError) as error:
            self.problems.append(Problem(rel, "corrupt_file", f"not valid JSON: {error}"[:300]))
        except (OSError, zipfile.BadZipFile) as error:
            self.problems.append(Problem(rel, "corrupt_file", f"cannot be read: {error}"[:300]))
        return None


def _root(names: list[str]) -> str:
    """The folder inside a zip (or directory) that holds the export, e.g. `My Workspace Slack export/`."""
    for name in sorted(names, key=lambda n: len(PurePosixPath(n).parts)):
        path = PurePosixPath(name)
        if path.name in ("channels.json", "users.json"):
            return str(path.parent) if str(path.parent) != "." else ""
    tops = {PurePosixPath(n).parts[0] for n in names if n}
    if len(tops) == 1 and all(len(PurePosixPath(n).parts) == 3 for n in names):
        return tops.pop()
    return ""


class _DirTree:
    def __init__(self, path: Path) -> None:
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is neither a directory nor a zip file")
        self._path = path

    def names(self) -> list[str]:
        return sorted(
            str(p.relative_to(self._path).as_posix())
            for p in self._path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self._path).parts)
        )

    def read(self, name: str) -> bytes:
        return (self._path / name).read_bytes()


class _ZipTree:
    def __init__(self, path: Path) -> None:
        self._zip = zipfile.ZipFile(path)

    def names(self) -> list[str]:
        return sorted(
            n for n in self._zip.namelist() if not n.endswith("/") and not n.startswith("__MACOSX/")
        )

    def read(self, name: str) -> bytes:
        return self._zip.read(name)
