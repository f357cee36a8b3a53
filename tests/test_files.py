"""Atomic writes (`convsim.core.files`): a failure part-way leaves the previous file exactly as
it was and no temporary file behind."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convsim.core.files import publishing, replacing, write_json, write_jsonl, write_text


def test_writes_land_whole(tmp_path: Path) -> None:
    write_text(tmp_path / "a.txt", "héllo\n")
    write_json(tmp_path / "b.json", {"name": "Zoë", "n": 1})
    write_jsonl(tmp_path / "c.jsonl", [{"x": 1}, {"x": 2}])
    assert (tmp_path / "a.txt").read_text(encoding="utf-8") == "héllo\n"
    assert (tmp_path / "b.json").read_text(encoding="utf-8").endswith('"n": 1\n}\n')
    assert json.loads((tmp_path / "b.json").read_text(encoding="utf-8"))["name"] == "Zoë"
    rows = (tmp_path / "c.jsonl").read_text().splitlines()
    assert [json.loads(r) for r in rows] == [{"x": 1}, {"x": 2}]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.json", "c.jsonl"]


def test_a_failure_mid_write_keeps_the_previous_file(tmp_path: Path) -> None:
    target = write_text(tmp_path / "record.json", "old\n")

    def rows():
        yield {"ok": 1}
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        write_jsonl(target, rows())
    assert target.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["record.json"]


def test_replacing_yields_a_path_beside_the_target(tmp_path: Path) -> None:
    target = tmp_path / "model.gguf"
    with replacing(target) as tmp:
        assert tmp.parent == tmp_path and tmp != target
        tmp.write_bytes(b"GGUF")
        assert not target.exists()  # nothing is visible under the real name until the end
    assert target.read_bytes() == b"GGUF"


def test_publishing_moves_a_whole_folder_or_nothing(tmp_path: Path) -> None:
    with publishing(tmp_path) as (staging, publish):
        (staging / "train.jsonl").write_text("{}\n")
        publish(tmp_path / "dataset-1")
    assert (tmp_path / "dataset-1" / "train.jsonl").read_text() == "{}\n"
    with pytest.raises(RuntimeError), publishing(tmp_path) as (staging, _):
        (staging / "train.jsonl").write_text("{}\n")
        raise RuntimeError("stopped before publishing")
    assert [p.name for p in tmp_path.iterdir()] == ["dataset-1"]


def test_publishing_replaces_an_existing_folder_whole(tmp_path: Path) -> None:
    final = tmp_path / "checkpoint"
    final.mkdir()
    (final / "step.txt").write_text("1")
    (final / "only-in-old.txt").write_text("x")
    with publishing(tmp_path) as (staging, publish):
        (staging / "step.txt").write_text("2")
        publish(final)
    assert sorted(p.name for p in final.iterdir()) == ["step.txt"]
    assert (final / "step.txt").read_text() == "2"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]  # no .old, no staging left
