"""`beepgpt eval conversations --data <export> --truth conversations.json [--links links.json]`.

Every conversation mode side by side on chat whose conversations are known: ARI, scaled VI,
one-to-one, exact-match precision/recall/F1 and, with `--links`, reply-link accuracy (definitions
in `metrics.py`). `--split dev|test|train` measures only that part of chunked annotated data (the
fixed split the shipped linker was chosen with: `data.split_of`). Prints a table and writes
`report.json` into `--out`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from offline.evaluation.conversations.data import SPLITS, Annotated, TruthError, load_annotated, split
from offline.evaluation.conversations.metrics import Scores, score
from offline.evaluation.conversations.modes import MODES, Mode, assign
from offline.tables import TableError
from sessionizer.linker import ModelError, load_model


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beepgpt eval conversations",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data", type=Path, required=True, help="message table or Slack export")
    p.add_argument("--truth", type=Path, required=True, help="JSON {ts: conversation id}")
    p.add_argument("--links", type=Path, help="JSON [[ts, parent_ts], ...] (reply links, for link accuracy)")
    p.add_argument("--split", choices=SPLITS, help="only this part of chunked data (data.split_of)")
    p.add_argument("--modes", default=",".join(MODES), help="modes to measure (gap,linked)")
    p.add_argument("--model", type=Path, help="reply-linker model JSON (default: the shipped one)")
    p.add_argument("--out", type=Path, default=Path("reports/conversations"))
    return p


COLUMNS = (
    ("ari", "ARI"),
    ("scaled_vi", "1-VI/logN"),
    ("one_to_one", "1-to-1"),
    ("exact_precision", "exact P"),
    ("exact_recall", "exact R"),
    ("exact_f1", "exact F1"),
    ("link_accuracy", "links"),
)


def table(results: dict[str, Scores]) -> str:
    """The modes as rows, the figures as columns."""
    head = f"{'mode':<8} {'messages':>8} {'true':>6} {'found':>6} " + " ".join(f"{t:>9}" for _, t in COLUMNS)
    lines = [head, "-" * len(head)]
    for mode, got in results.items():
        values = got.as_dict()
        cells = " ".join(
            f"{'—':>9}" if values[key] is None else f"{float(values[key] or 0):>9.3f}" for key, _ in COLUMNS
        )
        lines.append(
            f"{mode:<8} {got.messages:>8} {got.true_conversations:>6} {got.predicted_conversations:>6} {cells}"
        )
    return "\n".join(lines)


def evaluate(data: Annotated, modes: list[Mode], model_path: Path | None = None) -> dict[str, Any]:
    model = load_model(model_path) if "linked" in modes else None
    results: dict[str, Scores] = {}
    timings: dict[str, float] = {}
    for mode in modes:
        started = time.perf_counter()
        found = assign(data.table, mode, model=model)
        timings[mode] = time.perf_counter() - started
        results[mode] = score(
            data.truth,
            found.conversation,
            true_parents=data.parents or None,
            chosen_parents=found.parents if data.parents else None,
        )
    return {
        "results": results,
        "seconds": timings,
        "linker_model": None if model is None else {"version": model.version, **model.meta.get("chosen", {})},
    }


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    modes: list[Mode] = []
    for name in args.modes.split(","):
        if name not in MODES:
            print(f"beepgpt eval conversations: unknown mode {name!r} (modes: {', '.join(MODES)})", file=sys.stderr)
            return 2
        modes.append(name)  # type: ignore[arg-type]
    try:
        data = load_annotated(args.data, args.truth, args.links)
        if args.split is not None:
            data = split(data)[args.split]
        report = evaluate(data, modes, args.model)
    except (TableError, TruthError, ModelError, ValueError, OSError) as error:
        print(f"beepgpt eval conversations: {error}", file=sys.stderr)
        return 2
    print(table(report["results"]))
    args.out.mkdir(parents=True, exist_ok=True)
    out = {
        "data": str(args.data),
        "truth": str(args.truth),
        "links": None if args.links is None else str(args.links),
        "split": args.split,
        "channels": int(data.table["channel"].nunique()),
        "modes": {mode: got.as_dict() for mode, got in report["results"].items()},
        "seconds": report["seconds"],
        "linker_model": report["linker_model"],
    }
    (args.out / "report.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    print(f"report: {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
