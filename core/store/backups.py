"""Backups of the store, and telling a damaged store file from a sound one.

Contract:
- `store_problem(path)` checks a store file without writing to it (it is opened read-only; for
  a WAL file SQLite may create the empty -wal/-shm files a reader needs): it returns None when
  the file is sound (or absent), else one plain sentence: "file is not a database", "database
  disk image is malformed", or what `PRAGMA quick_check` found. Only damage is reported that
  way; a file that cannot be opened at all (permissions, a lock) raises
  `sqlite3.OperationalError` as usual.
- `backup_store(path)` copies the store with SQLite's backup API (a consistent snapshot, even
  while others write) to `<store dir>/backups/<store stem>-v<schema>-<YYYYmmdd-HHMMSS>.sqlite3`,
  private (0600, in a 0700 folder). The copy is written under a temporary name, checked, synced
  and renamed into place, so a crash never leaves half a backup under a backup's name, and a
  damaged store (whose copy fails the check) raises `StoreCorruptError` instead of pushing a good
  backup out. The newest `keep` backups of the store are kept, older ones deleted.
  `migrate()` calls it before it changes the schema of an existing store.
- `list_backups(path)`: the store's backups, newest first; `latest_good_backup(path)`: the newest
  one that passes the check.
- `restore_backup(path, backup=None)` puts a backup (by default the newest good one) in the
  store's place. It checks the backup first; it never deletes the file it replaces: the store and
  its -wal/-shm files are renamed to `<store>.corrupt-<stamp>` (and `...-wal`, `...-shm`, so
  SQLite still reads them as one database). It holds the store's lock file (`lock_path`)
  exclusively meanwhile, and every open `Store` holds it shared: while the store is open
  anywhere (the app, another command) a restore raises `StoreInUse` and changes nothing, and a
  `Store.open` during a restore waits for it to finish rather than create an empty store in the
  gap between the two renames.
"""

from __future__ import annotations

import os
import re
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from convsim.core.files import replacing
from convsim.core.locations import make_private_dir
from convsim.core.locks import Busy, acquire

KEEP = 3
"""How many backups of a store `backup_store` keeps."""
STAMP = "%Y%m%d-%H%M%S"
# How many lines of `PRAGMA quick_check` to read: enough to see past SQLite 3.40's false
# reports (one per row of a table, see `_quick_check`) to the real ones.
CHECK_LINES = 100_000
IN_USE_WAIT_S = 2.0
"""How long a restore waits for the store to be closed elsewhere (seconds)."""


class StoreCorruptError(sqlite3.DatabaseError):
    """The store file at `path` is damaged, or is not an SQLite database at all: `problem`
    says what is wrong. Raised before anything is written to it."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"the store {path} is damaged: {problem}")
        self.path = Path(path)
        self.problem = problem


class StoreInUse(RuntimeError):
    """The store at `path` cannot be had now: it is open in another convsim (or another
    thread), so a restore cannot replace it; or (`restoring`) a restore is replacing it."""

    def __init__(self, path: Path, restoring: bool = False) -> None:
        super().__init__(
            f"the store {path} is being restored (`convsim doctor --restore`): try again once "
            "that has finished"
            if restoring
            else f"the store {path} is open in another convsim (the app, or a command still "
            "running): close it, then restore again"
        )
        self.path = path


def lock_path(store: Path) -> Path:
    """The lock file of the store at `store`: `<store>.lock` beside it."""
    return store.with_name(store.name + ".lock")


def is_damage(error: BaseException) -> bool:
    """Whether `error` says the store is damaged: refused at open (`StoreCorruptError`), or a
    damaged page found while reading ("database disk image is malformed")."""
    return isinstance(error, StoreCorruptError) or (
        isinstance(error, sqlite3.DatabaseError) and "malformed" in str(error)
    )


@dataclass(frozen=True)
class Backup:
    path: Path
    version: int
    """The schema version of the store when it was copied."""
    created: datetime
    """When it was made (local time, to the second, from its name)."""


@dataclass(frozen=True)
class Restored:
    backup: Backup
    """The backup now in the store's place."""
    kept: list[Path] = field(default_factory=list)
    """Where the replaced store (and its -wal/-shm files) went; empty when there was none."""


# --- checking ------------------------------------------------------------------------------


def store_problem(path: Path) -> str | None:
    """What is wrong with the store file at `path`, or None when it is sound or absent. Reads
    only: the file is opened read-only, never created, migrated or checkpointed."""
    if not path.exists():
        return None
    if (problem := emptied(path)) is not None:
        return problem
    conn = sqlite3.connect(_read_only(path), uri=True)
    try:
        return problem_of(conn)
    finally:
        conn.close()


