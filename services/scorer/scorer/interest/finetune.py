"""The OpenAI fine-tuning files: chat-format lines, checked before anything is uploaded.

Each example becomes one line of OpenAI's chat fine-tuning format:

    {"messages": [{"role": "system", "content": "...roster..."},
                  {"role": "user", "content": "Channel: #general\\nAlice: ...\\nBob: ..."},
                  {"role": "assistant", "content": "3"}]}

Checks, all before upload (a rejected file costs a round trip; a bad one costs a training run):

- format: roles in order, non-empty contents, an assistant answer that is a known label;
- duplicates: identical lines are dropped (they would only re-weight that example); the same
  prompt with different answers is counted and kept (people really do answer the same thing);
- size: at least `MIN_EXAMPLES` lines (OpenAI's minimum), and no line over `MAX_EXAMPLE_TOKENS`;
- tokens: counted with OpenAI's chat accounting — 3 tokens of framing per message plus 3 for
  the reply priming — over contents estimated at one token per 4 characters (OpenAI's rule of
  thumb for English). `tiktoken` would be exact but downloads its encodings on first use, which
  this project's offline machines cannot; the estimate is only used for limits and cost;
- split: the latest `validation_fraction` of examples (by time) is the validation file, so the
  job's validation loss measures the future, as production will.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scorer.interest.features import Vocabulary
from scorer.interest.openai_model import chat_messages, label_codes
from scorer.interest.prompt import Prompt

MIN_EXAMPLES = 10
MAX_EXAMPLE_TOKENS = 65_536
TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3
CHARS_PER_TOKEN = 4

TRAINING_FILE = "finetune-train.jsonl"
VALIDATION_FILE = "finetune-validation.jsonl"


def estimate_tokens(messages: Sequence[Mapping[str, str]]) -> int:
    """Tokens of one chat example by OpenAI's accounting, contents estimated (see module doc)."""
    total = TOKENS_PER_REPLY
    for message in messages:
        total += TOKENS_PER_MESSAGE + math.ceil(len(message.get("content", "")) / CHARS_PER_TOKEN)
    return total


def example_line(prompt: Prompt, label: str, vocab: Vocabulary) -> dict[str, Any]:
    code = {v: k for k, v in label_codes(vocab).items()}[label]
    return {"messages": [*chat_messages(prompt, vocab), {"role": "assistant", "content": code}]}


@dataclass
class FileCheck:
    """What validation found; `errors` stop the run, `warnings` are reported."""

    lines: int = 0
    train_lines: int = 0
    validation_lines: int = 0
    duplicates_dropped: int = 0
    conflicting_prompts: int = 0
    tokens: int = 0
    max_tokens: int = 0
    labels: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def check_line(line: Mapping[str, Any], codes: Mapping[str, str]) -> str | None:
    """Why a line is not a valid chat fine-tuning example, or None."""
    messages = line.get("messages")
    if not isinstance(messages, list) or len(messages) < 2:
        return "no messages"
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    if len(roles) != len(messages):
        return "a message is not an object"
    if any(r not in {"system", "user", "assistant"} for r in roles):
        return f"unknown role in {roles}"
    if roles[-1] != "assistant":
        return "the last message is not the assistant's answer"
    if any(not str(m.get("content", "")).strip() for m in messages):
        return "a message has no content"
    answer = str(messages[-1]["content"])
    if answer not in codes:
        return f"answer {answer!r} is not a label"
    return None


def build_files(
    lines: Sequence[tuple[float, dict[str, Any]]],
    vocab: Vocabulary,
    directory: Path,
    *,
    validation_fraction: float = 0.1,
) -> tuple[Path, Path | None, FileCheck]:
    """Validate (time, line) pairs and write the training and validation files into `directory`."""
    codes = label_codes(vocab)
    check = FileCheck()
    seen: set[str] = set()
    answers: dict[str, set[str]] = {}
    kept: list[tuple[float, dict[str, Any]]] = []
    for ts, line in sorted(lines, key=lambda item: item[0]):
        problem = check_line(line, codes)
        if problem is not None:
            check.errors.append(f"example at {ts}: {problem}")
            continue
        text = json.dumps(line, sort_keys=True, ensure_ascii=False)
        if text in seen:
            check.duplicates_dropped += 1
            continue
        seen.add(text)
        prompt_key = json.dumps(line["messages"][:-1], sort_keys=True, ensure_ascii=False)
        answers.setdefault(prompt_key, set()).add(line["messages"][-1]["content"])
        tokens = estimate_tokens(line["messages"])
        check.tokens += tokens
        check.max_tokens = max(check.max_tokens, tokens)
        if tokens > MAX_EXAMPLE_TOKENS:
            check.errors.append(
                f"example at {ts}: about {tokens} tokens, over the {MAX_EXAMPLE_TOKENS} limit"
            )
        kept.append((ts, line))
    check.conflicting_prompts = sum(1 for a in answers.values() if len(a) > 1)
    check.lines = len(kept)
    counts = Counter(codes[line["messages"][-1]["content"]] for _, line in kept)
    check.labels = dict(sorted(counts.items()))
    cut = len(kept) - round(len(kept) * validation_fraction)
    train, validation = kept[:cut], kept[cut:]
    check.train_lines, check.validation_lines = len(train), len(validation)
    if len(train) < MIN_EXAMPLES:
        check.errors.append(f"{len(train)} training examples; OpenAI needs at least {MIN_EXAMPLES}")
    if validation and len(validation) < MIN_EXAMPLES:
        check.warnings.append(f"only {len(validation)} validation examples")
    if check.conflicting_prompts:
        check.warnings.append(f"{check.conflicting_prompts} prompts appear with different answers (kept)")
    missing = [label for label in codes.values() if label not in counts]
    if missing:
        check.warnings.append(f"labels never answered: {missing}")
    directory.mkdir(parents=True, exist_ok=True)
    train_path = directory / TRAINING_FILE
    _write_lines(train_path, [line for _, line in train])
    validation_path = None
    if validation:
        validation_path = directory / VALIDATION_FILE
        _write_lines(validation_path, [line for _, line in validation])
    return train_path, validation_path, check


def _write_lines(path: Path, lines: Sequence[Mapping[str, Any]]) -> None:
    path.write_text("".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines))


def file_sha256(*paths: Path | None) -> str:
    digest = hashlib.sha256()
    for path in paths:
        if path is not None:
            digest.update(path.read_bytes())
    return digest.hexdigest()
