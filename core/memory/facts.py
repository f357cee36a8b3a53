"""Facts about people, in the store: every change recorded, nothing deleted silently.

A fact says something about one person (`key`: what it is about, `value`: what is true), with
the store ids of the messages it came from, where it came from (`origin`) and when it was first
and last seen. `Facts.add` is the one way in, for extraction and for the user alike, and applies
the rules that keep memory honest:
- the same value again (ignoring case, punctuation and word order) is a sighting of the fact
  already held: its sources and `last_seen` grow, no second fact;
- a different value for a single-valued key (where someone works, lives...) is a contradiction:
  the older fact becomes `superseded` (kept, pointing at its successor) and the pair is flagged
  in `fact_conflicts` until the user resolves it;
- a fact from a simulated conversation never overrides one from a real chat, and nothing
  overrides a pinned fact: the newcomer is kept as `contradicted` instead (the pinned pair is
  flagged for the user).
Every change (added, seen, edited, pinned, unpinned, removed, superseded, resolved) is a row in
`fact_events`. "Removed" is a status: only forgetting a chat or person deletes facts.
"""

from __future__ import annotations

import builtins
import json
import re
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any

from convsim.core.memory.lexicon import KEY_WORDS
from convsim.core.store import Store

ORIGINS = ("chat", "live", "user", "simulated")  # chat = an imported chat
STATUSES = ("active", "superseded", "contradicted", "pinned", "removed")
SHOWN = ("active", "pinned")  # what retrieval and the prompt use
# Keys that hold several values at once: a new value is another fact, not a contradiction.
MULTI_VALUED = frozenset(
    {
        "likes",
        "dislikes",
        "hobby",
        "pet",
        "family",
        "friend",
        "plan",
        "event",
        "other",
        "trip",
        "sibling",
        "child",
        "parent",
        "colleague",
    }
)
_WORD = re.compile(r"\w+")


class FactError(ValueError):
    """A fact that cannot be stored as asked (unknown id, empty value, bad status...)."""


@dataclass
class Fact:
    id: int
    chat_id: int | None
    person: str
    key: str
    value: str
    sources: list[int]
    origin: str
    first_seen: str
    last_seen: str
    importance: float
    status: str
    replaced_by: int | None = None

    @property
    def text(self) -> str:
        return f"{self.person}: {self.key}: {self.value}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Conflict:
    old: Fact
    new: Fact
    at: str
    resolution: str | None


@dataclass
class Event:
    fact_id: int
    at: str
    action: str
    detail: dict[str, Any]


def norm_key(key: str) -> str:
    return " ".join(key.lower().split())


_FILLER = frozenset(["a", "an", "the", "my", "his", "her", "their", "our", "at", "in", "on", "of"])


def norm_value(value: str) -> frozenset[str]:
    return frozenset(_WORD.findall(value.lower())) - _FILLER


def same_value(a: str, b: str) -> bool:
    """The same fact in other words: equal words (case, punctuation, order and articles aside),
    or one value's words all inside the other's ("bakery" / "the bakery on Elm St")."""
    x, y = norm_value(a), norm_value(b)
    return bool(x and y) and (x <= y or y <= x)


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


_COLUMNS = (
    "id, chat_id, person, key, value, sources, origin, first_seen, last_seen, importance,"
    " status, replaced_by"
)


def _fact(row: Sequence[Any]) -> Fact:
    values = list(row)
    values[5] = json.loads(values[5])
    return Fact(*values)


