"""The OpenAI fine-tuned path end to end, through the official client and the local stand-in:
file, validation, upload, job, progress, resumption, model id, scoring from log-probabilities,
and backoff on rate limits."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from models_fixtures import VOCAB, conversation, synthetic_examples
from openai import OpenAI

from devstack.openai_standin import OpenAIStandin
from offline.training.openai_run import FineTuneFailed, OpenAIRunSettings, run_openai
from offline.training.pipeline import Prepared
from scorer.artifact import MANIFEST, fingerprint_rows, read_manifest
from scorer.embeddings import LocalEmbedder
from scorer.interest.finetune import build_files, estimate_tokens, example_line
from scorer.interest.openai_model import OpenAIInterestModel, OpenAIState, probabilities_from_logprobs
from scorer.interest.pairs import PairModel
from scorer.interest.prompt import Prompt, PromptMessage
from scorer.model_dir import load_models
from scorer.openai_api import Backoff


@pytest.fixture(scope="module")
def prepared(embedder: LocalEmbedder) -> Prepared:
    examples, store = synthetic_examples(embedder, repeats=2)
    keys = [(e.channel, str(e.ts)) for e in examples]
    texts = [e.prompt.texts[0] for e in examples]
    table = pd.DataFrame({"channel": [k[0] for k in keys], "slack_ts": [k[1] for k in keys], "text": texts})
    data = fingerprint_rows([(c, t, e.author, x) for (c, t), e, x in zip(keys, examples, texts, strict=True)])
    return Prepared(Path("synthetic"), table, examples, store.vectors(keys, texts), VOCAB, embedder, data)


def client_for(standin: OpenAIStandin) -> OpenAI:
    return OpenAI(api_key="test-key", base_url=standin.base_url, max_retries=0)


def test_fine_tuning_end_to_end(
    standin: OpenAIStandin, prepared: Prepared, tmp_path: Path, embedder: LocalEmbedder
) -> None:
    client = client_for(standin)
    said: list[str] = []
    waits: list[float] = []
    out = tmp_path / "ft"
    standin.faults.add("/v1/files", status=429, retry_after=2, times=1)
    result = run_openai(
        prepared,
        out,
        OpenAIRunSettings(poll_s=5, threshold_examples=8),
        client=client,
        backoff=Backoff(sleep=waits.append),
        sleep=waits.append,
        say=said.append,
    )
    assert result is not None
    manifest, metrics = result
    state = OpenAIState.load(out)
    assert state is not None
    assert state.status == "succeeded"
    assert state.fine_tuned_model
    assert state.fine_tuned_model.startswith("ft:gpt-4o-mini-2024-07-18:")
    assert manifest.kind == "openai"
    assert read_manifest(out).extra["fine_tuned_model"] == state.fine_tuned_model
    assert (
        metrics["files"]["train_lines"] + metrics["files"]["validation_lines"]
        == len(prepared.examples) - metrics["files"]["duplicates_dropped"]
    )
    assert any("Step 3/3" in line for line in said)
    assert any("fine-tuned model:" in line for line in said)
    assert waits[0] == 2
    assert 5 in waits
    lines = [json.loads(x) for x in (out / "finetune-train.jsonl").read_text().splitlines()]
    assert [m["role"] for m in lines[0]["messages"]] == ["system", "user", "assistant"]
    # the scorer loads it and reads per-user probabilities from log-probabilities
    models = load_models(out, embedder=embedder, openai_client=client)
    assert isinstance(models.interest, OpenAIInterestModel)
    text = lines[0]["messages"][1]["content"].split(": ", 2)[-1]
    answer = VOCAB.users[int(lines[0]["messages"][2]["content"]) - 1]
    event = conversation([("UDEE", text)])
    standin.faults.add("/v1/chat/completions", status=429, retry_after=0.5, times=2)
    models.interest.backoff = Backoff(sleep=waits.append)
    probabilities = models.interest.probabilities(event, embedder.embed([text]))
    assert max(probabilities, key=probabilities.__getitem__) == answer
    assert standin.count("/v1/chat/completions", 429) == 2
    assert waits[-2:] == [0.5, 0.5]
    assert models.interest.signals(event, answer, probabilities[answer])


def test_an_interrupted_run_resumes_the_same_job(
    standin: OpenAIStandin, prepared: Prepared, tmp_path: Path
) -> None:
    client = client_for(standin)
    out = tmp_path / "ft"

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_openai(
            prepared, out, OpenAIRunSettings(poll_s=1), client=client, sleep=interrupt, say=lambda s: None
        )
    state = OpenAIState.load(out)
    assert state is not None
    assert state.job_id
    assert state.status != "succeeded"
    assert not (out / MANIFEST).exists()
    with pytest.raises(Exception, match="training has not finished"):
        load_models(out)
    said: list[str] = []
    result = run_openai(
        prepared,
        out,
        OpenAIRunSettings(poll_s=1, threshold_examples=4),
        client=client,
        sleep=lambda s: None,
        say=said.append,
    )
    assert result is not None
    assert any(f"resuming job {state.job_id}" in s for s in said)
    assert list(standin.store.jobs) == [state.job_id]
    assert len(standin.store.files) == 2


def test_a_failed_job_and_someone_elses_job_are_reported(
    standin: OpenAIStandin, prepared: Prepared, tmp_path: Path
) -> None:
    client = client_for(standin)
    standin.store.fail_next_job = "the training file has too few examples per label"
    with pytest.raises(FineTuneFailed, match="failed: the training file has too few"):
        run_openai(
            prepared,
            tmp_path / "a",
            OpenAIRunSettings(poll_s=0),
            client=client,
            sleep=lambda s: None,
            say=lambda s: None,
        )
    other = OpenAIState(base_model="gpt-4o-mini-2024-07-18", data_sha256="0" * 64, job_id="ftjob-other")
    (tmp_path / "b").mkdir()
    other.save(tmp_path / "b")
    with pytest.raises(FineTuneFailed, match="trained on other data"):
        run_openai(prepared, tmp_path / "b", OpenAIRunSettings(), client=client, say=lambda s: None)


def test_the_file_is_validated_before_upload(tmp_path: Path) -> None:
    prompt = Prompt("general", False, (PromptMessage("UDEE", "the Kafka lag is high"),))
    good = example_line(prompt, "UANA", VOCAB)
    assert good["messages"][-1] == {"role": "assistant", "content": "1"}
    bad = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "42"}]}
    lines = [(float(i), good) for i in range(12)] + [(20.0, bad)]
    lines += [(float(30 + i), example_line(prompt, "UBO", VOCAB)) for i in range(2)]
    _train, validation, check = build_files(lines, VOCAB, tmp_path, validation_fraction=0.5)
    assert check.duplicates_dropped == 12
    assert check.conflicting_prompts == 1
    assert any("answer '42' is not a label" in e for e in check.errors)
    assert any("OpenAI needs at least 10" in e for e in check.errors)
    assert not check.ok
    assert check.tokens == 2 * estimate_tokens(good["messages"])
    assert validation is not None


def test_logprobs_become_probabilities_per_label() -> None:
    codes = {"0": "nobody", "1": "UANA", "2": "UBO"}
    found = probabilities_from_logprobs([("1", -0.1), (" 1", -3.0), ("2", -2.5), ("zebra", -1.0)], codes)
    assert found is not None
    assert found["UANA"] > 0.85
    assert found["nobody"] == 0.0
    assert abs(sum(found.values()) - 1.0) < 1e-9
    assert probabilities_from_logprobs([("maybe", -0.1)], codes) is None


def test_beepgpt_train_openai_through_the_standin(
    standin: OpenAIStandin,
    small_history: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    embedder: LocalEmbedder,
) -> None:
    from beepgpt.cli import main as beepgpt

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("BEEPGPT_OPENAI_BASE_URL", standin.base_url)
    out = tmp_path / "ft"
    args = [
        "train",
        str(small_history),
        "--out",
        str(out),
        "--openai",
        "--poll",
        "0",
        "--threshold-examples",
        "5",
        "--no-progress",
    ]
    assert beepgpt(args) == 0
    state = OpenAIState.load(out)
    assert state is not None
    assert state.fine_tuned_model in standin.store.models
    models = load_models(out, embedder=embedder, openai_client=client_for(standin))
    assert isinstance(models.interest, OpenAIInterestModel)
    assert models.interest.model == state.fine_tuned_model
    # a second run with the same data finds the finished job and creates nothing new
    assert beepgpt(args) == 0
    assert len(standin.store.jobs) == 1


def test_openai_embeddings_for_both_models(
    standin: OpenAIStandin, small_history: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from beepgpt.cli import main as beepgpt

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("BEEPGPT_OPENAI_BASE_URL", standin.base_url)
    out = tmp_path / "oe"
    assert (
        beepgpt(["train", str(small_history), "--out", str(out), "--embeddings", "openai", "--no-progress"])
        == 2
    )
    args = [
        "train",
        str(small_history),
        "--out",
        str(out),
        "--embeddings",
        "openai",
        "--topic-threshold",
        "0.3",
        "--no-progress",
    ]
    assert beepgpt(args) == 0
    models = load_models(out, openai_client=client_for(standin))
    assert models.embedder.name == "openai:text-embedding-3-small"
    assert models.topics.threshold == 0.3
    event = conversation([("U605AEB3E", "Kafka partitions and consumer lag on the inventory stream")])
    vectors = models.embedder.embed([event.messages[0].text])
    assert vectors.shape == (1, 64)
    assert isinstance(models.interest, PairModel)
    probabilities = models.interest.probabilities(event, vectors)
    assert probabilities
    assert set(probabilities) <= set(models.interest.activity.people)
    assert all(0 <= p <= 1 for p in probabilities.values())
    profiles = [p.profile for p in models.interest.activity.people.values() if p.profile is not None]
    assert {len(p) for p in profiles} == {64}  # the people's profiles live in OpenAI's space
