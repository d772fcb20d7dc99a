"""The curator's decisions: an append-only log in `AUDIT/reviews.sqlite`; the latest decision of a point wins.

Schema, version 1 (the file is created by the first decision):

    schema_version (version INTEGER)                  one row: 1
    meta (key TEXT PRIMARY KEY, value TEXT)           'dataset_fingerprint': the audit manifest's at creation
    decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, image_id TEXT, point INTEGER,
               decision TEXT CHECK (decision IN ('accept', 'reject', 'edit')), x REAL, y REAL,
               reviewer TEXT, note TEXT, created_at TEXT)   created_at: ISO 8601 UTC, microseconds

Rows are never updated or deleted; the row with the largest `id` (AUTOINCREMENT: never reused, so monotonic) of a
(image_id, point) is its decision. `edit` holds the curator's position (image pixels), `accept` the position
accepted when the caller gives it (the bulk command stores the searched one, so a re-run audit with other searched
positions still exports what was accepted), `reject` none.

Several processes may write at once (browser tabs of the app, a bulk `auditor review`): the file is in WAL mode,
every call opens its own connection and runs one short `BEGIN IMMEDIATE` transaction, and waits up to 30 s for a
lock. A file that is not a database, a database without these tables or of another schema version, and decisions
made on another version of the dataset (fingerprint) are refused with an `InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import getpass
import math
import os
import sqlite3
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd

from auditor.audit_dir import REVIEWS, audit_path, load_manifest, proposals
from auditor.errors import InputError
from auditor.query import evaluate_query

SCHEMA_VERSION = 1
DECISIONS = ("accept", "reject", "edit")
BUSY_TIMEOUT_S = 30.0
COLUMNS = ("id", "image_id", "point", "decision", "x", "y", "reviewer", "note", "created_at")
_DTYPES = dict(zip(COLUMNS, ("int64", "object", "int64", "object", "float64", "float64", "object", "object", "object"),
                   strict=True))
_TABLES = {
    "schema_version": "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "meta": "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "decisions": """CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        image_id TEXT NOT NULL,
        point INTEGER NOT NULL,
        decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'edit')),
        x REAL,
        y REAL,
        reviewer TEXT NOT NULL,
        note TEXT,
        created_at TEXT NOT NULL,
        CHECK (decision != 'edit' OR (x IS NOT NULL AND y IS NOT NULL)))""",
}
_INDEX = "CREATE INDEX decisions_by_point ON decisions (image_id, point, id)"
_INSERT = ("INSERT INTO decisions (image_id, point, decision, x, y, reviewer, note, created_at) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
_LATEST = ("SELECT d.* FROM decisions d JOIN (SELECT MAX(id) AS id FROM decisions GROUP BY image_id, point) m "
           "ON d.id = m.id ORDER BY d.image_id, d.point")


def default_reviewer() -> str:
    """The login name, the reviewer recorded when none is given."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "unknown"


def now_utc() -> str:
    """The current time, ISO 8601 UTC with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def _position(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def decision_row(image_id: str, point: int, decision: str, *, x: float | None = None, y: float | None = None,
                 reviewer: str | None = None, note: str | None = None) -> tuple:
    """One checked row for the decisions table (created now); a ValueError for a bad decision."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    if int(point) != point or point < 0:
        raise ValueError(f"point must be a non-negative integer, got {point!r}")
    x, y = _position(x), _position(y)
    if (x is None) != (y is None):
        raise ValueError("give both x and y, or neither")
    if x is not None and not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"position must be finite, got ({x}, {y})")
    if decision == "edit" and x is None:
        raise ValueError("an edit needs the new position: x and y")
    return (str(image_id), int(point), decision, x, y, reviewer or default_reviewer(), note, now_utc())


