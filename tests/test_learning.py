"""Learning: feedback stored with its context, updates that replay the past and are promoted
only when they do not forget, versions and rollback, resume, and the judge. Everything runs
for real: the store is SQLite, updates train the tiny model in torch and are scored on
llama.cpp, the judge is an HTTP server on localhost."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_TRAINING
from judge_server import Judge, judging

from convsim.core.learning import Feedback, FeedbackError, LearnSettings, learn
from convsim.core.learning.sleep import NothingToLearn
from convsim.core.training import adapter_gguf
from convsim.core.training.versions import use_version, versions
from convsim.core.workspace import SAMPLE_CHAT, Workspace

pytest.importorskip("peft")

MOMENT = [("Riya", "are you coming tonight?")]
FAST = LearnSettings(slice_items=4, seq_len=64, batch_size=2)


@pytest.fixture
def persona(tiny: Any, tmp_path: Path) -> Iterator[tuple[Workspace, str]]:
    """A fresh tiny persona of Sam (each test changes its versions)."""
    from convsim.core.training import train_person

    with Workspace.open(tmp_path / "home") as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        run = train_person(ws, report.chat_id, "Sam", base=str(tiny.gguf_path),
                           overrides=TINY_TRAINING)  # fmt: skip
        yield ws, run.model.id


def feedback(ws: Workspace, model_id: str) -> None:
    fb = Feedback(ws.store)
    fb.add(model_id, "better", MOMENT, "yes", better="ya", candidates=[{"text": "yes", "score": 1}])
    fb.add(model_id, "good", MOMENT, "ya def")
    fb.add(model_id, "bad", MOMENT, "Yes!")
    fb.add(model_id, "regenerate", MOMENT, "YES.")


# -- feedback -------------------------------------------------------------------------------------


def test_feedback_is_stored_with_its_transcript_version_and_candidates(
    persona: tuple[Workspace, str],
) -> None:
    ws, model_id = persona
    feedback(ws, model_id)
    items = Feedback(ws.store).items(model_id)
    assert [i.kind for i in items] == ["better", "good", "bad", "regenerate"]
    first = items[0]
    assert (first.transcript, first.reply, first.better, first.version) == (MOMENT, "yes", "ya", 1)
    assert first.candidates == [{"text": "yes", "score": 1}] and first.speaker == "Sam"
    assert Feedback(ws.store).remove(model_id, [items[1].id, items[1].id]) == 1
    assert [i.kind for i in Feedback(ws.store).items(model_id)] == ["better", "bad", "regenerate"]
    # The newest item removed: its id is not given to the next one (a version that learnt it
    # names it by id, and would claim the new item as learnt).
    assert Feedback(ws.store).remove(model_id, [items[3].id]) == 1
    assert Feedback(ws.store).add(model_id, "good", MOMENT, "sure").id == items[3].id + 1


@pytest.mark.parametrize(
    ("call", "says"),
    [
        (dict(model_id="nobody-1", kind="good"), "no model 'nobody-1'"),
        (dict(kind="good", version=7), "has no version 7 (it has 1)"),
        (dict(kind="better", better="  "), "better: an edit needs the better text; it is empty"),
        (dict(kind="better", better="yes"), "the edit is the same as the reply"),
        (dict(kind="meh"), "kind must be one of good, bad, better"),
        (dict(kind="good", reply=""), "reply: expected the message's text"),
    ],
)
def test_bad_feedback_is_refused_with_the_field_named_and_nothing_stored(
    persona: tuple[Workspace, str], call: dict[str, Any], says: str
) -> None:
    ws, model_id = persona
    args = {"model_id": model_id, "transcript": MOMENT, "reply": "yes", **call}
    with pytest.raises(FeedbackError, match=re.escape(says)):
        Feedback(ws.store).add(**args)
    assert ws.store.conn.execute("SELECT count(*) FROM feedback").fetchone() == (0,)


def test_feedback_on_a_persona_that_never_finished_training_is_refused(
    persona: tuple[Workspace, str],
) -> None:
    """A run stopped before it finished wrote no reply to judge (nothing can chat with it)."""
    ws, model_id = persona
    record = ws.store.model(model_id)
    ws.store.update_model(model_id, status="cancelled")
    with pytest.raises(
        FeedbackError,
        match=rf"model {model_id} version 1 is cancelled: resume it \(convsim train --resume",
    ):
        Feedback(ws.store).add(model_id, "good", MOMENT, "yes")
    assert ws.store.conn.execute("SELECT count(*) FROM feedback").fetchone() == (0,)
    ws.store.update_model(model_id, status=record.status)
    assert Feedback(ws.store).add(model_id, "good", MOMENT, "yes").version == 1


def test_an_import_with_a_broken_line_names_it_and_stores_nothing(
    persona: tuple[Workspace, str], tmp_path: Path
) -> None:
    ws, model_id = persona
    good = {"transcript": [{"speaker": "Riya", "text": "hi"}], "reply": "hey", "rating": 1}
    rows = [good, {**good, "rating": -1}, {**good, "transcript": "[Riya] hi\n[Sam] ok",
            "rating": "better", "better": "heyy"}]  # fmt: skip
    path = tmp_path / "feedback.jsonl"
    path.write_text("\n".join(map(json.dumps, rows)) + '\n{"transcript": [], "reply": "x"}\n')
    with pytest.raises(FeedbackError, match=rf"{path}:4: rating must be 1, -1 or \"better\""):
        Feedback(ws.store).import_jsonl(model_id, path)
    assert Feedback(ws.store).items(model_id) == []
    path.write_text("\n".join(map(json.dumps, rows)) + "\nnot json\n")
    with pytest.raises(FeedbackError, match=f"{path}:4: not a JSON object"):
        Feedback(ws.store).import_jsonl(model_id, path)
    for bad, says in [
        ({"rating": [1]}, 'rating must be 1, -1 or "better", not [1]'),
        ({"speaker": {"a": 1}}, "'speaker' must be text, not dict"),
        ({"reply": 5}, "'reply' must be text, not int"),
        ({"transcript": [{"speaker": "Riya", "text": None}]}, "transcript turn 1: expected"),
        ({"transcript": [{"speaker": "Riya\n[Sam", "text": "hi"}]}, "transcript turn 1: expe"),
    ]:
        path.write_text(json.dumps(rows[0]) + "\n" + json.dumps({**good, **bad}) + "\n")
        with pytest.raises(FeedbackError, match=re.escape(f"{path}:2: ") + ".*" + re.escape(says)):
            Feedback(ws.store).import_jsonl(model_id, path)
    path.write_text("[" * 100_000 + "\n")
    with pytest.raises(FeedbackError, match=f"{path}:1: not a JSON object"):
        Feedback(ws.store).import_jsonl(model_id, path)
    assert Feedback(ws.store).items(model_id) == []
    path.write_text("\n".join(map(json.dumps, rows)) + "\n")
    assert len(Feedback(ws.store).import_jsonl(model_id, path)) == 3
    kinds = [(i.kind, i.transcript) for i in Feedback(ws.store).items(model_id)]
    assert kinds[0] == ("good", [("Riya", "hi")])
    assert kinds[2] == ("better", [("Riya", "hi"), ("Sam", "ok")])


# -- updates --------------------------------------------------------------------------------------


def test_an_update_makes_a_version_scored_on_the_frozen_slices_and_the_chat_uses_it(
    persona: tuple[Workspace, str],
) -> None:
    ws, model_id = persona
    feedback(ws, model_id)
    events: list[str] = []
    out = learn(ws, model_id, settings=FAST, on_event=lambda e: events.append(e.stage))
    assert (out.version, out.status, out.promoted, out.current) == (2, "done", True, 2)
    assert out.counts["feedback"] == 4 and out.counts["pairs"] == 1
    assert out.counts["unpaired"] == 3 and out.counts["replay_pool"] > 100
    assert [s for s in dict.fromkeys(events)] == ["material", "score", "reference", "train", "done"]
    (row,) = out.table
    assert row.items == 4 and row.perplexity_before > 1 and row.perplexity_after > 1
    v2 = versions(ws.store, model_id)[1]
    assert v2.status == "done" and v2.kept and v2.record["forgetting"][0]["slice"] == row.slice
    assert adapter_gguf(ws, model_id) == v2.adapter_gguf and v2.adapter_gguf.is_file()
    assert {i.used_in for i in Feedback(ws.store).items(model_id)} == {2}
    slices = json.loads((Path(ws.store.model(model_id).path) / "slices.json").read_text())
    assert [len(s["items"]) for s in slices] == [4]
    with pytest.raises(NothingToLearn, match="no feedback since the last update"):
        learn(ws, model_id, settings=FAST)


def test_an_update_that_forgets_is_not_promoted_and_can_be_kept_or_rolled_back(
    persona: tuple[Workspace, str],
) -> None:
    ws, model_id = persona
    feedback(ws, model_id)
    strict = FAST.with_overrides(max_perplexity_rise=-0.5)  # any update fails it
    out = learn(ws, model_id, settings=strict)
    assert not out.promoted and out.current == 1
    assert "it forgot too much: sessions to" in out.reason and "(limit +-50%)" in out.reason
    assert adapter_gguf(ws, model_id) == versions(ws.store, model_id)[0].adapter_gguf
    assert not out.table[0].ok
    assert use_version(ws.store, model_id, 2).version == 2  # keep it anyway
    assert use_version(ws.store, model_id, 1).version == 1  # and roll back
    with pytest.raises(ValueError, match="has no version 5"):
        use_version(ws.store, model_id, 5)
    # The rolled-back update's feedback counts as new again: version 3 learns it too.
    assert learn(ws, model_id, settings=strict).counts["feedback"] == 4
    # Keeping version 2 after all: what it learnt is learnt, though version 3 learnt it last.
    use_version(ws.store, model_id, 2)
    with pytest.raises(NothingToLearn):
        learn(ws, model_id, settings=FAST)


def test_a_stopped_update_leaves_the_previous_version_in_use_and_resumes(
    persona: tuple[Workspace, str],
) -> None:
    ws, model_id = persona
    for n in range(12):
        Feedback(ws.store).add(model_id, "better", MOMENT, f"yes {n}", better=f"ya {n}")
    cancel = threading.Event()

    def stop_after_a_step(e: Any) -> None:
        if e.train is not None and e.train.kind == "step" and e.train.step == 1:
            cancel.set()

    settings = FAST.with_overrides(batch_size=1)
    out = learn(ws, model_id, settings=settings, on_event=stop_after_a_step, cancel=cancel)
    assert (out.status, out.current) == ("cancelled", 1)
    assert versions(ws.store, model_id)[1].status == "cancelled"
    assert adapter_gguf(ws, model_id) == versions(ws.store, model_id)[0].adapter_gguf
    steps: list[int] = []

    def step(e: Any) -> None:
        if e.train is not None and e.train.kind == "step":
            steps.append(e.train.step)

    done = learn(ws, model_id, resume=True, on_event=step)
    assert done.status == "done" and done.version == 2 and steps[0] == 2
    with pytest.raises(ValueError, match="no stopped update to resume"):
        learn(ws, model_id, resume=True)


def test_new_sessions_of_a_newer_export_are_learnt_and_held_out_as_a_new_slice(
    tiny: Any, tmp_path: Path
) -> None:
    from convsim.core.training import train_person

    lines = SAMPLE_CHAT.read_text(encoding="utf-8").splitlines(keepends=True)
    older = tmp_path / "WhatsApp Chat with Sam.txt"
    older.write_text("".join(lines[: len(lines) * 6 // 10]), encoding="utf-8")
    with Workspace.open(tmp_path / "home") as ws:
        (report,) = ws.import_export(older)
        run = train_person(ws, report.chat_id, "Sam", base=str(tiny.gguf_path),
                           overrides=TINY_TRAINING)  # fmt: skip
        with pytest.raises(NothingToLearn):
            learn(ws, run.model.id, settings=FAST)
        older.write_text("".join(lines), encoding="utf-8")  # the newer export
        (newer,) = ws.import_export(older)
        assert newer.chat_id == report.chat_id and newer.new > 100
        lenient = FAST.with_overrides(max_perplexity_rise=10.0, max_hits_drop=1.0)
        out = learn(ws, run.model.id, settings=lenient)
        assert out.promoted and out.counts["new_messages"] > 50 and out.counts["new_held_out"] > 0
        assert len(out.table) == 2  # the first period's slice, and the new one
        learned = versions(ws.store, run.model.id)[1].path / "learned.jsonl"
        assert len(learned.read_text().splitlines()) == out.counts["new_messages"]
        with pytest.raises(NothingToLearn):  # all of it is learnt now
            learn(ws, run.model.id, settings=FAST)


def test_forgetting_the_chat_removes_feedback_versions_and_their_files(
    persona: tuple[Workspace, str],
) -> None:
    ws, model_id = persona
    feedback(ws, model_id)
    learn(ws, model_id, settings=FAST)
    folder = Path(ws.store.model(model_id).path)
    ws.forget(ws.forget_plan(chat_id=ws.store.model(model_id).chat_id))
    for table in ("feedback", "model_versions"):
        assert ws.store.conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,)
    assert not folder.exists()


def test_an_update_holds_the_model_so_a_second_one_and_forgetting_it_wait(
    persona: tuple[Workspace, str],
) -> None:
    """An update trains into the persona's folder like a first training does: a second
    update at once, or a forget that pulls the folder away, is refused while it runs."""
    from convsim.core.workspace import TrainingRunning, is_training

    ws, model_id = persona
    feedback(ws, model_id)
    refused: list[str] = []

    def meanwhile(e: Any) -> None:
        if e.train is None or e.train.kind != "step" or refused:
            return
        assert is_training(ws.store.model(model_id))
        with Workspace.open(ws.locations.home) as other:
            with pytest.raises(TrainingRunning) as second:
                learn(other, model_id, settings=FAST)
            with pytest.raises(TrainingRunning) as forgotten:
                other.forget(other.forget_plan(person="Sam"))
        refused.extend([str(second.value), str(forgotten.value)])

    out = learn(ws, model_id, settings=FAST, on_event=meanwhile)
    assert out.status == "done" and len(refused) == 2
    assert all(r.startswith(f"model {model_id} is training now") for r in refused)
    assert not is_training(ws.store.model(model_id)) and len(versions(ws.store, model_id)) == 2


# -- the update objective ------------------------------------------------------------------------


def test_every_training_item_carries_replay_and_the_reference_is_the_model_before(
    tiny: Any, tmp_path: Path
) -> None:
    import math

    import torch

    from convsim.core.bases import load_for_training
    from convsim.core.locations import Locations
    from convsim.core.training.preference import MixItem, Update
    from convsim.core.training.trainer import TrainConfig, Trainer

    config = TrainConfig(
        rank=4, alpha=8.0, seq_len=64, batch_size=2, eval_every=0, samples=0, precision="fp32"
    )  # exact sums: float32 rounding only
    new = [{"type": "text", "context": "[Riya] hi\n", "target": f"[Sam] ya {n}\n"}
           for n in range(6)]  # fmt: skip
    old = [{"type": "text", "context": "[Riya] hey\n", "target": f"[Sam] old {n}\n"}
           for n in range(20)]  # fmt: skip
    pairs = [{"type": "pair", "context": "[Riya] ok?\n", "chosen": "[Sam] ya\n",
              "rejected": "[Sam] yes\n", "weight": 1.0}] * 3  # fmt: skip
    objective = Update(replay=0.5)
    model, tokenizer = load_for_training(tiny.gguf_path, Locations.from_env(tmp_path))
    replay = [{**ex, "replay": True} for ex in old]
    trainer = Trainer(model, tokenizer, new + replay + pairs, new[:2], config, tmp_path / "run",
                      objective=objective)  # fmt: skip
    # Six text units and one unit of three pairs, each with replay added to it.
    segments = [s for item in Update(0).prepare(old, trainer.setup, training=False)
                for s in item.segments]  # fmt: skip
    replayed, longest = {s.key for s in segments}, max(len(s.ids) for s in segments)
    assert len(trainer.train_rows) == 7
    for item in trainer.train_rows:
        own = sum(s.tokens for s in item.segments if s.key not in replayed)
        again = sum(s.tokens for s in item.segments if s.key in replayed)
        assert own <= again < own + longest  # half of the item, give or take one example
    # Before any step the model is its own reference: every DPO margin is 0, so a pair's
    # loss is log 2, beside the chosen reply's next-message loss.
    objective.reference(trainer.model, trainer.train_rows, trainer.setup)
    (paired,) = [i for i in trainer.train_rows if i.pairs]
    trainer.model.eval()
    with torch.no_grad():
        total = float(objective.loss(trainer.model, [paired], trainer.setup).total)
        logps, counts = objective.logprobs(trainer.model, paired, trainer.setup)
    lm = [(float(lp), n) for s, lp, n in zip(paired.segments, logps, counts, strict=True)
          if s.lm_weight]  # fmt: skip
    next_message = -sum(lp for lp, _ in lm) / sum(n for _, n in lm)
    assert total == pytest.approx(next_message + math.log(2), abs=1e-4)
    # A pair is what the edit changed ("ya" for "yes") in the chosen reply (next-message
    # tokens too) and in the rejected one, which shares the chosen one's context in the row;
    # every segment scores exactly as when it is computed alone.
    sides = [(paired.segments[c], paired.segments[r]) for c, r, _ in paired.pairs]
    assert len(sides) == 3
    for chosen, rejected in sides:
        assert (chosen.lm_weight, rejected.lm_weight) == (1.0, 0.0)
        assert rejected.shared == chosen.loss_start > 3 and chosen.shared == 0
        assert 0 < len(chosen.ids) - chosen.loss_start <= 2
    with torch.no_grad():
        for i, seg in enumerate(paired.segments):
            alone = MixItem((replace(seg, shared=0),))
            (logp,), _ = objective.logprobs(trainer.model, alone, trainer.setup)
            assert float(logp) == pytest.approx(float(logps[i]), abs=1e-4)
    # Only the change is scored: the words before it and after it are the persona's own. A
    # deletion scores the token after it.
    decode = trainer.setup.tokenizer.decode
    for chosen_text, rejected_text, change in (
        ("ok you there", "ok u there", ("you", "u")),
        ("ok", "ok!!", ("", "!!")),
    ):
        pair = {"type": "pair", "context": "[Riya] ok?\n", "chosen": f"[Sam] {chosen_text}\n",
                "rejected": f"[Sam] {rejected_text}\n"}  # fmt: skip
        (item,) = objective.prepare([pair], trainer.setup, training=False)
        chosen, rejected = item.segments
        assert rejected.shared == chosen.loss_start and item.pairs == ((0, 1, 1.0),)
        scored = [decode(s.ids[s.loss_start :]).strip() for s in (chosen, rejected)]
        assert tuple(scored) == change and chosen.tokens > chosen.loss_start


# -- the command line -----------------------------------------------------------------------------


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    from convsim.tui.cli import main

    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_the_command_line_adds_lists_learns_and_rolls_back(
    persona: tuple[Workspace, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    ws, model_id = persona
    monkeypatch.setenv("CONVSIM_HOME", str(tmp_path / "home"))
    transcript = tmp_path / "before.txt"
    transcript.write_text("[Riya] are you coming tonight?\n", encoding="utf-8")
    code, out, _ = cli(capsys, "feedback", "add", model_id, "--transcript", str(transcript),
                       "--reply", "yes", "--better", "ya", "--json")  # fmt: skip
    added = json.loads(out)
    assert (
        code == 0
        and added["kind"] == "better"
        and added["transcript"] == [{"speaker": "Riya", "text": "are you coming tonight?"}]
    )
    code, _, err = cli(capsys, "feedback", "add", model_id, "--reply", "yes", "--better", "yes")
    assert code == 2 and "the edit is the same as the reply" in err
    lines = tmp_path / "more.jsonl"
    lines.write_text('{"transcript": [], "reply": "hey", "rating": -1}\n{"reply": "x"}\n')
    code, _, err = cli(capsys, "feedback", "import", model_id, str(lines))
    assert code == 2 and f"{lines}:2: missing 'transcript'" in err
    lines.write_text('{"transcript": [], "reply": "hey", "rating": -1}\n')
    assert cli(capsys, "feedback", "import", model_id, str(lines), "--json")[0] == 0
    code, out, _ = cli(capsys, "feedback", "list", model_id, "--json")
    assert [i["kind"] for i in json.loads(out)] == ["better", "bad"]

    code, out, _ = cli(capsys, "learn", model_id, "--json", "--slice-items", "4",
                       "--max-perplexity-rise", "10", "--max-hits-drop", "1")  # fmt: skip
    result = json.loads(out)
    assert code == 0 and set(result) == {"model_id", "version", "status", "promoted", "reason",
                                         "current", "counts", "forgetting", "seconds"}  # fmt: skip
    assert (result["version"], result["promoted"], result["current"]) == (2, True, 2)
    assert set(result["forgetting"][0]) == {
        "slice", "items", "perplexity_before", "perplexity_after", "perplexity_change",
        "hits_at_1_before", "hits_at_1_after", "hits_at_1_change", "ok"}  # fmt: skip
    code, _, err = cli(capsys, "learn", model_id)
    assert code == 2 and "nothing new to learn" in err

    code, out, _ = cli(capsys, "models", "versions", model_id, "--json")
    assert [(v["version"], v["current"]) for v in json.loads(out)] == [(1, False), (2, True)]
    code, out, _ = cli(capsys, "models", "rollback", model_id, "1", "--json")
    assert json.loads(out)["current"] == 1 and adapter_gguf(ws, model_id).parent.name == model_id
    code, _, err = cli(capsys, "models", "rollback", model_id, "9")
    assert code == 2 and "has no version 9 (it has 1-2)" in err
    code, out, _ = cli(capsys, "models", "versions", model_id)
    assert "* v1" in out and "  v2" in out
    assert cli(capsys, "models", "--json")[0] == 0  # plain `models` still lists


def test_with_a_constitution_and_an_endpoint_the_judge_makes_the_pairs(
    persona: tuple[Workspace, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    from convsim.core.learning import constitution
    from convsim.core.memory import save_endpoint

    ws, model_id = persona
    monkeypatch.setenv("CONVSIM_HOME", str(tmp_path / "home"))
    with pytest.raises(ValueError, match="has no constitution to judge by"):
        learn(ws, model_id, settings=FAST.with_overrides(judge=True))
    rules = tmp_path / "sam.txt"
    for bad, why in ((rules, "No such file"), (tmp_path, "Is a directory")):
        code, _, err = cli(capsys, "feedback", "constitution", model_id, "--file", str(bad))
        assert code != 0 and f"{bad}: {why}" in err
    rules.write_bytes(b"Sam \xff\n")
    code, _, err = cli(capsys, "feedback", "constitution", model_id, "--file", str(rules))
    assert code != 0 and f"{rules}: not UTF-8 text" in err and constitution(ws, model_id) == ""
    rules.write_text("Sam never shouts.\nSam runs on Thursdays.\n", encoding="utf-8")
    code, out, _ = cli(capsys, "feedback", "constitution", model_id, "--file", str(rules))
    assert code == 0 and "Sam never shouts." in out
    with judging() as url:
        save_endpoint(ws.store, url, "judge")
        out = learn(ws, model_id, settings=FAST.with_overrides(judge=True, new_messages=False))
    assert out.counts["judged"] > 0 and out.counts["pairs"] == out.counts["judged"]
    assert Judge.asked and all("Sam never shouts." in p for p in Judge.asked)
    assert cli(capsys, "feedback", "constitution", model_id, "--clear")[0] == 0
    assert constitution(ws, model_id) == ""
