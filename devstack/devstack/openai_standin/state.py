"""What the stand-in remembers: uploaded files, fine-tuning jobs, and the models they produce.

Pure state, no HTTP: the server turns requests into calls here and the results into OpenAI's
JSON shapes. Everything is deterministic (ids count up, job stages advance per retrieval,
answers and embeddings are functions of the input) so tests can assert exact outcomes.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

BASE_MODELS = frozenset(
    {"gpt-4o-mini-2024-07-18", "gpt-4o-2024-08-06", "gpt-4.1-mini-2025-04-14", "gpt-3.5-turbo"}
)
EMBEDDING_MODELS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}
STANDIN_EMBEDDING_DIMENSIONS = 64
"""Vectors are hashed bags of words in this many dimensions (`dimensions` may ask for fewer)."""


class ApiError(Exception):
    """An OpenAI-shaped error: HTTP status, message, type, code, param."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


@dataclass
class StoredFile:
    id: str
    filename: str
    purpose: str
    content: bytes
    created_at: int

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass
class Event:
    id: str
    created_at: int
    level: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "fine_tuning.job.event",
            "created_at": self.created_at,
            "level": self.level,
            "message": self.message,
            "type": "message",
            "data": {},
        }


@dataclass
class Job:
    id: str
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int
    created_at: int
    steps: int
    fail_with: str | None = None
    status: str = "validating_files"
    step: int = 0
    fine_tuned_model: str | None = None
    finished_at: int | None = None
    error: dict[str, Any] | None = None
    events: list[Event] = field(default_factory=list)
    trained_tokens: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "model": self.model,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "fine_tuned_model": self.fine_tuned_model,
            "organization_id": "org-standin",
            "result_files": [],
            "status": self.status,
            "validation_file": self.validation_file,
            "training_file": self.training_file,
            "hyperparameters": {"n_epochs": 3, "batch_size": 1, "learning_rate_multiplier": 1.0},
            "trained_tokens": self.trained_tokens,
            "error": self.error,
            "seed": self.seed,
            "estimated_finish": None,
            "integrations": [],
            "method": {"type": "supervised"},
            "user_provided_suffix": self.suffix,
        }


@dataclass
class TunedModel:
    """A fine-tuned model's whole knowledge: answer counts per prompt, and overall."""

    id: str
    by_prompt: dict[str, Counter[str]]
    overall: Counter[str]

    def distribution(self, prompt_key: str) -> dict[str, float]:
        counts = self.by_prompt.get(prompt_key) or self.overall
        # add-half smoothing over every label the model knows, so no label is impossible
        labels = sorted(self.overall)
        total = sum(counts[label] + 0.5 for label in labels)
        return {label: (counts[label] + 0.5) / total for label in labels}


def prompt_key(messages: list[dict[str, Any]]) -> str:
    """A prompt's identity: its non-assistant messages."""
    return json.dumps([[m.get("role"), m.get("content")] for m in messages if m.get("role") != "assistant"])


