"""Fitting the pair model (`scorer.interest.pairs`) on a replayed history.

The history before the end of training is replayed once (`offline.training.replay`). Every
message yields one example per plausible person not yet in its conversation — the pairs the live
scorer would score at that moment — labelled by whether that person posts in the conversation
later. The replay's earlier part (`1 - calibration_fraction` of its messages) fits a LightGBM
classifier; the later part calibrates its probabilities (Platt scaling) and chooses the
alert threshold, so that both are measured on time the fit never saw, as live use will be.

The threshold is the one of best Wilson lower bound of precision (one standard error below,
`bound_z`) over (person, conversation) alerts, among thresholds that alert at least `MIN_ALERTS`
pairs: a pair is alerted the first time its probability reaches the threshold, and is right when
the person joins after. A needless DM costs someone's focus and a missed one costs little, so the
rule ranks thresholds by the precision they can be trusted to keep, discounting a precision
measured on few alerts, rather than trading it against recall.

Why not F-beta (beta 0.25, the rule before): its curve has two maxima, a few very likely pairs
and a broad plateau of a few hundred alerts, and where its choice lands between them is what
moved the reported ratio most (on elmlang-general's test months, in an earlier fit, it fell on
the plateau: 279 DMs, 1.48 times the recent-activity rule's precision at the same volume). On
two development folds inside elmlang-general's training history (fit on its first 35 % / 49 %, measured on 35–50 % /
49–70 %), three booster seeds each, the bound chose the same threshold as F-beta or a better one
for every seed: 2.0–2.5 times the rule (mean 2.30, 24–42 DMs) against 1.33–2.4 (mean 1.91,
24–138 DMs) on the first fold, 1.82–2.06 (mean 1.96, 34–224 DMs) against 1.47–2.06 (mean 1.84,
34–394 DMs) on the second. z 0.5–1.0 chose alike; 1.28 and 1.645 fell back to F-beta's choice
on one or two seeds; F-beta with the bound in place of precision chose the plateau more often
(means 0.90–0.98 on the first fold). The last 30 %, which `beepgpt eval alerts` reports on, played
no part in the choice; run once afterwards, the two rules chose the same threshold there (0.2099
on that fit: 242 DMs, 1.51 times). `threshold_rule="f_beta"` keeps the old rule. The bound
does not weigh recall: where precision saturates (the synthetic slack-generation set: 19 alerts at
precision 1.0 and recall 0.16 on the calibration slice, against F-beta's 88 at 0.94 and 0.71) it
alerts the very top only.

`boosters` > 1 fits an ensemble (seeds `seed` … `seed + boosters - 1`, log-odds averaged) and
`recency_half_life_days` weights fit examples towards the end of the fit slice. On the same two
folds, three seeds each, five 60-round boosters at learning rate 0.15 with a 120-day half-life
ranked best at fixed volumes (1.20 and 1.98 times the rule against 1.06 and 1.86 for one booster)
but not at the default point; on the test months, run once, it gave 1.13 times against the
single booster's 1.48, so the default stays one booster with equal weights.

Large workspaces: at most `max_events` messages make examples (a fixed-seed sample); every
message still updates the activity, so what the sampled examples see is the full history.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from offline.training.replay import Stream, replay
from scorer.interest.activity import Activity
from scorer.interest.pairs import CANDIDATES, FEATURES, PairModel, candidates, features, log_odds, platt

Matrix = npt.NDArray[np.float32]
MIN_ALERTS = 5
"""fewest calibration alerts a threshold may send under the precision-bound rule (set a priori:
every development fold's highest candidate sent 7 or more, so it changed none of their choices)"""
Say = Callable[[str], None]


@dataclass(frozen=True)
class PairSettings:
    calibration_fraction: float = 0.2
    max_events: int = 40_000
    candidates: int = CANDIDATES
    rounds: int = 200
    learning_rate: float = 0.05
    num_leaves: int = 31
    max_bin: int = 255
    min_child_samples: int = 100
    beta: float = 0.25
    """F-beta's beta, used when `threshold_rule` is "f_beta" (the rule before format 4's models)"""
    threshold_rule: str = "precision_bound"
    """"precision_bound": the threshold of best Wilson lower bound of precision; "f_beta": of best
    F-beta (see the module's docstring for why the first)"""
    bound_z: float = 1.0
    """standard errors the precision bound lies below the measured precision (1: one-sided 84 %)"""
    seed: int = 7
    boosters: int = 1
    """boosters in the ensemble, seeds `seed`, `seed + 1`, ... (their log-odds are averaged)"""
    recency_half_life_days: float = 0.0
    """weight of a fit example halves for every this many days before the fit slice's end (0: all
    examples weigh the same)"""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Examples:
    rows: Matrix
    labels: npt.NDArray[np.int8]
    times: npt.NDArray[np.float64]
    pairs: list[tuple[int, str]]
    """(conversation, person) of each row"""


def collect(
    stream: Stream,
    vectors: Matrix,
    activity: Activity,
    *,
    end: float,
    keep: Callable[[int], bool],
    limit: int,
    say: Say | None = None,
) -> Examples:
    """Examples of the replay before `end` (messages for which `keep(row)` holds)."""
    blocks: list[Matrix] = []
    labels: list[int] = []
    times: list[float] = []
    pairs: list[tuple[int, str]] = []
    total = sum(1 for r in stream.order if stream.times[r] < end)
    started = time.perf_counter()
    for done, step in enumerate(replay(stream, vectors, activity, end=end), start=1):
        if say is not None and done % 20_000 == 0:
            say(f"  replayed {done:,}/{total:,} messages ({time.perf_counter() - started:.0f} s)")
        if not keep(step.row):
            continue
        people = candidates(activity, step.moment, limit=limit)
        if not people:
            continue
        blocks.append(features(activity, step.moment, people))
        for user in people:
            labels.append(int(stream.joined_after(step.conversation, user, step.moment.now)))
            times.append(step.moment.now)
            pairs.append((step.conversation, user))
    rows = np.concatenate(blocks) if blocks else np.zeros((0, len(FEATURES)), np.float32)
    return Examples(rows, np.array(labels, dtype=np.int8), np.array(times), pairs)


def fit(
    stream: Stream,
    vectors: Matrix,
    *,
    end: float = float("inf"),
    settings: PairSettings | None = None,
    names: dict[str, str] | None = None,
    say: Say | None = None,
) -> tuple[PairModel, dict[str, Any]]:
    """Train, calibrate and choose the threshold on the history before `end`."""
    import lightgbm
    from sklearn.linear_model import LogisticRegression

    settings = settings or PairSettings()
    timings: dict[str, float] = {}
    times = sorted(stream.times[r] for r in stream.order if stream.times[r] < end)
    if len(times) < 10:
        raise ValueError(f"{len(times)} messages before the end of training: too few to learn from")
    origin = times[0]
    calibrate_from = times[int(len(times) * (1 - settings.calibration_fraction))]
    rng = np.random.default_rng(settings.seed)
    share = min(1.0, settings.max_events / len(times))
    sampled = set(np.flatnonzero(rng.random(len(stream.users)) < share).tolist()) if share < 1 else None

    def keep(row: int) -> bool:
        return sampled is None or row in sampled

    activity = Activity(origin)
    started = time.perf_counter()
    if say:
        say(f"pair model: replaying {len(times):,} messages (examples from {share:.0%} of them)")
    examples = collect(stream, vectors, activity, end=end, keep=keep, limit=settings.candidates, say=say)
    timings["examples_seconds"] = time.perf_counter() - started
    early = examples.times < calibrate_from
    late = ~early
    calibrated_on = "calibration slice"
    if examples.labels[early].sum() == 0:
        raise ValueError("no joins to learn from: nobody ever posted in a conversation someone else opened")
    if examples.labels[late].sum() == 0 or late.sum() < 50:
        # A history too short for a later slice with joins in it (a day of a small team): the fit's
        # own examples calibrate, optimistically; the metrics say so.
        late = early
        calibrated_on = "fit slice (the later slice had no joins)"
        calibrate_from = float(examples.times.min())
    started = time.perf_counter()
    params = {
        "objective": "binary",
        "learning_rate": settings.learning_rate,
        "num_leaves": settings.num_leaves,
        "min_child_samples": settings.min_child_samples,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.8,
        "bagging_freq": 1,
        "seed": settings.seed,
        "deterministic": True,
        "num_threads": 2,
        "verbose": -1,
        "max_bin": settings.max_bin,
    }
    weights = recency_weights(examples.times[early], settings.recency_half_life_days)
    data = lightgbm.Dataset(
        examples.rows[early], label=examples.labels[early], weight=weights, feature_name=list(FEATURES)
    )
    boosters = [
        lightgbm.train({**params, "seed": settings.seed + index}, data, num_boost_round=settings.rounds)
        for index in range(settings.boosters)
    ]
    timings["fit_seconds"] = time.perf_counter() - started
    model = PairModel(boosters, (1.0, 0.0), 0.5, activity, names, limit=settings.candidates)
    raw = model.raw(examples.rows[late])
    platt_fit = LogisticRegression(C=1e6).fit(log_odds(raw)[:, None], examples.labels[late])
    calibration = (float(platt_fit.coef_[0][0]), float(platt_fit.intercept_[0]))
    calibrated = platt(raw, *calibration)
    late_pairs = [p for p, keep_it in zip(examples.pairs, late, strict=True) if keep_it]
    threshold, chosen = choose_threshold(
        calibrated,
        examples.times[late],
        late_pairs,
        stream,
        calibrate_from,
        end,
        settings.beta,
        rule=settings.threshold_rule,
        z=settings.bound_z,
    )
    model.calibration = calibration
    model.threshold = threshold
    metrics = {
        "kind": "pairs",
        "settings": settings.to_json(),
        "examples": {
            "fit": int(early.sum()),
            "calibration": int(late.sum()) if late is not early else 0,
            "positive_rate_fit": float(examples.labels[early].mean()),
            "positive_rate_calibration": float(examples.labels[late].mean()),
        },
        "threshold": {"value": threshold, "chosen_on": calibrated_on, **chosen},
        "people": len(activity.people),
        "timings": {k: round(v, 3) for k, v in timings.items()},
    }
    return model, metrics


def recency_weights(times: npt.NDArray[np.float64], half_life_days: float) -> npt.NDArray[np.float64] | None:
    """Sample weights halving every `half_life_days` back from the latest example (None: equal)."""
    if half_life_days <= 0 or len(times) == 0:
        return None
    age_days = (float(times.max()) - times) / 86_400
    return np.asarray(0.5 ** (age_days / half_life_days), dtype=np.float64)


def wilson_lower_bound(
    hits: npt.NDArray[np.float64], alerts: npt.NDArray[np.float64], z: float
) -> npt.NDArray[np.float64]:
    """The Wilson score interval's lower end for precision `hits / alerts` (0 where no alerts).

    It discounts a precision measured on few alerts by more than one measured on many, so a
    threshold is not chosen for a handful of lucky pairs; unlike the normal approximation it stays
    in [0, 1] and is sensible for counts of a few."""
    n = np.maximum(alerts, 1.0)
    p = hits / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    margin = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return np.where(alerts > 0, (centre - margin) / (1 + z2 / n), 0.0)


def choose_threshold(
    probabilities: npt.NDArray[np.float64],
    times: npt.NDArray[np.float64],
    pairs: list[tuple[int, str]],
    stream: Stream,
    start: float,
    end: float,
    beta: float,
    *,
    rule: str = "f_beta",
    z: float = 1.0,
) -> tuple[float, dict[str, float]]:
    """The alert threshold over (person, conversation) alerts in [start, end).

    A pair is alerted at threshold t when its probability ever reaches t, and the alert is
    useful when that happened before the person joined: when the highest probability *before
    the join* reaches t. So two maxima per pair answer every threshold at once.

    `rule` "f_beta" takes the threshold of best F-beta; "precision_bound" the one of best Wilson
    lower bound of precision (`z` standard errors below), which ranks a threshold by the
    precision it can be trusted to keep rather than by a recall-weighted mix: why, in the module's
    docstring. Among equals, the lowest threshold."""
    joins = {(c, u): ts for c, u, ts in stream.joins(start, end)}
    highest: dict[tuple[int, str], float] = {}
    before_join: dict[tuple[int, str], float] = {}
    for p, t, pair in zip(probabilities.tolist(), times.tolist(), pairs, strict=True):
        if p > highest.get(pair, -1.0):
            highest[pair] = p
        joined = joins.get(pair)
        if joined is not None and t < joined and p > before_join.get(pair, -1.0):
            before_join[pair] = p
    alerted = np.sort(np.fromiter(highest.values(), dtype=np.float64))
    useful = np.sort(np.fromiter(before_join.values(), dtype=np.float64))
    grid = np.unique(np.round(np.quantile(probabilities, np.linspace(0.5, 0.9995, 150)), 4))
    grid = grid[grid > 0]
    alerts = (len(alerted) - np.searchsorted(alerted, grid, side="left")).astype(np.float64)
    hits = (len(useful) - np.searchsorted(useful, grid, side="left")).astype(np.float64)
    return best_threshold(grid, alerts, hits, len(joins), beta, rule=rule, z=z)


def best_threshold(
    grid: npt.NDArray[np.float64],
    alerts: npt.NDArray[np.float64],
    hits: npt.NDArray[np.float64],
    joins: int,
    beta: float,
    *,
    rule: str = "f_beta",
    z: float = 1.0,
    min_alerts: int = MIN_ALERTS,
) -> tuple[float, dict[str, float]]:
    """The best of candidate thresholds `grid`, given the alerts and useful alerts each would send.

    Under "precision_bound", a threshold alerting fewer than `min_alerts` pairs is never chosen:
    there, precision is a handful of coin flips (one lucky pair of one has a bound of 0.5 at z 1,
    above any real plateau)."""
    if rule not in ("f_beta", "precision_bound"):
        raise ValueError(f"unknown threshold rule {rule!r}: f_beta or precision_bound")
    precision = np.divide(hits, alerts, out=np.zeros(len(grid)), where=alerts > 0)
    recall = hits / max(1, joins)
    b2 = beta * beta
    denominator = b2 * precision + recall
    f = np.divide((1 + b2) * precision * recall, denominator, out=np.zeros(len(grid)), where=denominator > 0)
    bound = wilson_lower_bound(hits, alerts, z)
    score = f if rule == "f_beta" else np.where(alerts >= min_alerts, bound, 0.0)
    if len(grid) == 0 or score.max() <= 0:
        return 0.5, {"precision": 0.0, "recall": 0.0, "f": 0.0, "alerts": 0.0, "precision_bound": 0.0}
    best = int(np.argmax(score))  # the lowest threshold among equals, as the loop it replaces chose
    return float(grid[best]), {
        "precision": float(precision[best]),
        "recall": float(recall[best]),
        "f": float(f[best]),
        "alerts": float(alerts[best]),
        "precision_bound": float(bound[best]),
    }
