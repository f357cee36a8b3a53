"""The command-line contract (`convsim import/chats/messages/people/dataset/quickstart`),
driven through `main()` against a real store in a temporary CONVSIM_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_cli_chat import convsim_command, ctrl_c_at

from convsim.core.workspace import SAMPLE_CHAT
from convsim.tui.cli import main

Run = tuple[int, str, str]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> Run:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def jsonl(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


CHAT = (
    "12/01/2024, 09:00 - Riya: hey\n"
    "12/01/2024, 09:01 - Sam: yo\n"
    "what's up\n"
    "13/01/2024, 18:30 - Sam: <Media omitted>\n"
)


def test_import_json_contract_and_reimport(home: Path, tmp_path: Path, capsys) -> None:
    path = tmp_path / "WhatsApp Chat with Riya.txt"
    path.write_text(CHAT, encoding="utf-8")
    code, out, err = run(capsys, "import", str(path), "--json")
    assert code == 0, err
    (report,) = jsonl(out)
    assert set(report) >= {
        "chat_id",
        "format",
        "messages",
        "new",
        "participants",
        "first",
        "last",
        "kinds",
        "skipped",
    }
    assert report["format"] == "whatsapp" and report["messages"] == 3 and report["new"] == 3
    assert report["participants"] == [
        {"name": "Riya", "messages": 1},
        {"name": "Sam", "messages": 2},
    ]
    assert (report["first"], report["last"]) == ("2024-01-12T09:00:00", "2024-01-13T18:30:00")
    assert report["kinds"] == {"media": 1, "text": 2} and report["skipped"] == []

    code, out, _ = run(capsys, "import", str(path), "--json")
    assert code == 0 and jsonl(out)[0]["new"] == 0 and jsonl(out)[0]["chat_id"] == report["chat_id"]

    path.write_text(CHAT + "14/01/2024, 07:00 - Riya: morning\n", encoding="utf-8")
    code, out, _ = run(capsys, "import", str(path), "--json")
    assert jsonl(out)[0]["new"] == 1

    code, out, _ = run(capsys, "messages", str(report["chat_id"]), "--json")
    rows = jsonl(out)
    assert [set(r) for r in rows] == [{"id", "timestamp", "sender", "text", "kind"}] * 4
    assert [r["text"] for r in rows] == ["hey", "yo\nwhat's up", "<Media omitted>", "morning"]
    assert [r["timestamp"] for r in rows] == sorted(r["timestamp"] for r in rows)

    code, out, _ = run(capsys, "chats", "--json")
    (chat,) = jsonl(out)
    assert chat["chat_id"] == report["chat_id"] and chat["messages"] == 4


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("empty.txt", b"", "empty"),
        ("truncated.json", b'{"messages": [{"type": "message", "from": "A"', "line 1"),
        ("latin1.txt", "12/01/2024, 09:00 - Riya: caf\xe9\n".encode("latin-1"), "UTF-8"),
        ("notes.txt", b"just some notes\nnothing else\n", "not a chat export"),
    ],
)
def test_bad_input_fails_clearly_and_stores_nothing(
    home: Path, tmp_path: Path, capsys, name: str, content: bytes, expected: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    code, out, err = run(capsys, "import", str(path))
    assert code != 0 and out == ""
    assert str(path) in err and expected in err
    assert len(err.strip().splitlines()) == 1  # one sentence, no traceback
    assert run(capsys, "chats", "--json")[1] == ""


def test_import_sample_and_the_summary_line(home: Path, capsys) -> None:
    code, out, _ = run(capsys, "import", "--sample")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "Imported 'sample_whatsapp' (whatsapp) as chat 1"
    # 884 messages plus one system notice were stored: the line says both, so they add up.
    assert lines[1].startswith("  884 messages and 1 system notice, 885 new in the store, 2025-")
    code, out, _ = run(capsys, "import", str(SAMPLE_CHAT))  # the same file again: nothing new
    assert code == 0 and ", 0 new in the store," in out.splitlines()[1]


@pytest.mark.parametrize("argv", [["import"], ["import", "chat.txt", "--sample"]])
def test_import_needs_exactly_one_of_a_path_and_sample(home: Path, capsys, argv) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "path" in err and "--sample" in err
    assert not (home / "convsim.db").exists()


def test_bad_inputs_that_are_not_files(home: Path, tmp_path: Path, capsys) -> None:
    empty_dir = tmp_path / "folder"
    empty_dir.mkdir()
    code, _, err = run(capsys, "import", str(empty_dir))
    assert code != 0 and str(empty_dir) in err and "folder" in err
    import zipfile

    zpath = tmp_path / "photos.zip"
    with zipfile.ZipFile(zpath, "w") as z:
        z.writestr("IMG-0001.jpg", b"\xff\xd8\xff")
    code, _, err = run(capsys, "import", str(zpath))
    assert code != 0 and str(zpath) in err and "zip" in err
    code, _, err = run(capsys, "import", str(tmp_path / "missing.txt"))
    assert code != 0 and "missing.txt" in err
    pipe = tmp_path / "pipe"  # as `convsim import <(unzip -p export.zip)` gives
    os.mkfifo(pipe)
    code, _, err = run(capsys, "import", str(pipe))
    assert code == 2 and f"{pipe}: not a file (a pipe or a device)" in err


def test_ambiguous_date_order_asks_for_a_flag_then_remembers(home: Path, tmp_path: Path, capsys):
    path = tmp_path / "WhatsApp Chat with Ana.txt"
    # Every date reads both ways and is in order both ways: truly ambiguous.
    path.write_text("03/04/2024, 09:00 - Ana: hi\n03/04/2024, 09:05 - Bo: hello\n", "utf-8")
    code, _, err = run(capsys, "import", str(path))
    assert code != 0 and "--date-order" in err and str(path) in err
    code, out, err = run(capsys, "import", str(path), "--date-order", "mdy", "--json")
    assert code == 0, err
    assert jsonl(out)[0]["first"] == "2024-03-04T09:00:00"
    path.write_text(path.read_text("utf-8") + "03/04/2024, 10:00 - Ana: later\n", "utf-8")
    code, out, err = run(capsys, "import", str(path), "--json")  # no flag: remembered
    assert code == 0, err
    assert jsonl(out)[0]["new"] == 1 and jsonl(out)[0]["last"] == "2024-03-04T10:00:00"


def test_people_merge_and_me(home: Path, tmp_path: Path, capsys) -> None:
    a = tmp_path / "a.txt"
    a.write_text(CHAT, "utf-8")
    b = tmp_path / "b.txt"
    b.write_text(
        "20/02/2024, 10:00 - Riya K: from my new phone\n21/02/2024, 10:00 - Jo: ok\n", "utf-8"
    )
    id_a = jsonl(run(capsys, "import", str(a), "--json")[1])[0]["chat_id"]
    id_b = jsonl(run(capsys, "import", str(b), "--json")[1])[0]["chat_id"]
    assert id_a != id_b
    code, out, err = run(
        capsys, "people", "merge", "Riya", f"{id_a}:Riya", f"{id_b}:Riya K", "--json"
    )
    assert code == 0, err
    merged = {(r["chat_id"], r["name"]) for r in jsonl(out) if r["person"] == "Riya"}
    assert merged == {(id_a, "Riya"), (id_b, "Riya K")}
    code, _, err = run(capsys, "people", "merge", "X", f"{id_a}:Nobody")
    assert code != 0 and "Nobody" in err
    code, out, _ = run(capsys, "people", "me", str(id_a), "Sam", "--json")
    assert [r["name"] for r in jsonl(out) if r["me"]] == ["Sam"]


def test_importing_again_with_your_name_keeps_you_once(home: Path, capsys) -> None:
    """iMessage and SMS exports only say "me": imported first as "Me", then with `--me Alex`,
    the same messages are the same messages, still under the name made from them first."""
    backup = Path(__file__).parent / "fixtures" / "sms" / "sms-20240302083000.xml"
    code, out, err = run(capsys, "import", str(backup), "--json")
    assert code == 0, err
    first = {r["title"]: r for r in jsonl(out)}
    code, out, err = run(capsys, "import", str(backup), "--me", "Alex", "--json")
    assert code == 0, err
    again = {r["title"]: r for r in jsonl(out)}
    assert {t: r["new"] for t, r in again.items()} == dict.fromkeys(first, 0)
    assert "you are 'Me' in this chat" in again["Riya"]["warnings"][0]
    chat_id = first["Riya"]["chat_id"]
    code, out, _ = run(capsys, "messages", str(chat_id), "--json")
    senders = {m["sender"] for m in jsonl(out)}
    assert senders == {"Riya", "Me"}


def test_the_same_log_imported_again_as_another_format_is_the_same_chat(
    home: Path, tmp_path: Path, capsys
) -> None:
    """`[2024-01-12, 09:00] Name: text` is both a WhatsApp and a Signal layout."""
    log = tmp_path / "log.txt"
    log.write_text("".join(f"[2024-01-{d:02d}, 09:00] {who}: day {d}\n"
                           for d in range(1, 13) for who in ("Ana", "Bo")))  # fmt: skip
    code, out, err = run(capsys, "import", str(log), "--json")
    assert code == 0, err
    (first,) = jsonl(out)
    code, out, err = run(capsys, "import", str(log), "--format", "signal", "--json")
    assert code == 0, err
    (again,) = jsonl(out)
    assert (again["chat_id"], again["new"]) == (first["chat_id"], 0)


def test_dataset_command(home: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run(capsys, "import", str(SAMPLE_CHAT), "--json")
    assert code == 0, err
    chat_id = jsonl(out)[0]["chat_id"]
    code, out, err = run(capsys, "dataset", str(chat_id), "--as", "Sam", "--json")
    assert code == 0, err
    (ds,) = jsonl(out)
    folder = Path(ds["path"])
    assert folder.is_relative_to(home)
    train = jsonl((folder / "train.jsonl").read_text("utf-8"))
    assert ds["stats"]["train_examples"] == len(train) > 100
    assert all(ex["target"].startswith("[Sam] ") for ex in train)
    assert json.loads((folder / "config.json").read_text())["target"] == "Sam"
    assert ds["samples"] and all("[Sam] " in s for s in ds["samples"])

    code, _, err = run(capsys, "dataset", str(chat_id), "--as", "Nobody")
    assert code != 0 and "Nobody" in err and "Sam" in err
    code, _, err = run(capsys, "dataset", "999", "--as", "Sam")
    assert code != 0 and "999" in err


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["dataset", "1", "--as", "Sam", "--gap", "0"], "--gap must be > 0"),
        (["dataset", "1", "--as", "Sam", "--context", "0"], "--context must be at least 1"),
        (["dataset", "1", "--as", "Sam", "--validation", "1"], "--validation must be in [0, 1)"),
        (["dataset", "1", "--as", "Sam", "--tag", "Sam=Ri]ya"], "tag for 'Sam' must be"),
        (["dataset", "1", "--as", "Sam", "--tag", "Nobody=X"], "a tag for 'Nobody', who sent no"),
        (["dataset", "1", "--as", "Sam", "--tag", "=X"], "--tag '=X': expected NAME=TAG"),
        (["train", "1", "--as", "Sam", "--lr", "0"], "learning_rate must be a number above 0"),
        (["train", "1", "--as", "Sam", "--alpha", "0"], "alpha must be a number above 0"),
        (["train", "1", "--as", "Sam", "--dropout", "1.5"], "dropout must be from 0 up to"),
        (["train", "1", "--as", "Sam", "--warmup-steps", "-1"], "warmup_steps and weight_decay"),
        (["train", "1", "--as", "Sam", "--target-modules", ""], "target_modules must be some of"),
        (["train", "1", "--as", "Sam", "--target-modules", "foo_proj"], "target_modules must be"),
        (["train", "1", "--as", "Sam", "--steps", "0"], "steps must be >= 1"),
        (["train", "1", "--as", "Sam", "--base", "/nowhere/x.gguf"], "/nowhere/x.gguf"),
        (["simulate", "sam-1", "--ctx", "64"], "--ctx must be 512 or more, not 64"),
        (["simulate", "sam-1", "--max-tokens", "0"], "--max-tokens must be 1 or more, not 0"),
        (["simulate", "sam-1", "--turns", "-2"], "--turns must be 1 or more, not -2"),
        (["simulate", "sam-1", "--seed", "-2"], "--seed must be from 0 to 4294967295 (or -1"),
        (["complete", "sam-1", "--as", "", "--partial", "x"], "--as '': expected a name"),
        (["complete", "sam-1", "--as", "Ri\nya", "--partial", "x"], "--as 'Ri\\nya': expected"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_stored(
    home: Path, capsys, argv: list[str], says: str
) -> None:
    """A setting out of its range is named in one line, before a dataset or a model row is
    written (a refused training run used to leave a dataset, or a failed model, behind)."""
    assert main(["import", str(SAMPLE_CHAT)]) == 0
    capsys.readouterr()
    code, _, err = run(capsys, *argv)
    assert code == 2 and says in err and "Traceback" not in err, err
    assert main(["models", "--json"]) == 0 and capsys.readouterr().out == ""
    from convsim.core.workspace import Workspace

    with Workspace.open(home) as ws:
        assert ws.store.datasets() == []


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["messages", "99999999999999999999"], "chat id: 99999999999999999999 is out of range"),
        (["memory", "pin", "99999999999999999999"], "fact id: 99999999999999999999 is out of"),
        (["simulate", "sam-1", "--temperature", "nan"], "temperature: expected a finite number"),
        (["simulate", "sam-1", "--temperature", "inf"], "temperature: expected a finite number"),
    ],
)
def test_numbers_no_command_can_use_are_refused_by_the_parser(
    home: Path, capsys, argv: list[str], says: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and says in err, err


def test_a_data_folder_that_cannot_be_made_is_named_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    taken = tmp_path / "a file"
    taken.write_text("not a folder")
    for home in (taken, taken / "below"):
        monkeypatch.setenv("CONVSIM_HOME", str(home))
        code, _, err = run(capsys, "chats")
        assert code == 2 and err.startswith(f"convsim: error: {home}: "), err
        assert "CONVSIM_HOME" in err and "Traceback" not in err


@pytest.mark.slow
def test_quickstart_runs_the_installed_console_script(home: Path) -> None:
    """The README's main job, on the real default base: sample chat → train → export → reply.
    Ctrl-C during its training stops the run with a checkpoint; the next quickstart goes on
    with that run (no second dataset or model)."""
    status, out, err = ctrl_c_at("step 1/3", "quickstart", "--steps", "3")
    assert status == 0, err[-3000:]
    assert "Dataset 1 for 'Sam'" in out
    assert "Stopped at step " in out and "Run convsim quickstart to go on." in out
    assert "Traceback" not in err

    cmd = convsim_command()
    done = subprocess.run([*cmd, "quickstart", "--steps", "3"], capture_output=True, text=True,
                          timeout=900)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert str(home) in out and "Continuing the training sam-1 that was stopped" in out
    assert not (home / "datasets" / "2").exists() and not (home / "models" / "sam-2").exists()
    assert (home / "datasets" / "1" / "train.jsonl").stat().st_size > 0
    assert (home / "models" / "sam-1" / "adapter.gguf").exists()
    assert (home / "models" / "sam-1" / "sam-1-q8_0.gguf").exists()
    reply = [line.strip() for line in out.split("Simulated reply:")[1].strip().splitlines()]
    assert reply[0].startswith("[Riya] ") and reply[1].startswith("[Sam] ")
    assert len(reply[1]) > len("[Sam] ")
    # The libraries' own progress bars and warnings stay off the user's terminal.
    assert "Converting and de-quantizing" not in done.stderr and "Warning" not in done.stderr


def test_a_closed_pipe_ends_output_quietly(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "chat.txt"
    path.write_text(CHAT * 2000, encoding="utf-8")  # more output than a pipe buffer holds
    cmd = convsim_command()
    subprocess.run([*cmd, "import", str(path)], check=True, capture_output=True)
    shell = f"{' '.join(cmd)} messages 1 --json | head -n 1"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True)
    assert json.loads(done.stdout)["id"] == 1
    assert "Traceback" not in done.stderr and "BrokenPipe" not in done.stderr


def test_stays_offline_unless_a_download_is_asked_for(home: Path) -> None:
    code = (
        "import os, sys\n"
        "from convsim.tui.cli import main\n"
        "main(sys.argv[1:])\n"
        "print('HF_HUB_OFFLINE =', os.environ.get('HF_HUB_OFFLINE'))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}

    def offline_after(*argv: str) -> str:
        done = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env
        )
        return done.stdout.strip().splitlines()[-1]

    assert offline_after("chats") == "HF_HUB_OFFLINE = 1"
    # Asking for a Hub model is asking for the network (chat 999 doesn't exist: it stops there).
    assert offline_after("train", "999", "--as", "X", "--base", "hf:o/r/f.gguf") == (
        "HF_HUB_OFFLINE = None"
    )


def test_every_train_flag_is_a_training_setting() -> None:
    from convsim.core.training.trainer import TrainConfig
    from convsim.tui.cli.main import build_parser
    from convsim.tui.cli.models import _overrides

    argv = ["train", "1", "--as", "Sam", "--lr", "0.01", "--rank", "4", "--precision", "fp32"]
    overrides = _overrides(build_parser().parse_args(argv))
    TrainConfig.check_keys(overrides)  # raises for a flag mapped to a setting that is gone
    assert overrides["learning_rate"] == 0.01 and overrides["rank"] == 4
    assert overrides["precision"] == "fp32"


def test_unusable_models_get_the_command_that_fixes_them(home: Path, capsys) -> None:
    from convsim.core.store import ModelRecord
    from convsim.core.workspace import Workspace

    with Workspace.open(home) as ws:
        for model_id, status in (("sam-1", "cancelled"), ("sam-2", "ready")):
            folder = home / "models" / model_id
            folder.mkdir(parents=True)
            ws.store.add_model(
                ModelRecord(
                    id=model_id, chat_id=None, dataset_id=None, person="Sam", base="base.gguf",
                    base_sha256="0" * 64, created="2026-01-01T00:00:00", status=status,
                    path=str(folder),
                )
            )  # fmt: skip
    code, _, err = run(capsys, "export", "sam-1")
    assert code == 2 and "model sam-1 is not ready (cancelled)" in err
    assert "finish it with: convsim train --resume sam-1" in err
    code, _, err = run(capsys, "export", "sam-2")
    assert code == 2 and "adapter.gguf: the adapter of model sam-2 is missing" in err
    assert "train it again with: convsim train" in err


def test_models_tells_a_run_still_training_from_one_that_was_killed(home: Path, capsys) -> None:
    from convsim.core import locks
    from convsim.core.store import ModelRecord
    from convsim.core.workspace import TRAINING_LOCK, Workspace

    folder = home / "models" / "sam-1"
    folder.mkdir(parents=True)
    with Workspace.open(home) as ws:
        ws.store.add_model(
            ModelRecord("sam-1", None, None, "Sam", "base.gguf", "0" * 64, "2026-01-01T00:00:00",
                        "training", str(folder))
        )  # fmt: skip
    code, out, _ = run(capsys, "models")
    assert code == 0 and out.split()[:3] == ["sam-1", "Sam", "stopped"]
    code, out, _ = run(capsys, "models", "--json")
    assert json.loads(out)["status"] == "training" and json.loads(out)["running"] is False
    code, out, _ = run(capsys, "models", "--json", "versions", "sam-1")  # --json either side
    assert [v["status"] for v in json.loads(out)] == ["stopped"]
    with locks.acquire(folder / TRAINING_LOCK):  # as `convsim train` in another terminal
        code, out, _ = run(capsys, "models")
        assert out.split()[:3] == ["sam-1", "Sam", "training"]
        code, out, _ = run(capsys, "models", "versions", "sam-1", "--json")
        assert [v["status"] for v in json.loads(out)] == ["training"]
        code, out, _ = run(capsys, "models", "--json")
        assert json.loads(out)["running"] is True
        code, _, err = run(capsys, "train", "--resume", "sam-1")
        assert code == 2 and "model sam-1 is training now" in err
    # Killed before its training began (the base was still loading): nothing to resume.
    code, _, err = run(capsys, "train", "--resume", "sam-1")
    assert code == 2 and "model sam-1 stopped before its training began: train again" in err
    code, out, _ = run(capsys, "models")
    assert out.split()[:3] == ["sam-1", "Sam", "failed"]