class Store:
    def __init__(self, *, job_steps: int = 3) -> None:
        self.job_steps = job_steps
        self.files: dict[str, StoredFile] = {}
        self.jobs: dict[str, Job] = {}
        self.models: dict[str, TunedModel] = {}
        self.fail_next_job: str | None = None
        self._ids = itertools.count(1)
        self._lock = threading.RLock()

    def _id(self, prefix: str) -> str:
        return f"{prefix}-standin{next(self._ids):06d}"

    # --- files -----------------------------------------------------------------------------------

    def add_file(self, filename: str, purpose: str, content: bytes) -> StoredFile:
        if purpose not in {"fine-tune", "batch", "assistants", "vision", "user_data", "evals"}:
            raise ApiError(400, f"invalid purpose {purpose!r}", param="purpose")
        if purpose == "fine-tune":
            self._check_jsonl(content)
        with self._lock:
            stored = StoredFile(self._id("file"), filename, purpose, content, int(time.time()))
            self.files[stored.id] = stored
            return stored

    @staticmethod
    def _check_jsonl(content: bytes) -> None:
        for number, line in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError:
                raise ApiError(400, f"line {number} is not JSON", code="invalid_file_format") from None
            if not isinstance(value, dict) or not isinstance(value.get("messages"), list):
                raise ApiError(400, f"line {number} has no messages list", code="invalid_file_format")

    def file(self, file_id: str) -> StoredFile:
        try:
            return self.files[file_id]
        except KeyError:
            raise ApiError(404, f"No such File object: {file_id}", code="file_not_found") from None

    # --- jobs ------------------------------------------------------------------------------------

    def create_job(self, body: dict[str, Any]) -> Job:
        model = body.get("model")
        if model not in BASE_MODELS:
            raise ApiError(
                400,
                f"Model {model!r} is not available for fine-tuning",
                param="model",
                code="model_not_available",
            )
        training = self.file(str(body.get("training_file")))
        if training.purpose != "fine-tune":
            raise ApiError(
                400, "training_file must be uploaded with purpose fine-tune", param="training_file"
            )
        validation = body.get("validation_file")
        if validation is not None:
            self.file(str(validation))
        with self._lock:
            job = Job(
                id=self._id("ftjob"),
                model=str(model),
                training_file=training.id,
                validation_file=validation,
                suffix=body.get("suffix"),
                seed=int(body.get("seed") or 0),
                created_at=int(time.time()),
                steps=self.job_steps,
                fail_with=self.fail_next_job,
            )
            self.fail_next_job = None
            self._event(job, "info", f"Created fine-tuning job: {job.id}")
            self.jobs[job.id] = job
            return job

    def _event(self, job: Job, level: str, message: str) -> None:
        job.events.append(Event(self._id("ftevent"), int(time.time()), level, message))

    def job(self, job_id: str) -> Job:
        try:
            return self.jobs[job_id]
        except KeyError:
            raise ApiError(
                404, f"No such fine-tuning job: {job_id}", code="fine_tuning_job_not_found"
            ) from None

    def advance(self, job_id: str) -> Job:
        """One stage further (what the next retrieval sees)."""
        with self._lock:
            job = self.job(job_id)
            if job.status == "validating_files":
                self._event(job, "info", "Validating training file: " + job.training_file)
                job.status = "queued"
            elif job.status == "queued":
                self._event(job, "info", "Fine-tuning job started")
                job.status = "running"
            elif job.status == "running":
                if job.fail_with is not None:
                    job.status, job.finished_at = "failed", int(time.time())
                    job.error = {
                        "code": "invalid_training_file",
                        "message": job.fail_with,
                        "param": "training_file",
                    }
                    self._event(job, "error", f"Fine-tuning job failed: {job.fail_with}")
                elif job.step < job.steps:
                    job.step += 1
                    loss = 1.5 / job.step
                    self._event(job, "info", f"Step {job.step}/{job.steps}: training loss={loss:.4f}")
                else:
                    self._finish(job)
            return job

    def _finish(self, job: Job) -> None:
        name = job.suffix or "standin"
        job.fine_tuned_model = f"ft:{job.model}:beepgpt-standin:{name}:{job.id[-6:]}"
        files = [self.files[job.training_file]] + (
            [self.files[job.validation_file]] if job.validation_file else []
        )
        by_prompt: dict[str, Counter[str]] = {}
        overall: Counter[str] = Counter()
        tokens = 0
        for stored in files[:1]:  # the model learns from the training file only
            for line in stored.content.decode().splitlines():
                if not line.strip():
                    continue
                messages = json.loads(line)["messages"]
                answer = str(messages[-1].get("content", ""))
                by_prompt.setdefault(prompt_key(messages), Counter())[answer] += 1
                overall[answer] += 1
                tokens += sum(len(str(m.get("content", ""))) for m in messages) // 4
        self.models[job.fine_tuned_model] = TunedModel(job.fine_tuned_model, by_prompt, overall)
        job.status, job.finished_at, job.trained_tokens = "succeeded", int(time.time()), tokens * 3
        self._event(job, "info", f"New fine-tuned model created: {job.fine_tuned_model}")
        self._event(job, "info", "The job has successfully completed")

    def events(self, job_id: str, after: str | None, limit: int) -> tuple[list[Event], bool]:
        """Newest first; `after` is the id of the last event of the previous page (older follow)."""
        newest_first = list(reversed(self.job(job_id).events))
        if after is not None:
            ids = [e.id for e in newest_first]
            newest_first = newest_first[ids.index(after) + 1 :] if after in ids else []
        return newest_first[:limit], len(newest_first) > limit

    # --- inference -------------------------------------------------------------------------------

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        model_id = str(body.get("model"))
        model = self.models.get(model_id)
        if model is None and model_id not in BASE_MODELS:
            raise ApiError(
                404, f"The model `{model_id}` does not exist", code="model_not_found", param="model"
            )
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "messages must be a non-empty list", param="messages")
        top_n = int(body.get("top_logprobs") or 0)
        if top_n > 20:
            raise ApiError(400, "top_logprobs must be at most 20", param="top_logprobs")
        distribution = {"0": 1.0} if model is None else model.distribution(prompt_key(messages))
        ranked = sorted(distribution.items(), key=lambda item: (-item[1], item[0]))
        answer = ranked[0][0]
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": "length",
            "logprobs": None,
            "message": {"role": "assistant", "content": answer, "refusal": None},
        }
        if body.get("logprobs"):

            def entry(token: str, p: float) -> dict[str, Any]:
                return {"token": token, "logprob": math.log(p), "bytes": list(token.encode())}

            choice["logprobs"] = {
                "content": [
                    {**entry(answer, ranked[0][1]), "top_logprobs": [entry(t, p) for t, p in ranked[:top_n]]}
                ],
                "refusal": None,
            }
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in messages) // 4
        with self._lock:
            completion_id = self._id("chatcmpl")
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model_id,
            "choices": [choice],
            "system_fingerprint": "fp_standin",
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": 1,
                "total_tokens": prompt_tokens + 1,
            },
        }

    def embed(self, body: dict[str, Any]) -> dict[str, Any]:
        model = str(body.get("model"))
        if model not in EMBEDDING_MODELS:
            raise ApiError(404, f"The model `{model}` does not exist", code="model_not_found", param="model")
        raw = body.get("input")
        texts = [raw] if isinstance(raw, str) else list(raw or [])
        if not texts or not all(isinstance(t, str) and t for t in texts):
            raise ApiError(
                400, "input must be a non-empty string or list of non-empty strings", param="input"
            )
        dimensions = int(body.get("dimensions") or STANDIN_EMBEDDING_DIMENSIONS)
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_vector(t, dimensions)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(t) for t in texts) // 4
        return {
            "object": "list",
            "data": data,
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }


_WORD = re.compile(r"[a-z0-9]+")


def hashed_vector(text: str, dimensions: int) -> list[float]:
    """A unit vector of hashed words: texts sharing words are close, as with real embeddings."""
    vector = [0.0] * dimensions
    for word in _WORD.findall(text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        slot = int.from_bytes(digest[:4], "little") % dimensions
        vector[slot] += 1.0 if digest[4] % 2 else -1.0
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
