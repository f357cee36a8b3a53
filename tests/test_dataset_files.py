"""Dataset folders on disk (core/data/dataset_files.py): source ids, format versions, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from convsim.core.chats.messages import MEDIA, SYSTEM, TEXT, StoredMessage
from convsim.core.data.dataset import DatasetConfig, Example, build
from convsim.core.data.dataset_files import (
    FORMAT_VERSION,
    DatasetFileError,
    read_dataset,
    write_dataset,
)
from convsim.core.workspace import SAMPLE_CHAT, Workspace


def write_v1(folder: Path, dataset) -> None:
    """A dataset folder exactly as convsim wrote it before the format had a version
    (Workspace.build_dataset up to commit 86c50f7)."""
    folder.mkdir(parents=True)
    for split, examples in (("train", dataset.train), ("validation", dataset.validation)):
        with open(folder / f"{split}.jsonl", "w", encoding="utf-8") as f:
            for ex in examples:
                row = {
                    "context": ex.context,
                    "target": ex.target,
                    "session": ex.session,
                    "timestamp": ex.timestamp,
                }
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    (folder / "config.json").write_text(
        json.dumps(dataset.config.to_json(), indent=2, ensure_ascii=False)
    )
    (folder / "stats.json").write_text(json.dumps(dataset.stats(), indent=2))


def small_chat() -> list[StoredMessage]:
    """Ids are deliberately not 1..n, and a photo and a system line sit mid-session."""
    rows = [
        (11, "2020-01-17T09:00:00", "Riya", "hey are we still going tonight?", TEXT),
        (12, "2020-01-17T09:01:00", "Sam", "yeah! want to meet at 7?", TEXT),
        (15, "2020-01-17T09:02:00", "Riya", "<Media omitted>", MEDIA),
        (16, "2020-01-17T09:03:00", None, "Riya changed the group name", SYSTEM),
        (17, "2020-01-17T09:04:00", "Riya", "sounds perfect", TEXT),
        (20, "2020-01-17T09:05:00", "Sam", "see you then :)", TEXT),
        (21, "2020-01-17T15:00:00", "Riya", "home safe?", TEXT),
        (22, "2020-01-17T15:01:00", "Sam", "yes! thanks for tonight", TEXT),
    ]
    return [StoredMessage(*row) for row in rows]


def test_examples_carry_the_ids_of_their_messages_and_skip_dropped_ones() -> None:
    config = DatasetConfig(target="Sam", media="drop", validation_fraction=0, max_context=16)
    examples = build(small_chat(), config).train
    assert [(e.context_ids, e.target_id) for e in examples] == [
        ((11,), 12),
        ((11, 12, 17), 20),  # the dropped photo (15) and system line (16) are not listed
        ((21,), 22),  # a new session: nothing from before the gap
    ]
    # With placeholders the photo is a turn of the context, so it is listed.
    kept = build(small_chat(), DatasetConfig(target="Sam", validation_fraction=0)).train
    assert kept[1].context_ids == (11, 12, 15, 17) and "<media>" in kept[1].context


def test_write_then_read_gives_the_same_dataset(tmp_path: Path) -> None:
    dataset = build(small_chat(), DatasetConfig(target="Sam", validation_fraction=0.4))
    folder = tmp_path / "ds"
    folder.mkdir()
    stats = write_dataset(folder, dataset)
    assert json.loads((folder / "format.json").read_text())["version"] == FORMAT_VERSION == 3
    files = read_dataset(folder)
    assert files.version == 3 and files.config == dataset.config and files.stats == stats
    assert files.train == dataset.train and files.validation == dataset.validation
    assert dataset.validation and all(e.target_id is not None for e in files.train)
    assert [e.next_tag for e in files.train] == ["[Riya]", ""]


def test_a_version_2_folder_loads_without_next_tags(tmp_path: Path) -> None:
    dataset = build(small_chat(), DatasetConfig(target="Sam", validation_fraction=0.4))
    folder = tmp_path / "ds"
    folder.mkdir()
    write_dataset(folder, dataset)
    (folder / "format.json").write_text(json.dumps({"format": "convsim-dataset", "version": 2}))
    for split in ("train", "validation"):
        path = folder / f"{split}.jsonl"
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        for row in rows:
            del row["next_tag"]  # as format 2 wrote them
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    files = read_dataset(folder)
    assert files.version == 2 and all(e.next_tag == "" for e in files.train + files.validation)
    assert [e.target_id for e in files.train] == [e.target_id for e in dataset.train]


def test_a_version_1_folder_still_loads(tmp_path: Path) -> None:
    dataset = build(small_chat(), DatasetConfig(target="Sam", validation_fraction=0.4))
    write_v1(tmp_path / "old", dataset)
    files = read_dataset(tmp_path / "old")
    assert files.version == 1 and files.config == dataset.config
    assert [(e.context, e.target, e.session, e.timestamp) for e in files.train] == [
        (e.context, e.target, e.session, e.timestamp) for e in dataset.train
    ]
    assert all(e.context_ids == () and e.target_id is None for e in files.train + files.validation)


def test_workspace_dataset_ids_match_the_store(tmp_path: Path) -> None:
    with Workspace.open(tmp_path / "home") as ws:
        (report,) = ws.import_export(SAMPLE_CHAT)
        config = DatasetConfig(target="Sam", media="drop")
        record = ws.build_dataset(report.chat_id, config)
        files = ws.dataset(record.id)
        train, validation, sha = ws.dataset_files(record.id)
        messages = ws.store.messages(report.chat_id)
    assert (train, validation) == (files.train, files.validation) and len(sha) == 64
    by_id = {m.id: m for m in messages}
    # The messages a dataset with media dropped renders, in store order.
    rendered = [m.id for m in messages if m.kind == TEXT and m.sender and m.text.strip()]
    position = {message_id: i for i, message_id in enumerate(rendered)}
    examples = files.train + files.validation
    assert len(examples) == record.stats["target_turns"] > 100
    for ex in examples:
        target = by_id[ex.target_id]
        assert target.sender == "Sam" and ex.target == f"[Sam] {target.text.strip()}\n"
        assert target.timestamp == ex.timestamp
        # The context is the run of rendered messages right before the target, in order.
        end = position[ex.target_id]
        assert list(ex.context_ids) == rendered[end - len(ex.context_ids) : end]
        texts = [f"[{by_id[i].sender}] {by_id[i].text.strip()}\n" for i in ex.context_ids]
        assert "".join(texts) == ex.context
    assert any(len(ex.context_ids) > 1 for ex in examples)
    dropped = {m.id for m in messages if m.kind != TEXT}
    assert dropped and not dropped & {i for ex in examples for i in ex.context_ids}


def corrupt(folder: Path, name: str, line: int, change) -> None:
    path = folder / name
    rows = path.read_text(encoding="utf-8").splitlines()
    rows[line - 1] = change(rows[line - 1])
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    messages = small_chat() + [
        StoredMessage(30 + i, f"2020-01-18T10:0{i}:00", "Sam" if i % 2 else "Riya", f"m{i}", TEXT)
        for i in range(6)
    ]
    dataset = build(messages, DatasetConfig(target="Sam", validation_fraction=0))
    out = tmp_path / "ds"
    out.mkdir()
    write_dataset(out, dataset)
    return out


def set_field(key: str, value: object):
    def change(line: str) -> str:
        row = json.loads(line)
        row[key] = value
        return json.dumps(row)

    return change


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (set_field("target", 5), r"train.jsonl, line 2: field 'target' must be a string, not 5"),
        (set_field("context_ids", [1, "x"]), r"line 2: field 'context_ids' must hold integer"),
        (set_field("target_id", None), r"line 2: field 'target_id' must be an integer"),
        (set_field("next_tag", "Sam"), r"line 2: field 'next_tag' must be a turn's tag like"),
        (lambda line: line[:-3], r"train.jsonl, line 2: not valid JSON"),
        (lambda line: "[1, 2]", r"line 2: expected a JSON object, got list"),
    ],
)
def test_a_bad_row_names_file_line_and_field(folder: Path, change, message: str) -> None:
    corrupt(folder, "train.jsonl", 2, change)
    with pytest.raises(DatasetFileError, match=message) as caught:
        read_dataset(folder)
    assert caught.value.path == folder / "train.jsonl" and caught.value.line == 2


def test_a_missing_field_and_file_are_named(folder: Path) -> None:
    corrupt(folder, "train.jsonl", 3, lambda line: json.dumps(
        {k: v for k, v in json.loads(line).items() if k != "session"}
    ))  # fmt: skip
    with pytest.raises(DatasetFileError, match="line 3: field 'session' is missing"):
        read_dataset(folder)
    (folder / "train.jsonl").unlink()
    with pytest.raises(DatasetFileError, match=r"train.jsonl: missing"):
        read_dataset(folder)


def test_a_newer_format_is_refused_and_newer_config_keys_are_ignored(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "emoji_policy": "keep"}))
    files = read_dataset(folder)
    assert files.config.ignored_keys == ("emoji_policy",) and files.config.target == "Sam"
    (folder / "format.json").write_text(json.dumps({"format": "convsim-dataset", "version": 4}))
    with pytest.raises(DatasetFileError, match=r"format\.json: dataset format version 4 was"):
        read_dataset(folder)


def test_example_defaults_keep_old_constructor_calls_working() -> None:
    ex = Example("", "[Sam] hi\n", 0, "2020-01-17T09:00:00")
    assert ex.context_ids == () and ex.target_id is None
