"""Why did it say that? (`core.evaluation.explain`, `convsim explain`): unique phrases planted in
the sample chat, a tiny persona trained on it (real SQLite, real training, real llama.cpp and
MiniLM; nothing mocked); a reply reproducing a planted phrase must rank the planted message
first."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from convsim.core import evaluation
from convsim.core.memory import shared_embedder
from convsim.core.training import train_person
from convsim.core.workspace import SAMPLE_CHAT, Workspace
from convsim.tui.cli import main

pytest.importorskip("peft")

FAST = {"steps": 2, "seq_len": 64, "batch_size": 2, "rank": 4, "alpha": 8.0, "eval_every": 0,
        "eval_rows": 2, "samples": 0, "checkpoint_every": 0}  # fmt: skip
# (line of the sample chat to plant after, Sam's planted message): early lines, so the planted
# messages land in the training split.
PLANTED = [
    (30, "the marmalade ferris wheel only opens on wet sundays"),
    (140, "my cousin keeps a tortoise called professor biscuit"),
    (260, "never trust a lighthouse that sells umbrellas"),
]
# How a persona might reproduce each one: not quite word for word.
REPRODUCED = [
    "the marmalade ferris wheel only opens on wet sundays lol",
    "my cousin keeps a tortoise called professor biscuit!!",
    "never trust a lighthouse that sells umbrellas tbh",
]
TURNS = [("Riya", "so what's new with you?")]


def planted_chat(folder: Path, planted: list[tuple[int, str]] = PLANTED) -> Path:
    """The sample chat with Sam's planted messages, each after its line, at that line's time."""
    lines = SAMPLE_CHAT.read_text(encoding="utf-8").splitlines()
    for after, text in sorted(planted, reverse=True):
        stamp = lines[after].split(" - ")[0]
        lines.insert(after + 1, f"{stamp} - Sam: {text}")
    path = folder / "planted_whatsapp.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def train_planted(tiny: Any, home: Path) -> tuple[str, dict[str, int]]:
    """A tiny persona of Sam trained on the planted chat in `home`: (model id, the planted
    messages' store ids by text)."""
    with Workspace.open(home) as ws:
        (report,) = ws.import_export(planted_chat(home.parent))
        run = train_person(ws, report.chat_id, "Sam", base=str(tiny.gguf_path), overrides=FAST)
        ids = {m.text: m.id for m in ws.store.messages(report.chat_id)}
        train, _, _ = ws.dataset_files(run.model.dataset_id)
    planted = {text: ids[text] for _, text in PLANTED}
    assert set(planted.values()) <= {ex.target_id for ex in train}, "planted outside train"
    return run.model.id, planted


@pytest.fixture(scope="module")
def persona(tiny: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, dict]:
    home = tmp_path_factory.mktemp("explain") / "home"
    model_id, planted = train_planted(tiny, home)
    return home, model_id, planted


def test_a_reproduced_planted_phrase_ranks_its_message_first(persona) -> None:
    home, model_id, planted = persona
    with (
        Workspace.open(home) as ws,
        evaluation.Explainer(ws, model_id, shared_embedder(), threads=2) as explainer,
    ):
        assert explainer.signals == ["embedding", "hidden"]
        for (_, text), reply in zip(PLANTED, REPRODUCED, strict=True):
            found = explainer.explain(reply, TURNS, k=3)
            first = found.matches[0]
            assert first.message.id == planted[text], (reply, found.to_json())
            assert first.message.text == text and first.message.sender == "Sam"
            assert first.message.ts.startswith("2025-")
            # The moment it replied to: the messages before it in its training window.
            assert first.replied_to and all(s.id < first.message.id for s in first.replied_to)
            assert [m.rank for m in found.matches] == [1, 2, 3]
            scores = [m.score for m in found.matches]
            assert scores == sorted(scores, reverse=True)
            assert set(first.similarity) == {"embedding", "hidden"}
            # Word for word, after the message it answered (as in training), each signal
            # alone finds it too: the reply is read exactly as its message was indexed.
            _, around = evaluation.surrounding(ws, planted[text], around=1)
            before = [(around[0].sender or "?", around[0].text)]
            for signal in ("embedding", "hidden"):
                alone = explainer.explain(text, before, k=1, signals=[signal])
                assert alone.matches[0].message.id == planted[text], signal
                assert alone.matches[0].similarity[signal] > 0.99


def test_hidden_states_are_the_personas_own(persona) -> None:
    """The hidden signal reads replies with the persona's adapter (on the states context, as on
    the chat context): without it, the same tokens give other vectors."""
    from convsim.core.inference.llama import LlamaModel
    from convsim.core.training import adapter_gguf

    home, model_id, _ = persona
    with Workspace.open(home) as ws:
        base, adapter = Path(ws.store.model(model_id).base), adapter_gguf(ws, model_id)
    states = []
    for adapters in ([], [(adapter, 1.0)]):
        model = LlamaModel(base, adapters, n_ctx=512, threads=2)
        tokens = model.tokenize("[Riya] hi\n[Sam] hey we are going")
        states.append(model.mean_states([(tokens, 8)])[0])
        model.close()
    assert np.abs(states[0] - states[1]).max() > 1e-4


def test_surrounding_shows_a_message_in_its_chat(persona) -> None:
    home, _, planted = persona
    mid = planted[PLANTED[1][1]]
    with Workspace.open(home) as ws:
        chat_id, lines = evaluation.surrounding(ws, mid, around=2)
        assert [s.id for s in lines].index(mid) == 2 and len(lines) == 5
        assert chat_id == 1
        with pytest.raises(KeyError, match="no message with id 999999"):
            evaluation.surrounding(ws, 999999)


def test_cli_explain_json_text_and_open(persona, monkeypatch, tmp_path: Path, capsys) -> None:
    home, model_id, planted = persona
    monkeypatch.setenv("CONVSIM_HOME", str(home))
    transcript = tmp_path / "t.txt"
    transcript.write_text("[Riya] so what's new with you?\n")
    reply = REPRODUCED[2]
    args = ["explain", model_id, "--reply", reply, "--transcript", str(transcript), "--top", "2",
            "--threads", "2"]  # fmt: skip
    assert main([*args, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"model_id", "person", "reply", "signals", "candidates", "seconds",
                        "index_built", "matches"}  # fmt: skip
    assert (out["model_id"], out["person"], out["reply"]) == (model_id, "Sam", reply)
    assert len(out["matches"]) == 2
    first = out["matches"][0]
    assert set(first) == {"rank", "score", "similarity", "chat_id", "message", "replied_to"}
    assert set(first["message"]) == {"id", "ts", "sender", "text"}
    assert first["message"]["id"] == planted[PLANTED[2][1]]
    assert set(first["similarity"]) == {"embedding", "hidden"}
    assert main(args) == 0
    text = capsys.readouterr().out
    mid = first["message"]["id"]
    assert PLANTED[2][1] in text and f"convsim explain {model_id} --open {mid}" in text
    assert main(["explain", model_id, "--open", str(mid), "--around", "1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["chat_id"] == 1 and shown["message_id"] == mid
    assert [m["match"] for m in shown["messages"]] == [False, True, False]
    assert main(["explain", model_id, "--open", str(mid), "--around", "1"]) == 0
    assert "▶ " in capsys.readouterr().out


def test_cli_explain_errors_name_the_problem(persona, monkeypatch, capsys) -> None:
    home, model_id, _ = persona
    monkeypatch.setenv("CONVSIM_HOME", str(home))
    assert main(["explain", "base", "--reply", "hi"]) == 2
    assert "trained on nobody's messages" in capsys.readouterr().err
    assert main(["explain", "nobody-1", "--reply", "hi"]) == 2
    assert "no model with id 'nobody-1'" in capsys.readouterr().err
    assert main(["explain", model_id, "--reply", "  "]) == 2
    assert "--reply" in capsys.readouterr().err
    assert main(["explain", model_id, "--open", "999999"]) == 2
    assert "no message with id 999999" in capsys.readouterr().err


def test_the_index_is_cached_and_rebuilt_when_the_model_changes(persona, adapter) -> None:
    home, model_id, _ = persona
    folder = home / "models" / model_id
    index = folder / "explain" / "index.npz"
    with Workspace.open(home) as ws:
        evaluation.explain(ws, model_id, "hey", embedder=shared_embedder(), threads=2)
        assert index.is_file()
        stamp = index.stat().st_mtime_ns
        with evaluation.Explainer(ws, model_id, shared_embedder(), threads=2) as again:
            assert not again.built  # read from the cache
            assert len(again.index.ids) == again.explain("hey").candidates
        assert index.stat().st_mtime_ns == stamp
        # Other settings, another adapter: rebuilt.
        with evaluation.Explainer(ws, model_id, None, threads=2) as hidden_only:
            assert hidden_only.built and hidden_only.signals == ["hidden"]
        original = (folder / "adapter.gguf").read_bytes()
        try:
            shutil.copyfile(adapter, folder / "adapter.gguf")
            with evaluation.Explainer(ws, model_id, None, threads=2) as other:
                assert other.built
        finally:
            (folder / "adapter.gguf").write_bytes(original)


def test_forgetting_the_person_removes_the_index(tiny, tmp_path: Path) -> None:
    home = tmp_path / "home"
    model_id, _ = train_planted(tiny, home)
    with Workspace.open(home) as ws:
        evaluation.explain(ws, model_id, "hey", embedder=None, threads=2)
        index = home / "models" / model_id / "explain" / "index.npz"
        assert index.is_file()
        plan = ws.forget_plan(person="Sam")
        assert any(index.is_relative_to(f) for f in plan.files)
        ws.forget(plan)
    assert not index.exists()
