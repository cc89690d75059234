"""Fit the reply linker on chat with annotated reply links and write the model file.

    python -m offline.training.linker --data ../shared/data/real-chat/ubuntu-irc-train \\
        --out services/sessionizer/sessionizer/models/reply-linker-v1.json

The data's chunks are split by `evaluation.data.split_of` (fixed: 60 % train, 20 % dev, 20 %
test). The model is fitted on train; the window, the regularisation and the offset of the
"starts a conversation" score are chosen on dev, by exact-match F1 of conversations (link
accuracy breaks ties); test is not read. Needs scikit-learn (requirements-eval.txt); the model
is plain JSON of named weights, read by `linker.load_model` with numpy alone.

Why a logistic regression over binary features: the sessionizer scores every candidate of every
message (up to 50 per message) in its hot path, and a dot product over the window is a few
microseconds in numpy; a tree ensemble evaluated per candidate in Python is not (see
`models/README.md` for what was measured).

Fitting: every annotated message gives one row per candidate in its window plus one "starts a
conversation" row; a row is positive when it is one of the message's annotated parents (itself
for a start). Messages whose every true parent lies outside the window have no positive row and
are left out of the fit (no choice could be right for them); they still count in dev figures.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from beepgpt.contracts import conversation_id
from offline.evaluation.conversations.data import Annotated, load_annotated, people_messages, split
from offline.evaluation.conversations.metrics import Scores, score
from sessionizer.linker import PAIR_FEATURES, SELF_FEATURES, Linker, LinkerModel

MAX_WINDOW_MESSAGES = 80
MAX_WINDOW_S = 7_200.0


@dataclass
class Example:
    """One flow message with the features of every candidate in the largest window."""

    message: str
    pair: npt.NDArray[np.uint8]
    candidates: list[str]
    self_row: npt.NDArray[np.float64]
    distance: npt.NDArray[np.int64]
    age_s: npt.NDArray[np.float64]


def collect(data: Annotated) -> list[Example]:
    """Every flow message of `data` in time order, with its candidates (decisions do not change
    features, so one pass serves every setting)."""
    zero = LinkerModel(
        pair_weights=np.zeros(len(PAIR_FEATURES)),
        self_weights=np.zeros(len(SELF_FEATURES)),
        window_messages=MAX_WINDOW_MESSAGES,
        window_s=MAX_WINDOW_S,
        version="collect",
        meta={},
    )
    linker = Linker(zero)
    examples: list[Example] = []
    table = data.table
    for channel, ts, thread_ts, user, text in people_messages(table):
        if thread_ts is not None and thread_ts != ts:
            continue  # a thread reply: its thread, never the linker
        sent = float(ts)
        found = linker.candidates(str(channel), sent, str(user), str(text))
        examples.append(
            Example(
                message=conversation_id(str(channel), str(ts)),
                pair=found.pair.astype(np.uint8),
                candidates=[conversation_id(str(channel), c) for c in found.ts],
                self_row=found.self_row,
                distance=found.distance,
                age_s=found.age_s,
            )
        )
        linker.add(str(channel), str(ts), sent, str(user), str(text), str(ts))
    return examples


def _in_window(example: Example, messages: int, seconds: float) -> npt.NDArray[np.bool_]:
    return (example.distance <= messages) & (example.age_s <= seconds)


def design(
    examples: list[Example], parents: dict[str, frozenset[str]], messages: int, seconds: float
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.int8]]:
    """The fitting rows: candidates then the start row of every annotated message with a positive."""
    blocks: list[npt.NDArray[np.float32]] = []
    labels: list[npt.NDArray[np.int8]] = []
    width = len(PAIR_FEATURES) + len(SELF_FEATURES)
    for example in examples:
        true = parents.get(example.message)
        if not true:
            continue
        keep = _in_window(example, messages, seconds)
        y = np.array([c in true for c, k in zip(example.candidates, keep, strict=True) if k] + [example.message in true])
        if not y.any():
            continue
        rows = np.zeros((len(y), width), dtype=np.float32)
        rows[:-1, : len(PAIR_FEATURES)] = example.pair[keep]
        rows[-1, len(PAIR_FEATURES) :] = example.self_row
        blocks.append(rows)
        labels.append(y.astype(np.int8))
    return np.vstack(blocks), np.concatenate(labels)


def fit(x: npt.NDArray[np.float32], y: npt.NDArray[np.int8], c: float) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Pair and self weights of an L2 logistic regression (the intercept is dropped: it adds the
    same to every choice of a message)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2_000, tol=1e-6)
    model.fit(x, y)
    w = model.coef_[0].astype(np.float64)
    return w[: len(PAIR_FEATURES)], w[len(PAIR_FEATURES) :]


def decide(
    examples: list[Example],
    pair_w: npt.NDArray[np.float64],
    self_w: npt.NDArray[np.float64],
    messages: int,
    seconds: float,
    offset: float,
) -> tuple[dict[str, str], dict[str, str | None]]:
    """Each message's conversation (its root's id) and chosen parent, as `Linker.link` decides."""
    root: dict[str, str] = {}
    chosen: dict[str, str | None] = {}
    for example in examples:
        keep = _in_window(example, messages, seconds)
        parent = None
        if keep.any():
            scores = example.pair[keep] @ pair_w
            best = int(np.argmax(scores))
            if scores[best] > float(example.self_row @ self_w) + offset:
                parent = [c for c, k in zip(example.candidates, keep, strict=True) if k][best]
        chosen[example.message] = parent
        root[example.message] = root[parent] if parent is not None else example.message
    return root, chosen


def measure(
    data: Annotated, examples: list[Example], weights: tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]],
    messages: int, seconds: float, offset: float,
) -> Scores:
    root, chosen = decide(examples, *weights, messages, seconds, offset)
    return score(data.truth, root, true_parents=data.parents, chosen_parents=chosen)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m offline.training.linker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="Slack export with conversations.json and links.json")
    p.add_argument("--out", type=Path, required=True, help="model JSON to write")
    p.add_argument("--version", default="1")
    p.add_argument("--windows", default="30x1800,50x1800,50x3600,80x3600", help="MESSAGESxSECONDS candidates")
    p.add_argument("--c", default="0.1,1,10", help="regularisation strengths to try")
    p.add_argument("--offsets", default="-1,-0.5,-0.25,0,0.25,0.5,1", help="start-score offsets to try")
    args = p.parse_args(argv)
    started = time.monotonic()
    data = load_annotated(args.data, args.data / "conversations.json", args.data / "links.json")
    parts = split(data)
    train, dev = parts["train"], parts["dev"]
    print(f"train {len(train.truth)} / dev {len(dev.truth)} annotated messages "
          f"({train.table['channel'].nunique()} / {dev.table['channel'].nunique()} chunks)", file=sys.stderr)
    train_examples, dev_examples = collect(train), collect(dev)
    trials: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], dict[str, Any], Any] | None = None
    for window in args.windows.split(","):
        messages, seconds = int(window.split("x")[0]), float(window.split("x")[1])
        x, y = design(train_examples, train.parents, messages, seconds)
        for c in (float(v) for v in args.c.split(",")):
            weights = fit(x, y, c)
            for offset in (float(v) for v in args.offsets.split(",")):
                got = measure(dev, dev_examples, weights, messages, seconds, offset)
                trial = {"window_messages": messages, "window_s": seconds, "c": c, "self_offset": offset,
                         "dev": got.as_dict()}
                trials.append(trial)
                print(json.dumps(trial), file=sys.stderr)
                key = (got.exact_f1, got.link_accuracy or 0.0)
                if best is None or key > best[0]:
                    best = (key, trial, weights)
    assert best is not None
    _, chosen, (pair_w, self_w) = best
    # The offset is folded into the start bias, so the shipped model needs no extra setting.
    self_w = self_w.copy()
    self_w[SELF_FEATURES.index("self_bias")] += chosen["self_offset"]
    model = LinkerModel(
        pair_weights=pair_w,
        self_weights=self_w,
        window_messages=chosen["window_messages"],
        window_s=chosen["window_s"],
        version=args.version,
        meta={
            "trained_on": "Ubuntu IRC disentanglement corpus, train split (Kummerfeld et al., ACL 2019; CC BY 4.0)",
            "split": "offline.evaluation.conversations.data.split_of: crc32(chunk name) % 5 == 3 dev, == 4 test, else train",
            "fitted_with": "scikit-learn LogisticRegression (L2), C chosen on dev",
            "chosen": {k: chosen[k] for k in ("window_messages", "window_s", "c", "self_offset")},
            "dev": chosen["dev"],
            "train_annotated_messages": len(train.truth),
        },
    )
    args.out.write_text(json.dumps(model.to_dict(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {json.dumps(chosen)} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
