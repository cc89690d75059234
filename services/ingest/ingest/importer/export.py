"""Reading a standard Slack export — a directory or the zip Slack hands out, with the same result.

Layout: `channels.json` / `users.json` (and `groups.json`, `dms.json`, `mpims.json`) at the top
when present, then one folder per channel holding one JSON file per day (`2023-07-26.json`), each
a list of message objects. Nothing here stops at the first problem: a corrupt file, a channel
listed without a folder, a message that is not an object or a field this reader does not know
becomes a `Problem` naming the file, and reading goes on.

Which folders are read is the live rule (`ingest.normalize.channel_policy`): `channels.json`'s
(public; `is_ext_shared` ones are shared), `groups.json`'s (private) only when private channels
are allowed, never `dms.json`'s or `mpims.json`'s. A folder that is not read is not opened at
all, only counted (`skipped_channels`, `skipped_files`). When the export lists its channels, a
folder none of the lists names is not read either (its kind is unknown: it could be the folder
of a private channel whose listing is missing); an export with no listing at all (a hand-made
one, like the example) is read with the kind unknown.

An export is a file someone handed over, so it is read as hostile input: every member is read
under a size limit (`ImportSettings`: per member, in total, and a compression ratio), checked
against the size the zip declares before inflating anything and again while reading; members
with an absolute path or a `..`, and symbolic links, are refused; JSON too deeply nested to parse
is reported like any other corrupt file. Each refusal is a `Problem` of its member (`refused`),
and the rest of the export is still read.
"""

from __future__ import annotations

import json
import re
import stat
import zipfile
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from ingest.normalize import Rules, channel_policy
from ingest.settings import ImportSettings

# The listings that say who may read a folder, and the `channel_type` Slack gives their messages.
CHANNEL_LISTINGS = (
    ("channels.json", "channel"),
    ("groups.json", "group"),
    ("dms.json", "im"),
    ("mpims.json", "mpim"),
)
UNLISTED_CHANNEL = "unlisted_channel"
# Below this, a member's compression ratio is not checked: tiny files compress oddly, and
# whatever they expand to is small anyway.
RATIO_FLOOR_BYTES = 1024 * 1024
_READ_CHUNK = 1024 * 1024
# Problems that mean a member (or part of the export) was not read at all: the CLI exits 2.
REFUSED_KINDS = frozenset({"corrupt_file", "too_large", "unsafe_path", "symlink", "unsupported_member"})
# Slack writes deflate. zipfile inflates bzip2 and LZMA members without an output bound per read,
# so one small read of a lying member could take gigabytes: such members are not read.
READABLE_COMPRESSION = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})

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
    # corrupt_file | too_large | unsafe_path | symlink | unsupported_member | missing_folder | unlisted_channel |
    # malformed_entry | unknown_field | unexpected_file | rejected_message | corrupt_line
    kind: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}: {self.kind}: {self.detail}"

    @property
    def refused(self) -> bool:
        """A member (or listing) that was not read at all, as opposed to one read with a remark."""
        return self.kind in REFUSED_KINDS