def problem_of(conn: sqlite3.Connection, thorough: bool = True) -> str | None:
    """`store_problem` on an open connection (which must not be inside a write). Not
    `thorough`: the header and the schema only (what opening needs; constant time), not every
    page (`quick_check`: about 25 ms per 200k messages); a damaged table root shows too."""
    try:
        tables = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
        for (table,) in tables:  # each table's first page: cheap, and finds a broken root
            conn.execute(f'SELECT 1 FROM "{table}" LIMIT 1').fetchall()
        problems = _quick_check(conn) if thorough else []
    except sqlite3.DatabaseError as exc:
        if type(exc) is not sqlite3.DatabaseError:  # locked, unreadable...: not damage
            raise
        return str(exc)  # "file is not a database", "malformed database schema (...)", ...
    if not problems:
        return None
    more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
    return f"the integrity check found: {problems[0]}{more}"


def refuse_damaged(conn: sqlite3.Connection, path: Path) -> None:
    """Raise `StoreCorruptError` if the store `conn` has open (at `path`) has a damaged header
    or schema, or was `emptied`, closing `conn` first (and on any other error of the check).
    Damage deeper in shows when its pages are read ("database disk image is malformed");
    `convsim doctor` checks every page."""
    try:
        problem = emptied(path) or problem_of(conn, thorough=False)
    except BaseException:
        conn.close()
        raise
    if problem is not None:
        conn.close()
        raise StoreCorruptError(path, problem)


def emptied(path: Path) -> str | None:
    """What is wrong with a store file of no bytes in a data folder that holds what a store
    records (datasets, models, backups): its content is gone (a copy cut short, a disk error),
    and opening it would make a new, empty store over it. None otherwise: an empty file in an
    empty folder is a first start that stopped before its first write."""
    if path.stat().st_size:
        return None
    held = [path.parent / "datasets", path.parent / "models", backups_dir(path)]
    if any(folder.is_dir() and any(folder.iterdir()) for folder in held):
        return "the file is empty, while its data folder is not"
    return None


def _quick_check(conn: sqlite3.Connection) -> list[str]:
    """What `PRAGMA quick_check` finds wrong, less the false "NULL value in T.C" reports that
    SQLite 3.40 makes for WITHOUT ROWID tables whose primary key is not their first columns
    (each table and column is confirmed once, by looking for the NULL)."""
    problems: list[str] = []
    confirmed: dict[tuple[str, str], bool] = {}
    for (line,) in conn.execute(f"PRAGMA quick_check({CHECK_LINES})").fetchall():
        if line == "ok":
            continue
        found = re.fullmatch(r"NULL value in (\w+)\.(\w+)", line)
        if found:
            table, column = found.groups()
            if (table, column) not in confirmed:
                sql = f'SELECT 1 FROM "{table}" WHERE "{column}" IS NULL LIMIT 1'
                confirmed[table, column] = conn.execute(sql).fetchone() is not None
            if not confirmed[table, column]:
                continue
        problems.append(" ".join(line.replace("*** in database main ***", "").split()))
    return problems


def _read_only(path: Path) -> str:
    return path.resolve().as_uri() + "?mode=ro"


# --- backing up ----------------------------------------------------------------------------


def backups_dir(store: Path) -> Path:
    """The folder that holds the backups of the store at `store`."""
    return store.parent / "backups"


def list_backups(store: Path) -> list[Backup]:
    """The backups of the store at `store`, newest first (none: an empty list)."""
    pattern = re.compile(rf"{re.escape(store.stem)}-v(\d+)-(\d{{8}}-\d{{6}})(?:-(\d+))?\.sqlite3")
    found: list[tuple[datetime, int, Backup]] = []
    folder = backups_dir(store)
    for path in folder.iterdir() if folder.is_dir() else ():
        match = pattern.fullmatch(path.name)
        if not match or not path.is_file():
            continue
        version, stamp, nth = match.groups()
        try:
            created = datetime.strptime(stamp, STAMP)
        except ValueError:
            continue
        found.append((created, int(nth or 1), Backup(path, int(version), created)))
    found.sort(key=lambda item: item[:2], reverse=True)
    return [backup for _, _, backup in found]


def latest_good_backup(store: Path) -> Backup | None:
    """The newest backup of `store` that passes the integrity check, or None."""
    for backup in list_backups(store):
        try:
            # An empty file opens as an empty store: no backup of anything.
            if backup.path.stat().st_size and store_problem(backup.path) is None:
                return backup
        except sqlite3.Error:
            continue  # unreadable: try an older one
    return None