class ReviewStore:
    """The decisions of one audit directory: `record` appends, `latest` reads the decision of every point."""

    def __init__(self, audit_dir: str | Path) -> None:
        self.audit_dir = audit_path(audit_dir)
        self.fingerprint = load_manifest(self.audit_dir)["dataset"]["fingerprint"]
        self.path = self.audit_dir / REVIEWS
        for path in (self.path, *(self.path.with_name(REVIEWS + end) for end in ("-wal", "-shm", "-journal"))):
            if path.is_symlink():  # decisions would go wherever it points, outside the audit
                raise InputError("is a symbolic link; expected the reviews database itself (copy the file here)",
                                 path=path)
        if self.path.exists():
            with self._connect(create=False) as con:
                self._check(con)

    def _read_only(self) -> bool:
        """True when the audit folder cannot be written (a read-only mount, or no permission)."""
        return not os.access(self.audit_dir, os.W_OK)

    @contextlib.contextmanager
    def _connect(self, *, create: bool) -> Iterator[sqlite3.Connection]:
        """A fresh connection in autocommit mode (transactions are explicit); sqlite errors become InputErrors.

        In a folder that cannot be written, SQLite cannot make the WAL's shared-memory file, so reads open the
        file as immutable; that is exact only when no write-ahead log is left over, and refused otherwise.
        """
        mode = "?mode=rwc" if create else "?mode=rw"
        if self._read_only():
            if create:
                raise InputError("the audit folder is read-only: decisions cannot be recorded (copy the audit "
                                 "folder somewhere writable)", path=self.audit_dir)
            wal = self.path.with_name(self.path.name + "-wal")
            if wal.exists() and wal.stat().st_size > 0:
                raise InputError("the audit folder is read-only and its write-ahead log holds decisions not yet in "
                                 "the database: open it once where it can be written", path=wal)
            mode = "?mode=ro&immutable=1"
        uri = self.path.absolute().as_uri() + mode
        try:
            con = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        except sqlite3.Error as e:
            raise InputError(f"cannot open the reviews database: {e}", path=self.path) from None
        try:
            con.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            # in WAL mode NORMAL still survives any process crash; only an OS crash may lose the last commits
            con.execute("PRAGMA synchronous = NORMAL")
            yield con
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as e:
            reason = "not a SQLite database" if "not a database" in str(e) else f"reviews database error: {e}"
            raise InputError(reason, path=self.path) from None
        finally:
            con.close()

    def _check(self, con: sqlite3.Connection) -> bool:
        """True for our schema with this audit's fingerprint, False for an empty file; else an InputError."""
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables.discard("sqlite_sequence")
        if not tables:
            return False
        if not set(_TABLES) <= tables:
            raise InputError(f"not a reviews database of landmark-auditor (tables: {', '.join(sorted(tables))})",
                             path=self.path)
        versions = [v for (v,) in con.execute("SELECT version FROM schema_version")]
        if versions != [SCHEMA_VERSION]:
            raise InputError(f"reviews schema version {versions[0] if versions else 'missing'}; this auditor reads "
                             f"version {SCHEMA_VERSION}", path=self.path)
        columns = tuple(row[1] for row in con.execute("PRAGMA table_info(decisions)"))
        if columns != COLUMNS:
            raise InputError(f"the decisions table has columns {', '.join(columns)}; expected {', '.join(COLUMNS)}",
                             path=self.path)
        stored = con.execute("SELECT value FROM meta WHERE key = 'dataset_fingerprint'").fetchone()
        if stored is None or stored[0] != self.fingerprint:
            raise InputError(f"these decisions were made on another version of the dataset (fingerprint "
                             f"{stored[0][:12] if stored else 'missing'}..., the audit's is {self.fingerprint[:12]}...)"
                             f": move {REVIEWS} away to start afresh", path=self.path)
        return True

    def _append(self, rows: list[tuple]) -> list[int]:
        """Insert rows in one transaction, creating the schema first when the file is new; returns their ids."""
        with self._connect(create=True) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                if not self._check(con):
                    for statement in (*_TABLES.values(), _INDEX):
                        con.execute(statement)
                    con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                    con.execute("INSERT INTO meta (key, value) VALUES ('dataset_fingerprint', ?)", (self.fingerprint,))
                ids = [con.execute(_INSERT, row).lastrowid for row in rows]
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            # outside any transaction, as SQLite requires; once set, the mode is stored in the file (this also mends
            # a file whose creator died between its first commit and this line)
            if con.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                con.execute("PRAGMA journal_mode = WAL")
        return ids

    def record(self, image_id: str, point: int, decision: str, *, x: float | None = None, y: float | None = None,
               reviewer: str | None = None, note: str | None = None) -> int:
        """Append one decision (`edit` needs x, y in image pixels); returns its id."""
        return self._append([decision_row(image_id, point, decision, x=x, y=y, reviewer=reviewer, note=note)])[0]

    def record_many(self, rows: Iterable[Mapping]) -> int:
        """Append many decisions in one transaction: each a mapping with image_id, point, decision and optionally x,
        y, reviewer, note; returns how many."""
        checked = [decision_row(r["image_id"], r["point"], r["decision"], x=r.get("x"), y=r.get("y"),
                                reviewer=r.get("reviewer"), note=r.get("note")) for r in rows]
        return len(self._append(checked)) if checked else 0

    def _query(self, sql: str, params: tuple = ()) -> pd.DataFrame:
        empty = pd.DataFrame({c: pd.Series(dtype=t) for c, t in _DTYPES.items()})
        if not self.path.exists():
            return empty
        with self._connect(create=False) as con:
            if not self._check(con):
                return empty
            rows = con.execute(sql, params).fetchall()
        return self._checked(pd.DataFrame(rows, columns=list(COLUMNS)))

    def _checked(self, rows: pd.DataFrame) -> pd.DataFrame:
        """Rows read from the file as COLUMNS' types; an InputError naming the file and the row for a value another
        program wrote that the schema's types do not admit (SQLite stores any value in any column)."""
        def bad(mask: pd.Series, column: str, expected: str) -> None:
            if mask.any():
                row = rows[mask].iloc[0]
                raise InputError(f"decision id {row['id']} has {column} {str(row[column])[:40]!r}; expected {expected}",
                                 path=self.path, field=column)

        def numbers(column: str) -> pd.Series:
            values = rows[column].map(lambda v: v if isinstance(v, int | float) and not isinstance(v, bool)
                                      else None if v is None else math.nan, na_action=None)
            return pd.to_numeric(values, errors="coerce")

        point = numbers("point")
        bad(~np.isfinite(point) | (point != np.round(point)) | (point < 0) | (point > 2**31), "point",
            "a non-negative integer")
        for column in ("x", "y"):
            value = numbers(column)
            bad(rows[column].notna() & ~np.isfinite(value), column, "a finite number or null")
            rows[column] = value
        bad(~rows.decision.isin(DECISIONS), "decision", f"one of {', '.join(DECISIONS)}")
        bad(~rows.image_id.map(lambda v: isinstance(v, str)), "image_id", "text")
        bad(rows.decision.eq("edit") & rows.x.isna(), "x", "a position for an edit")
        rows["point"] = point
        for column in ("reviewer", "note", "created_at"):
            rows[column] = rows[column].map(lambda v: v if v is None or isinstance(v, str) else str(v))
        return rows.astype(_DTYPES)

    def latest(self) -> pd.DataFrame:
        """The decision of every decided point (its latest row): COLUMNS, one row per (image_id, point)."""
        return self._query(_LATEST)

    def history(self, image_id: str, point: int) -> pd.DataFrame:
        """Every decision on one point, oldest first."""
        return self._query("SELECT * FROM decisions WHERE image_id = ? AND point = ? ORDER BY id",
                           (str(image_id), int(point)))

    def progress(self, issue_points: int | pd.DataFrame) -> dict[str, int]:
        """Decided counts by decision against a total: an int, or a frame of (image_id, point) keys (e.g. the
        audit's issues), in which case only decisions on those points count."""
        latest = self.latest()
        if isinstance(issue_points, pd.DataFrame):
            keys = issue_points[["image_id", "point"]].astype({"image_id": str, "point": np.int64}).drop_duplicates()
            latest = latest.merge(keys, on=["image_id", "point"])
            total = len(keys)
        else:
            total = int(issue_points)
        counts = {d: int((latest.decision == d).sum()) for d in DECISIONS}
        return {"total": total, "decided": len(latest), "remaining": max(total - len(latest), 0), **counts}


