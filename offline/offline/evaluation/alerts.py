"""`beepgpt eval alerts`: would these DMs have been worth breaking someone's focus?

Train on the history before the split, then replay the rest in time order, deciding as each
message arrives, as the live services do (early alerts): the conversation so far (the
sessionizer's shared query), who may hear of it (`scorer.eligibility`: not in it, not a bot;
everyone counts as opted in), the scorer's threshold and its cap of interest candidates per
conversation update (`scorer.pipeline.decide`), then the notifier's one DM per person and
conversation, its rate limit and its daily budget (`offline.evaluation.policy`).

An alert to P about C at time t is *useful* when P posts in C after t. A *join* is a person's
first post in a conversation someone else opened; join recall is the share of the test period's
joins that an alert to that person about that conversation preceded.

Baselines run on the same replay, through the same delivery rules, at the model's volume (their
score threshold is set so they send as many real-time DMs as the model did): the channel's most
active people; the people most active in the channel in the last two hours; the people who most
often answered the conversation's first author.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from offline.evaluation.policy import DAY_S, DeliveryPolicy, PolicySettings
from offline.training.replay import Stream, replay
from scorer.eligibility import is_bot
from scorer.interest.activity import ANSWER_AUTHORS
from scorer.interest.pairs import PairModel
from scorer.pipeline import MAX_INTEREST_CANDIDATES

Matrix = npt.NDArray[np.float32]
Say = Callable[[str], None]

OFFERS = 10
"""Highest-scored eligible people kept per message and method (more than the scorer's cap,
`MAX_INTEREST_CANDIDATES`, so thresholds below the default still find people)."""

BASELINES = ("most active in channel", "recently active in channel", "answers the first author")
BUDGETS: tuple[int | None, ...] = (1, 3, 5, 10, None)


@dataclass
class Offers:
    """Per method, per replayed message: (person, score) of the best-scored eligible people."""

    steps: list[tuple[int, str, float]] = field(default_factory=list)
    """(conversation, author, time) of each replayed message"""
    by_method: dict[str, list[list[tuple[str, float]]]] = field(default_factory=dict)


@dataclass(frozen=True)
class Figures:
    threshold: float
    dms: int
    held_rate_limited: int
    held_over_budget: int
    useful: int
    precision: float
    join_recall: float
    dms_per_person_day: float
    dms_per_person_day_p90: float
    dms_per_person_day_max: float
    most_in_one_day: int
    median_lead_minutes: float | None
    people_with_useful_alert: float

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def collect_offers(
    stream: Stream,
    vectors: Matrix,
    model: PairModel,
    split: float,
    *,
    bots: Sequence[str] = (),
    say: Say | None = None,
) -> Offers:
    """Replay from `split` on, through the model's activity (which training left at `split`)."""
    offers = Offers(by_method={name: [] for name in ("model", *BASELINES)})
    in_channel: dict[str, Counter[str]] = defaultdict(Counter)
    answered: dict[str, Counter[str]] = defaultdict(Counter)
    authors: dict[int, list[str]] = defaultdict(list)

    def count(row: int) -> None:
        user, conversation = stream.users[row], stream.conversation_of[row]
        in_channel[stream.channels[row]][user] += 1
        earlier = [a for a in authors[conversation] if a != user][-ANSWER_AUTHORS:]
        for other in earlier:
            answered[other][user] += 1
        if user not in authors[conversation]:
            authors[conversation].append(user)

    for row in stream.order:
        if stream.times[row] >= split:
            break
        count(row)
    total = sum(1 for r in stream.order if stream.times[r] >= split)
    started = time.perf_counter()
    for done, step in enumerate(replay(stream, vectors, model.activity, start=split, counted=True), start=1):
        if say is not None and done % 1000 == 0:
            say(f"  replayed {done:,}/{total:,} test messages ({time.perf_counter() - started:.0f} s)")
        count(step.row)
        moment = step.moment
        present = set(moment.authors)
        offers.steps.append((step.conversation, step.user, moment.now))
        people, probs, _ = model.score_moment(moment)
        scored = [(u, float(p)) for u, p in zip(people, probs, strict=True) if not is_bot(u, bots)]
        offers.by_method["model"].append(_best(scored))
        eligible = [u for u in model.activity.people if u not in present and not is_bot(u, bots)]
        channel = in_channel[moment.channel]
        # ties broken by the channel's activity (scaled far below one message), then by id
        tie = {u: channel[u] / (1 + sum(channel.values())) for u in eligible}
        recent = model.activity.recent_in_channel(moment.channel, moment.now)
        first = answered[moment.authors[0]] if moment.authors else Counter()
        offers.by_method[BASELINES[0]].append(_best([(u, channel[u] + tie[u]) for u in eligible]))
        offers.by_method[BASELINES[1]].append(_best([(u, recent.get(u, 0) + tie[u]) for u in eligible]))
        offers.by_method[BASELINES[2]].append(_best([(u, first[u] + tie[u]) for u in eligible]))
    return offers


