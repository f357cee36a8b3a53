"""Feedback on a persona's messages, stored with everything needed to learn from it later.

An item is what the user said of one message (`kind`), the transcript before it, the message
itself (`reply`), the better text where the user gave one, and the candidates best-of-N drew.
Kinds, and what an update makes of them (`learning.material`):

- good / bad: thumbs up or down; an unpaired preference (KTO).
- better: the user edited the message; a pair (better over reply, DPO) and the better text as
  a next message to learn.
- regenerate: the user asked for another reply; a mild negative.
- taken / dismissed / edited: an autocomplete suggestion sent as it was, thrown away, or changed
  before sending (a pair, like better).

Contract: `Feedback(store)` writes one transaction per call and checks everything before it
writes: an unknown model or version, an empty edit or a broken line of an import raises
`FeedbackError` naming the field (and the file and line) and stores nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from convsim.core.data.turns import Turn, is_name, parse
from convsim.core.files import json_loads, read_text
from convsim.core.store import Store

__all__ = ["KINDS", "WEIGHTS", "Feedback", "FeedbackError", "FeedbackItem"]

KINDS = ("good", "bad", "better", "regenerate", "taken", "dismissed", "edited")
# How much an item weighs in the preference objective: a regenerate or a dismissed suggestion
# says less than a thumbs down.
WEIGHTS = {"good": 1.0, "bad": 1.0, "better": 1.0, "regenerate": 0.5, "taken": 0.5,
           "dismissed": 0.3, "edited": 1.0}  # fmt: skip
PAIRED = ("better", "edited")
# The settings key that holds the highest feedback id ever removed (ids are not given twice).
REMOVED_UPTO = "feedback.removed_upto"
DESIRABLE = ("good", "taken")


class FeedbackError(ValueError):
    """Feedback that cannot be stored; the message names the field, file and line."""


@dataclass(frozen=True)
class FeedbackItem:
    id: int
    model_id: str
    version: int  # the persona version that wrote the message
    kind: str  # one of KINDS
    speaker: str  # the tag the message was written under
    transcript: list[Turn]  # the conversation before the message
    reply: str  # the message the feedback is about
    better: str | None  # the user's better text (kinds better and edited)
    candidates: list[dict[str, Any]]  # best-of-N: {"text", "score"}, best first
    origin: str  # "chat", "cli", "import" or "judge"
    created: str
    used_in: int | None  # the version whose update learnt from it, if any

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "model_id": self.model_id,
            "version": self.version,
            "kind": self.kind,
            "speaker": self.speaker,
            "transcript": [{"speaker": s, "text": t} for s, t in self.transcript],
            "reply": self.reply,
            "better": self.better,
            "candidates": self.candidates,
            "origin": self.origin,
            "created": self.created,
            "used_in": self.used_in,
        }


# The table's `used_in` column is no longer read or written: `items` derives it from the versions.
_COLUMNS = ("id, model_id, version, kind, speaker, transcript, reply, better, candidates, origin,"
            " created")  # fmt: skip


class Feedback:
    """The feedback of one store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def add(
        self,
        model_id: str,
        kind: str,
        transcript: Sequence[Turn],
        reply: str,
        *,
        speaker: str | None = None,
        better: str | None = None,
        candidates: Sequence[dict[str, Any]] = (),
        version: int | None = None,
        origin: str = "chat",
    ) -> FeedbackItem:
        """Store one item and return it. `speaker` defaults to the model's person's tag;
        `version` to the version the chat uses now."""
        row = self._checked(model_id, kind, transcript, reply, speaker, better, version, "")
        with self.store.transaction() as conn:
            new_id = self._insert(conn, row, candidates, origin)
        return self.get(new_id)

    def add_many(self, model_id: str, rows: Iterable[dict[str, Any]], origin: str) -> list[int]:
        """Store several items in one transaction: all of them or, at the first bad one,
        none. Each row holds `add`'s arguments by name, and `where` for its error messages."""
        checked = []
        for row in rows:
            where = row.get("where", "")
            checked.append(
                (
                    self._checked(
                        model_id,
                        row.get("kind", ""),
                        row.get("transcript", ()),
                        row.get("reply", ""),
                        row.get("speaker"),
                        row.get("better"),
                        row.get("version"),
                        where,
                    ),
                    row.get("candidates", ()),
                )
            )
        with self.store.transaction() as conn:
            return [self._insert(conn, row, candidates, origin) for row, candidates in checked]

    def import_jsonl(self, model_id: str, path: Path) -> list[int]:
        """Items from a JSON Lines file, one object per line: `transcript` (a list of
        {"speaker", "text"}, of [speaker, text], or `[Name] message` lines as one string),
        `reply`, and `rating` 1 (good), -1 (bad) or "better" with `better` the better text.
        All lines are stored, or none: a broken line raises naming its number."""
        lines = read_text(path, FeedbackError).splitlines()
        rows = [_parse_line(path, n, line) for n, line in enumerate(lines, 1) if line.strip()]
        if not rows:
            raise FeedbackError(f"{path}: no feedback in the file (expected JSON lines)")
        return self.add_many(model_id, rows, "import")

    def items(self, model_id: str, *, unused: bool = False) -> list[FeedbackItem]:
        """The model's feedback, oldest first, each with `used_in` the newest kept version
        that learnt it (an update records the items it learnt; one not kept, or rolled back,
        does not count). `unused`: only the items no kept version learnt."""
        from convsim.core.training.versions import versions

        sql = f"SELECT {_COLUMNS} FROM feedback WHERE model_id = ? ORDER BY id"
        rows = self.store.conn.execute(sql, (model_id,)).fetchall()
        learnt: dict[int, int] = {}
        for v in versions(self.store, model_id):  # oldest first: the newest kept one wins
            if v.kept and v.status == "done":
                learnt.update((i, v.version) for i in v.record.get("feedback_ids", ()))
        items = [replace(_item(r), used_in=learnt.get(r[0])) for r in rows]
        return [i for i in items if i.used_in is None] if unused else items

    def get(self, item_id: int) -> FeedbackItem:
        row = self.store.conn.execute(
            f"SELECT {_COLUMNS} FROM feedback WHERE id = ?", (item_id,)
        ).fetchone()
        if row is None:
            raise FeedbackError(f"no feedback item {item_id}")
        return _item(row)

    def remove(self, model_id: str, item_ids: Sequence[int]) -> int:
        """Delete items of `model_id`; unknown ids raise and nothing is deleted."""
        item_ids = list(dict.fromkeys(item_ids))  # `remove 4 4` removes one item
        known = {i.id for i in self.items(model_id)}
        missing = [i for i in item_ids if i not in known]
        if missing:
            raise FeedbackError(f"model {model_id} has no feedback item {missing[0]}")
        with self.store.transaction() as conn:
            conn.executemany("DELETE FROM feedback WHERE id = ?", [(i,) for i in item_ids])
            # A removed id is never given again: a version's record names what it learnt by id.
            conn.execute(
                "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE"
                " SET value = max(CAST(value AS INTEGER), CAST(excluded.value AS INTEGER))",
                (REMOVED_UPTO, str(max(item_ids, default=0))),
            )
        return len(item_ids)

    # -- checks -------------------------------------------------------------------------------

    def _checked(
        self,
        model_id: str,
        kind: str,
        transcript: Any,
        reply: Any,
        speaker: str | None,
        better: Any,
        version: int | None,
        where: str,
    ) -> dict[str, Any]:
        from convsim.core.training.versions import current, versions

        at = f"{where}: " if where else ""
        try:
            record = self.store.model(model_id)
        except KeyError:
            raise FeedbackError(f"{at}no model {model_id!r} (see `convsim models`)") from None
        known = {v.version: v for v in versions(self.store, model_id)}
        if version is None:
            version = current(self.store, model_id).version
        elif version not in known:
            raise FeedbackError(f"{at}model {model_id} has no version {version} (it has "
                                f"{', '.join(map(str, known))})")  # fmt: skip
        status = known[version].status
        if status != "done":  # it never wrote a reply to judge
            how = (
                f"resume it (convsim train --resume {model_id})" if version == 1
                else f"resume it (convsim learn {model_id} --resume)" if status != "failed"
                else "give feedback on a finished version"
            )  # fmt: skip
            raise FeedbackError(f"{at}model {model_id} version {version} is {status}: {how}")
        if kind not in KINDS:
            raise FeedbackError(f"{at}kind must be one of {', '.join(KINDS)}, not {kind!r}")
        if not isinstance(reply, str) or not reply.strip():
            raise FeedbackError(f"{at}reply: expected the message's text, got {reply!r}")
        if kind in PAIRED:
            if not isinstance(better, str) or not better.strip():
                raise FeedbackError(f"{at}better: an edit needs the better text; it is empty")
            if better.strip() == reply.strip():
                raise FeedbackError(f"{at}better: the edit is the same as the reply")
        elif better is not None:
            raise FeedbackError(f"{at}better: only an edit (kind better or edited) has one")
        turns = _turns(transcript, at)
        return {
            "model_id": model_id,
            "version": version,
            "kind": kind,
            "speaker": speaker or record.person,
            "transcript": turns,
            "reply": reply.strip(),
            "better": better.strip() if isinstance(better, str) else None,
        }

    def _insert(self, conn: Any, row: dict[str, Any], candidates: Any, origin: str) -> int:
        (new_id,) = conn.execute(
            "SELECT max(coalesce((SELECT max(id) FROM feedback), 0),"
            " coalesce((SELECT CAST(value AS INTEGER) FROM settings WHERE key = ?), 0)) + 1",
            (REMOVED_UPTO,),
        ).fetchone()
        cursor = conn.execute(
            "INSERT INTO feedback (id, model_id, version, kind, speaker, transcript, reply,"
            " better, candidates, origin, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                new_id,
                row["model_id"],
                row["version"],
                row["kind"],
                row["speaker"],
                json.dumps(row["transcript"], ensure_ascii=False),
                row["reply"],
                row["better"],
                json.dumps(list(candidates), ensure_ascii=False),
                origin,
                datetime.now().isoformat(timespec="seconds"),
            ),
        )
        return int(cursor.lastrowid or 0)


