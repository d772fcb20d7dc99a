"""Seeded mutations of valid inputs for tests/test_fuzz.py: text, JSON, parquet, .npy, SQLite, checkpoints and the
file system. Each `mutate_*` changes one file in place, draws only from the `random.Random` it is given, and returns
a short description of what it did (the caller names the file)."""

from __future__ import annotations

import collections
import io
import json
import math
import os
import random
import re
import shutil
import sqlite3
import struct
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

NUMBER_SUBS = ("nan", "inf", "-inf", "1e308", "-1e308", "1e-320", "", "abc", "0x10", "9" * 400, "1_000",
               "\u0661\u0662\u0663", "+-1", "99999999", "-0")
INSERTS = (b"\x00", b"\r", b'"', b",", b"{", b"}", b"[", b"]", b"\n", b"\r\n", b"'", b"\t", b"\\", b"#", b"\xff",
           b"\xc3(", b"\xe2\x80\xa8", b" ", b":", b"-")
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?")


def _short(value: object, width: int = 24) -> str:
    text = repr(value)
    return text if len(text) <= width else text[:width] + f"...({len(text)} chars)"


# --- bytes and text ------------------------------------------------------------------------------------------------

def mutate_bytes(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Format-blind damage: truncation, flipped bits, overwritten or zeroed spans."""
    op = rng.choice(("truncate", "flip", "zero", "overwrite"))
    if not data:
        return b"\x00", "empty -> one NUL byte"
    if op == "truncate":
        cut = rng.randrange(len(data))
        return data[:cut], f"truncated at byte {cut} of {len(data)}"
    buf = bytearray(data)
    if op == "flip":
        where = sorted(rng.randrange(len(buf)) for _ in range(rng.randint(1, 8)))
        for i in where:
            buf[i] ^= 1 << rng.randrange(8)
        return bytes(buf), f"bits flipped at bytes {where}"
    start = rng.randrange(len(buf))
    end = min(len(buf), start + rng.randint(1, 256))
    if op == "zero":
        buf[start:end] = bytes(end - start)
        return bytes(buf), f"bytes {start}-{end} zeroed"
    buf[start:end] = rng.randbytes(end - start)
    return bytes(buf), f"bytes {start}-{end} overwritten with random bytes"


def _lines(data: bytes) -> list[bytes]:
    return data.splitlines(keepends=True) or [b""]


def mutate_text(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Damage a text annotation the way editors, scripts and transfers do."""
    op = rng.choice(("truncate", "flip", "overwrite", "insert", "insert", "delete_line", "duplicate_line",
                     "swap_lines", "number", "number", "number", "head_number", "head_number", "utf16", "latin1", "bom",
                     "empty", "huge_line"))
    if op in ("truncate", "flip") or (op == "overwrite" and not data):
        return mutate_bytes(data, rng)
    if op == "overwrite":
        buf = bytearray(data)
        i = rng.randrange(len(buf))
        token = rng.choice(INSERTS)
        buf[i:i + len(token)] = token
        return bytes(buf), f"byte {i} overwritten with {token!r}"
    if op == "insert":
        i = rng.randrange(len(data) + 1)
        token = rng.choice(INSERTS) * rng.choice((1, 1, 2, 5))
        return data[:i] + token + data[i:], f"{token!r} inserted at byte {i}"
    if op in ("delete_line", "duplicate_line", "swap_lines"):
        lines = _lines(data)
        i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
        if op == "delete_line":
            del lines[i]
            what = f"line {i + 1} deleted"
        elif op == "duplicate_line":
            lines.insert(i, lines[i])
            what = f"line {i + 1} duplicated"
        else:
            lines[i], lines[j] = lines[j], lines[i]
            what = f"lines {i + 1} and {j + 1} swapped"
        return b"".join(lines), what
    if op in ("number", "head_number"):  # head: a number of the first lines (a header, a count, an id)
        head = len(b"".join(_lines(data)[:3])) if op == "head_number" else len(data)
        matches = [m for m in _NUMBER.finditer(data) if m.start() < head]
        if not matches:
            return mutate_bytes(data, rng)
        m = rng.choice(matches)
        sub = rng.choice(NUMBER_SUBS)
        line = data.count(b"\n", 0, m.start()) + 1
        what = f"number {m[0].decode()!r} on line {line} -> {_short(sub)}"
        return data[:m.start()] + sub.encode() + data[m.end():], what
    if op == "utf16":
        return data.decode("utf-8", "replace").encode("utf-16"), "re-encoded as UTF-16"
    if op == "latin1":
        lines = _lines(data)
        i = rng.randrange(len(lines))
        lines[i] = lines[i].rstrip(b"\r\n") + " caf\u00e9 \u00fc".encode() + b"\n"
        text = b"".join(lines).decode("utf-8", "replace")
        return text.encode("latin-1", "replace"), f"non-ASCII text on line {i + 1}, re-encoded as latin-1"
    if op == "bom":
        return b"\xef\xbb\xbf" + data, "UTF-8 byte-order mark added"
    if op == "empty":
        return b"", "emptied"
    lines = _lines(data)
    i = rng.randrange(len(lines) + 1)
    huge = rng.choice((b"1.5 ", b"x", b"7,"))
    lines.insert(i, huge * (2**20 // len(huge)) + b"\n")
    return b"".join(lines), f"a 1 MB line of {huge!r} inserted before line {i + 1}"


# --- JSON ----------------------------------------------------------------------------------------------------------

_DEEP = "__fuzz_deep__"
_OTHER_TYPES = ("x", 7, 2.5, [], {}, None, True, False, [1, 2], {"a": 1}, "", -3)
_NUMBERS = (-1, 0, -0.0, 1e308, -1e308, 2**63, 2**64 + 1, 1e-320, math.nan, math.inf, -math.inf, 0.5, 10**9)
_STRINGS = ("", "/", ".", "..", "../../..", "\x00", "a" * 10_000, "caf\u00e9", "NaN", "#1", " ", "x/../y",
            "face_0000", "C:\\x")
_IDS = ("id", "image_id", "category_id", "face", "point", "index", "count")


def _nodes(obj: object, path: tuple = ()) -> list[tuple]:
    found = [path]
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _nodes(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            found += _nodes(value, (*path, i))
    return found


def _get(obj: object, path: tuple) -> object:
    for key in path:
        obj = obj[key]
    return obj


def _pick(nodes: list[tuple], rng: random.Random) -> tuple:
    """A node at a depth drawn uniformly, so that the few top-level keys are hit as often as the many leaves."""
    depth = rng.choice(sorted({len(p) for p in nodes}))
    return rng.choice([p for p in nodes if len(p) == depth])


def _set(obj: object, path: tuple, value: object) -> object:
    if not path:
        return value
    _get(obj, path[:-1])[path[-1]] = value
    return obj


def _where(path: tuple) -> str:
    return ".".join(map(str, path)) or "(root)"


def mutate_json(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Parse, change the structure (a key dropped, an entry duplicated, a value of another type, a huge or deep
    value, colliding ids, odd numbers or strings), dump."""
    obj = json.loads(data)
    nodes = _nodes(obj)
    op = rng.choice(("drop", "drop", "duplicate", "type", "type", "type", "bigint", "deep", "number", "number",
                     "collide", "string", "empty"))
    path = _pick(nodes, rng)
    if op == "drop" and path:
        del _get(obj, path[:-1])[path[-1]]
        what = f"{_where(path)} dropped"
    elif op == "duplicate":
        lists = [p for p in nodes if isinstance(_get(obj, p), list) and _get(obj, p)]
        if not lists:
            return mutate_text(data, rng)
        path = rng.choice(lists)
        items = _get(obj, path)
        i = rng.randrange(len(items))
        items.insert(rng.randrange(len(items) + 1), json.loads(json.dumps(items[i])))
        what = f"{_where(path)}[{i}] duplicated"
    elif op == "bigint":
        obj = _set(obj, path, rng.choice((10**400, -(10**400))))
        what = f"{_where(path)} -> a 400-digit integer"
    elif op == "deep":
        obj = _set(obj, path, _DEEP)
        what = f"{_where(path)} -> nested 5,000 levels deep"
    elif op == "number":
        numbers = [p for p in nodes if isinstance(_get(obj, p), int | float) and not isinstance(_get(obj, p), bool)]
        path = rng.choice(numbers) if numbers and rng.random() < 0.7 else path
        value = rng.choice(_NUMBERS)
        obj = _set(obj, path, value)
        what = f"{_where(path)} -> {value!r}"
    elif op == "collide":
        ids = [p for p in nodes if p and p[-1] in _IDS]
        if len(ids) < 2:
            return mutate_text(data, rng)
        a, b = rng.sample(ids, 2)
        obj = _set(obj, a, _get(obj, b))
        what = f"{_where(a)} -> {_where(b)}'s value {_short(_get(obj, b))}"
    elif op == "string":
        strings = [p for p in nodes if isinstance(_get(obj, p), str)]
        path = rng.choice(strings) if strings and rng.random() < 0.8 else path
        value = rng.choice(_STRINGS)
        obj = _set(obj, path, value)
        what = f"{_where(path)} -> {_short(value)}"
    elif op == "empty":
        containers = [p for p in nodes if isinstance(_get(obj, p), list | dict)]
        path = rng.choice(containers)
        obj = _set(obj, path, [] if isinstance(_get(obj, path), list) else {})
        what = f"{_where(path)} emptied"
    else:
        old = _get(obj, path)
        value = rng.choice([v for v in _OTHER_TYPES if type(v) is not type(old)])
        obj = _set(obj, path, value)
        what = f"{_where(path)} ({type(old).__name__}) -> {value!r}"
    text = json.dumps(obj, allow_nan=True)
    if _DEEP in text:
        deep = rng.choice(("[", '{"a": '))
        close = "]" if deep == "[" else "}"
        text = text.replace(json.dumps(_DEEP), deep * 5000 + "1" + close * 5000, 1)
    return text.encode(), what


def mutate_text_or_json(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """Half the time damage the text, half the time the JSON structure."""
    return mutate_json(data, rng) if rng.random() < 0.5 else mutate_text(data, rng)


# --- tables (parquet) ----------------------------------------------------------------------------------------------

def _rows(df: pd.DataFrame, rng: random.Random) -> list[int]:
    return sorted(rng.sample(range(len(df)), min(len(df), rng.randint(1, 5)))) if len(df) else []


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _table_op(df: pd.DataFrame, rng: random.Random) -> tuple[pd.DataFrame, str]:
    """One change to a table (may raise when the change does not apply to the column drawn)."""
    col = rng.choice(list(df.columns))
    rows = _rows(df, rng)
    op = rng.choice(("str", "nan", "nan", "inf", "negative", "huge", "drop", "drop", "dup_rows", "shuffle", "object",
                     "bool", "empty", "half", "float32", "int8", "category", "nullable", "swap", "text", "list",
                     "extra", "other_row", "other_row", "off_by_one", "drop_rows", "new_id", "scale"))
    s = df[col]
    if op == "other_row":  # a value of the right type from another row: ids, faces or points that collide
        df.loc[rows, col] = s.iloc[rng.randrange(len(df))] if len(df) else None
    elif op == "off_by_one":
        if not _numeric(s):
            raise TypeError(op)
        df.loc[rows, col] = s.iloc[rows] + rng.choice((1, -1))
    elif op == "drop_rows":
        df = df.drop(index=df.index[rows]).reset_index(drop=True)
        col = "(all)"
    elif op == "new_id":
        df[col] = s.astype(object)
        df.loc[rows, col] = rng.choice(("face_9999", "zzz", "face_0000#1", "../x", "face_0001"))
    elif op == "scale":
        if not _numeric(s):
            raise TypeError(op)
        df[col] = s * rng.choice((1000.0, -1.0, 0.0, 1e-9))
    elif op == "str":
        df[col] = s.astype(str)
    elif op == "nan":
        df[col] = s.astype(float if _numeric(s) else object)
        df.loc[rows, col] = np.nan if _numeric(s) else None
    elif op in ("inf", "negative", "huge"):
        if not _numeric(s):
            raise TypeError(op)
        value = {"inf": rng.choice((np.inf, -np.inf)), "negative": -1 - abs(float(s.max())),
                 "huge": rng.choice((1e300, 2.0**62, -1e300))}[op]
        df[col] = s.astype(float)
        df.loc[rows, col] = value
        if op == "huge" and value == 2.0**62 and pd.api.types.is_integer_dtype(s):
            df[col] = df[col].astype(np.int64)
    elif op == "drop":
        df = df.drop(columns=col)
    elif op == "dup_rows":
        df = pd.concat([df, df.iloc[rows]], ignore_index=True)
    elif op == "shuffle":
        df = df.sample(frac=1, random_state=rng.randrange(2**31)).reset_index(drop=True)
        col = "(all)"
    elif op == "object":
        df[col] = s.astype(object)
        df.loc[rows[:1], col] = rng.choice(("x", 1.5, 3, None, True))
    elif op == "bool":
        df[col] = s.fillna(0).astype(bool) if _numeric(s) else s.astype(bool)
    elif op == "empty":
        df, col = df.iloc[:0], "(all)"
    elif op == "half":
        df, col = df.iloc[:: 2].reset_index(drop=True), "(all)"
    elif op == "float32":
        df[col] = s.astype(np.float32)
    elif op == "int8":
        df[col] = s.astype(np.int8)
    elif op == "category":
        df[col] = s.astype("category")
    elif op == "nullable":
        df[col] = s.astype("Int64" if _numeric(s) else "string")
        df.loc[rows, col] = pd.NA
    elif op == "swap":
        other = rng.choice(list(df.columns))
        df[col], df[other] = s.to_numpy(), df[other].to_numpy()
        col = f"{col}<->{other}"
    elif op == "text":
        df[col] = s.astype(object)
        df.loc[rows, col] = rng.choice(_STRINGS[:10])
    elif op == "list":
        df[col] = [[1.0, 2.0]] * len(df)
    else:
        df[rng.choice(("x_extra", "notes"))] = rng.choice((np.nan, "x", 1))
        col = "(new)"
    return df, f"{op} on column {col} rows {rows}"


def mutate_parquet(path: Path, rng: random.Random) -> str:
    """Read with pandas, change one column's values or type, a row or the whole table, write back; or damage the
    bytes."""
    if rng.random() < 0.15:
        data, what = mutate_bytes(path.read_bytes(), rng)
        path.write_bytes(data)
        return what
    df = pd.read_parquet(path)
    for _ in range(20):
        try:
            with warnings.catch_warnings():  # pandas warns of some dtype changes that it will refuse later
                warnings.simplefilter("ignore")
                changed, what = _table_op(df.copy(), rng)
            buffer = io.BytesIO()
            changed.to_parquet(buffer, index=False)
        except Exception:  # pandas or pyarrow cannot hold this change (several error types): draw another
            continue
        path.write_bytes(buffer.getvalue())
        return what
    path.write_bytes(b"")
    return "emptied"


# --- .npy ------------------------------------------------------------------------------------------------------------

NPY_OPS = ("truncate", "object", "dtype", "dtype", "shape", "shape", "missing", "nan", "extreme", "header", "header",
           "unclosed_header", "folder", "scalar", "fortran", "big_header")


def mutate_npy(path: Path, rng: random.Random, *, op: str | None = None) -> str:
    """Truncate, pickle an object array, change dtype, shape or values, damage or lie in the header, or remove the
    file: `op` (one of NPY_OPS), else drawn."""
    array = np.load(path)
    op = op or rng.choice(NPY_OPS)
    if op == "truncate":
        data = path.read_bytes()
        cut = rng.randrange(len(data))
        path.write_bytes(data[:cut])
        return f"truncated at byte {cut} of {len(data)}"
    if op == "object":
        np.save(path, np.array([{"a": 1}, "x", None], dtype=object), allow_pickle=True)
        return "a pickled object array"
    if op == "dtype":
        dtype = rng.choice((np.float64, np.float32, np.int8, np.int64, np.complex64, np.bool_, "U3"))
        np.save(path, array.astype(dtype))
        return f"dtype {np.dtype(dtype).name}"
    if op == "shape":
        shaped = rng.choice((array[:-1], array.reshape(-1), array[..., :1], array[None], np.zeros((0,), array.dtype),
                             np.concatenate([array, array])))
        np.save(path, shaped)
        return f"shape {shaped.shape}"
    if op == "missing":
        path.unlink()
        return "removed"
    if op in ("nan", "extreme"):
        flat = array.reshape(-1).copy()
        idx = rng.sample(range(flat.size), min(flat.size, 5))
        if op == "nan" and array.dtype.kind == "f":
            flat[idx] = rng.choice((np.nan, np.inf, -np.inf))
        else:
            info = np.finfo(array.dtype) if array.dtype.kind == "f" else np.iinfo(array.dtype)
            flat[idx] = rng.choice((info.max, info.min))
        np.save(path, flat.reshape(array.shape))
        return f"{op} values at flat indices {idx}"
    if op == "header":
        data = bytearray(path.read_bytes())
        i = rng.randrange(10, min(len(data), 128))
        data[i] = rng.choice(b"(){}[],:'0123456789 x")
        path.write_bytes(bytes(data))
        return f"header byte {i} -> {chr(data[i])!r}"
    if op == "unclosed_header":
        data = path.read_bytes()
        end = data.index(b"}")
        path.write_bytes(data[:end] + b" " + data[end + 1:])
        return "the header's closing brace blanked"
    if op == "folder":
        path.unlink()
        path.mkdir()
        return "a folder"
    if op == "scalar":
        np.save(path, np.float16(1.0))
        return "a 0-d array"
    if op == "fortran":
        np.save(path, np.asfortranarray(array))
        return "Fortran order"
    with open(path, "wb") as f:  # a header promising 1,000 times the data that follows
        np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(array.dtype),
                                                 "fortran_order": False, "shape": (array.shape[0] * 1000,
                                                                                   *array.shape[1:])})
        f.write(array.tobytes())
    return f"header claims {array.shape[0] * 1000} rows"


# --- SQLite (reviews.sqlite) -----------------------------------------------------------------------------------------

_UNCONSTRAINED = ("CREATE TABLE decisions_free (id INTEGER PRIMARY KEY AUTOINCREMENT, image_id, point, decision, x, y, "
                  "reviewer, note, created_at)")


def _free_decisions(con: sqlite3.Connection) -> None:
    """Rebuild the decisions table without NOT NULL and CHECK constraints, so that any row goes in."""
    con.execute(_UNCONSTRAINED)
    con.execute("INSERT INTO decisions_free SELECT * FROM decisions")
    con.execute("DROP TABLE decisions")
    con.execute("ALTER TABLE decisions_free RENAME TO decisions")


def mutate_sqlite(path: Path, rng: random.Random) -> str:
    """Rows no writer of ours would make, a dropped table, another schema, or damaged bytes."""
    op = rng.choice(("row", "row", "row", "row", "drop_table", "schema_version", "fingerprint", "extra_column",
                     "bytes", "bytes", "truncate", "empty"))
    if op in ("bytes", "truncate", "empty"):
        data = path.read_bytes()
        if op == "empty":
            path.write_bytes(b"")
            return "emptied"
        if op == "truncate":
            cut = rng.randrange(len(data))
            path.write_bytes(data[:cut])
            return f"truncated at byte {cut} of {len(data)}"
        mutated, what = mutate_bytes(data, rng)
        path.write_bytes(mutated)
        return what
    con = sqlite3.connect(path, isolation_level=None)
    try:
        if op == "row":
            image = rng.choice(("face_0000", "face_0003", "face_0003", "nobody", "", None, 7))
            point = rng.choice((0, 5, 67, 67, -1, 68, 2**62, 1.5, "abc", "3", None))
            decision = rng.choice(("accept", "reject", "edit", "edit", "edit", "maybe", "", None))
            x = rng.choice((None, 10.0, 10.0, "abc", math.inf, -math.inf, 1e308, -1e308, 1e12, b"\x00\x01", -5.0))
            y = rng.choice((None, 12.0, 12.0, "12", math.nan, 1e-320, 1e308, -1e9))
            reviewer = rng.choice(("me", None, "", "x" * 5000))
            created = rng.choice(("2024-01-01T00:00:00.000000+00:00", "yesterday", None, 3))
            row = (image, point, decision, x, y, reviewer, None, created)
            _free_decisions(con)
            con.execute("INSERT INTO decisions (image_id, point, decision, x, y, reviewer, note, created_at) "
                        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row)
            return f"row {_short(row, 120)} added"
        if op == "drop_table":
            table = rng.choice(("schema_version", "meta", "decisions"))
            con.execute(f"DROP TABLE {table}")
            return f"table {table} dropped"
        if op == "schema_version":
            value = rng.choice((2, 0, "1", None, 1.5, "x"))
            if value is None:
                con.execute("DELETE FROM schema_version")
            else:
                con.execute("UPDATE schema_version SET version = ?", (value,))
            if rng.random() < 0.3:
                con.execute("INSERT INTO schema_version VALUES (1)")
            return f"schema_version -> {value!r}"
        if op == "fingerprint":
            value = rng.choice(("0" * 64, "", None))
            if value is None:
                con.execute("DELETE FROM meta")
            else:
                con.execute("UPDATE meta SET value = ? WHERE key = 'dataset_fingerprint'", (value,))
            return f"fingerprint -> {value!r}"
        con.execute("ALTER TABLE decisions ADD COLUMN extra TEXT")
        return "a column added to decisions"
    finally:
        con.close()


# --- checkpoints ---------------------------------------------------------------------------------------------------

def flip_pickle_bit(path: Path, rng: random.Random) -> str:
    """Flip one bit of a torch checkpoint's pickled structure (data.pkl; most of the file is tensor data, which any
    bits fit)."""
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        member = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
    name_len, extra_len = struct.unpack_from("<HH", data, member.header_offset + 26)  # the local header's lengths
    i = member.header_offset + 30 + name_len + extra_len + rng.randrange(member.compress_size)
    bit = rng.randrange(8)
    data[i] ^= 1 << bit
    path.write_bytes(bytes(data))
    return f"bit {bit} of byte {i} flipped (in data.pkl)"


def mutate_checkpoint(path: Path, rng: random.Random) -> str:
    """Damage the zip's bytes, or save a well-formed checkpoint (format_version 1) with wrong contents."""
    op = rng.choice(("bytes", "bytes", "truncate", "pickle", "pickle", "version", "payload", "config", "config",
                     "config", "scheme", "scheme", "weights", "weights", "weights", "state", "unsafe", "foreign_zip"))
    if op == "pickle":
        return flip_pickle_bit(path, rng)
    if op in ("bytes", "truncate"):
        data = path.read_bytes()
        if op == "truncate":
            cut = rng.randrange(len(data))
            path.write_bytes(data[:cut])
            return f"truncated at byte {cut} of {len(data)}"
        mutated, what = mutate_bytes(data, rng)
        path.write_bytes(mutated)
        return what
    if op == "foreign_zip":
        path.unlink()
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("data.txt", "not a checkpoint")
        return "a zip archive of a text file"
    payload = torch.load(path, weights_only=True)
    if op == "version":
        value = rng.choice((2, "1", None, 1.0, True))
        payload["format_version"] = value
        what = f"format_version -> {value!r}"
    elif op == "payload":
        payload = rng.choice(([1, 2], None, torch.zeros(3), "checkpoint", {"format_version": 1}))
        what = f"payload -> {_short(payload)}"
    elif op == "config":
        config = payload["config"]
        key = rng.choice(list(config))
        kind = rng.choice(("drop", "unknown", "value", "value", "value", "not_a_dict"))
        if kind == "drop":
            del config[key]
            what = f"config.{key} dropped"
        elif kind == "unknown":
            config["wings"] = 2
            what = "config gets an unknown field 'wings'"
        elif kind == "not_a_dict":
            payload["config"] = rng.choice(([], "tiny", None, 3))
            what = f"config -> {payload['config']!r}"
        else:
            value = rng.choice(("x", "16", 1.5, None, True, [], {}, -1, 0, 10**6, 2**63, math.nan, math.inf, -1e308))
            config[key] = value
            what = f"config.{key} -> {value!r}"
    elif op == "scheme":
        scheme = payload["scheme"]
        kind = rng.choice(("not_a_dict", "json", "json"))
        if kind == "not_a_dict":
            payload["scheme"] = rng.choice(([], "300w_68", None, 68))
            what = f"scheme -> {payload['scheme']!r}"
        else:
            text, what = mutate_json(json.dumps(scheme).encode(), rng)
            try:
                payload["scheme"] = json.loads(text)
            except (ValueError, RecursionError):
                payload["scheme"] = {"name": "x", "points": "deep"}
            what = f"scheme: {what}"
    elif op == "weights":
        weights = payload["model"]
        name = rng.choice(list(weights))
        t = weights[name]
        kind = rng.choice(("drop", "extra", "shape", "int", "nan", "inf", "list", "half", "bool", "complex",
                           "empty"))
        if kind == "drop":
            del weights[name]
        elif kind == "extra":
            weights["extra.weight"] = torch.zeros(3)
        elif kind == "shape":
            weights[name] = torch.zeros(*(s + 1 for s in t.shape)) if t.dim() else torch.zeros(2)
        elif kind == "int":
            weights[name] = t.to(torch.int32)
        elif kind in ("nan", "inf"):
            weights[name] = torch.full_like(t, math.nan if kind == "nan" else math.inf) if t.is_floating_point() else t
        elif kind == "list":
            weights[name] = t.tolist()
        elif kind == "half":
            weights[name] = t.half()
        elif kind == "bool":
            weights[name] = t.bool()
        elif kind == "complex":
            weights[name] = t.to(torch.complex64) if t.is_floating_point() else t
        else:
            payload["model"] = {}
        what = f"weights {name}: {kind}"
    elif op == "state":
        payload["state"] = rng.choice(([], None, "done", 3, torch.zeros(1)))
        what = f"state -> {_short(payload['state'])}"
    else:
        payload["state"] = {"stage": "done", "when": collections.Counter(a=1)}
        what = "state holds a collections.Counter (not a plain type)"
    torch.save(payload, path)
    return what


# --- the file system -----------------------------------------------------------------------------------------------

ODDITIES = ("loop", "dangling", "fifo", "folder")


def replace_with_oddity(path: Path, rng: random.Random | None = None, *, kind: str | None = None) -> str:
    """Replace a file (or folder) by a symlink loop, a dangling symlink, a FIFO or an empty folder: `kind`, else
    drawn."""
    kind = kind or rng.choice(ODDITIES)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif os.path.lexists(path):
        path.unlink()
    if kind == "loop":
        os.symlink(path.name, path)
    elif kind == "dangling":
        os.symlink("no_such_file", path)
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    return {"loop": "-> a symlink loop", "dangling": "-> a dangling symlink", "fifo": "-> a FIFO",
            "folder": "-> a folder"}[kind]


def damage_image(path: Path, rng: random.Random) -> str:
    """An image file emptied, or replaced by garbage, a truncated copy or a text file."""
    op = rng.choice(("zero", "garbage", "truncate", "text", "flip"))
    data = path.read_bytes()
    if op == "zero":
        path.write_bytes(b"")
    elif op == "garbage":
        path.write_bytes(rng.randbytes(rng.randint(1, 4096)))
    elif op == "truncate":
        path.write_bytes(data[:rng.randrange(1, len(data))])
    elif op == "text":
        path.write_bytes(b"version: 1\nn_points: 68\n")
    else:
        mutated, what = mutate_bytes(data, rng)
        path.write_bytes(mutated)
        return what
    return f"image {op}"


def mutate_file(path: Path, rng: random.Random, how: Callable[[bytes, random.Random], tuple[bytes, str]]) -> str:
    """Read `path`, apply the bytes mutation `how`, write it back."""
    data, what = how(path.read_bytes(), rng)
    path.write_bytes(data)
    return what


# --- queries (review --accept-where / --reject-where) ----------------------------------------------------------------

_QUERY_COLUMNS = ("label_score", "issue_type", "group", "point", "face", "x_human", "searched_nme", "is_label_issue",
                  "point_name", "image_id", "is_contour", "nosuch", "x_searched")
_QUERY_LITERALS = ("0", "0.5", "-1", "1e308", "'gross_error'", "'jaw'", "True", "False", "''", "9" * 50, "None",
                   "1j", "'\\x00'", "0x10", "b'x'", "...", "3.")
_QUERY_HOSTILE = ("9**9**9", "label_score ** 10**6", "'a' * 10**9", "(" * 300 + "1" + ")" * 300, "__import__('os')",
                  "label_score.__class__", "@x > 1", "lambda: 1", "point // 0 == 1", "x_human % 0 > 1",
                  "label_score < 0.5 " * 400, "[x for x in label_score]", "{1: 2}", "label_score[0] > 1",
                  "abs()", "abs(1, 2) > 0", "point.str.contains('1')", "issue_type < 3", "not", "", " ",
                  "label_score < 0.5; 1", "-" * 5000 + "1 < 2", "not " * 500 + "is_label_issue",
                  "2 ** -2000 < label_score", "10 ** 400 > point", "1e308 * 10 > label_score")


def _query(rng: random.Random, depth: int = 0) -> str:
    if depth >= 3 or (depth and rng.random() < 0.3):
        return rng.choice(_QUERY_COLUMNS) if rng.random() < 0.6 else rng.choice(_QUERY_LITERALS)
    a, b = _query(rng, depth + 1), _query(rng, depth + 1)
    form = rng.choice(("cmp", "cmp", "cmp", "logic", "not", "paren", "arith", "abs", "str", "na", "in", "chain"))
    if form == "cmp":
        return f"{a} {rng.choice(('==', '!=', '<', '<=', '>', '>=', 'is', 'is not'))} {b}"
    if form == "logic":
        return f"{a} {rng.choice(('and', 'or', '&', '|', '^'))} {b}"
    if form == "not":
        return f"{rng.choice(('not ', '~', '-'))}{a}"
    if form == "paren":
        return f"({a})"
    if form == "arith":
        return f"{a} {rng.choice(('+', '-', '*', '/', '//', '%', '**', '<<'))} {b}"
    if form == "abs":
        return f"abs({a})"
    if form == "str":
        method = rng.choice(("contains", "startswith", "endswith", "lower", "upper", "replace", "len"))
        argument = "" if method in ("lower", "upper", "len") else rng.choice(_QUERY_LITERALS)
        return f"{rng.choice(_QUERY_COLUMNS)}.str.{method}({argument})"
    if form == "na":
        return f"{rng.choice(_QUERY_COLUMNS)}.{rng.choice(('isna', 'notna', 'sum', 'max'))}()"
    if form == "in":
        return f"{a} {rng.choice(('in', 'not in'))} [{rng.choice(_QUERY_LITERALS)}, {rng.choice(_QUERY_LITERALS)}]"
    return f"{a} < {b} <= {_query(rng, depth + 1)}"


def random_query(rng: random.Random) -> str:
    """A query over the points table: built from the language's pieces (and some that are not in it), sometimes
    damaged as text, sometimes hostile."""
    if rng.random() < 0.15:
        return rng.choice(_QUERY_HOSTILE)
    query = _query(rng)
    if rng.random() < 0.3:
        data, _ = mutate_text(query.encode(), rng)
        query = data.decode("utf-8", "replace").replace("\x00", "")[:3000]
    return query