def _best(scored: list[tuple[str, float]]) -> list[tuple[str, float]]:
    positive = [(u, s) for u, s in scored if s > 0]
    return sorted(positive, key=lambda item: (-item[1], item[0]))[:OFFERS]


def simulate(
    offers: Offers,
    method: str,
    threshold: float,
    stream: Stream,
    split: float,
    policy: PolicySettings,
    active: Mapping[str, int],
    days: float,
) -> Figures:
    """Deliver one method's offers at one threshold and measure what people would feel."""
    rules = DeliveryPolicy(policy)
    sent: list[tuple[int, str, float]] = []
    held = Counter[str]()
    for (conversation, _, now), scored in zip(offers.steps, offers.by_method[method], strict=True):
        chosen = [(u, s) for u, s in scored if s >= threshold][:MAX_INTEREST_CANDIDATES]
        for user, _score in chosen:
            decision = rules.decide(user, f"{conversation}", now)
            if decision == "sent":
                sent.append((conversation, user, now))
            elif decision != "deduplicated":
                held[decision] += 1
    joins = stream.joins(split)
    alerted = {(c, u): t for c, u, t in sent}
    useful_leads = [(stream.first_post[c][u] - t) / 60 for c, u, t in sent if stream.joined_after(c, u, t)]
    preceded = sum(1 for c, u, t in joins if (c, u) in alerted and alerted[(c, u)] < t)
    per_person = Counter(u for _, u, _ in sent)
    per_day = Counter((u, int(t // DAY_S)) for _, u, t in sent)
    rates = np.array([per_person.get(u, 0) / days for u in active]) if active else np.zeros(1)
    helped = {u for c, u, t in sent if stream.joined_after(c, u, t)}
    return Figures(
        threshold=threshold,
        dms=len(sent),
        held_rate_limited=held["rate_limited"],
        held_over_budget=held["over_budget"],
        useful=len(useful_leads),
        precision=len(useful_leads) / len(sent) if sent else 0.0,
        join_recall=preceded / len(joins) if joins else 0.0,
        dms_per_person_day=float(rates.mean()),
        dms_per_person_day_p90=float(np.quantile(rates, 0.9)),
        dms_per_person_day_max=float(rates.max()),
        most_in_one_day=max(per_day.values(), default=0),
        median_lead_minutes=float(np.median(useful_leads)) if useful_leads else None,
        people_with_useful_alert=len(helped & set(active)) / len(active) if active else 0.0,
    )


def matched(
    offers: Offers,
    method: str,
    volume: int,
    stream: Stream,
    split: float,
    policy: PolicySettings,
    active: Mapping[str, int],
    days: float,
) -> Figures:
    """The method at the threshold whose real-time DM count comes closest to `volume`."""
    scores = sorted({s for step in offers.by_method[method] for _, s in step})
    if not scores:
        return simulate(offers, method, math.inf, stream, split, policy, active, days)
    low, high = 0, len(scores) - 1  # a higher threshold never sends more
    best: Figures | None = None
    while low <= high:
        middle = (low + high) // 2
        figures = simulate(offers, method, scores[middle], stream, split, policy, active, days)
        if best is None or abs(figures.dms - volume) < abs(best.dms - volume):
            best = figures
        if figures.dms > volume:
            low = middle + 1
        elif figures.dms < volume:
            high = middle - 1
        else:
            break
    assert best is not None
    return best


@dataclass
class AlertReport:
    split_at: float
    test_days: float
    active_people: int
    joins: int
    default: Figures
    baselines: dict[str, Figures]
    curve: dict[str, list[dict[str, Any]]]
    training: dict[str, Any]
    seconds: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "split_at": self.split_at,
            "test_days": self.test_days,
            "active_people": self.active_people,
            "joins": self.joins,
            "default": self.default.to_json(),
            "baselines": {name: f.to_json() for name, f in self.baselines.items()},
            "baselines_not_computed": {
                "seed rule (next-speaker classifier > 0.5 on every message, no dedup)": (
                    "the seed's one-class-per-person classifier does not train on a workspace of "
                    "hundreds of people in reasonable time (29 minutes on a 326-person workspace)"
                )
            },
            "curve": self.curve,
            "training": self.training,
            "seconds": self.seconds,
        }


def evaluate(
    stream: Stream,
    vectors: Matrix,
    model: PairModel,
    split: float,
    *,
    policy: PolicySettings | None = None,
    bots: Sequence[str] = (),
    training: Mapping[str, Any] | None = None,
    say: Say | None = None,
) -> AlertReport:
    policy = policy or PolicySettings()
    started = time.perf_counter()
    offers = collect_offers(stream, vectors, model, split, bots=bots, say=say)
    replay_seconds = time.perf_counter() - started
    test_rows = [r for r in stream.order if stream.times[r] >= split]
    if not test_rows:
        raise ValueError("the split leaves no messages to replay")
    days = max(1.0, (stream.times[test_rows[-1]] - stream.times[test_rows[0]]) / DAY_S)
    active = Counter(stream.users[r] for r in test_rows if not is_bot(stream.users[r], bots))
    default = simulate(offers, "model", model.threshold, stream, split, policy, active, days)
    baselines = {
        name: matched(offers, name, default.dms, stream, split, policy, active, days) for name in BASELINES
    }
    curve: dict[str, list[dict[str, Any]]] = {}
    probabilities = sorted(s for step in offers.by_method["model"] for _, s in step)
    grid = sorted({round(float(q), 4) for q in np.quantile(probabilities, np.linspace(0.3, 0.995, 14))})
    for budget in BUDGETS:
        settings = PolicySettings(policy.rate_per_hour, policy.burst, budget)
        curve[f"model, budget {budget or 'none'}"] = [
            simulate(offers, "model", t, stream, split, settings, active, days).to_json() for t in grid
        ]
    for name in BASELINES:
        scores = sorted(s for step in offers.by_method[name] for _, s in step)
        cuts = sorted({float(q) for q in np.quantile(scores, np.linspace(0.3, 0.995, 10))}) if scores else []
        curve[name] = [simulate(offers, name, t, stream, split, policy, active, days).to_json() for t in cuts]
    return AlertReport(
        split_at=split,
        test_days=days,
        active_people=len(active),
        joins=len(stream.joins(split)),
        default=default,
        baselines=baselines,
        curve=curve,
        training=dict(training or {}),
        seconds={"replay": round(replay_seconds, 3), "total": round(time.perf_counter() - started, 3)},
    )


def alerts_table(report: AlertReport) -> str:
    rows = [("model (default)", report.default), *report.baselines.items()]
    lines = [
        f"test: {report.test_days:.0f} days, {report.active_people} active people, {report.joins} joins",
        f"{'method':30} {'DMs':>5} {'prec':>6} {'recall':>6} {'DM/p/day':>8} {'p90':>5} {'max':>5} "
        f"{'lead min':>8} {'helped':>6}",
    ]
    for name, f in rows:
        lead = f"{f.median_lead_minutes:.1f}" if f.median_lead_minutes is not None else "-"
        lines.append(
            f"{name:30} {f.dms:5d} {f.precision:6.3f} {f.join_recall:6.3f} {f.dms_per_person_day:8.3f} "
            f"{f.dms_per_person_day_p90:5.2f} {f.dms_per_person_day_max:5.2f} {lead:>8} "
            f"{f.people_with_useful_alert:6.1%}"
        )
    d = report.default
    lines.append(
        f"held back by the rate limit: {d.held_rate_limited}, by the daily budget: {d.held_over_budget} "
        "(they go to digests)"
    )
    return "\n".join(lines)


def plot_alerts(report: AlertReport, path: Any) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, points in report.curve.items():
        xs = [p["dms_per_person_day"] for p in points]
        ys = [p["precision"] for p in points]
        style = "-o" if name.startswith("model") else "--s"
        ax.plot(xs, ys, style, markersize=3, label=name)
    ax.plot(
        [report.default.dms_per_person_day], [report.default.precision], "k*", markersize=12, label="default"
    )
    ax.set_xscale("log")
    ax.set_xlabel("real-time DMs per active person per day")
    ax.set_ylabel("precision (the person joined afterwards)")
    ax.set_title("Alerts: precision against volume")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
