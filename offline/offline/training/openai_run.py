"""`beepgpt train --openai`: files → upload → job → follow → model id, resumable at every step.

Everything the run learns is written to `openai.json` in the model directory as soon as it is
known (file ids, then the job id, then the last event seen, then the model id). Rerunning the
same command reads it back: uploaded files are not uploaded again, a created job is followed
rather than created twice, and a finished job only needs its final files written. The state
records the training data's fingerprint, so a rerun on other data refuses to continue someone
else's job (`--restart` forgets it).

Following polls the job (`--poll` seconds apart) and prints each new event (OpenAI's progress
lines: validation, steps with losses, completion) once.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from offline.training.local import InterestSettings, alert_threshold
from offline.training.pipeline import Prepared, save_common
from scorer.artifact import MANIFEST, Manifest, new_version, utc_now, write_manifest
from scorer.interest.finetune import build_files, example_line, file_sha256
from scorer.interest.openai_model import OpenAIInterestModel, OpenAIState
from scorer.openai_api import Backoff, OpenAIUnavailable, make_client

if TYPE_CHECKING:
    from openai import OpenAI

DEFAULT_BASE_MODEL = "gpt-4o-mini-2024-07-18"
TERMINAL = {"succeeded", "failed", "cancelled"}


class FineTuneFailed(RuntimeError):
    """The job ended without a model, or the directory follows another run's job."""


@dataclass
class OpenAIRunSettings:
    base_model: str = DEFAULT_BASE_MODEL
    suffix: str = "beepgpt"
    poll_s: float = 15.0
    restart: bool = False
    validate_only: bool = False
    validation_fraction: float = 0.1
    threshold_examples: int = 200
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def run_openai(
    prepared: Prepared,
    out: Path,
    settings: OpenAIRunSettings,
    *,
    name: str | None = None,
    topic_threshold: float | None = None,
    client: OpenAI | None = None,
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
    say: Callable[[str], None] | None = None,
) -> tuple[Manifest, dict[str, Any]] | None:
    """Run (or resume) the fine-tuning; None when `validate_only` stopped after the checks."""
    tell = say or (lambda text: print(text, file=sys.stderr, flush=True))
    out.mkdir(parents=True, exist_ok=True)
    lines = [(e.ts, example_line(e.prompt, e.label, prepared.vocab)) for e in prepared.examples]
    train_path, validation_path, check = build_files(
        lines, prepared.vocab, out, validation_fraction=settings.validation_fraction
    )
    tell(
        f"fine-tuning files: {check.train_lines} training + {check.validation_lines} validation examples, "
        f"~{check.tokens} tokens (largest ~{check.max_tokens}), {check.duplicates_dropped} duplicates dropped"
    )
    for warning in check.warnings:
        tell(f"warning: {warning}")
    if not check.ok:
        raise ValueError("the fine-tuning file is not valid: " + "; ".join(check.errors[:5]))
    if settings.validate_only:
        tell(f"validated; nothing uploaded ({train_path})")
        return None
    sha = file_sha256(train_path, validation_path)
    state = OpenAIState.load(out)
    if state is not None and not settings.restart and state.data_sha256 != prepared.data.sha256:
        raise FineTuneFailed(
            f"{out} follows job {state.job_id} trained on other data; use another --out or --restart"
        )
    if state is None or settings.restart or state.training_file_sha256 != sha:
        if state is not None and state.job_id and not settings.restart:
            raise FineTuneFailed(f"{out} follows job {state.job_id} for different files; use --restart")
        state = OpenAIState(
            base_model=settings.base_model, data_sha256=prepared.data.sha256, training_file_sha256=sha
        )
    (out / MANIFEST).unlink(missing_ok=True)  # not a usable model until the job has finished
    state.save(out)
    api = client or make_client()
    policy = backoff or Backoff(sleep=sleep)
    if state.training_file is None:
        state.training_file = _upload(api, policy, train_path)
        state.validation_file = _upload(api, policy, validation_path) if validation_path else None
        state.save(out)
        tell(
            f"uploaded {state.training_file}"
            + (f" and {state.validation_file}" if state.validation_file else "")
        )
    if state.job_id is None:
        job = policy.call(
            lambda: api.fine_tuning.jobs.create(
                model=state.base_model,
                training_file=state.training_file or "",
                validation_file=state.validation_file,
                suffix=settings.suffix,
                seed=settings.seed,
            ),
            what="fine_tuning.jobs.create",
        )
        state.job_id, state.status = job.id, job.status
        state.save(out)
        tell(f"created fine-tuning job {job.id} on {state.base_model}")
    else:
        tell(f"resuming job {state.job_id} (last status {state.status})")
    follow(api, policy, state, out, poll_s=settings.poll_s, sleep=sleep, say=tell)
    model = OpenAIInterestModel(
        prepared.vocab, state.fine_tuned_model or "", threshold=0.5, client=api, backoff=policy
    )
    threshold, figures = choose_threshold(model, prepared, settings)
    state.threshold = threshold
    state.save(out)
    metrics: dict[str, Any] = {
        "examples": len(prepared.examples),
        "nobody_examples": sum(1 for e in prepared.examples if e.label == "nobody"),
        "users": len(prepared.vocab.users),
        "files": check.to_json(),
        "job": {"id": state.job_id, "status": state.status, "fine_tuned_model": state.fine_tuned_model},
        "threshold": threshold,
        "validation_alerts_at_threshold": figures,
        "timings": {k: round(v, 3) for k, v in prepared.timings.items()},
    }
    manifest = Manifest(
        version=new_version(name or out.name, prepared.data),
        kind="openai",
        embedder=prepared.embedder.name,
        data=prepared.data,
        created_at=utc_now(),
        extra={"fine_tuned_model": state.fine_tuned_model},
    )
    save_common(out, prepared, {"openai": {**settings.__dict__}}, metrics, topic_threshold=topic_threshold)
    write_manifest(out, manifest)
    return manifest, metrics


