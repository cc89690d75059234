"""Conversation-disentanglement metrics, from the definitions of Kummerfeld et al. (ACL 2019).

Both sides are clusterings of the same messages: `{message: conversation}` for the messages that
have a known conversation (a predicted conversation is cut down to those; messages without a
known conversation, such as a chunk's unannotated context, are left out of every figure).

- **ARI**: the adjusted Rand index (scikit-learn's `adjusted_rand_score`).
- **Scaled VI**: 1 − VI / log N, where VI = H(truth | predicted) + H(predicted | truth) is the
  variation of information and N the number of messages (1 is identical, 0 as far apart as N
  messages can be).
- **One-to-one**: the share of messages in the best one-to-one pairing of predicted with true
  conversations (each conversation paired at most once, pairs chosen to cover the most messages;
  Elsner and Charniak 2008). Solved per connected group of overlapping conversations with
  scipy's `linear_sum_assignment`, which gives the same optimum as one big assignment.
- **Exact match**: precision = predicted conversations identical to a true one / predicted
  conversations, recall = the same / true conversations, F1 their harmonic mean. As in the
  paper's evaluation, conversations of a single message are left out on both sides (they are
  mostly system messages there, and would reward a model that splits everything).
- **Link accuracy** (where reply links are known): the share of messages whose chosen parent is
  one of its true parents (a message linked to itself starts a conversation; so does a message
  whose chosen parent is None).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score

Clustering = Mapping[str, Hashable]
"""message id → conversation id."""


@dataclass(frozen=True)
class Scores:
    messages: int
    true_conversations: int
    predicted_conversations: int
    ari: float
    scaled_vi: float
    one_to_one: float
    exact_precision: float
    exact_recall: float
    exact_f1: float
    link_accuracy: float | None = None

    def as_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def score(
    truth: Clustering,
    predicted: Clustering,
    *,
    true_parents: Mapping[str, frozenset[str]] | None = None,
    chosen_parents: Mapping[str, str | None] | None = None,
) -> Scores:
    """Every figure for `predicted` against `truth`, over the messages of `truth`.

    A message of `truth` missing from `predicted` counts as a conversation of its own (what a
    mode that dropped it would amount to). Link accuracy needs both parent mappings.
    """
    messages = sorted(truth)
    if not messages:
        raise ValueError("no messages with a known conversation to measure on")
    true_labels = [truth[m] for m in messages]
    predicted_labels: list[Hashable] = [predicted.get(m, ("alone", m)) for m in messages]
    table = Counter(zip(true_labels, predicted_labels, strict=True))
    true_sizes = Counter(true_labels)
    predicted_sizes = Counter(predicted_labels)
    precision, recall, f1 = exact_match(true_labels, predicted_labels)
    links = None
    if true_parents is not None and chosen_parents is not None:
        links = link_accuracy(messages, true_parents, chosen_parents)
    return Scores(
        messages=len(messages),
        true_conversations=len(true_sizes),
        predicted_conversations=len(predicted_sizes),
        ari=float(adjusted_rand_score(_codes(true_labels), _codes(predicted_labels))),
        scaled_vi=scaled_vi(table, true_sizes, predicted_sizes),
        one_to_one=one_to_one(table) / len(messages),
        exact_precision=precision,
        exact_recall=recall,
        exact_f1=f1,
        link_accuracy=links,
    )


def _codes(labels: list[Hashable]) -> list[int]:
    codes: dict[Hashable, int] = {}
    return [codes.setdefault(label, len(codes)) for label in labels]


def scaled_vi(
    table: Mapping[tuple[Hashable, Hashable], int],
    true_sizes: Mapping[Hashable, int],
    predicted_sizes: Mapping[Hashable, int],
) -> float:
    """1 − VI / log N from the contingency table (natural logs; the ratio does not depend on the base)."""
    n = sum(true_sizes.values())
    if n <= 1:
        return 1.0
    # VI = H(T|P) + H(P|T) = 2 H(T,P) − H(T) − H(P)
    joint = -sum(c / n * math.log(c / n) for c in table.values())
    h_true = -sum(c / n * math.log(c / n) for c in true_sizes.values())
    h_pred = -sum(c / n * math.log(c / n) for c in predicted_sizes.values())
    vi = max(0.0, 2 * joint - h_true - h_pred)
    return 1.0 - vi / math.log(n)


def one_to_one(table: Mapping[tuple[Hashable, Hashable], int]) -> int:
    """Messages covered by the best one-to-one pairing of true with predicted conversations.

    Conversations that share no message never gain from being paired, so the pairing is solved
    separately inside each connected group of the overlap graph (small, even for large inputs).
    """
    parent: dict[tuple[str, Hashable], tuple[str, Hashable]] = {}

    def find(node: tuple[str, Hashable]) -> tuple[str, Hashable]:
        root = node
        while parent.setdefault(root, root) != root:
            root = parent[root]
        while parent[node] != root:
            parent[node], node = root, parent[node]
        return root

    for true, predicted in table:
        a, b = find(("t", true)), find(("p", predicted))
        if a != b:
            parent[a] = b
    groups: dict[tuple[str, Hashable], list[tuple[Hashable, Hashable, int]]] = defaultdict(list)
    for (true, predicted), count in table.items():
        groups[find(("t", true))].append((true, predicted, count))
    covered = 0
    for cells in groups.values():
        if len(cells) == 1:
            covered += cells[0][2]
            continue
        rows = {t: i for i, t in enumerate(dict.fromkeys(t for t, _, _ in cells))}
        cols = {p: i for i, p in enumerate(dict.fromkeys(p for _, p, _ in cells))}
        weights = np.zeros((len(rows), len(cols)))
        for true, predicted, count in cells:
            weights[rows[true], cols[predicted]] = count
        r, c = linear_sum_assignment(weights, maximize=True)
        covered += int(weights[r, c].sum())
    return covered


def exact_match(true_labels: list[Hashable], predicted_labels: list[Hashable]) -> tuple[float, float, float]:
    """Precision, recall and F1 of conversations identical on both sides (single messages left out)."""
    true_sets = _member_sets(true_labels)
    predicted_sets = _member_sets(predicted_labels)
    true_many = {s for s in true_sets if len(s) > 1}
    predicted_many = {s for s in predicted_sets if len(s) > 1}
    matched = len(true_many & predicted_many)
    precision = matched / len(predicted_many) if predicted_many else 0.0
    recall = matched / len(true_many) if true_many else 0.0
    f1 = 2 * precision * recall / (precision + recall) if matched else 0.0
    return precision, recall, f1


def _member_sets(labels: list[Hashable]) -> list[frozenset[int]]:
    members: dict[Hashable, list[int]] = defaultdict(list)
    for index, label in enumerate(labels):
        members[label].append(index)
    return [frozenset(m) for m in members.values()]


def link_accuracy(
    messages: list[str],
    true_parents: Mapping[str, frozenset[str]],
    chosen_parents: Mapping[str, str | None],
) -> float | None:
    """The share of messages with known parents whose chosen parent is one of them."""
    right = total = 0
    for message in messages:
        parents = true_parents.get(message)
        if not parents:
            continue
        total += 1
        chosen = chosen_parents.get(message)
        right += (chosen if chosen is not None else message) in parents
    return right / total if total else None