def bot_users_of(users: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    """The bot members of a workspace, from `users.json` or `users.list` (the same objects): their
    messages are dropped like any bot's. Slackbot is left out, as the normalizer knows it by id."""
    return frozenset(
        str(u["id"])
        for u in users
        if u.get("is_bot") and isinstance(u.get("id"), str) and u["id"] != "USLACKBOT"
    )


class MemberRefused(Exception):
    """A member that is not read: too large (declared or while reading), or over the total."""


@dataclass(frozen=True)
class Listed:
    """What a listing says about a channel folder."""

    channel: str  # the channel id
    channel_type: str  # Slack's channel_type for its messages: channel, group, im, mpim
    shared: bool  # shared with another organization (Slack Connect)
    listing: str  # the file that listed it


@dataclass(frozen=True)
class ExportLine:
    """One item of a day file (normally a message object), with the channel its folder stands for."""

    where: str  # "general/2023-07-26.json[3]"
    channel: str
    channel_type: str | None  # None: no listing names the folder (the kind is unknown)
    message: Any
    shared: bool = False


@dataclass
class ExportReader:
    """Iterate `lines()`; afterwards `problems`, `channels`, `users`, `files` and what was skipped
    (`skipped_channels` by reason, `skipped_files`) describe the export."""

    path: Path
    private_channels: bool = False
    limits: ImportSettings = field(default_factory=ImportSettings)
    problems: list[Problem] = field(default_factory=list)
    channels: dict[str, str] = field(default_factory=dict)  # folder name → channel id (of those read)
    users: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # user id → users.json entry
    files: int = 0
    skipped_channels: Counter[str] = field(default_factory=Counter)  # reason → folders not read
    skipped_files: int = 0

    def __post_init__(self) -> None:
        self._budget = ReadBudget(self.limits)
        self._tree: _ZipTree | _DirTree = (
            _ZipTree(self.path, self._budget)
            if zipfile.is_zipfile(self.path)
            else _DirTree(self.path, self._budget)
        )
        names = self._tree.names(self.problems)
        root = _root(names)
        self._relative = {str(PurePosixPath(n).relative_to(root)) if root else n: n for n in names}
        self._has_listing = False  # until the listings are read
        self._listed, self._has_listing = self._read_metadata(self._relative)

    @property
    def kind(self) -> str:
        return "Slack export zip" if isinstance(self._tree, _ZipTree) else "Slack export directory"

    @property
    def bot_users(self) -> frozenset[str]:
        return bot_users_of(self.users.values())

    def lines(self) -> Iterator[ExportLine]:
        """Every item of every day file of the folders read: folders in name order, days in date order."""
        relative = self._relative
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
        for name in sorted(set(self._listed) - set(folders)):
            missing = self._listed[name]
            if self._skip_reason(name, missing) is None:
                self.problems.append(
                    Problem(
                        f"{name}/",
                        "missing_folder",
                        f"listed in {missing.listing} but the export has no folder",
                    )
                )
        for folder, day_files in sorted(folders.items()):
            listed = self._listed.get(folder)
            reason = self._skip_reason(folder, listed)
            if reason is not None:
                self.skipped_channels[reason] += 1
                self.skipped_files += len(day_files)
                if reason == UNLISTED_CHANNEL:
                    self.problems.append(
                        Problem(
                            f"{folder}/", UNLISTED_CHANNEL, "no channel listing names this folder: not read"
                        )
                    )
                continue
            channel = listed.channel if listed else folder
            channel_type = listed.channel_type if listed else None
            shared = listed.shared if listed else False
            for rel in day_files:  # sorted: day files are named by date
                self.files += 1
                yield from self._day_file(rel, relative[rel], channel, channel_type, shared)

    def _skip_reason(self, folder: str, listed: Listed | None) -> str | None:
        """Why a folder is not read (the live rule, `channel_policy`), or None when it is."""
        if listed is None and self._has_listing:
            return UNLISTED_CHANNEL
        _, reason = channel_policy(
            listed.channel_type if listed else None,
            ext_shared=listed.shared if listed else False,
            rules=Rules(private_channels=self.private_channels),
            channel=listed.channel if listed else folder,
        )
        return reason

    def _day_file(
        self, rel: str, name: str, channel: str, channel_type: str | None, shared: bool
    ) -> Iterator[ExportLine]:
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
            yield ExportLine(f"{rel}[{index}]", channel, channel_type, message, shared)
        for name_ in sorted(unknown):
            self.problems.append(
                Problem(rel, "unknown_field", f"field {name_!r} is not a known message field")
            )

    def _read_metadata(self, relative: dict[str, str]) -> tuple[dict[str, Listed], bool]:
        """The four channel listings (folder → what they say; whether any was present), and users.json.

        Every listing is read, even of what is not imported: it is how a folder is known to be a
        DM or a private channel, so that it is skipped. A folder is named by the channel's name, or
        its id where it has none (DMs).
        """
        listed: dict[str, Listed] = {}
        present = False
        for meta, channel_type in CHANNEL_LISTINGS:
            if meta not in relative:
                continue
            present = True
            entries = self._load(meta, relative[meta])
            if not isinstance(entries, list):
                if entries is not None:
                    self.problems.append(Problem(meta, "corrupt_file", "expected a list"))
                continue
            for entry in entries:
                if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str):
                    self.problems.append(Problem(meta, "malformed_entry", "entry without an id"))
                    continue
                folder = str(entry.get("name") if isinstance(entry.get("name"), str) else entry["id"])
                info = Listed(entry["id"], channel_type, entry.get("is_ext_shared") is True, meta)
                listed.setdefault(folder, info)
                if self._skip_reason(folder, info) is None:
                    self.channels.setdefault(folder, entry["id"])
        if "users.json" in relative:
            entries = self._load("users.json", relative["users.json"])
            if isinstance(entries, list):
                self.users = {
                    u["id"]: u for u in entries if isinstance(u, Mapping) and isinstance(u.get("id"), str)
                }
            elif entries is not None:
                self.problems.append(Problem("users.json", "corrupt_file", "expected a list"))
        return listed, present

    def _load(self, rel: str, name: str) -> Any:
        """One member's JSON, or None with the problem recorded (the export goes on without it)."""
        try:
            raw = self._tree.read(name)
        except MemberRefused as refused:
            self.problems.append(Problem(rel, "too_large", str(refused)))
            return None
        except (OSError, zipfile.BadZipFile, EOFError) as error:  # BadZipFile: a CRC that does not match
            self.problems.append(Problem(rel, "corrupt_file", f"cannot be read: {error}"[:300]))
            return None
        try:
            return json.loads(raw)
        except RecursionError:  # the C parser's own guard: "[[[[..." deeper than the stack
            self.problems.append(Problem(rel, "corrupt_file", "not valid JSON: nested too deeply to parse"))
        except (ValueError, UnicodeDecodeError) as error:
            self.problems.append(Problem(rel, "corrupt_file", f"not valid JSON: {error}"[:300]))
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