def backup_store(store: Path, keep: int = KEEP) -> Backup:
    """Copy the store at `store` into its backups folder (see the module's contract) and delete
    all but the newest `keep` backups. Raises `StoreCorruptError` if the copy is damaged."""
    folder = make_private_dir(backups_dir(store))
    source = sqlite3.connect(_read_only(store), uri=True, isolation_level=None)
    try:
        source.execute("BEGIN")  # one snapshot for the version and the copy
        version = source.execute("PRAGMA user_version").fetchone()[0]
        created = datetime.now().replace(microsecond=0)
        target = _free_name(folder, f"{store.stem}-v{version}-{created.strftime(STAMP)}")
        with replacing(target) as tmp:
            copy = sqlite3.connect(tmp, isolation_level=None)
            try:
                source.backup(copy)
                # A standalone file: no -wal/-shm beside it when it is read.
                copy.execute("PRAGMA journal_mode = DELETE")
                problem = problem_of(copy)
            finally:
                copy.close()
            if problem is not None:
                raise StoreCorruptError(store, problem)
            if os.name == "posix":
                tmp.chmod(0o600)
        source.execute("COMMIT")
    finally:
        source.close()
    for old in list_backups(store)[max(keep, 1) :]:
        old.path.unlink(missing_ok=True)
    # Copies a crash left half-written (an hour old: none is being written any more).
    for part in folder.glob(f".{store.stem}-v*.part"):
        if part.stat().st_mtime < created.timestamp() - 3600:
            part.unlink(missing_ok=True)
    return Backup(target, version, created)


def _free_name(folder: Path, stem: str, suffix: str = ".sqlite3") -> Path:
    """`folder/<stem><suffix>`, or `<stem>-2<suffix>`, ... after the highest number in use
    (two in one second), so that names keep sorting in the order they were made."""
    pattern = re.compile(rf"{re.escape(stem)}(?:-(\d+))?{re.escape(suffix)}")
    used = [int(m.group(1) or 1) for p in folder.iterdir() if (m := pattern.fullmatch(p.name))]
    n = max(used, default=0) + 1
    return folder / (f"{stem}{suffix}" if n == 1 else f"{stem}-{n}{suffix}")


# --- restoring -----------------------------------------------------------------------------


def restore_backup(store: Path, backup: Backup | None = None) -> Restored:
    """Put `backup` (default: the newest good one) in the place of the store at `store`; the
    file there is kept, renamed (see the module's contract). Raises FileNotFoundError when there
    is no good backup, `StoreCorruptError` (naming the backup) when the given one is damaged,
    `StoreInUse` when the store is open elsewhere."""
    if backup is None:
        backup = latest_good_backup(store)
        if backup is None:
            raise FileNotFoundError(
                f"no backup of {store} passes the integrity check (in {backups_dir(store)})"
            )
    else:
        problem = store_problem(backup.path)
        if problem is not None:
            raise StoreCorruptError(backup.path, problem)
    try:
        held = acquire(lock_path(store), wait=IN_USE_WAIT_S)
    except Busy:
        raise StoreInUse(store) from None
    with held:
        return Restored(backup, _put_in_place(store, backup))


def _put_in_place(store: Path, backup: Backup) -> list[Path]:
    """Copy `backup` over `store`, its files moved aside first: the paths they were kept as."""
    stamp = datetime.now().strftime(STAMP)
    with replacing(store) as tmp:
        source = sqlite3.connect(_read_only(backup.path), uri=True)
        copy = sqlite3.connect(tmp)
        try:
            source.backup(copy)
        finally:
            copy.close()
            source.close()
        if os.name == "posix":
            tmp.chmod(0o600)
        # The -wal first: a stale one left beside the restored file would be replayed into it.
        kept = _move_aside(store, stamp)
    return kept


def damaged_copies(store: Path) -> list[Path]:
    """The damaged stores (and their -wal/-shm files) that restores have kept beside `store`."""
    return sorted(store.parent.glob(f"{store.name}.corrupt-*"))


def _move_aside(store: Path, stamp: str) -> list[Path]:
    """Rename the store and its -wal/-shm files to `<store>.corrupt-<stamp>[-wal|-shm]`."""
    base = _free_name(store.parent, f"{store.name}.corrupt-{stamp}", suffix="")
    kept = []
    for suffix in ("-wal", "-shm", ""):
        path = store.with_name(store.name + suffix)
        if path.exists():
            aside = base.with_name(base.name + suffix)
            os.replace(path, aside)
            kept.append(aside)
    kept.reverse()  # the store first
    return kept
