"""The curator's decisions: an append-only log in `AUDIT/reviews.sqlite`; the latest decision of a point wins.

Schema, version 2 (the file is created by the first decision):

    schema_version (version INTEGER)                  one row: 2
    meta (key TEXT PRIMARY KEY, value TEXT)           'dataset_fingerprint': the audit manifest's at creation
    decisions (id INTEGER PRIMARY KEY AUTOINCREMENT, image_id TEXT, point INTEGER (NULL: the whole face),
               decision TEXT CHECK (decision IN ('accept', 'reject', 'edit', 'mirror')), x REAL, y REAL,
               reviewer TEXT, note TEXT, created_at TEXT)   created_at: ISO 8601 UTC, microseconds

Rows are never updated or deleted; the row with the largest `id` (AUTOINCREMENT: never reused, so monotonic) of a
(image_id, point) is its decision. `edit` holds the curator's position (image pixels), `accept` the position
accepted when the caller gives it (the bulk command stores the searched one, so a re-run audit with other searched
positions still exports what was accepted), `reject` none.

`mirror` is the one face-level decision (point NULL, no position): the face's left and right were swapped, and
every point with a flip partner (`LandmarkScheme.flip_permutation`) takes its partner's label; the positions follow
from the labels, which the fingerprint pins. It is the latest decision of each such point until a later row on the
point itself: `latest` lists it once per point, with the face row's id.

Version 1 (no face-level decisions: point NOT NULL, no 'mirror') is read as it is, and migrated to version 2 by the
first decision written to it, in that decision's transaction; an auditor older than version 2 refuses the file.

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

from auditor.audit_dir import REVIEWS, Audit, audit_path, audit_scheme, load_manifest, proposals
from auditor.errors import InputError
from auditor.query import evaluate_query
from auditor.triage import FACE, ORDERS, point_gains, queue_rank

SCHEMA_VERSION = 2
READABLE_VERSIONS = (1, 2)
POINT_DECISIONS = ("accept", "reject", "edit")
FACE_DECISIONS = ("mirror",)  # on the whole face: the row's point is NULL
DECISIONS = POINT_DECISIONS + FACE_DECISIONS
BUSY_TIMEOUT_S = 30.0
COLUMNS = ("id", "image_id", "point", "decision", "x", "y", "reviewer", "note", "created_at")
_DTYPES = dict(zip(COLUMNS, ("int64", "object", "int64", "object", "float64", "float64", "object", "object", "object"),
                   strict=True))
_DECISIONS_TABLE = """CREATE TABLE decisions (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        image_id TEXT NOT NULL,
        point INTEGER,
        decision TEXT NOT NULL CHECK (decision IN ('accept', 'reject', 'edit', 'mirror')),
        x REAL,
        y REAL,
        reviewer TEXT NOT NULL,
        note TEXT,
        created_at TEXT NOT NULL,
        CHECK (decision != 'edit' OR (x IS NOT NULL AND y IS NOT NULL)),
        CHECK ((point IS NULL) = (decision = 'mirror')),
        CHECK (decision != 'mirror' OR (x IS NULL AND y IS NULL)))"""
_TABLES = {
    "schema_version": "CREATE TABLE schema_version (version INTEGER NOT NULL)",
    "meta": "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "decisions": _DECISIONS_TABLE,
}
_INDEX = "CREATE INDEX decisions_by_point ON decisions (image_id, point, id)"
# version 1 -> 2: SQLite cannot change a table's constraints, so the table is copied into one of the new schema (ids
# kept: the copy's AUTOINCREMENT counter starts after the largest)
_MIGRATE_FROM_1 = ("ALTER TABLE decisions RENAME TO decisions_v1", _DECISIONS_TABLE,
                   f"INSERT INTO decisions ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM decisions_v1",
                   "DROP TABLE decisions_v1", _INDEX, "UPDATE schema_version SET version = 2")
_INSERT = ("INSERT INTO decisions (image_id, point, decision, x, y, reviewer, note, created_at) "
           "VALUES (?, ?, ?, ?, ?, ?, ?, ?)")
# the latest row of every point, and of every face (point NULL: GROUP BY puts the NULLs of an image in one group)
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


def decision_row(image_id: str, point: int | None, decision: str, *, x: float | None = None,
                 y: float | None = None, reviewer: str | None = None, note: str | None = None) -> tuple:
    """One checked row for the decisions table (created now), `point` None for a decision on the whole face
    (FACE_DECISIONS); a ValueError for a bad decision."""
    if decision not in DECISIONS:
        raise ValueError(f"decision must be one of {', '.join(DECISIONS)}, got {decision!r}")
    x, y = _position(x), _position(y)
    if decision in FACE_DECISIONS:
        if point is not None or x is not None or y is not None:
            raise ValueError(f"'{decision}' is a decision on the whole face: give no point and no position")
        return (str(image_id), None, decision, None, None, reviewer or default_reviewer(), note, now_utc())
    if point is None or int(point) != point or point < 0:
        raise ValueError(f"point must be a non-negative integer, got {point!r}")
    if (x is None) != (y is None):
        raise ValueError("give both x and y, or neither")
    if x is not None and not (math.isfinite(x) and math.isfinite(y)):
        raise ValueError(f"position must be finite, got ({x}, {y})")
    if decision == "edit" and x is None:
        raise ValueError("an edit needs the new position: x and y")
    return (str(image_id), int(point), decision, x, y, reviewer or default_reviewer(), note, now_utc())


class ReviewStore:
    """The decisions of one audit directory: `record` and `record_face` append, `latest` reads the decision of
    every point."""

    def __init__(self, audit_dir: str | Path) -> None:
        self.audit_dir = audit_path(audit_dir)
        self.manifest = load_manifest(self.audit_dir)
        self.fingerprint = self.manifest["dataset"]["fingerprint"]
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

    def _check(self, con: sqlite3.Connection) -> int:
        """The schema version of our file with this audit's fingerprint, 0 for an empty file; else an InputError."""
        tables = {name for (name,) in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        tables.discard("sqlite_sequence")
        if not tables:
            return 0
        if not set(_TABLES) <= tables:
            raise InputError(f"not a reviews database of landmark-auditor (tables: {', '.join(sorted(tables))})",
                             path=self.path)
        versions = [v for (v,) in con.execute("SELECT version FROM schema_version")]
        if len(versions) != 1 or versions[0] not in READABLE_VERSIONS:
            raise InputError(f"reviews schema version {versions[0] if versions else 'missing'}; this auditor reads "
                             f"versions {', '.join(map(str, READABLE_VERSIONS))}", path=self.path)
        columns = tuple(row[1] for row in con.execute("PRAGMA table_info(decisions)"))
        if columns != COLUMNS:
            raise InputError(f"the decisions table has columns {', '.join(columns)}; expected {', '.join(COLUMNS)}",
                             path=self.path)
        stored = con.execute("SELECT value FROM meta WHERE key = 'dataset_fingerprint'").fetchone()
        if stored is None or stored[0] != self.fingerprint:
            raise InputError(f"these decisions were made on another version of the dataset (fingerprint "
                             f"{stored[0][:12] if stored else 'missing'}..., the audit's is {self.fingerprint[:12]}...)"
                             f": move {REVIEWS} away to start afresh", path=self.path)
        return versions[0]

    def _append(self, rows: list[tuple]) -> list[int]:
        """Insert rows in one transaction, creating the schema first when the file is new; returns their ids."""
        with self._connect(create=True) as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                version = self._check(con)
                if not version:
                    for statement in (*_TABLES.values(), _INDEX):
                        con.execute(statement)
                    con.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
                    con.execute("INSERT INTO meta (key, value) VALUES ('dataset_fingerprint', ?)", (self.fingerprint,))
                elif version == 1:
                    self._migrate_from_1(con)
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

    def _migrate_from_1(self, con: sqlite3.Connection) -> None:
        """Rebuild a version 1 decisions table as version 2, inside the caller's transaction."""
        try:
            for statement in _MIGRATE_FROM_1:
                con.execute(statement)
        except sqlite3.IntegrityError as e:  # a row another program wrote that version 2's rules refuse
            raise InputError(f"cannot upgrade the reviews database to schema version {SCHEMA_VERSION}: a row breaks "
                             f"its rules ({e}); repair it or move {REVIEWS} away", path=self.path) from None

    def record(self, image_id: str, point: int, decision: str, *, x: float | None = None, y: float | None = None,
               reviewer: str | None = None, note: str | None = None) -> int:
        """Append one decision on a point (`edit` needs x, y in image pixels); returns its id."""
        if decision not in POINT_DECISIONS:
            raise ValueError(f"a decision on a point is one of {', '.join(POINT_DECISIONS)}, got {decision!r}")
        return self._append([decision_row(image_id, point, decision, x=x, y=y, reviewer=reviewer, note=note)])[0]

    def record_face(self, image_id: str, decision: str = "mirror", *, reviewer: str | None = None,
                    note: str | None = None) -> int:
        """Append one decision on a whole face (FACE_DECISIONS: `mirror`); returns its id."""
        if decision not in FACE_DECISIONS:
            raise ValueError(f"a decision on the whole face is one of {', '.join(FACE_DECISIONS)}, got {decision!r}")
        return self._append([decision_row(image_id, None, decision, reviewer=reviewer, note=note)])[0]

    def record_many(self, rows: Iterable[Mapping]) -> int:
        """Append many decisions in one transaction: each a mapping with image_id, point (None for a decision on the
        whole face), decision and optionally x, y, reviewer, note; returns how many."""
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
            if pd.api.types.is_float_dtype(rows[column]) or pd.api.types.is_integer_dtype(rows[column]):
                return rows[column].astype(np.float64)  # numbers and nulls only: nothing to check one by one
            values = rows[column].map(lambda v: v if isinstance(v, int | float) and not isinstance(v, bool)
                                      else None if v is None else math.nan, na_action=None)
            return pd.to_numeric(values, errors="coerce")

        def texts(column: str, *, nulls: bool) -> bool:
            return pd.api.types.infer_dtype(rows[column], skipna=nulls) in (("string", "empty") if nulls else
                                                                            ("string",))

        face_level = rows.decision.isin(FACE_DECISIONS)
        point = numbers("point")
        bad(~face_level & (~np.isfinite(point) | (point != np.round(point)) | (point < 0) | (point > 2**31)), "point",
            "a non-negative integer")
        bad(face_level & rows.point.notna(), "point", "null for a decision on the whole face")
        for column in ("x", "y"):
            value = numbers(column)
            bad(rows[column].notna() & ~np.isfinite(value), column, "a finite number or null")
            bad(face_level & rows[column].notna(), column, "null for a decision on the whole face")
            rows[column] = value
        bad(~rows.decision.isin(DECISIONS), "decision", f"one of {', '.join(DECISIONS)}")
        if not texts("image_id", nulls=False):
            bad(~rows.image_id.map(lambda v: isinstance(v, str)), "image_id", "text")
        bad(rows.decision.eq("edit") & rows.x.isna(), "x", "a position for an edit")
        rows["point"] = point.fillna(FACE)  # a decision on the whole face: FACE
        for column in ("reviewer", "note", "created_at"):
            if not texts(column, nulls=True):
                rows[column] = rows[column].map(lambda v: v if v is None or isinstance(v, str) else str(v))
        return rows.astype(_DTYPES)

    def mirrored_points(self) -> np.ndarray:
        """The points a `mirror` decision moves: those with a flip partner in the audit's scheme."""
        flip = audit_scheme(self.manifest, self.audit_dir).flip_permutation
        return np.flatnonzero(flip != np.arange(len(flip)))

    def latest(self) -> pd.DataFrame:
        """The decision of every decided point (its latest row, the face's `mirror` included): COLUMNS, one row per
        (image_id, point), sorted by them."""
        rows = self._query(_LATEST)
        face = (rows.point == FACE).to_numpy()
        if not face.any():
            return rows
        moved = self.mirrored_points()
        mirrored = rows[face].loc[np.repeat(rows.index[face], len(moved))].assign(point=np.tile(moved, face.sum()))
        points = pd.concat([rows[~face], mirrored]).sort_values("id", kind="stable")
        points = points.drop_duplicates(["image_id", "point"], keep="last")
        return points.sort_values(["image_id", "point"], kind="stable").reset_index(drop=True)

    def history(self, image_id: str, point: int | None) -> pd.DataFrame:
        """Every decision on one point, oldest first: its own and its face's `mirror` when it moves the point;
        `point` None: the decisions on the whole face (point FACE)."""
        if point is None:
            return self._query("SELECT * FROM decisions WHERE image_id = ? AND point IS NULL ORDER BY id",
                               (str(image_id),))
        rows = self._query("SELECT * FROM decisions WHERE image_id = ? AND (point = ? OR point IS NULL) ORDER BY id",
                           (str(image_id), int(point)))
        if (rows.point == FACE).any() and int(point) not in self.mirrored_points():
            rows = rows[rows.point != FACE].reset_index(drop=True)
        return rows

    def progress(self, issue_points: int | pd.DataFrame | pd.MultiIndex, *,
                 latest: pd.DataFrame | None = None) -> dict[str, int]:
        """Decided counts by decision against a total: an int, or the (image_id, point) keys of e.g. the audit's
        issues (a frame, or a MultiIndex of str image_id and int point), in which case only decisions on those
        points count. `latest`: this store's `latest()` when the caller has just read it."""
        latest = self.latest() if latest is None else latest
        if isinstance(issue_points, pd.DataFrame):
            issue_points = pd.MultiIndex.from_arrays([
                issue_points.image_id.astype(str).to_numpy(dtype=object),
                issue_points.point.to_numpy(dtype=np.int64)]).unique()
        if isinstance(issue_points, pd.MultiIndex):
            keys = pd.MultiIndex.from_arrays([latest.image_id.astype(str).to_numpy(dtype=object),
                                              latest.point.to_numpy(dtype=np.int64)])
            latest = latest[issue_points.get_indexer(keys) >= 0]
            total = len(issue_points)
        else:
            total = int(issue_points)
        counts = {d: int((latest.decision == d).sum()) for d in DECISIONS}  # a mirrored face: once per point
        return {"total": total, "decided": len(latest), "remaining": max(total - len(latest), 0), **counts}


def select_points(points: pd.DataFrame, where: str, *, field: str | None = None) -> pd.DataFrame:
    """The labelled points of `points` (points.parquet) for which `where`, a query of `auditor.query` over its columns,
    is true; an InputError naming `field` for a bad query."""
    selected = points[evaluate_query(points, where, field=field)]
    return selected[np.isfinite(selected.x_human) & np.isfinite(selected.y_human)]


def in_queue_order(audit: Audit, selected: pd.DataFrame, *, order: str = "gain",
                   limit: int | None = None) -> pd.DataFrame:
    """The rows of `selected` (rows of `audit.points`, with its index) in the review queue's `order`
    (`auditor.triage`; a swapped face's points together, by point); with `limit`, those of its first `limit` items."""
    if order not in ORDERS:
        raise InputError(f"unknown order '{order}': expected one of {', '.join(ORDERS)}")
    flip = audit_scheme(audit.manifest, ".").flip_permutation
    rank = queue_rank(audit.points, point_gains(audit.points, audit.images, audit.manifest, flip), order=order)
    ordered = selected.assign(rank=pd.Series(rank, index=audit.points.index).loc[selected.index])
    ordered = ordered.sort_values(["rank", "point"], kind="stable")
    if limit is not None:
        ordered = ordered[ordered["rank"].isin(ordered["rank"].drop_duplicates().iloc[:limit])]
    return ordered.drop(columns="rank")


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
