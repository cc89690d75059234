"""Fitting the reply linker (`offline.training.linker`) on a tiny annotated export: every kind
of model it fits loads, decides like `Linker.link`, and carries its provenance."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest

from offline.evaluation.conversations.data import load_annotated, split, split_of
from offline.training import linker as training
from sessionizer.linker import FEATURES, Linker, LinkerModel, load_model


def _chunk_names() -> list[str]:
    """Chunk names that fall in train (three) and dev (two) of the fixed split."""
    names: dict[str, list[str]] = {"train": [], "dev": []}
    for i in range(200):
        name = f"chunk-{i}"
        part = split_of(name)
        if part in names and len(names[part]) < (3 if part == "train" else 2):
            names[part].append(name)
    return names["train"] + names["dev"]


def _export(root: Path) -> None:
    """Chunks of two interleaved question-and-answer conversations at a time, linked by mentions."""
    rng = random.Random(3)
    channels, truth, links = [], {}, []
    t = 1_700_000_000.0
    for c, name in enumerate(_chunk_names()):
        channels.append({"id": f"C{c}", "name": name})
        messages = []
        for pair in range(12):
            asker, other, helper, helper2 = (f"U{c}{pair}{k}" for k in range(4))
            q1 = (f"{t:.6f}", asker, f"how do I fix my {rng.choice(['wifi', 'sound', 'grub'])} driver?")
            q2 = (f"{t + 20:.6f}", other, "anyone know a good irc client?")
            a1 = (f"{t + 40:.6f}", helper, f"<@{asker}> reinstall the driver package")
            a2 = (f"{t + 60:.6f}", helper2, f"<@{other}> xchat is a good irc client")
            messages += [q1, q2, a1, a2]
            links += [[q1[0], q1[0]], [q2[0], q2[0]], [a1[0], q1[0]], [a2[0], q2[0]]]
            truth.update({q1[0]: f"{name}-{pair}a", a1[0]: f"{name}-{pair}a", q2[0]: f"{name}-{pair}b", a2[0]: f"{name}-{pair}b"})
            t += 400
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "2023-11-14.json").write_text(
            json.dumps([{"type": "message", "user": u, "text": x, "ts": ts} for ts, u, x in messages])
        )
    (root / "channels.json").write_text(json.dumps(channels))
    (root / "conversations.json").write_text(json.dumps(truth))
    (root / "links.json").write_text(json.dumps(links))


@pytest.mark.parametrize("kind", ["linear", "choice", "mlp"])
def test_a_fitted_model_loads_and_links_the_answers(tmp_path: Path, kind: str) -> None:
    data = tmp_path / "export"
    _export(data)
    out = tmp_path / "model.json"
    code = training.main(
        ["--data", str(data), "--out", str(out), "--kinds", kind, "--windows", "20x600,40x3600",
         "--units", "4", "--seeds", "2", "--stretch", "1,4", "--thin", "2", "--offsets=-0.5,0,0.5"]
    )
    assert code == 0
    model = load_model(out)
    assert model.activation == ("relu" if kind == "mlp" else "identity")
    assert model.meta["trained_by"] == "offline.training.linker"
    assert "Kummerfeld" in model.meta["trained_on"]
    assert model.meta["chosen"]["stretch"] == [1.0, 4.0]
    assert model.meta["chosen"]["thin"] == [2]
    # the shipped file decides as the dev figures it was chosen with said (the offset is folded in)
    annotated = load_annotated(data, data / "conversations.json", data / "links.json")
    dev = split(annotated)["dev"]
    examples = training.collect(dev)
    scored = training.example_scores(examples, model)
    again = training.measure(dev, examples, scored, model.window_messages, model.window_s, 0.0)
    assert again.exact_f1 == pytest.approx(model.meta["dev"]["exact_f1"])
    _root, chosen = training.decide(examples, scored, model.window_messages, model.window_s, 0.0)
    linker = Linker(model)
    from offline.evaluation.conversations.data import people_messages

    for channel, ts, _thread, user, text in people_messages(dev.table):
        link = linker.link(str(channel), str(ts), float(ts), str(user), str(text))
        message = f"{channel}:{ts}"
        assert chosen[message] == (None if link.parent_ts is None else f"{channel}:{link.parent_ts}")


def test_an_ensemble_is_one_wider_net_scoring_the_mean_logit() -> None:
    rng = np.random.default_rng(0)
    x = (rng.random((400, len(FEATURES))) < 0.2).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int8)
    hidden, bias, output, activation = training.fit_mlp(x, y, units=3, alpha=1e-3, seeds=2)
    assert hidden.shape == (len(FEATURES), 6)
    model = LinkerModel(hidden=hidden, hidden_bias=bias, output=output, activation=activation,
                        window_messages=10, window_s=60.0, version="t", meta={})
    halves = [
        LinkerModel(hidden=hidden[:, s], hidden_bias=bias[s], output=output[s] * 2, activation="relu",
                    window_messages=10, window_s=60.0, version="t", meta={})
        for s in (slice(0, 3), slice(3, 6))
    ]
    rows = x[:20].astype(np.float64)
    assert np.allclose(model.score(rows), (halves[0].score(rows) + halves[1].score(rows)) / 2)
    assert np.allclose(LinkerModel.from_dict(model.to_dict()).score(rows), model.score(rows), atol=1e-4)
