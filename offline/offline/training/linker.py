"""Fit the reply linker on chat with annotated reply links and write the model file.

    python -m offline.training.linker --data ../shared/data/real-chat/ubuntu-irc-train \\
        --out services/sessionizer/sessionizer/models/reply-linker-v3.json --version 3 \\
        --windows 100x14400 --kinds choice --c 1 --far-share 1 --stretch 1,8

The data's chunks are split by `evaluation.data.split_of` (fixed: 60 % train, 20 % dev, 20 %
test). The model is fitted on train; the window, the kind of model, its size and the offset of
the "starts a conversation" score are chosen on dev, by exact-match F1 of conversations (link
accuracy breaks ties); test is not read. Needs scikit-learn (requirements-eval.txt); the model
is plain JSON, read by `linker.load_model` with numpy alone.

Three kinds of model (`--kinds`), all scored with numpy in the sessionizer's hot path:

- `choice` (shipped as v3): a linear model fitted as the decision the linker takes, each
  message choosing one of its rows (a candidate or starting) with probability softmax(score)
  over them (a conditional logit; scipy's L-BFGS). Independent yes/no rows (`linear`) spend
  the fit on telling far candidates from near ones, which every message's window already says;
  the choice compares a message's candidates with each other and with starting. On the dev
  chunks with feature set 2, best start offset of each: exact-match F1 0.234 vs 0.211.
- `linear`: scikit-learn's `LogisticRegression` over independent rows (v2).
- `mlp`: a small feed-forward net (scikit-learn's `MLPClassifier`, one hidden layer, a few
  seeds averaged), which can combine features a linear model only adds up; on dev it was
  barely better than `linear` and several times slower (README).

Fitting: every annotated message gives one row per candidate in its window plus one "starts a
conversation" row; a row is positive when it is one of the message's annotated parents (itself
for a start). Messages whose every true parent lies outside the window have no positive row and
are left out of the fit (no choice could be right for them); they still count in dev figures.
Far candidates (beyond `NEAR` messages) are sampled (`--far-share`), which keeps the fit small;
the start offset chosen on dev absorbs the shift it gives the scores.

`--thin N` adds N copies of the train chunks, each keeping one in N of their true conversations
(by a checksum of its name; together every conversation once): a quiet channel differs from a
busy one less in how fast people answer than in how few conversations run at once, which
stretched copies (below) do not change. Tried for v3 and not used: dev F1 0.238 vs 0.250, and
on elmlang it cut conversations finer still (ARI 0.272 vs 0.513).

`--stretch` adds copies of the train chunks with every time gap multiplied (a channel as busy in
messages but slower in time): the Ubuntu chunks are busy (a message every 7.5 s at the median),
and a quiet channel's replies come minutes after their question, where the busy chunks alone
would teach that a minute-old message is rarely answered.

Tried after v3 on the dev chunks with scratch code (not kept here: none could ship; README,
"Conversations in busy channels"), each with the window, train copies (×1, ×8) and offsets
chosen as above; v3 there: F1 0.250, scaled VI 0.897, link accuracy 0.668.

- Gradient-boosted trees (LightGBM, one thread) over v3's rows, 31 leaves, far share 0.3: with
  the choice's own loss (a softmax over each message's rows as a custom objective), 100–450
  rounds at learning rate 0.1 or 0.05, 31 or 63 leaves: F1 0.261–0.269, VI 0.894–0.897, link
  accuracy 0.687–0.690; with LightGBM's `lambdarank` (one query per message, 50–150 rounds at
  0.1) 0.263–0.282, VI 0.897–0.898, link 0.691–0.696 (trees pick parents better; conversations
  gain less). Scores averaged 0.7 softmax trees + 0.3 conditional logit (an ensemble of the
  two): F1 0.276, VI 0.900; once on test 0.259 / 0.902, on elmlang ARI 0.437 (v3 0.513).
  Cost: LightGBM's predict takes 260–320 µs a message (101 rows, 100 trees), about 50 µs for
  10 rows; re-ranking only the conditional logit's best 3 candidates keeps F1 0.267, so a live
  plan is the linear score over the window, then trees compiled to native code over a few
  rows, which still needs those rows' features (today `_rows`, the slow path).
- Word vectors: PPMI + truncated SVD over the train chunks' text (8,000 words × 48 dims, window
  6; neighbours look right: sound → audio, speakers, alsa), features the cosine of the mean
  vectors of the two messages' content words, its bins, the closest pair of different words,
  and "no vector": conditional logit F1 0.242 (link accuracy 0.668, unchanged), trees 0.272
  (link 0.691) against 0.269: nothing over shared words.
- Features of the candidate's conversation under the linker's own earlier decisions (its size,
  how long since its latest message, whether the candidate is that latest message, whether the
  new message's author already spoke in it or started it or spoke last in it, its number of
  authors; on the start row, the conversations active in the last 10 minutes), fitted with v3's
  decisions over the train chunks and decided in order on dev: conditional logit F1 0.265, VI
  0.902 (offset 0.25; 0.260 / 0.904 at 0); trees 0.285 / 0.904, link accuracy 0.703; 0.7 trees
  + 0.3 logit 0.290 / 0.905; `lambdarank` trees 0.286 / 0.907, link 0.707; the word vectors
  added to the trees: 0.282. Once on test (v3:
  0.242 / 0.899, ARI 0.625): logit 0.268 / 0.908, ARI 0.662; trees 0.271 / 0.911; averaged
  0.280 / 0.912, ARI 0.688, link 0.700. On elmlang (with the feeder's 30-minute rule; v3 ARI
  0.513, F1 0.146, gap 0.769 / 0.229): logit 0.595 / 0.173, averaged 0.587 / 0.162, still
  short of gap. The features cost about 10 µs a message in numpy (per-conversation arrays
  gathered by slot). Not shipped: a score that depends on earlier decisions breaks what makes
  restarts repeat every decision (the feeder refills the window by linking the records before
  the cut again, from an empty window, so the candidates' conversations there can differ);
  shipping it needs the decisions (each message's root) kept with the records.
- Their stateless stand-ins, from the window's messages alone (so restarts stay exact): the new
  author wrote one of the 3 messages before the candidate; the two authors alternated somewhere
  in the window; one mentioned the other in it; and on the start row, whether the new author is
  in the window at all, and in its last 10 minutes: conditional logit F1 0.256, VI 0.896, link
  accuracy 0.680 (offset 0.25): parents a little better, conversations not.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from beepgpt.contracts import conversation_id
from offline.evaluation.conversations.data import Annotated, load_annotated, people_messages, split
from offline.evaluation.conversations.metrics import Scores, score
from sessionizer.linker import FEATURES, Linker, LinkerModel

MAX_WINDOW_MESSAGES = 100
MAX_WINDOW_S = 14_400.0
NEAR = 20
"""Candidates this close (in messages) always enter the fit; farther ones are sampled."""


@dataclass
class Example:
    """One flow message with the feature rows of every candidate in the largest window."""

    message: str
    pair: sp.csr_matrix
    """One row of `FEATURES` per candidate (sparse: most features are bins and flags)."""
    candidates: list[str]
    self_row: npt.NDArray[np.float64]
    distance: npt.NDArray[np.int64]
    age_s: npt.NDArray[np.float64]


def collect(data: Annotated, *, stretch: float = 1.0, annotated_only: bool = False) -> list[Example]:
    """Every flow message of `data` in time order, with its candidates (decisions do not change
    features, so one pass serves every setting). `stretch` multiplies every time gap;
    `annotated_only` keeps only the examples of messages with known parents (for fitting)."""
    zero = LinkerModel.linear(
        np.zeros(len(FEATURES)),
        window_messages=MAX_WINDOW_MESSAGES,
        window_s=MAX_WINDOW_S,
        version="collect",
        meta={},
    )
    linker = Linker(zero)
    examples: list[Example] = []
    for channel, ts, thread_ts, user, text in people_messages(data.table):
        if thread_ts is not None and thread_ts != ts:
            continue  # a thread reply: its thread, never the linker
        sent = float(ts) * stretch
        message = conversation_id(str(channel), str(ts))
        if annotated_only and message not in data.parents:
            linker.add(str(channel), str(ts), sent, str(user), str(text), str(ts))
            continue
        found = linker.candidates(str(channel), sent, str(user), str(text))
        examples.append(
            Example(
                message=message,
                pair=sp.csr_matrix(found.pair),
                candidates=[conversation_id(str(channel), c) for c in found.ts],
                self_row=found.self_row,
                distance=found.distance,
                age_s=found.age_s,
            )
        )
        linker.add(str(channel), str(ts), sent, str(user), str(text), str(ts))
    return examples


def thinned(data: Annotated, every: int, part: int) -> Annotated:
    """The annotated messages of one in `every` true conversations of each chunk (those whose
    name's checksum is `part` modulo `every`), the other conversations and the unannotated
    context left out: a channel as quick to answer as the chunk, with fewer conversations at once."""
    kept = {m for m, c in data.truth.items() if zlib.crc32(c.encode()) % every == part}
    ids = [conversation_id(str(c), str(ts)) for c, ts in zip(data.table["channel"], data.table["slack_ts"], strict=True)]
    table = data.table[[m in kept for m in ids]].reset_index(drop=True)
    return Annotated(
        table=table,
        truth={m: c for m, c in data.truth.items() if m in kept},
        parents={m: p for m, p in data.parents.items() if m in kept},
        channel_names=data.channel_names,
    )


def _in_window(example: Example, messages: int, seconds: float) -> npt.NDArray[np.bool_]:
    return (example.distance <= messages) & (example.age_s <= seconds)


def design(
    examples: list[Example],
    parents: dict[str, frozenset[str]],
    messages: int,
    seconds: float,
    *,
    far_share: float = 1.0,
    seed: int = 0,
) -> tuple[sp.csr_matrix, npt.NDArray[np.int8], npt.NDArray[np.int64]]:
    """The fitting rows: candidates then the start row of every annotated message with a
    positive; candidates farther than `NEAR` that are not parents kept with `far_share`. Also
    where each message's rows start (and the end), for the choice-wise fit."""
    rng = np.random.default_rng(seed)
    blocks: list[sp.csr_matrix] = []
    labels: list[npt.NDArray[np.int8]] = []
    starts = [0]
    for example in examples:
        true = parents.get(example.message)
        if not true:
            continue
        keep = _in_window(example, messages, seconds)
        y_all = np.array([c in true for c in example.candidates], dtype=bool)
        if far_share < 1.0:
            far = (example.distance > NEAR) & ~y_all
            keep &= ~far | (rng.random(len(keep)) < far_share)
        y = np.append(y_all[keep], example.message in true)
        if not y.any():
            continue
        blocks.append(sp.vstack([example.pair[keep], sp.csr_matrix(example.self_row[None, :])]))
        labels.append(y.astype(np.int8))
        starts.append(starts[-1] + len(y))
    return sp.vstack(blocks, format="csr"), np.concatenate(labels), np.array(starts, dtype=np.int64)


def fit_linear(x: sp.csr_matrix, y: npt.NDArray[np.int8], c: float) -> tuple[Any, ...]:
    """Layers of an L2 logistic regression (the intercept is dropped: it adds the same to every
    choice of a message)."""
    from sklearn.linear_model import LogisticRegression

    model = LogisticRegression(C=c, max_iter=2_000, tol=1e-6)
    model.fit(x, y)
    w = model.coef_[0].astype(np.float64).reshape(-1, 1)
    return w, np.zeros(1), np.ones(1), "identity"


def fit_choice(x: sp.csr_matrix, y: npt.NDArray[np.int8], starts: npt.NDArray[np.int64], c: float) -> tuple[Any, ...]:
    """Layers of a linear model fitted as the choice it makes: each message picks one of its
    rows (a candidate, or starting), with probability softmax(score) over them, and the fit
    maximises the probability of its annotated parents (a conditional logit, L2 penalty
    1 / (2c)), with scipy's L-BFGS. Unlike independent yes/no rows this compares a message's
    candidates with each other and with starting, which is the decision `Linker.link` takes;
    features that are the same in all of a message's rows get no weight."""
    from scipy.optimize import minimize

    first = starts[:-1]
    group = np.repeat(np.arange(len(first)), np.diff(starts))
    positive = y.astype(np.float64)
    xt = x.T.tocsr()
    penalty = 1.0 / c

    def loss(w: npt.NDArray[np.float64]) -> tuple[float, npt.NDArray[np.float64]]:
        s = x @ w
        e = np.exp(s - np.maximum.reduceat(s, first)[group])
        everything = np.add.reduceat(e, first)
        chosen = e * positive
        right = np.add.reduceat(chosen, first)
        value = float(np.sum(np.log(everything) - np.log(right))) + 0.5 * penalty * float(w @ w)
        grad = xt @ (e / everything[group] - chosen / right[group]) + penalty * w
        return value, grad

    fitted = minimize(loss, np.zeros(x.shape[1]), jac=True, method="L-BFGS-B", options={"maxiter": 500})
    return fitted.x.reshape(-1, 1), np.zeros(1), np.ones(1), "identity"


def fit_mlp(
    x: sp.csr_matrix, y: npt.NDArray[np.int8], units: int, alpha: float, seeds: int
) -> tuple[Any, ...]:
    """Layers of `seeds` one-hidden-layer nets side by side: their mean logit (the output bias
    is dropped, as above)."""
    from sklearn.neural_network import MLPClassifier

    hidden, biases, outputs = [], [], []
    for seed in range(seeds):
        net = MLPClassifier(
            hidden_layer_sizes=(units,), activation="relu", alpha=alpha, batch_size=512,
            learning_rate_init=1e-3, max_iter=12, n_iter_no_change=3, tol=1e-5,
            early_stopping=False, random_state=seed,
        )
        net.fit(x, y)
        hidden.append(net.coefs_[0].astype(np.float64))
        biases.append(net.intercepts_[0].astype(np.float64))
        outputs.append(net.coefs_[1][:, 0].astype(np.float64) / seeds)
    return np.hstack(hidden), np.concatenate(biases), np.concatenate(outputs), "relu"


def build(layers: tuple[Any, ...], messages: int, seconds: float, version: str, meta: dict[str, Any]) -> LinkerModel:
    hidden, bias, output, activation = layers
    return LinkerModel(hidden=hidden, hidden_bias=bias, output=output, activation=activation,
                       window_messages=messages, window_s=seconds, version=version, meta=meta)


def example_scores(examples: list[Example], model: LinkerModel) -> list[tuple[npt.NDArray[np.float64], float]]:
    """Each example's candidate scores (all of the largest window) and its start score."""
    out = []
    linear = model.hidden[:, 0] * model.output[0] if model.activation == "identity" else None
    for example in examples:
        if linear is not None:
            out.append((np.asarray(example.pair @ linear), float(example.self_row @ linear)))
        else:
            s = model.score(np.vstack([example.pair.toarray(), example.self_row[None, :]]))
            out.append((s[:-1], float(s[-1])))
    return out


def decide(
    examples: list[Example],
    scored: list[tuple[npt.NDArray[np.float64], float]],
    messages: int,
    seconds: float,
    offset: float,
) -> tuple[dict[str, str], dict[str, str | None]]:
    """Each message's conversation (its root's id) and chosen parent, as `Linker.link` decides."""
    root: dict[str, str] = {}
    chosen: dict[str, str | None] = {}
    for example, (scores, own) in zip(examples, scored, strict=True):
        keep = np.flatnonzero(_in_window(example, messages, seconds))
        parent = None
        if len(keep):
            best = int(keep[np.argmax(scores[keep])])
            if scores[best] > own + offset:
                parent = example.candidates[best]
        chosen[example.message] = parent
        root[example.message] = root[parent] if parent is not None else example.message
    return root, chosen


def measure(data: Annotated, examples: list[Example], scored: list[tuple[npt.NDArray[np.float64], float]],
            messages: int, seconds: float, offset: float) -> Scores:
    root, chosen = decide(examples, scored, messages, seconds, offset)
    return score(data.truth, root, true_parents=data.parents, chosen_parents=chosen)



def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m offline.training.linker", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="Slack export with conversations.json and links.json")
    p.add_argument("--out", type=Path, required=True, help="model JSON to write")
    p.add_argument("--version", default="2")
    p.add_argument("--windows", default="100x3600", help="MESSAGESxSECONDS candidates")
    p.add_argument("--kinds", default="mlp", help="linear and/or mlp")
    p.add_argument("--c", default="1", help="linear: regularisation strengths to try")
    p.add_argument("--units", default="32", help="mlp: hidden units to try")
    p.add_argument("--alpha", default="1e-4", help="mlp: L2 penalties to try")
    p.add_argument("--seeds", type=int, default=3, help="mlp: nets averaged")
    p.add_argument("--far-share", type=float, default=0.3, help="share of far non-parent candidates fitted on")
    p.add_argument("--stretch", default="1", help="time-gap factors of the train copies (1: as is)")
    p.add_argument("--thin", default="", help="also train copies with one in N true conversations kept (N,...)")
    p.add_argument("--offsets", default="-1,-0.5,-0.25,0,0.25,0.5,1,1.5,2", help="start-score offsets to try")
    args = p.parse_args(argv)
    started = time.monotonic()
    data = load_annotated(args.data, args.data / "conversations.json", args.data / "links.json")
    parts = split(data)
    train, dev = parts["train"], parts["dev"]
    print(f"train {len(train.truth)} / dev {len(dev.truth)} annotated messages "
          f"({train.table['channel'].nunique()} / {dev.table['channel'].nunique()} chunks)", file=sys.stderr)
    stretch = [float(v) for v in args.stretch.split(",")]
    thin = [int(v) for v in args.thin.split(",") if v]
    train_examples = [e for k in stretch for e in collect(train, stretch=k, annotated_only=True)]
    train_examples += [
        e for k in thin for part in range(k) for e in collect(thinned(train, k, part), annotated_only=True)
    ]
    dev_examples = collect(dev)
    trials: list[dict[str, Any]] = []
    best: tuple[tuple[float, float], dict[str, Any], LinkerModel] | None = None
    for window in args.windows.split(","):
        messages, seconds = int(window.split("x")[0]), float(window.split("x")[1])
        x, y, starts = design(train_examples, train.parents, messages, seconds, far_share=args.far_share)
        print(f"window {window}: {len(y)} rows", file=sys.stderr)
        settings: list[tuple[dict[str, Any], tuple[Any, ...]]] = []
        for kind in args.kinds.split(","):
            if kind == "linear":
                for c in (float(v) for v in args.c.split(",")):
                    settings.append(({"kind": "linear", "c": c}, fit_linear(x, y, c)))
            elif kind == "choice":
                for c in (float(v) for v in args.c.split(",")):
                    settings.append(({"kind": "choice", "c": c}, fit_choice(x, y, starts, c)))
            elif kind == "mlp":
                for units in (int(v) for v in args.units.split(",")):
                    for alpha in (float(v) for v in args.alpha.split(",")):
                        settings.append(({"kind": "mlp", "units": units, "alpha": alpha, "seeds": args.seeds},
                                         fit_mlp(x, y, units, alpha, args.seeds)))
            else:
                raise SystemExit(f"unknown kind {kind!r}")
        for setting, layers in settings:
            model = build(layers, messages, seconds, args.version, {})
            scored = example_scores(dev_examples, model)
            for offset in (float(v) for v in args.offsets.split(",")):
                got = measure(dev, dev_examples, scored, messages, seconds, offset)
                trial = {"window_messages": messages, "window_s": seconds, **setting, "self_offset": offset,
                         "stretch": stretch, "thin": thin, "far_share": args.far_share, "dev": got.as_dict()}
                trials.append(trial)
                print(json.dumps(trial), file=sys.stderr)
                key = (got.exact_f1, got.link_accuracy or 0.0)
                if best is None or key > best[0]:
                    best = (key, trial, model)
    assert best is not None
    _, chosen, model = best
    # The offset is folded into the start row's bias, so the shipped model needs no setting.
    hidden = model.hidden.copy()
    if model.activation == "identity":
        hidden[FEATURES.index("self_bias"), 0] += chosen["self_offset"]
    else:  # a hidden unit that is on only for the start row, worth the offset
        column = np.zeros((len(FEATURES), 1))
        column[FEATURES.index("self_bias"), 0] = 1.0
        hidden = np.hstack([hidden, column])
    output = model.output if model.activation == "identity" else np.append(model.output, chosen["self_offset"])
    bias = model.hidden_bias if model.activation == "identity" else np.append(model.hidden_bias, 0.0)
    shipped = LinkerModel(
        hidden=hidden, hidden_bias=bias, output=output, activation=model.activation,
        window_messages=chosen["window_messages"], window_s=chosen["window_s"], version=args.version,
        meta={
            "trained_on": "Ubuntu IRC disentanglement corpus, train split (Kummerfeld et al., ACL 2019; CC BY 4.0)",
            "trained_by": "offline.training.linker",
            "split": "offline.evaluation.conversations.data.split_of: crc32(chunk name) % 5 == 3 dev, == 4 test, else train",
            "fitted_with": {
                "mlp": "scikit-learn MLPClassifier (one hidden layer, seeds averaged)",
                "linear": "scikit-learn LogisticRegression (L2)",
                "choice": "conditional logit over each message's choices (L2), scipy L-BFGS",
            }[chosen["kind"]],
            "chosen": {k: v for k, v in chosen.items() if k != "dev"},
            "dev": chosen["dev"],
            "train_annotated_messages": len(train.truth),
        },
    )
    args.out.write_text(json.dumps(shipped.to_dict(), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}: {json.dumps(chosen)} in {time.monotonic() - started:.0f}s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
