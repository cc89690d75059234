"""`make bench`: run every benchmark module, write bench/results.json, print a table.

A benchmark module exposes `run()` (sync or async) returning records
`{"benchmark", "metric", "value", "unit"}`. Modules run one at a time, in a fresh process each,
so one's memory and threads do not skew the next one's figures (peak RSS is per process).
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import importlib
import json
import multiprocessing
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCHMARKS = ("ingest", "sessionizer", "models", "scorer", "notifier", "pipeline")
RESULTS = Path(__file__).parent / "results.json"
LOCK = Path(__file__).parent / ".results.lock"


def run_one(name: str, out: Path) -> None:
    """In the child process: run one module and write its records to `out`."""
    module = importlib.import_module(f"bench.{name}")
    result = module.run()
    records = asyncio.run(result) if asyncio.iscoroutine(result) else result
    out.write_text(json.dumps(records))


def run_benchmark(name: str) -> tuple[list[dict[str, Any]], str | None]:
    """Run one benchmark module in a fresh interpreter; (records, error)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "records.json"
        code = f"from bench.__main__ import run_one; from pathlib import Path; run_one({name!r}, Path({str(out)!r}))"
        done = subprocess.run([sys.executable, "-c", code], check=False)
        if done.returncode != 0 or not out.exists():
            return [], f"exit code {done.returncode}"
        records: list[dict[str, Any]] = json.loads(out.read_text())
        return records, None


def merge_results(names: list[str], records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Replace the records of `names` in results.json, keep every other benchmark's.

    Read and written under a lock, at the end of the run: two runs of different benchmarks at
    once (a long pipeline run and a quick sessionizer one, say) both keep their figures."""
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else []
        machine = {
            "benchmark": "machine",
            "metric": "cpus",
            "value": multiprocessing.cpu_count(),
            "unit": platform.processor() or platform.machine(),
        }
        kept = [r for r in previous if r.get("benchmark") not in {*names, "machine"}]
        merged = [machine, *kept, *records]
        partial = RESULTS.with_suffix(".json.tmp")
        partial.write_text(json.dumps(merged, indent=2) + "\n")
        partial.replace(RESULTS)
        return merged


def print_table(records: list[dict[str, Any]]) -> None:
    rows = [
        (
            r["benchmark"],
            r["metric"],
            f"{r['value']:,.2f}" if isinstance(r["value"], float) else str(r["value"]),
            r["unit"],
        )
        for r in records
    ]
    header = ("benchmark", "metric", "value", "unit")
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        a, b, c, d = (str(cell) for cell in cells)
        return f"{a:<{widths[0]}}  {b:<{widths[1]}}  {c:>{widths[2]}}  {d:<{widths[3]}}"

    print(line(header))
    print(line(tuple("-" * w for w in widths)))
    for row in rows:
        print(line(row))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "names", nargs="*", help=f"benchmarks to run (default: all of {', '.join(BENCHMARKS)})"
    )
    args = parser.parse_args(argv)
    names = args.names or [n for n in BENCHMARKS if (Path(__file__).parent / f"{n}.py").exists()]
    records: list[dict[str, Any]] = []
    failures: list[str] = []
    for name in names:
        print(f"running benchmark {name} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        found, error = run_benchmark(name)
        if error:
            failures.append(f"{name}: {error}")
        records.extend(found)
        print(f"  {name} took {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)
    print_table(merge_results(names, records))
    for failure in failures:
        print(f"FAILED {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
