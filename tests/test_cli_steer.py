"""`convsim steer build|list` and `--steer` end to end: a tiny persona trained on the sample chat,
a vector built from contrast pairs in torch and calibrated on llama.cpp, saved as a control
vector GGUF, then steering `simulate`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from convsim.core.training import train_person
from convsim.core.workspace import SAMPLE_CHAT, Workspace
from convsim.tui.cli import main

pytest.importorskip("peft")

FAST = {"steps": 2, "seq_len": 64, "batch_size": 2, "rank": 4, "alpha": 8.0, "eval_every": 0,
        "eval_rows": 2, "samples": 0, "checkpoint_every": 0}  # fmt: skip


@pytest.fixture(scope="module")
def persona(tiny, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    home = tmp_path_factory.mktemp("steer-home")
    with Workspace.open(home) as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        run = train_person(ws, report.chat_id, "Sam", base=str(tiny.gguf_path), overrides=FAST)
    return home, run.model.id


@pytest.fixture
def built(persona, monkeypatch: pytest.MonkeyPatch, capsys) -> tuple[str, dict]:
    home, model_id = persona
    monkeypatch.setenv("CONVSIM_HOME", str(home))
    if not (home / "models" / model_id / "steering" / "happy.gguf").exists():
        assert main(["steer", "build", model_id, "--axis", "happy", "--threads", "2",
                     "--json"]) == 0  # fmt: skip
        capsys.readouterr()
    assert main(["steer", "list", model_id, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return model_id, {r["name"]: r for r in rows}


def test_build_saves_a_calibrated_control_vector(built) -> None:
    import gguf

    _, found = built
    v = found["happy"]
    assert set(v) == {"name", "positive", "negative", "range", "band", "method", "pairs",
                      "baseline_perplexity", "path"}  # fmt: skip
    assert (v["positive"], v["negative"], v["method"]) == ("happy", "sad", "mean")
    assert v["pairs"] >= 100
    assert v["range"][0] <= 0 <= v["range"][1]
    # The tiny model has 2 blocks: only block 1 can be steered.
    assert v["band"] == [1, 1]
    reader = gguf.GGUFReader(v["path"])
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == "controlvector"
    names = [t.name for t in reader.tensors]
    assert names == ["direction.1"] and reader.tensors[0].data.shape[-1] == 64
    assert np.any(reader.tensors[0].data)


def test_steer_changes_the_reply_and_refuses_bad_values(built, tmp_path: Path, capsys) -> None:
    model_id, _ = built
    transcript = tmp_path / "t.txt"
    transcript.write_text("[Riya] how was your day?\n")
    args = ["simulate", model_id, "--transcript", str(transcript), "--turns", "1",
            "--temperature", "0", "--seed", "1", "--max-tokens", "12", "--json"]  # fmt: skip
    assert main(args) == 0
    plain = json.loads(capsys.readouterr().out)["text"]
    assert main([*args, "--steer", "happy=0"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == plain
    assert main(["steer", "list", model_id]) == 0
    listed = capsys.readouterr().out
    assert "happy" in listed and listed.rstrip().endswith("block 1")  # a band of one block
    for bad, message in (
        ("happy=2", "between -1 and 1"),
        ("happy", "NAME=VALUE"),
        ("grumpy=0.5", "no vector 'grumpy'"),
    ):
        assert main([*args, "--steer", bad]) == 2
        assert message in capsys.readouterr().err


def test_strong_steering_moves_the_reply(built, tmp_path: Path) -> None:
    """Through the library the CLI uses: the vector at many times its calibrated strength must
    change a greedy reply (the tiny model's calibrated range may be tiny)."""
    from convsim.core import steering, training
    from convsim.core.inference.engine import Engine, Sampling

    model_id, found = built
    home = Path(found["happy"]["path"]).parents[3]
    with Workspace.open(home) as ws:
        record = ws.store.model(model_id)
        adapter = training.adapter_gguf(ws, model_id)
    (vector,) = steering.vectors(Path(record.path))
    engine = Engine(Path(record.base), [(adapter, 1.0)], n_ctx=256, threads=2)
    greedy = Sampling(temperature=0, seed=1, max_tokens=10)
    turns = [("Riya", "how was your day?")]
    plain = engine.simulate(turns, "Sam", greedy).result().text
    scale = 50 * float(np.linalg.norm(vector.rows[1])) or 1.0
    engine.set_steering(vector.rows[1:] / np.linalg.norm(vector.rows[1]) * scale, 1, 1)
    assert engine.simulate(turns, "Sam", greedy).result().text != plain
    engine.close()


def test_build_errors_name_the_problem(persona, monkeypatch, tmp_path: Path, capsys) -> None:
    home, model_id = persona
    monkeypatch.setenv("CONVSIM_HOME", str(home))
    bad = tmp_path / "pairs.jsonl"
    bad.write_text('{"positive": "yes!", "negative": "yes."}\n{"positive": "ok"}\n')
    assert main(["steer", "build", model_id, "--pairs", str(bad)]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 2" in err and "'negative'" in err
    for axis in ("grumpy", "Happy"):
        assert main(["steer", "build", model_id, "--axis", axis]) == 2
        assert f"no built-in axis {axis!r}" in capsys.readouterr().err
    assert main(["steer", "build", model_id, "--poles", "", "calm"]) == 2
    assert "positive pole" in capsys.readouterr().err
    assert main(["steer", "build", "nobody-1", "--axis", "happy"]) == 2
    assert main(["steer", "build", model_id, "--axis", "happy", "--name", "Bad Name"]) == 2
    assert "not a usable vector name" in capsys.readouterr().err
    odd = tmp_path / "My pairs (v2).jsonl"
    odd.write_text('{"positive": "yes!", "negative": "yes."}\n')
    assert main(["steer", "build", model_id, "--pairs", str(odd)]) == 2
    err = capsys.readouterr().err
    assert "'my pairs (v2)'" in err and "it is the pairs file's name: pass --name NAME" in err
    # Nothing half-written by the refusals.
    folder = home / "models" / model_id / "steering"
    assert not folder.exists() or all(p.suffix == ".gguf" for p in folder.iterdir())


def test_a_vector_for_another_model_is_refused_and_removed(built, capsys) -> None:
    """A vector that cannot be used (another model's, not a GGUF) stops `--steer` and `steer
    list` with the file named and how to remove it; `steer remove` deletes vectors by name,
    and refuses a name it has no vector of before deleting anything."""
    from convsim.convert.control_vector import ControlVector, write_control_vector

    model_id, found = built
    folder = Path(found["happy"]["path"]).parent
    wide, broken, renamed = folder / "wide.gguf", folder / "broken.gguf", folder / "old-c.gguf"
    meta = {"name": "wide", "band": [1, 1], "range_positive": 1.0, "range_negative": 1.0,
            "baseline_perplexity": 1.0, "sweep": []}  # fmt: skip
    write_control_vector(wide, ControlVector("gemma3", np.ones((2, 128), np.float32), meta))
    try:
        assert main(["simulate", model_id, "--turns", "1", "--steer", "happy=0.5"]) == 2
        err = capsys.readouterr().err
        assert "wide.gguf" in err and "128 wide" in err and "64 wide" in err
        assert f"or remove it: convsim steer remove {model_id} wide" in err
        broken.write_bytes(b"not a control vector")
        assert main(["steer", "list", model_id]) == 2
        err = capsys.readouterr().err
        assert "broken.gguf: not a GGUF file" in err
        assert f"convsim steer remove {model_id} broken" in err

        assert main(["steer", "remove", model_id, "broken", "grumpy"]) == 2
        err = capsys.readouterr().err
        assert "no vector 'grumpy' (it has: broken, happy, wide)" in err
        assert broken.exists() and wide.exists()  # nothing deleted
        assert main(["steer", "remove", model_id, "broken", "wide"]) == 0
        out = capsys.readouterr().out
        assert f"Removed the vector 'broken' of {model_id}." in out and "'wide'" in out
        assert not broken.exists() and not wide.exists()

        # A file renamed by hand goes by the name `steer list` shows (its own).
        write_control_vector(renamed, ControlVector("gemma3", np.ones((2, 64), np.float32),
                                                    {**meta, "name": "cheer"}))  # fmt: skip
        assert main(["steer", "list", model_id, "--json"]) == 0
        listed = [json.loads(line)["name"] for line in capsys.readouterr().out.splitlines()]
        assert listed == ["happy", "cheer"]
        assert main(["steer", "remove", model_id, "cheer"]) == 0
        assert not renamed.exists() and Path(found["happy"]["path"]).exists()
    finally:
        for path in (wide, broken, renamed):
            path.unlink(missing_ok=True)


def test_method_fit_fits_reply_pairs_and_gives_poles_the_mean(built, capsys) -> None:
    """`--method fit` starts from the mean difference on the same band and moves it; a pole
    axis (its replies carry the pole as a stage direction) is given the mean difference."""
    import gguf

    model_id, found = built
    build = ["steer", "build", model_id, "--method", "fit", "--threads", "2", "--json"]
    try:
        assert main([*build, "--axis", "happy", "--name", "happyfit"]) == 0
        fitted = json.loads(capsys.readouterr().out)
        assert (fitted["method"], fitted["band"]) == ("fit", found["happy"]["band"])
        assert fitted["range"][0] <= 0 <= fitted["range"][1]
        rows = [gguf.GGUFReader(found["happy"]["path"]).tensors[0].data,
                gguf.GGUFReader(fitted["path"]).tensors[0].data]  # fmt: skip
        assert np.any(rows[1]) and not np.allclose(rows[0], rows[1])
        # brief is a length axis: its fit moves where messages end (core.steering.fit).
        assert main([*build[:-1], "--axis", "brief", "--name", "brieffit"]) == 0
        assert "the fit moves where the person's messages end" in capsys.readouterr().err
        assert main([*build[:-1], "--poles", "cheerful", "grumpy", "--name", "cheerful"]) == 0
        assert "poles are not fitted: the mean difference" in capsys.readouterr().err
        assert main(["steer", "list", model_id, "--json"]) == 0
        listed = {json.loads(line)["name"]: json.loads(line) for line in
                  capsys.readouterr().out.splitlines()}  # fmt: skip
        assert (listed["cheerful"]["method"], listed["brieffit"]["method"]) == ("mean", "fit")
        assert main(["steer", "remove", model_id, "happyfit", "brieffit", "cheerful"]) == 0
        capsys.readouterr()
    finally:
        for name in ("happyfit", "brieffit", "cheerful"):
            (Path(found["happy"]["path"]).parent / f"{name}.gguf").unlink(missing_ok=True)
    from convsim.core import steering

    home = Path(found["happy"]["path"]).parents[3]
    refused = pytest.raises(
        ValueError, match="method must be one of mean, pca, fit, own, not 'best'"
    )
    with Workspace.open(home) as ws, refused:
        steering.build_vector(ws, model_id, steering.Spec("x", axis="happy", method="best"))


def test_method_own_fits_pairs_of_the_persona_s_own_replies(built, capsys) -> None:
    """`--method own` samples the persona's replies, pairs the furthest apart along the axis
    and fits on them, starting from the mean on the same band."""
    import gguf

    model_id, found = built
    build = ["steer", "build", model_id, "--method", "own", "--threads", "2"]
    try:
        assert main([*build, "--axis", "happy", "--name", "happyown"]) == 0
        err = capsys.readouterr().err
        assert "fitted on pairs of the persona's own replies (8 after each moment)" in err
        assert "sampling" in err and "fitting" in err
        assert main(["steer", "list", model_id, "--json"]) == 0
        listed = {json.loads(line)["name"]: json.loads(line) for line in
                  capsys.readouterr().out.splitlines()}  # fmt: skip
        mine = listed["happyown"]
        assert (mine["method"], mine["band"]) == ("own", found["happy"]["band"])
        assert mine["range"][0] <= 0 <= mine["range"][1]
        rows = [gguf.GGUFReader(found["happy"]["path"]).tensors[0].data,
                gguf.GGUFReader(mine["path"]).tensors[0].data]  # fmt: skip
        assert np.any(rows[1]) and not np.allclose(rows[0], rows[1])
        args = ["simulate", model_id, "--turns", "1", "--max-tokens", "6", "--steer"]
        assert main([*args, "happyown=1"]) == 0
        capsys.readouterr()
    finally:
        (Path(found["happy"]["path"]).parent / "happyown.gguf").unlink(missing_ok=True)


def test_the_plain_base_model_is_a_target_too(home: Path, capsys) -> None:
    """`base` names the default base (from its package): steer list, and simulate as the
    untrained "Friend"; its vectors would live in the data folder, not with any persona."""
    assert main(["steer", "list", "base"]) == 0
    assert "convsim steer build base --axis happy" in capsys.readouterr().out
    assert main(["simulate", "base", "--turns", "1", "--max-tokens", "6", "--seed", "0",
                 "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["speaker"] == "Friend"
    assert main(["simulate", "base", "--turns", "1", "--steer", "happy=0.5"]) == 2
    assert "no vector 'happy' for base" in capsys.readouterr().err
