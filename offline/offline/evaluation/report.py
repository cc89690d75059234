"""Reports people read: aligned text tables on the terminal, JSON and PNG plots on disk."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from offline.evaluation.interest import InterestReport
from offline.evaluation.topics import TopicReport


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, header: bool = True) -> str:
    """Columns padded to their widest cell; numbers right-aligned, text left-aligned."""
    cells = [list(map(str, headers))] + [list(map(str, r)) for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        parts = []
        for i, cell in enumerate(row):
            numeric = cell.replace(".", "", 1).replace("-", "", 1).replace("%", "").isdigit()
            parts.append(cell.rjust(widths[i]) if numeric and i and header else cell.ljust(widths[i]))
        return "  ".join(parts).rstrip()

    out = []
    if header:
        out.append(line(cells[0]))
        out.append("  ".join("-" * w for w in widths))
    out.extend(line(row) for row in cells[1:])
    return "\n".join(out)


def write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, sort_keys=False) + "\n")


def topics_table(report: TopicReport) -> str:
    rows = []
    for t in report.topics:
        rows.append(
            [
                t.topic,
                f"{t.positives}/{t.conversations}",
                f"{t.line:.3f}",
                f"{t.default.precision:.2f}",
                f"{t.default.recall:.2f}",
                f"{t.default.f1:.2f}",
                f"{t.best_threshold:.3f}",
                f"{t.best.precision:.2f}",
                f"{t.best.recall:.2f}",
                f"{t.best.f1:.2f}",
                f"{t.average_precision:.2f}",
            ]
        )
    rows.append(
        [
            "macro",
            "",
            "",
            "",
            "",
            f"{report.macro_f1_default:.2f}",
            "",
            "",
            "",
            f"{report.macro_f1_best_per_topic:.2f}",
            "",
        ]
    )
    head = ["topic", "pos/all", "line", "P", "R", "F1", "best thr", "P", "R", "F1", "AP"]
    lines = [
        f"default lines (not tuned on these labels; single threshold {report.threshold:.3f}) "
        "| per-topic best thresholds (tuned on them)",
        table(head, rows),
        f"best single threshold for all topics: {report.best_global_threshold:.3f} → macro-F1 {report.macro_f1_best_global:.2f}",
    ]
    if report.unmatched_labels:
        lines.append(f"warning: {report.unmatched_labels} labelled conversations are not in the data")
    if report.few_shot is not None:
        fs = report.few_shot
        lines.append(
            f"with {fs.shots} feedback shots per topic ({fs.draws} draws, scored on the rest): macro-F1 "
            f"{fs.macro_f1:.2f} ± {fs.macro_f1_std:.2f} (same draws without feedback: {fs.baseline_macro_f1:.2f}); "
            + ", ".join(f"{k} {v:.2f}" for k, v in fs.per_topic_f1.items())
        )
    return "\n".join(lines)


def interest_table(report: InterestReport) -> str:
    rows = []
    for r in report.rankers:
        rows.append(
            [
                r.name,
                f"{r.all.top1:.3f}",
                f"{r.all.top3:.3f}",
                f"{r.all.mrr:.3f}",
                f"{r.joining.top1:.3f}",
                f"{r.joining.top3:.3f}",
                f"{r.joining.mrr:.3f}",
            ]
        )
    model = next(r for r in report.rankers if r.name == "model")
    lines = [
        f"train {report.train_examples} examples, test {report.test_examples} "
        f"({model.all.examples} with an author, {model.joining.examples} joining), {report.users} users",
        table(["ranker", "top-1", "top-3", "MRR", "join top-1", "join top-3", "join MRR"], rows),
        (
            f'"nobody": {report.nobody_rate:.1%} of test prompts; '
            if report.calibrated == "nobody"
            else f"P(join): {report.nobody_rate:.1%} of the scored pairs joined; "
        )
        + f"Brier {report.nobody.brier:.4f}, ECE {report.nobody.ece:.4f}",
    ]
    if report.nobody.bins:
        lines.append(
            table(
                [f"P({report.calibrated})", "count", "predicted", "observed"],
                [
                    [
                        f"{b['from']:.1f}-{b['to']:.1f}",
                        str(b["count"]),
                        f"{b['predicted']:.3f}",
                        f"{b['observed']:.3f}",
                    ]
                    for b in report.nobody.bins
                ],
            )
        )
    lines.append("model beats both baselines in MRR: " + ("yes" if report.beats_baselines else "NO"))
    return "\n".join(lines)


def plot_topics(report: TopicReport, path: Path) -> None:
    """Precision-recall curve per topic, with the default-threshold point marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5.5))
    for t in report.topics:
        (line,) = ax.step(
            t.curve["recall"],
            t.curve["precision"],
            where="post",
            label=f"{t.topic} (AP {t.average_precision:.2f})",
        )
        ax.plot([t.default.recall], [t.default.precision], "o", color=line.get_color())
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1.02)
    ax.set_ylim(0, 1.05)
    ax.set_title("Topic matching: precision/recall (dots: each topic's default line)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_interest(report: InterestReport, path: Path) -> None:
    """MRR of the model against the baselines, and the reliability of P(nobody)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    names = [r.name for r in report.rankers]
    left.bar(
        names, [r.all.mrr for r in report.rankers], color=["tab:blue", "tab:gray", "tab:gray"][: len(names)]
    )
    left.set_ylabel("MRR")
    left.set_ylim(0, 1)
    left.set_title("Who engages next: MRR on the test period")
    left.tick_params(axis="x", labelsize=8)
    bins = report.nobody.bins
    right.plot([0, 1], [0, 1], "--", color="gray")
    right.plot([b["predicted"] for b in bins], [b["observed"] for b in bins], "o-")
    right.set_xlabel(f"predicted P({report.calibrated})")
    right.set_ylabel("observed share")
    right.set_title(f"calibration of P({report.calibrated})")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
