"""`beepgpt train <messages.parquet|export> --out models/<name> [--openai]`

Local (default): examples from the shared conversation query, local embeddings, a classifier over
users plus "nobody", written to a versioned model directory. Message vectors are cached on disk
by text (`--embedding-cache DIR`, `BEEPGPT_EMBEDDING_CACHE`; off with `--no-embedding-cache`), so
a second run on the same history embeds nothing. `--openai`: the same examples as a chat
fine-tuning file, validated, uploaded and run as an OpenAI fine-tuning job that is followed to
the end; the job id is recorded in the directory first, so rerunning the same command after an
interruption resumes following the job instead of starting another.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from offline.training.history import HistoryError
from offline.training.openai_run import FineTuneFailed
from scorer.artifact import ModelFormatError
from scorer.embeddings import Embedder
from scorer.openai_api import OpenAIUnavailable
from scorer.vector_cache import add_cache_arguments, cached_store


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="beepgpt train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "data", type=Path, help="message table (.parquet/.jsonl) or Slack export (directory or .zip)"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="model directory to write (replaced when it exists)"
    )
    p.add_argument("--name", help="model name in its version string (default: the directory's name)")
    p.add_argument(
        "--users", type=Path, help="Slack users.json for display names (found beside the data by default)"
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        help="latest share of examples used to validate (local default 0.5, in rolling blocks; --openai default 0.1)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument(
        "--embeddings",
        choices=("local", "openai"),
        default="local",
        help="embedding model: the packaged all-MiniLM-L6-v2 (default) or OpenAI's (needs OPENAI_API_KEY)",
    )
    p.add_argument("--embedding-model", default="text-embedding-3-small", help="OpenAI embedding model")
    add_cache_arguments(p)
    p.add_argument(
        "--topic-threshold",
        type=float,
        help="topic threshold to record (default: the measured one; required with --embeddings openai)",
    )
    openai = p.add_argument_group("OpenAI fine-tuning")
    openai.add_argument(
        "--openai", action="store_true", help="fine-tune an OpenAI model instead of the local classifier"
    )
    openai.add_argument(
        "--base-model", default=None, help="model to fine-tune (default gpt-4o-mini-2024-07-18)"
    )
    openai.add_argument("--suffix", default="beepgpt", help="suffix of the fine-tuned model's name")
    openai.add_argument(
        "--poll", type=float, default=15.0, help="seconds between job status checks (default 15)"
    )
    openai.add_argument(
        "--restart", action="store_true", help="forget a job recorded in --out and start a new one"
    )
    openai.add_argument(
        "--validate-only",
        action="store_true",
        help="write and validate the fine-tuning files, upload nothing",
    )
    openai.add_argument(
        "--threshold-examples",
        type=int,
        default=200,
        help="validation examples scored through the API to choose the alert threshold (default 200)",
    )
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    started = time.perf_counter()
    try:
        from offline.training.pipeline import prepare, write_pair_model

        embedder = choose_embedder(args.embeddings, args.embedding_model, args.topic_threshold)
        prepared = prepare(
            args.data,
            embedder,
            users_file=args.users,
            progress=not args.no_progress,
            store=cached_store(args, embedder),
        )
        fraction = (
            {} if args.validation_fraction is None else {"validation_fraction": args.validation_fraction}
        )
        if args.openai:
            from offline.training.openai_run import OpenAIRunSettings, run_openai

            run = OpenAIRunSettings(
                suffix=args.suffix,
                poll_s=args.poll,
                restart=args.restart,
                validate_only=args.validate_only,
                **fraction,
                threshold_examples=args.threshold_examples,
                **({"base_model": args.base_model} if args.base_model else {}),
            )
            result = run_openai(prepared, args.out, run, name=args.name, topic_threshold=args.topic_threshold)
            if result is None:
                return 0
            manifest, metrics = result
        else:
            manifest, metrics = write_pair_model(
                prepared, args.out, name=args.name, topic_threshold=args.topic_threshold
            )
    except (HistoryError, ModelFormatError, ValueError) as error:
        print(f"beepgpt train: {error}", file=sys.stderr)
        return 2
    except (OpenAIUnavailable, FineTuneFailed) as error:
        print(f"beepgpt train: {error}", file=sys.stderr)
        return 1
    print_summary(args.out, manifest.version, metrics, time.perf_counter() - started)
    return 0


def choose_embedder(kind: str, model: str, topic_threshold: float | None) -> Embedder:
    """The packaged local model (shared in the process), or OpenAI's embeddings."""
    if kind == "local":
        from scorer.model_dir import shared_local_embedder

        return shared_local_embedder()
    if topic_threshold is None:
        raise ValueError(
            "--embeddings openai needs --topic-threshold: the measured default is for the local model "
            "(measure one with `beepgpt eval topics --embeddings openai` on offline/devset/calibration)"
        )
    from scorer.embeddings import OpenAIEmbedder
    from scorer.openai_api import make_client

    return OpenAIEmbedder(make_client(), model=model)


def print_summary(out: Path, version: str, metrics: dict[str, Any], seconds: float) -> None:
    from offline.evaluation.report import table

    rows = [("model directory", str(out)), ("version", version)]
    if metrics.get("kind") == "pairs":
        examples, chosen = metrics["examples"], metrics["threshold"]
        rows += [
            ("people", str(metrics["people"])),
            ("pair examples (fit / calibration)", f"{examples['fit']:,} / {examples['calibration']:,}"),
            (
                "alert threshold (calibration precision / recall)",
                f"{chosen['value']:.3f} ({chosen.get('precision', 0):.2f} / {chosen.get('recall', 0):.2f})",
            ),
        ]
    else:
        rows += [
            ("examples", f"{metrics.get('examples', 0)} ({metrics.get('nobody_examples', 0)} nobody)"),
            ("users", str(metrics.get("users", ""))),
        ]
    chosen = metrics.get("validation", {}).get(str(metrics.get("chosen_c")))
    if chosen:
        rows.append(
            (
                "validation MRR / top-1 / top-3",
                f"{chosen['mrr']:.3f} / {chosen['top1']:.3f} / {chosen['top3']:.3f}",
            )
        )
    if isinstance(metrics.get("threshold"), float):
        alerts = metrics.get("validation_alerts_at_threshold", {})
        rows.append(
            (
                "alert threshold (validation P/R/F1)",
                f"{metrics['threshold']:.3f} ({alerts.get('precision', 0):.2f}/{alerts.get('recall', 0):.2f}/{alerts.get('f1', 0):.2f})",
            )
        )
    for key, value in metrics.get("timings", {}).items():
        rows.append((key.replace("_", " "), f"{value:.1f}"))
    rows.append(("total seconds", f"{seconds:.1f}"))
    print(table(["", ""], rows, header=False))