def _upload(api: OpenAI, policy: Backoff, path: Path) -> str:
    def call() -> Any:
        with path.open("rb") as handle:
            return api.files.create(file=(path.name, handle), purpose="fine-tune")

    return str(policy.call(call, what="files.create").id)


def follow(
    api: OpenAI,
    policy: Backoff,
    state: OpenAIState,
    out: Path,
    *,
    poll_s: float,
    sleep: Callable[[float], None],
    say: Callable[[str], None],
) -> None:
    """Poll the job until it ends, printing new events; records progress in `out` as it goes."""
    job_id = state.job_id or ""
    while True:
        job = policy.call(lambda: api.fine_tuning.jobs.retrieve(job_id), what="fine_tuning.jobs.retrieve")
        page = policy.call(
            lambda: api.fine_tuning.jobs.list_events(job_id, limit=100), what="fine_tuning.jobs.list_events"
        )
        fresh = []
        for event in page.data:  # newest first
            if event.id == state.last_event_id:
                break
            fresh.append(event)
        for event in reversed(fresh):
            say(f"[{job_id}] {event.message}")
        if fresh:
            state.last_event_id = fresh[0].id
        if job.status != state.status:
            say(f"[{job_id}] status: {job.status}")
        state.status = job.status
        state.save(out)
        if job.status in TERMINAL:
            break
        sleep(poll_s)
    if job.status != "succeeded" or not job.fine_tuned_model:
        reason = getattr(job.error, "message", None) if job.error else None
        raise FineTuneFailed(f"fine-tuning job {job_id} {job.status}" + (f": {reason}" if reason else ""))
    state.fine_tuned_model = job.fine_tuned_model
    state.save(out)
    say(f"fine-tuned model: {job.fine_tuned_model}")


def choose_threshold(
    model: OpenAIInterestModel, prepared: Prepared, settings: OpenAIRunSettings
) -> tuple[float, dict[str, float]]:
    """Score the latest examples through the API and pick the alert threshold as the local
    model does (max F1 of alert decisions), measured rather than guessed."""
    ordered = sorted(prepared.examples, key=lambda e: (e.ts, e.row))
    held = ordered[
        -max(1, min(settings.threshold_examples, int(len(ordered) * settings.validation_fraction) or 1)) :
    ]
    users = list(prepared.vocab.users)
    rows = []
    for example in held:
        scores = model.score_prompt(example.prompt)
        rows.append([scores.get(u, 0.0) for u in users] + [scores.get("nobody", 0.0)])
    if not rows:
        raise OpenAIUnavailable("no examples to choose a threshold with")
    return alert_threshold(
        np.array(rows, dtype=np.float64), held, prepared.vocab, InterestSettings.alert_beta
    )
