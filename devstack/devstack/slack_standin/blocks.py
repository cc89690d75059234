"""Block Kit limits Slack enforces, so that a DM that Slack would reject fails here too.

Only the limits the product can plausibly hit are checked (block counts, text lengths, button
fields); Slack answers `invalid_blocks` with `response_metadata.messages` pointing at the culprit
with a JSON pointer, and so does the stand-in.
"""

from __future__ import annotations

import json
from typing import Any

from .errors import SlackError

MAX_MESSAGE_BLOCKS = 50
MAX_VIEW_BLOCKS = 100
MAX_MESSAGE_TEXT = 40_000
MAX_SECTION_TEXT = 3_000
MAX_SECTION_FIELDS = 10
MAX_FIELD_TEXT = 2_000
MAX_HEADER_TEXT = 150
MAX_BUTTON_TEXT = 75
MAX_BUTTON_VALUE = 2_000
MAX_ID = 255
MAX_CONTEXT_ELEMENTS = 10
MAX_ACTIONS_ELEMENTS = 25
MAX_URL = 3_000

KNOWN_BLOCKS = {
    "actions",
    "context",
    "divider",
    "file",
    "header",
    "image",
    "input",
    "markdown",
    "rich_text",
    "section",
    "video",
    "table",
    "context_actions",
}


def parse_json_arg(value: Any, error: str) -> Any:
    """Form posts carry `blocks`/`view` as JSON strings, JSON posts as structures."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError as e:
            raise SlackError(error) from e
    return value


def check_blocks(blocks: Any, *, limit: int = MAX_MESSAGE_BLOCKS, pointer: str = "/blocks") -> None:
    problems = block_problems(blocks, limit=limit, pointer=pointer)
    if problems:
        raise SlackError("invalid_blocks", response_metadata={"messages": problems})


def block_problems(blocks: Any, *, limit: int = MAX_MESSAGE_BLOCKS, pointer: str = "/blocks") -> list[str]:
    if not isinstance(blocks, list):
        return [f"[ERROR] must be an array [json-pointer:{pointer}]"]
    problems: list[str] = []
    if len(blocks) > limit:
        problems.append(f"[ERROR] no more than {limit} items allowed [json-pointer:{pointer}]")
    for i, block in enumerate(blocks):
        problems.extend(_block(block, f"{pointer}/{i}"))
    return problems


def _err(message: str, at: str) -> str:
    return f"[ERROR] {message} [json-pointer:{at}]"


def _text(obj: Any, at: str, *, max_len: int, plain_only: bool = False) -> list[str]:
    if not isinstance(obj, dict):
        return [_err("must be a text object", at)]
    kinds = ("plain_text",) if plain_only else ("plain_text", "mrkdwn")
    if obj.get("type") not in kinds:
        return [_err(f"must be one of {', '.join(kinds)}", f"{at}/type")]
    text = obj.get("text")
    if not isinstance(text, str) or not text:
        return [_err("must be more than 0 characters", f"{at}/text")]
    if len(text) > max_len:
        return [_err(f"must be less than {max_len + 1} characters", f"{at}/text")]
    return []


def _block(block: Any, at: str) -> list[str]:
    if not isinstance(block, dict):
        return [_err("must be an object", at)]
    kind = block.get("type")
    if kind not in KNOWN_BLOCKS:
        return [_err(f"unsupported type `{kind}`", f"{at}/type")]
    problems: list[str] = []
    block_id = block.get("block_id")
    if block_id is not None and (not isinstance(block_id, str) or len(block_id) > MAX_ID):
        problems.append(_err(f"must be less than {MAX_ID + 1} characters", f"{at}/block_id"))
    if kind == "section":
        if "text" not in block and "fields" not in block:
            problems.append(_err("must provide either text or fields", at))
        if "text" in block:
            problems.extend(_text(block["text"], f"{at}/text", max_len=MAX_SECTION_TEXT))
        fields = block.get("fields")
        if fields is not None:
            if not isinstance(fields, list) or len(fields) > MAX_SECTION_FIELDS:
                problems.append(_err(f"no more than {MAX_SECTION_FIELDS} items allowed", f"{at}/fields"))
            else:
                for j, f in enumerate(fields):
                    problems.extend(_text(f, f"{at}/fields/{j}", max_len=MAX_FIELD_TEXT))
        if isinstance(block.get("accessory"), dict):
            problems.extend(_element(block["accessory"], f"{at}/accessory"))
    elif kind == "header":
        problems.extend(_text(block.get("text"), f"{at}/text", max_len=MAX_HEADER_TEXT, plain_only=True))
    elif kind in ("context", "actions"):
        limit = MAX_CONTEXT_ELEMENTS if kind == "context" else MAX_ACTIONS_ELEMENTS
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements or len(elements) > limit:
            problems.append(_err(f"must have between 1 and {limit} items", f"{at}/elements"))
        else:
            for j, element in enumerate(elements):
                if kind == "context" and isinstance(element, dict) and element.get("type") != "image":
                    problems.extend(_text(element, f"{at}/elements/{j}", max_len=MAX_SECTION_TEXT))
                elif kind == "actions":
                    problems.extend(_element(element, f"{at}/elements/{j}"))
    return problems


def _element(element: Any, at: str) -> list[str]:
    if not isinstance(element, dict):
        return [_err("must be an object", at)]
    problems: list[str] = []
    action_id = element.get("action_id")
    if action_id is not None and (not isinstance(action_id, str) or len(action_id) > MAX_ID):
        problems.append(_err(f"must be less than {MAX_ID + 1} characters", f"{at}/action_id"))
    if element.get("type") == "button":
        problems.extend(_text(element.get("text"), f"{at}/text", max_len=MAX_BUTTON_TEXT, plain_only=True))
        value = element.get("value")
        if value is not None and (not isinstance(value, str) or len(value) > MAX_BUTTON_VALUE):
            problems.append(_err(f"must be less than {MAX_BUTTON_VALUE + 1} characters", f"{at}/value"))
        url = element.get("url")
        if url is not None and (not isinstance(url, str) or len(url) > MAX_URL):
            problems.append(_err(f"must be less than {MAX_URL + 1} characters", f"{at}/url"))
        if element.get("style") not in (None, "primary", "danger"):
            problems.append(_err("must be one of primary, danger", f"{at}/style"))
    return problems