def _turns(transcript: Any, at: str) -> list[Turn]:
    """A transcript as turns: a list of {"speaker", "text"} or [speaker, text], or a string of
    `[Name] message` lines."""
    if isinstance(transcript, str):
        try:
            return parse(transcript)
        except ValueError as e:
            raise FeedbackError(f"{at}transcript {e}") from None
    turns: list[Turn] = []
    if not isinstance(transcript, (list, tuple)):
        raise FeedbackError(f"{at}transcript: expected a list of turns, got {transcript!r}")
    for n, turn in enumerate(transcript, 1):
        if isinstance(turn, dict):
            turn = (turn.get("speaker"), turn.get("text"))
        if (
            isinstance(turn, (list, tuple))
            and len(turn) == 2
            and is_name(turn[0])
            and isinstance(turn[1], str)
        ):
            turns.append((turn[0].strip(), turn[1]))
        else:
            raise FeedbackError(
                f'{at}transcript turn {n}: expected {{"speaker": ..., "text": ...}}, got {turn!r}'
            )
    return turns


def _parse_line(path: Path, n: int, line: str) -> dict[str, Any]:
    where = f"{path}:{n}"
    try:
        obj = json_loads(line)
    except json.JSONDecodeError as e:
        raise FeedbackError(f"{where}: not a JSON object ({e.msg})") from None
    if not isinstance(obj, dict):
        raise FeedbackError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    for key in ("transcript", "reply"):
        if key not in obj:
            raise FeedbackError(f"{where}: missing {key!r}")
    rating = obj.get("rating", "better" if "better" in obj else None)
    kinds = {1: "good", -1: "bad", "better": "better"}
    if not isinstance(rating, (int, str)) or isinstance(rating, bool) or rating not in kinds:
        raise FeedbackError(f'{where}: rating must be 1, -1 or "better", not {rating!r}')
    for key in ("reply", "better", "speaker"):
        if obj.get(key) is not None and not isinstance(obj[key], str):
            raise FeedbackError(f"{where}: {key!r} must be text, not {type(obj[key]).__name__}")
    return {
        "where": where,
        "kind": kinds[rating],
        "transcript": obj["transcript"],
        "reply": obj["reply"],
        "better": obj.get("better"),
        "speaker": obj.get("speaker"),
    }


def _item(row: Sequence[Any]) -> FeedbackItem:
    id_, model_id, version, kind, speaker, transcript, reply, better, cands, origin, at = row
    turns = [(s, t) for s, t in json.loads(transcript)]
    return FeedbackItem(
        id_, model_id, version, kind, speaker, turns, reply, better, json.loads(cands), origin,
        at, None,
    )  # fmt: skip
