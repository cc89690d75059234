"""Slack message markup made readable and safe to quote in a DM.

Message text arrives as Slack sends it: `<@U123>` mentions, `<#C123|general>` channels,
`<!here>`, `<https://x|label>` links and `&amp;`/`&lt;`/`&gt;` escapes. Quoting it verbatim
would show raw codes in notifications (and could re-ping `@here`), so text is parsed into
spans of plain text and links, names are filled in, and the spans are written back as mrkdwn
with every special character escaped. Lengths are counted the way Slack counts them (UTF-16
code units) and cuts never split a character, an emoji sequence or an escape.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

ELLIPSIS = "…"

_TOKEN = re.compile(r"<([^<>\n]{1,4000})>")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_SPACE = re.compile(r"\s+")
_URL = re.compile(r"^(https?|mailto|tel|slack):[^\s<>|]+$", re.IGNORECASE)
_SPECIAL = {"here", "channel", "everyone"}
_JOINERS = {"\u200d", "\ufe0e", "\ufe0f"}  # zero-width joiner, text/emoji variation selectors


@dataclass(frozen=True)
class Span:
    """A piece of readable text; a link when `url` is set."""

    text: str
    url: str | None = None


def utf16_len(text: str) -> int:
    """Slack's limits count UTF-16 code units: an emoji outside the BMP counts twice."""
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def clean(text: str) -> str:
    """Drop what cannot be sent: lone surrogates and control characters (newlines and tabs stay)."""
    text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub("", text)


def unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def escape(text: str) -> str:
    """Slack's three control characters; nothing else needs escaping in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def references(text: str) -> tuple[set[str], set[str]]:
    """The user and channel ids a text mentions without a label, to look up before rendering."""
    users: set[str] = set()
    channels: set[str] = set()
    for match in _TOKEN.finditer(text):
        body = match.group(1)
        ident, _, label = body.partition("|")
        if ident.startswith("@") and not label:
            users.add(ident[1:])
        elif ident.startswith("#") and not label:
            channels.add(ident[1:])
    return users, channels


def parse(text: str, users: Mapping[str, str], channels: Mapping[str, str]) -> list[Span]:
    """Spans of readable text: mentions become `@name`, channels `#name`, links stay links."""
    text = clean(text)
    spans: list[Span] = []
    at = 0
    for match in _TOKEN.finditer(text):
        if match.start() > at:
            spans.append(Span(unescape(text[at : match.start()])))
        spans.append(_token(match.group(1), users, channels))
        at = match.end()
    if at < len(text):
        spans.append(Span(unescape(text[at:])))
    return spans


def _token(body: str, users: Mapping[str, str], channels: Mapping[str, str]) -> Span:
    ident, _, label = body.partition("|")
    label = unescape(label)
    if ident.startswith("@"):
        name = users.get(ident[1:]) or label.lstrip("@") or "someone"
        return Span(f"@{name}")
    if ident.startswith("#"):
        name = label or channels.get(ident[1:]) or "channel"
        return Span(f"#{name}")
    if ident.startswith("!"):
        command = ident[1:]
        if command in _SPECIAL:
            return Span(f"@{command}")
        if command.startswith("subteam^"):
            return Span(label or "@group")
        if command.startswith("date^"):
            return Span(label or "a date")
        return Span(label or command)
    url = unescape(ident)
    if _URL.match(url):
        return Span(label or url, url)
    return Span(unescape(body))


def oneline(spans: Iterable[Span]) -> list[Span]:
    """Collapse whitespace (a preview line is one line) and defuse code fences."""
    flat: list[Span] = []
    for span in spans:
        text = _SPACE.sub(" ", span.text).replace("```", "`")
        if text:
            flat.append(Span(text, span.url))
    return flat


def to_mrkdwn(spans: Iterable[Span], limit: int) -> str:
    """Escaped mrkdwn of at most `limit` UTF-16 units; a cut ends with an ellipsis."""
    out: list[str] = []
    used = 0
    budget = limit - utf16_len(ELLIPSIS)
    items = list(spans)
    total = sum(utf16_len(_render(s)) for s in items)
    if total <= limit:
        return "".join(_render(s) for s in items)
    for span in items:
        rendered = _render(span)
        size = utf16_len(rendered)
        if used + size <= budget:
            out.append(rendered)
            used += size
            continue
        # Does not fit whole: cut its visible text (a link's label falls back to plain text).
        out.append(truncate_escaped(span.text, budget - used))
        break
    return "".join(out).rstrip() + ELLIPSIS


def _render(span: Span) -> str:
    if span.url is None:
        return escape(span.text)
    label = escape(span.text).replace("|", "¦")
    return f"<{span.url}|{label}>"


def truncate_escaped(text: str, budget: int) -> str:
    """The longest escaped prefix of `text` within `budget` units, cut between characters."""
    used = 0
    cut = 0
    for cut, ch in enumerate(text):  # noqa: B007 - `cut` is read after the loop
        size = utf16_len(escape(ch))
        if used + size > budget:
            break
        used += size
    else:
        cut = len(text)
    return escape(text[: _grapheme_cut(text, cut)])


def truncate(text: str, limit: int) -> str:
    """Plain text of at most `limit` UTF-16 units, cut at a character boundary with an ellipsis."""
    if utf16_len(text) <= limit:
        return text
    budget = limit - utf16_len(ELLIPSIS)
    used = 0
    cut = 0
    for cut, ch in enumerate(text):  # noqa: B007
        size = utf16_len(ch)
        if used + size > budget:
            break
        used += size
    return text[: _grapheme_cut(text, cut)].rstrip() + ELLIPSIS


def _continues(ch: str) -> bool:
    """Characters that belong to the one before: marks, joiners, variation selectors, modifiers."""
    return (
        unicodedata.category(ch) in ("Mn", "Me", "Mc")
        or ch in _JOINERS
        or "\U0001f3fb" <= ch <= "\U0001f3ff"  # skin tones
        or "\U000e0020" <= ch <= "\U000e007f"  # tag sequences (subdivision flags)
    )


def _grapheme_cut(text: str, cut: int) -> int:
    """Move a cut left until it falls between two user-perceived characters."""
    while 0 < cut < len(text) and (_continues(text[cut]) or text[cut - 1] == "\u200d"):
        cut -= 1
    # Flags are pairs of regional indicators: never keep an odd one.
    run = 0
    while run < cut and "\U0001f1e6" <= text[cut - 1 - run] <= "\U0001f1ff":
        run += 1
    if run % 2 == 1 and cut < len(text) and "\U0001f1e6" <= text[cut] <= "\U0001f1ff":
        cut -= 1
    return cut


def readable(text: str, users: Mapping[str, str], channels: Mapping[str, str], limit: int) -> str:
    """One line of Slack text as escaped mrkdwn with names filled in, within `limit` units."""
    return to_mrkdwn(oneline(parse(text, users, channels)), limit)


def plain(text: str, users: Mapping[str, str], channels: Mapping[str, str], limit: int) -> str:
    """The same line as plain text (for `plain_text` fields and notification fallbacks)."""
    flat = "".join(span.text for span in oneline(parse(text, users, channels)))
    return truncate(flat, limit)