class ReadBudget:
    """The limits of one export's reads: each member on its own, and all of them together."""

    def __init__(self, limits: ImportSettings) -> None:
        self.limits = limits
        self.used = 0

    def check_declared(self, size: int, compressed: int | None = None) -> None:
        """Before reading anything: what the member says it is."""
        limits = self.limits
        if size > limits.max_member_bytes:
            raise MemberRefused(
                f"declares {size:,} bytes, over the limit of {limits.max_member_bytes:,} per member "
                "(BEEPGPT_IMPORT_MAX_MEMBER_BYTES): not read"
            )
        if (
            compressed is not None
            and size > RATIO_FLOOR_BYTES
            and size > compressed * limits.max_compression_ratio
        ):
            raise MemberRefused(
                f"expands {size / max(compressed, 1):,.0f} times ({compressed:,} to {size:,} bytes), over the "
                f"limit of {limits.max_compression_ratio:g} (BEEPGPT_IMPORT_MAX_COMPRESSION_RATIO): not read"
            )
        self._check_total(size)

    def read(self, stream: IO[bytes]) -> bytes:
        """The member's bytes, counted while reading: a declared size can lie."""
        limit = self.limits.max_member_bytes
        chunks: list[bytes] = []
        size = 0
        while chunk := stream.read(min(_READ_CHUNK, limit + 1 - size)):
            size += len(chunk)
            if size > limit:
                raise MemberRefused(
                    f"more than {limit:,} bytes once read, over the limit per member "
                    "(BEEPGPT_IMPORT_MAX_MEMBER_BYTES): not read"
                )
            self._check_total(size)
            chunks.append(chunk)
        self.used += size
        return b"".join(chunks)

    def _check_total(self, size: int) -> None:
        if self.used + size > self.limits.max_total_bytes:
            raise MemberRefused(
                f"the export's total of {self.limits.max_total_bytes:,} bytes "
                "(BEEPGPT_IMPORT_MAX_TOTAL_BYTES) is reached: not read"
            )


def unsafe_name(name: str) -> str | None:
    """Why a member's name is refused (None: it is a plain relative path inside the export).

    Nothing is extracted to disk, but a name that leaves the export folder (`../evil.json`), is
    absolute (`/etc/x`, `C:\\x`) or names a parent anywhere has no place in a Slack export and
    would only make a member stand for another one; Slack never writes such names.
    """
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "names a parent folder (..)"
    if "\x00" in name:
        return "NUL in the name"
    return None


class _DirTree:
    def __init__(self, path: Path, budget: ReadBudget) -> None:
        if not path.is_dir():
            raise FileNotFoundError(f"{path} is neither a directory nor a zip file")
        self._path = path
        self._budget = budget

    def names(self, problems: list[Problem]) -> list[str]:
        """Regular files only: a symbolic link could make the import read anything on the machine,
        and a FIFO or device would block it."""
        names = []
        for p in self._path.rglob("*"):
            rel = p.relative_to(self._path)
            if any(part.startswith(".") for part in rel.parts):
                continue
            if p.is_symlink():
                problems.append(Problem(rel.as_posix(), "symlink", "a symbolic link: not followed"))
            elif p.is_file():
                names.append(rel.as_posix())
        return sorted(names)

    def read(self, name: str) -> bytes:
        path = self._path / name
        with path.open("rb") as stream:
            self._budget.check_declared(path.stat().st_size)
            return self._budget.read(stream)


class _ZipTree:
    def __init__(self, path: Path, budget: ReadBudget) -> None:
        self._zip = zipfile.ZipFile(path)
        self._budget = budget

    def names(self, problems: list[Problem]) -> list[str]:
        """Members that may be read: files, with a safe name, not symbolic links."""
        names = []
        for info in self._zip.infolist():
            name = info.filename
            if name.endswith("/") or name.startswith("__MACOSX/"):
                continue
            why = unsafe_name(name)
            if why is not None:
                problems.append(Problem(_printable(name), "unsafe_path", f"{why}: not read"))
            elif stat.S_ISLNK(info.external_attr >> 16):
                problems.append(Problem(name, "symlink", "a symbolic link: not followed"))
            elif info.flag_bits & 0x1:
                problems.append(Problem(name, "unsupported_member", "encrypted: not read"))
            elif info.compress_type not in READABLE_COMPRESSION:
                problems.append(
                    Problem(name, "unsupported_member", f"compression method {info.compress_type}: not read")
                )
            else:
                names.append(name)
        return sorted(names)

    def read(self, name: str) -> bytes:
        info = self._zip.getinfo(name)
        self._budget.check_declared(info.file_size, info.compress_size)
        with self._zip.open(info) as stream:
            return self._budget.read(stream)


def _printable(name: str) -> str:
    """A member name for a one-line report: no control characters, not endless."""
    return "".join(c if c.isprintable() else "?" for c in name[:200])