class Facts:
    """The facts of one store. Each method that writes is one transaction (or part of the
    caller's, when one is open)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.conn = store.conn

    # -- reading ------------------------------------------------------------------------------

    def get(self, fact_id: int) -> Fact:
        row = self.conn.execute(f"SELECT {_COLUMNS} FROM facts WHERE id = ?", (fact_id,))
        found = row.fetchone()
        if found is None:
            raise FactError(f"no fact with id {fact_id}")
        return _fact(found)

    def list(
        self,
        chat_id: int | None = None,
        person: str | None = None,
        status: Iterable[str] | None = None,
        origin: str | None = None,
    ) -> list[Fact]:
        """Facts, newest sighting first; `status` None means every status but removed."""
        where: builtins.list[str] = []
        args: builtins.list[object] = []
        if chat_id is not None:
            where.append("chat_id = ?")
            args.append(chat_id)
        if person is not None:
            where.append("person = ?")
            args.append(person)
        if origin is not None:
            where.append("origin = ?")
            args.append(origin)
        wanted = [s for s in STATUSES if s != "removed"] if status is None else list(status)
        where.append(f"status IN ({', '.join('?' * len(wanted))})")
        args.extend(wanted)
        rows = self.conn.execute(
            f"SELECT {_COLUMNS} FROM facts WHERE {' AND '.join(where)}"
            " ORDER BY last_seen DESC, id DESC",
            args,
        )
        return [_fact(r) for r in rows]

    def conflicts(
        self, chat_id: int | None = None, unresolved: bool = True
    ) -> builtins.list[Conflict]:
        rows = self.conn.execute(
            "SELECT c.old_id, c.new_id, c.at, c.resolution FROM fact_conflicts c"
            " JOIN facts f ON f.id = c.new_id"
            " WHERE (? IS NULL OR f.chat_id = ?) AND (? = 0 OR c.resolution IS NULL)"
            " ORDER BY c.at, c.new_id",
            (chat_id, chat_id, int(unresolved)),
        ).fetchall()
        return [Conflict(self.get(o), self.get(n), at, r) for o, n, at, r in rows]

    def history(self, fact_id: int) -> builtins.list[Event]:
        rows = self.conn.execute(
            "SELECT fact_id, at, action, detail FROM fact_events WHERE fact_id = ? ORDER BY id",
            (fact_id,),
        )
        return [Event(f, at, a, json.loads(d)) for f, at, a, d in rows]

    # -- writing ------------------------------------------------------------------------------

    def add(
        self,
        person: str,
        key: str,
        value: str,
        *,
        chat_id: int | None = None,
        sources: Sequence[int] = (),
        origin: str = "user",
        seen: str | None = None,
        importance: float = 0.5,
    ) -> tuple[Fact, str]:
        """Store a fact under the rules above. Returns the fact now holding it and what
        happened: "added", "seen" (a repeat of a held fact), "superseded" (it replaced an
        older value) or "contradicted" (kept aside: a pinned or real fact says otherwise)."""
        person, key, value = person.strip(), norm_key(key), " ".join(value.split())
        if not person or not key or not value:
            raise FactError("a fact needs a person, a key and a value, none of them empty")
        if origin not in ORIGINS:
            raise FactError(f"unknown origin {origin!r}: expected one of {', '.join(ORIGINS)}")
        seen = seen or now()
        with _write(self.store):
            return self._add(person, key, value, chat_id, list(sources), origin, seen, importance)

    def _add(
        self,
        person: str,
        key: str,
        value: str,
        chat_id: int | None,
        sources: builtins.list[int],
        origin: str,
        seen: str,
        importance: float,
    ) -> tuple[Fact, str]:
        held = [
            f
            for f in self.list(chat_id=None, person=person, status=SHOWN)
            if f.key == key and (chat_id is None or f.chat_id in (None, chat_id))
        ]
        same = [f for f in held if same_value(f.value, value)]
        if same:
            fact = same[0]
            merged = sorted({*fact.sources, *sources})
            self.conn.execute(
                "UPDATE facts SET sources = ?, last_seen = max(last_seen, ?),"
                " first_seen = min(first_seen, ?), importance = max(importance, ?) WHERE id = ?",
                (json.dumps(merged), seen, seen, importance, fact.id),
            )
            self._event(fact.id, "seen", {"sources": sources, "origin": origin})
            return self.get(fact.id), "seen"
        rivals = [] if key in MULTI_VALUED else held
        status, outcome = "active", "added"
        if any(r.status == "pinned" for r in rivals) or (
            origin == "simulated" and any(r.origin != "simulated" for r in rivals)
        ):
            status, outcome = "contradicted", "contradicted"
        elif rivals and all(r.last_seen > seen for r in rivals):
            status, outcome = "superseded", "superseded"  # an older value, learned late
        fact_id = self.conn.execute(
            "INSERT INTO facts (chat_id, person, key, value, sources, origin, first_seen,"
            " last_seen, importance, status) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (chat_id, person, key, value, json.dumps(sorted(set(sources))), origin, seen, seen,
             importance, status),
        ).lastrowid  # fmt: skip
        assert fact_id is not None
        self._index(fact_id, person, key, value)
        self._event(fact_id, "added", {"origin": origin, "sources": sources, "status": status})
        for rival in rivals:
            if status == "active":  # the newcomer wins: the older value is kept, superseded
                self._set_status(rival.id, "superseded", replaced_by=fact_id)
                self._event(rival.id, "superseded", {"by": fact_id})
                self._flag(rival.id, fact_id)
            elif status == "superseded":  # the newcomer is the older value
                self.conn.execute(
                    "UPDATE facts SET replaced_by = ? WHERE id = ?", (rival.id, fact_id)
                )
                self._flag(fact_id, rival.id)
            elif origin != "simulated":  # a real fact against a pinned one: ask the user
                self._flag(rival.id, fact_id)
        if rivals and status == "active":
            outcome = "superseded"
        return self.get(fact_id), outcome

    def edit(self, fact_id: int, value: str | None = None, key: str | None = None) -> Fact:
        fact = self.get(fact_id)
        if fact.status == "removed":  # an edit would change what nothing uses
            raise FactError(f"fact {fact_id} was removed as wrong; add it again to keep it")
        new_value = " ".join(value.split()) if value is not None else fact.value
        new_key = norm_key(key) if key is not None else fact.key
        if not new_value or not new_key:
            raise FactError(f"fact {fact_id}: the key and the value cannot be empty")
        if (new_key, new_value) == (fact.key, fact.value):
            return fact
        with _write(self.store):
            self.conn.execute(
                "UPDATE facts SET key = ?, value = ?, last_seen = ? WHERE id = ?",
                (new_key, new_value, now(), fact_id),
            )
            self.conn.execute("DELETE FROM fact_index WHERE rowid = ?", (fact_id,))
            self._index(fact_id, fact.person, new_key, new_value)
            self._event(
                fact_id, "edited", {"old": [fact.key, fact.value], "new": [new_key, new_value]}
            )
            if new_key != fact.key and fact.status in ("active", "pinned"):
                self._overrule(self.get(fact_id))
        return self.get(fact_id)

    def _overrule(self, fact: Fact) -> None:
        """A fact moved by the user under a key another fact of the person holds (single-
        valued): the user's is the newer word. The other is superseded, or, when pinned, the
        pair is flagged for the user, as `add` does."""
        if fact.key in MULTI_VALUED:
            return
        for rival in self.list(chat_id=None, person=fact.person, status=SHOWN):
            if rival.id == fact.id or rival.key != fact.key:
                continue
            if fact.chat_id is not None and rival.chat_id not in (None, fact.chat_id):
                continue
            if same_value(rival.value, fact.value):
                continue  # the same word twice: nothing to choose between
            if rival.status == "pinned":
                self._flag(rival.id, fact.id)
                continue
            self._set_status(rival.id, "superseded", replaced_by=fact.id)
            self._event(rival.id, "superseded", {"by": fact.id})
            self._flag(rival.id, fact.id)

    def pin(self, fact_id: int, pinned: bool = True) -> Fact:
        fact = self.get(fact_id)
        if fact.status == "removed":
            raise FactError(f"fact {fact_id} was removed as wrong; add it again to keep it")
        if (fact.status == "pinned") == pinned:
            return fact
        with _write(self.store):
            self._set_status(fact_id, "pinned" if pinned else "active")
            self._event(fact_id, "pinned" if pinned else "unpinned", {"was": fact.status})
        return self.get(fact_id)

    def remove(self, fact_id: int) -> Fact:
        fact = self.get(fact_id)
        if fact.status == "removed":
            return fact
        with _write(self.store):
            self._set_status(fact_id, "removed")
            self._event(fact_id, "removed", {"was": fact.status})
        return self.get(fact_id)

    def resolve(self, old_id: int, new_id: int, choice: str) -> tuple[Fact, Fact]:
        """Settle a flagged pair: "old" (the old value holds; the new one is contradicted),
        "new" (the new value holds; the old one stays superseded) or "both" (both true)."""
        if choice not in ("old", "new", "both"):
            raise FactError(f"resolve with 'old', 'new' or 'both', not {choice!r}")
        row = self.conn.execute(
            "SELECT resolution FROM fact_conflicts WHERE old_id = ? AND new_id = ?",
            (old_id, new_id),
        ).fetchone()
        if row is None:
            raise FactError(f"facts {old_id} and {new_id} are not a flagged pair")
        statuses = {"old": ("active", "contradicted"), "new": ("superseded", "active"),
                    "both": ("active", "active")}[choice]  # fmt: skip
        with _write(self.store):
            for fact_id, status in zip((old_id, new_id), statuses, strict=True):
                if self.get(fact_id).status != "pinned" or status != "active":
                    self._set_status(
                        fact_id, status, replaced_by=new_id if status == "superseded" else None
                    )
                self._event(fact_id, "resolved", {"choice": choice, "pair": [old_id, new_id]})
            self.conn.execute(
                "UPDATE fact_conflicts SET resolution = ? WHERE old_id = ? AND new_id = ?",
                (choice, old_id, new_id),
            )
        return self.get(old_id), self.get(new_id)

    # -- internals ----------------------------------------------------------------------------

    def _index(self, fact_id: int, person: str, key: str, value: str) -> None:
        text = f"{person} {key} {value} {KEY_WORDS.get(key, '')}"
        self.conn.execute("INSERT INTO fact_index (rowid, text) VALUES (?, ?)", (fact_id, text))

    def _set_status(self, fact_id: int, status: str, replaced_by: int | None = None) -> None:
        self.conn.execute(
            "UPDATE facts SET status = ?, replaced_by = ? WHERE id = ?",
            (status, replaced_by, fact_id),
        )

    def _flag(self, old_id: int, new_id: int) -> None:
        self.conn.execute(
            "INSERT OR IGNORE INTO fact_conflicts (old_id, new_id, at) VALUES (?, ?, ?)",
            (old_id, new_id, now()),
        )
        self._event(old_id, "flagged", {"with": new_id})

    def _event(self, fact_id: int, action: str, detail: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO fact_events (fact_id, at, action, detail) VALUES (?, ?, ?, ?)",
            (fact_id, now(), action, json.dumps(detail, ensure_ascii=False)),
        )


def _write(store: Store) -> AbstractContextManager[Any]:
    """A write transaction of the store's, or part of the caller's when one is open."""
    return nullcontext() if store.conn.in_transaction else store.transaction()