def select_points(points: pd.DataFrame, where: str, *, field: str | None = None) -> pd.DataFrame:
    """The labelled points of `points` (points.parquet) for which `where`, a query of `auditor.query` over its columns,
    is true; an InputError naming `field` for a bad query."""
    selected = points[evaluate_query(points, where, field=field)]
    return selected[np.isfinite(selected.x_human) & np.isfinite(selected.y_human)]


def undecided(selected: pd.DataFrame, decisions: pd.DataFrame) -> pd.DataFrame:
    """The rows of `selected` (points) without a decision in `decisions` (`ReviewStore.latest()`)."""
    keys = pd.MultiIndex.from_frame(decisions[["image_id", "point"]].astype({"point": np.int64}))
    mine = pd.MultiIndex.from_frame(selected[["image_id", "point"]].astype({"point": np.int64}))
    return selected[~mine.isin(keys)]


def bulk_decisions(selected: pd.DataFrame, decision: str, *, reviewer: str | None = None,
                   note: str | None = None) -> list[dict]:
    """Rows for `ReviewStore.record_many`: one decision per selected point; accept stores the proposed position
    (`audit_dir.proposals`: the searched one, or the prediction for gross errors and swapped sides)."""
    if decision not in ("accept", "reject"):
        raise ValueError(f"bulk decisions are accept or reject, got {decision!r}")
    rows = []
    xs, ys, _ = proposals(selected)
    for p, x, y in zip(selected.itertuples(index=False), xs, ys, strict=True):
        xy = {"x": x, "y": y} if decision == "accept" else {}
        if xy and not (np.isfinite(xy["x"]) and np.isfinite(xy["y"])):
            xy = {}
        rows.append({"image_id": p.image_id, "point": int(p.point), "decision": decision, "reviewer": reviewer,
                     "note": note, **xy})
    return rows
