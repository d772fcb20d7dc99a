"""Fuzz `auditor` in-process: seeded mutations of valid inputs (four dataset formats, a checkpoint, an audit with its
reviews, two shards) and sweeps (each file a link loop, dangling link, FIFO or folder; each manifest key dropped; each
config field extreme) through info, plant-noise, audit, merge, review and export-corrections. Promised: exit 0, or 2
with one `auditor: error:` line; no traceback; an answer within CASE_TIMEOUT_S; inputs unchanged; nothing written
outside the command's output (review: AUDIT/reviews.sqlite and its -wal/-shm)."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import io
import json
import math
import os
import random
import re
import resource
import shutil
import signal
import stat
import sys
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
import typer.main
from fuzz_mutations import (
    NPY_OPS,
    ODDITIES,
    damage_image,
    flip_pickle_bit,
    mutate_checkpoint,
    mutate_file,
    mutate_npy,
    mutate_parquet,
    mutate_sqlite,
    mutate_text,
    mutate_text_or_json,
    random_query,
    replace_with_oddity,
)

import auditor.cli
from auditor.checkpoint import save_checkpoint
from auditor.io import read_dataset, write_dataset
from auditor.model import LandmarkModel, get_preset
from auditor.synth import generate

SEED = 2024
CASE_TIMEOUT_S = 10  # a valid case answers in well under a second
MEMORY_HEADROOM = 4 << 30  # bytes of address space a case may add: a blow-up is a MemoryError, not the OOM killer
MAX_TIMEOUTS = 2  # after this many hangs the rest of the cases are not run (each costs CASE_TIMEOUT_S)
ANNOTATIONS = {"pts": "faces", "csv": "labels.csv", "wflw": "labels.txt", "coco": "labels.json"}
FACES = [f"face_{i:04d}" for i in range(4)]
REVIEW_FILES = ("audit/reviews.sqlite", "audit/reviews.sqlite-wal", "audit/reviews.sqlite-shm")

pytestmark = pytest.mark.slow


class CaseTimeout(BaseException):
    """Raised by SIGALRM in the command under test; a BaseException so that no `except Exception` swallows it."""


@dataclass
class Case:
    """One run: copy `template`, apply `mutate` to the copy (returns what it did), run `args` inside the copy."""

    template: str
    mutate: Callable[[Path], str]
    args: list[str]
    outputs: tuple[str, ...] = ()  # paths the command is given to write (relative to the copy)
    documented: tuple[str, ...] = ()  # other paths it is documented to write


@dataclass
class Outcome:
    case: Case
    what: str
    code: object
    stderr: str
    problems: list[str] = field(default_factory=list)


# --- running one command in-process --------------------------------------------------------------------------------

def _alarm(signum: int, frame: object) -> None:
    raise CaseTimeout


def _address_space() -> int | None:
    """This process's virtual memory size in bytes (Linux), or None."""
    with contextlib.suppress(OSError, StopIteration, ValueError):
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmSize:")).split()[1]) * 1024
    return None


def run_cli(args: list[str], *, cwd: Path, timeout: float = CASE_TIMEOUT_S) -> tuple[object, str, str]:
    """Run `auditor ARGS` in this process with `cwd` as the working directory: (exit code, stdout, stderr); the code
    is 'timeout' after `timeout` seconds and 'exception' when anything but SystemExit escapes `main()` (its
    traceback is the stderr). The command may grow the address space by MEMORY_HEADROOM at most."""
    out, err = io.StringIO(), io.StringIO()
    saved = (sys.argv, sys.stdin, os.getcwd(), signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGALRM),
             sys.excepthook)
    limits = resource.getrlimit(resource.RLIMIT_AS)
    size = _address_space()
    if size is not None:
        cap = size + MEMORY_HEADROOM
        resource.setrlimit(resource.RLIMIT_AS, (cap if limits[1] == resource.RLIM_INFINITY else min(cap, limits[1]),
                                                limits[1]))
    sys.argv, sys.stdin = ["auditor", *args], io.StringIO("")
    signal.signal(signal.SIGALRM, _alarm)
    os.chdir(cwd)
    code: object = 0
    outer, started = (0.0, 0.0), time.monotonic()  # a timer set before (pytest-timeout's) goes on after the case
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("default")  # the same warnings every case, whatever ran before
            outer = signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                auditor.cli.main()
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
    except SystemExit as e:
        code = 0 if e.code is None else e.code
    except CaseTimeout:
        code = "timeout"
        err.write(traceback.format_exc())  # where it hung
    except KeyboardInterrupt:
        raise
    except BaseException:
        code = "exception"
        err.write(traceback.format_exc())
    finally:
        sys.argv, sys.stdin = saved[0], saved[1]
        os.chdir(saved[2])
        signal.signal(signal.SIGTERM, saved[3])
        signal.signal(signal.SIGALRM, saved[4])
        if outer[0] > 0:
            signal.setitimer(signal.ITIMER_REAL, max(outer[0] - (time.monotonic() - started), 1e-3), outer[1])
        sys.excepthook = saved[5]  # typer installs its own
        resource.setrlimit(resource.RLIMIT_AS, limits)
    return code, out.getvalue(), err.getvalue()


def snapshot(root: Path) -> dict[str, tuple]:
    """Every path under `root` (links not followed): kind, and for a regular file its size, mtime and sha256. Folders
    carry no mtime: a temp file made and removed inside one is allowed."""
    entries = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(folder, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                entries[rel] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    entries[rel] = ("file", st.st_size, st.st_mtime_ns, hashlib.sha256(f.read()).hexdigest())
            else:
                entries[rel] = (stat.S_IFMT(st.st_mode),)
    return entries


def _excluded(rel: str, case: Case) -> bool:
    return rel in case.documented or any(rel == o or rel.startswith(o + os.sep) for o in case.outputs)


def check(case: Case, code: object, stderr: str, before: dict, after: dict) -> list[str]:
    """What broke the promise in one case (nothing when it held)."""
    problems = []
    if code not in (0, 2):
        problems.append(f"exit {code}")  # the harness wrote the traceback of an exception or a hang
    elif "Traceback" in stderr:
        problems.append("traceback")
    if code == 2:
        lines = stderr.splitlines()
        listed = [line for line in lines[:-1] if "--skip-bad" in case.args and line.startswith("skipped ")]
        if not lines or not lines[-1].startswith("auditor: error: ") or len(listed) != len(lines) - 1:
            problems.append(f"exit 2 with {len(lines)} stderr lines")
    changed = sorted(rel for rel in before.keys() & after.keys() if before[rel] != after[rel]
                     and not _excluded(rel, case))
    if changed:
        problems.append(f"input changed: {', '.join(changed[:3])}")
    added = sorted(rel for rel in after.keys() - before.keys() if not _excluded(rel, case))
    if added:
        problems.append(f"wrote outside its output: {', '.join(added[:3])}")
    removed = sorted(rel for rel in before.keys() - after.keys() if not _excluded(rel, case))
    if removed:
        problems.append(f"input removed: {', '.join(removed[:3])}")
    return problems


def run_cases(cases: list[Case], templates: Path, scratch: Path) -> list[Outcome]:
    """Run every case in a fresh copy of its template; the outcomes, each with the promises it broke."""
    outcomes, timeouts = [], 0
    for i, case in enumerate(cases):
        if timeouts >= MAX_TIMEOUTS:
            outcomes.append(Outcome(case, "-", "not run", "", [f"not run: {MAX_TIMEOUTS} cases had timed out"]))
            continue
        folder = scratch / f"case{i:04d}"
        shutil.copytree(templates / case.template, folder, symlinks=True)
        what = case.mutate(folder)
        before = snapshot(folder)
        code, _, stderr = run_cli(case.args, cwd=folder)
        outcome = Outcome(case, what, code, stderr, check(case, code, stderr, before, snapshot(folder)))
        timeouts += code == "timeout"
        outcomes.append(outcome)
        shutil.rmtree(folder)
    return outcomes


_FRAME = re.compile(r'File "[^"]*?(auditor/[^"]+)", line (\d+)')


def signature(o: Outcome) -> str:
    """What tells one failure from another: the command, the exception type and where in auditor/ it was raised, or
    the broken promise."""
    if o.code in ("exception", "timeout") or "traceback" in o.problems:  # the last frame in auditor/ names it
        frames = _FRAME.findall(o.stderr)
        last = o.stderr.strip().splitlines()[-1].split(":")[0] if o.stderr.strip() else str(o.code)
        where = f"{frames[-1][0]}:{frames[-1][1]}" if frames else "?"
        return f"{o.case.args[0]}: {last} at {where}"
    problems = "; ".join(re.sub(r"\d+", "N", p) for p in o.problems)
    return f"{o.case.args[0]}: {problems}"


def report(outcomes: list[Outcome], limit: int = 10) -> str:
    """The counts per command, then the first `limit` distinct failures: command line, mutation, exit code, the
    end of stderr."""
    per_command = Counter(o.case.args[0] for o in outcomes)
    failed = [o for o in outcomes if o.problems]
    distinct: dict[str, list[Outcome]] = {}
    for o in failed:
        distinct.setdefault(signature(o), []).append(o)
    lines = [f"{len(failed)} of {len(outcomes)} cases broke the promise ({dict(per_command)}); "
             f"{len(distinct)} distinct failures:"]
    for sig, group in list(distinct.items())[:limit]:
        o = group[0]
        tail = " | ".join(line.strip() for line in o.stderr.strip().splitlines()[-2:])[:300]
        lines.append(f"- {sig} [{len(group)} cases; {', '.join(o.problems)}]\n    auditor {' '.join(o.case.args)}"
                     f"  (in {o.case.template}/, {o.what})\n    exit {o.code}: {tail}")
    return "\n".join(lines)


def assert_promise_held(outcomes: list[Outcome], commands: set[str]) -> None:
    if any(o.problems for o in outcomes):
        pytest.fail(report(outcomes), pytrace=False)
    codes = {(o.case.args[0], o.code) for o in outcomes}
    # the mutations reach both sides: some inputs are still valid, some are refused (else the fuzz tests nothing)
    assert {(c, k) for c in commands for k in (0, 2)} <= codes, sorted(codes)


# --- the valid inputs ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def click_command_built_once():
    """Typer rebuilds the click command from the app on every call (~15 ms, more than `info` itself); it is the same
    command each time, so the fuzz builds it once."""
    build = typer.main.get_command
    built = {}

    def cached(app: typer.Typer):
        if id(app) not in built:
            built[id(app)] = build(app)
        return built[id(app)]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(typer.main, "get_command", cached)
        yield


@dataclass(frozen=True)
class Templates:
    root: Path  # one folder per template: pts, csv, wflw, coco, ckpt, audit, shards
    model: Path


@pytest.fixture(scope="module")
def templates(tmp_path_factory) -> Templates:
    root = tmp_path_factory.mktemp("fuzz")
    generate(root / "syn", n=4, seed=3, size=96)
    faces = root / "syn" / "faces"
    ds = read_dataset(faces)
    torch.manual_seed(0)
    model = root / "m.pt"
    save_checkpoint(model, model=LandmarkModel(ds.num_points, get_preset("tiny")), scheme=ds.scheme,
                    state={"stage": "done"})
    t = root / "templates"
    shutil.copytree(faces, t / "pts" / "faces")
    for fmt in ("csv", "wflw", "coco"):
        write_dataset(ds, root / "staging" / fmt / ANNOTATIONS[fmt], format=fmt)
        shutil.copytree(root / "staging" / fmt, t / fmt, symlinks=False)  # real image files, not links
    for name in ("ckpt", "audit", "shards"):
        shutil.copytree(faces, t / name / "faces")
    shutil.copy(model, t / "ckpt" / "m.pt")
    steps = [("audit", ["audit", "faces", "--model", str(model), "--out", "audit", "--workers", "0"]),
             ("audit", ["review", "audit", "--accept-where", "label_score < 0.5 and point < 40", "--yes"]),
             ("audit", ["review", "audit", "--reject-where", "point >= 60", "--yes"]),
             ("shards", ["audit", "faces", "--model", str(model), "--out", "s0", "--workers", "0", "--shard", "0/2"]),
             ("shards", ["audit", "faces", "--model", str(model), "--out", "s1", "--workers", "0", "--shard", "1/2"])]
    for template, args in steps:
        code, _, stderr = run_cli(args, cwd=t / template)
        assert code == 0, (args, stderr)
    return Templates(t, model)


# --- the cases -----------------------------------------------------------------------------------------------------

def _mutation(target: str, how: Callable, seed: int) -> Callable[[Path], str]:
    """Apply `how` (a bytes mutation, or a function of a path) to `target` in the copy with its own seeded rng."""
    def mutate(folder: Path) -> str:
        rng = random.Random(seed)
        if how in (mutate_text, mutate_text_or_json):
            return f"{target}: {mutate_file(folder / target, rng, how)}"
        return f"{target}: {how(folder / target, rng)}"

    return mutate


def unchanged(folder: Path) -> str:
    """No mutation: the valid input as it is."""
    return "unmutated"


def audit_args(rng: random.Random, data: str, model: str) -> list[str]:
    args = ["audit", data, "--model", model, "--out", "out", "--workers", "1" if rng.random() < 0.1 else "0"]
    return args + (["--no-flip"] if rng.random() < 0.7 else [])


def dataset_cases(rng: random.Random, n: int, model: Path) -> list[Case]:
    """Mutated annotations, images and file-system oddities of the four formats; info, plant-noise and audit."""
    cases = []
    for _ in range(n):
        fmt = rng.choice(list(ANNOTATIONS))
        seed = rng.randrange(2**32)
        face = rng.choice(FACES)
        folder = "faces/" if fmt == "pts" else ""
        annotation = f"faces/{face}.pts" if fmt == "pts" else ANNOTATIONS[fmt]
        r = rng.random()
        if r < 0.8:
            how = mutate_text_or_json if fmt == "coco" else mutate_text
            mutate = _mutation(annotation, how, seed)
        elif r < 0.88:
            mutate = _mutation(f"{folder}{face}.jpg", damage_image, seed)
        elif r < 0.96:
            odd = "faces/x.pts" if fmt == "pts" and rng.random() < 0.3 else annotation
            mutate = _mutation(odd, replace_with_oddity, seed)
        else:
            mutate = _mutation(f"{folder}{face}.jpg", replace_with_oddity, seed)
        data = ANNOTATIONS[fmt]
        skip_bad = ["--skip-bad"] if rng.random() < 0.25 else []
        c = rng.random()
        if c < 0.05 or (0.8 <= r < 0.88 and c < 0.5):
            cases.append(Case(fmt, mutate, audit_args(rng, data, str(model)) + skip_bad, outputs=("out",)))
        elif c < 0.13:
            cases.append(Case(fmt, mutate, ["plant-noise", data, "out", "--seed", str(rng.randrange(100)), *skip_bad],
                              outputs=("out",)))
        else:
            cases.append(Case(fmt, mutate, ["info", data, *skip_bad, *(["--json"] if rng.random() < 0.3 else [])]))
    return cases


def checkpoint_cases(rng: random.Random, n: int) -> list[Case]:
    """A damaged or ill-fitting checkpoint given to `audit`: any damage, then a bit of the pickle flipped."""
    cases = []
    for i in range(n):
        how = mutate_checkpoint if i < n // 2 else flip_pickle_bit
        cases.append(Case("ckpt", _mutation("m.pt", how, rng.randrange(2**32)), audit_args(rng, "faces", "m.pt"),
                          outputs=("out",)))
    return cases


AUDIT_TARGETS = (("audit/manifest.json", mutate_text_or_json, 25), ("audit/points.parquet", mutate_parquet, 22),
                 ("audit/images.parquet", mutate_parquet, 15), ("audit/reviews.sqlite", mutate_sqlite, 20),
                 ("audit/heatmaps/windows.npy", mutate_npy, 2), ("audit/heatmaps/origins.npy", mutate_npy, 1),
                 ("audit/heatmaps/to_heatmap.npy", mutate_npy, 1), ("faces/face_0001.pts", mutate_text, 8),
                 ("faces/face_0002.jpg", damage_image, 3))
ODD_AUDIT_FILES = ("audit/manifest.json", "audit/points.parquet", "audit/images.parquet", "audit/reviews.sqlite",
                   "audit/heatmaps")
REVIEWS = (["--accept-where", "label_score < 0.5", "--yes"], ["--reject-where", "issue_type == 'gross_error'", "--yes"],
           ["--accept-where", "is_label_issue", "--dry-run"],
           ["--accept-where", "group == 'jaw' and point < 5", "--yes", "--overwrite", "--reviewer", "fuzz", "--note",
            "n"])
EXPORTS = ((["-o", "out.csv"], ("out.csv",)), (["-o", "out.csv", "--only", "all"], ("out.csv",)),
           (["-o", "out.csv", "--only", "issues"], ("out.csv",)),
           (["--format", "fiftyone", "-o", "out.json"], ("out.json",)),
           (["--format", "labelstudio", "-o", "out.json"], ("out.json", "out.label_config.xml")),
           (["-o", "out.csv", "--write-labels", "labels"], ("out.csv", "labels")),
           (["--write-labels", "labels"], ("labels",)), (["--write-labels", "labels", "--format", "csv"], ("labels",)),
           (["--write-labels", "labels", "--format", "coco"], ("labels",)))


def audit_cases(rng: random.Random, n: int) -> list[Case]:
    """A mutated audit directory (manifest, tables, heatmap store, reviews) or its dataset; review and export."""
    targets, weights = zip(*((t[:2], t[2]) for t in AUDIT_TARGETS), strict=True)
    cases = []
    for _ in range(n):
        seed = rng.randrange(2**32)
        if rng.random() < 0.06:
            mutate = _mutation(rng.choice(ODD_AUDIT_FILES), replace_with_oddity, seed)
        else:
            target, how = rng.choices(targets, weights)[0]
            mutate = _mutation(target, how, seed)
        r = rng.random()
        if r < 0.1:  # the query fuzzed instead, on the audit as it is
            query = random_query(random.Random(seed))
            cases.append(Case("audit", unchanged, ["review", "audit", f"--{rng.choice(('accept', 'reject'))}-where="
                                                   f"{query}", rng.choice(("--yes", "--dry-run"))],
                              documented=REVIEW_FILES))
        elif r < 0.45:
            cases.append(Case("audit", mutate, ["review", "audit", *rng.choice(REVIEWS)], documented=REVIEW_FILES))
        else:
            args, outputs = rng.choice(EXPORTS)
            cases.append(Case("audit", mutate, ["export-corrections", "audit", *args], outputs=outputs))
    return cases


SHARD_TARGETS = (("manifest.json", mutate_text_or_json, 40), ("points.parquet", mutate_parquet, 20),
                 ("images.parquet", mutate_parquet, 15), ("heatmaps/windows.npy", mutate_npy, 10),
                 ("heatmaps/origins.npy", mutate_npy, 7), ("heatmaps/to_heatmap.npy", mutate_npy, 8))


def shard_cases(rng: random.Random, n: int) -> list[Case]:
    """One of two shard audits mutated; merge."""
    targets, weights = zip(*((t[:2], t[2]) for t in SHARD_TARGETS), strict=True)
    cases = []
    for _ in range(n):
        shard = rng.choice(("s0", "s1"))
        seed = rng.randrange(2**32)
        if rng.random() < 0.05:
            mutate = _mutation(f"{shard}/{rng.choice(('manifest.json', 'points.parquet', 'heatmaps'))}",
                               replace_with_oddity, seed)
        else:
            target, how = rng.choices(targets, weights)[0]
            mutate = _mutation(f"{shard}/{target}", how, seed)
        order = ["s0", "s1"] if rng.random() < 0.7 else ["s1", "s0"]
        cases.append(Case("shards", mutate, ["merge", *order, "--out", "out"], outputs=("out",)))
    return cases


# --- exhaustive sweeps: every input file replaced by every oddity, every key of a manifest dropped, every config
# field of a checkpoint given an extreme value ------------------------------------------------------------------------

CONFIG_VALUES = (0, -1, 2**63, None, math.nan)
SHARD_KEYS = ("dataset", "model", "heatmaps", "shard", "timing", "counts")  # the objects merge reads field by field
NO_FLIP_AUDIT = ["audit", "faces", "--model", "m.pt", "--out", "out", "--workers", "0", "--no-flip"]
AUDIT_COMMANDS = ((["review", "audit", "--accept-where", "label_score < 0.5", "--yes"], (), REVIEW_FILES),
                  (["export-corrections", "audit", "-o", "out.csv", "--only", "all"], ("out.csv",), ()),
                  (["export-corrections", "audit", "--write-labels", "labels"], ("labels",), ()))


def _oddity(target: str, kind: str) -> Callable[[Path], str]:
    return lambda folder: f"{target}: {replace_with_oddity(folder / target, kind=kind)}"


def _npy(target: str, op: str) -> Callable[[Path], str]:
    return lambda folder: f"{target}: {mutate_npy(folder / target, random.Random(0), op=op)}"


def _drop_key(target: str, keys: tuple[str, ...]) -> Callable[[Path], str]:
    def mutate(folder: Path) -> str:
        manifest = json.loads((folder / target).read_text())
        parent = manifest
        for key in keys[:-1]:
            parent = parent[key]
        del parent[keys[-1]]
        (folder / target).write_text(json.dumps(manifest))
        return f"{target}: {'.'.join(keys)} dropped"

    return mutate


def _config_value(valid: dict, key: str, value: object) -> Callable[[Path], str]:
    def mutate(folder: Path) -> str:
        payload = copy.deepcopy(valid)
        payload["config"][key] = value
        torch.save(payload, folder / "m.pt")
        return f"m.pt: config.{key} -> {value!r}"

    return mutate


def dataset_sweep(model: Path) -> list[Case]:
    cases = []
    for fmt, data in ANNOTATIONS.items():
        folder = "faces/" if fmt == "pts" else ""
        annotation = "faces/face_0001.pts" if fmt == "pts" else data
        audit = ["audit", data, "--model", str(model), "--out", "out", "--workers", "0", "--no-flip"]
        for kind in ODDITIES:
            cases.append(Case(fmt, _oddity(annotation, kind), ["info", data]))
            cases.append(Case(fmt, _oddity(f"{folder}face_0001.jpg", kind), audit, outputs=("out",)))
            if fmt == "pts":
                cases.append(Case(fmt, _oddity("faces/x.pts", kind), ["info", data]))
    return cases


def checkpoint_sweep(checkpoint: Path) -> list[Case]:
    valid = torch.load(checkpoint, weights_only=True)
    cases = [Case("ckpt", _oddity("m.pt", kind), NO_FLIP_AUDIT, outputs=("out",)) for kind in ODDITIES]
    return cases + [Case("ckpt", _config_value(valid, key, value), NO_FLIP_AUDIT, outputs=("out",))
                    for key in dataclasses.asdict(get_preset("tiny")) for value in CONFIG_VALUES]


def audit_sweep(manifest: dict) -> list[Case]:
    mutations = [_oddity(target, kind) for target in ODD_AUDIT_FILES for kind in ODDITIES]
    mutations += [_drop_key("audit/manifest.json", (key,)) for key in manifest]
    return [Case("audit", mutate, args, outputs, documented) for mutate in mutations
            for args, outputs, documented in AUDIT_COMMANDS]


def shard_sweep(manifest: dict) -> list[Case]:
    targets = ("s1/manifest.json", "s1/points.parquet", "s1/images.parquet", "s1/heatmaps", "s1/heatmaps/windows.npy")
    mutations = [_oddity(target, kind) for target in targets for kind in ODDITIES]
    mutations += [_npy("s1/heatmaps/origins.npy", op) for op in dict.fromkeys(NPY_OPS)]
    # the first shard's: merge takes the merged audit's dataset, model, heatmaps and timing from it
    mutations += [_drop_key("s0/manifest.json", (key,)) for key in manifest]
    mutations += [_drop_key("s0/manifest.json", (key, field)) for key in SHARD_KEYS for field in manifest[key]]
    return [Case("shards", mutate, ["merge", "s0", "s1", "--out", "out"], outputs=("out",)) for mutate in mutations]


# --- the tests -----------------------------------------------------------------------------------------------------

def fuzz(cases: list[Case], templates: Templates, scratch: Path) -> list[Outcome]:
    """Run the cases; the valid inputs they copy (and the model that dataset audits read in place) stay as they were."""
    before = snapshot(templates.root.parent)
    outcomes = run_cases(cases, templates.root, scratch)
    assert snapshot(templates.root.parent) == before, "a command changed the valid inputs the cases copy"
    return outcomes


def test_unmutated_inputs_pass_every_command(templates, tmp_path):
    cases = [Case(fmt, unchanged, ["info", ANNOTATIONS[fmt]]) for fmt in ANNOTATIONS]
    cases += [Case(fmt, unchanged, ["plant-noise", ANNOTATIONS[fmt], "out"], outputs=("out",)) for fmt in ANNOTATIONS]
    cases += [Case("csv", unchanged, audit_args(random.Random(0), "labels.csv", str(templates.model)), ("out",)),
              Case("ckpt", unchanged, audit_args(random.Random(1), "faces", "m.pt"), ("out",)),
              Case("shards", unchanged, ["merge", "s0", "s1", "--out", "out"], ("out",))]
    cases += [Case("audit", unchanged, ["review", "audit", *args], documented=REVIEW_FILES) for args in REVIEWS]
    cases += [Case("audit", unchanged, ["export-corrections", "audit", *args], outputs) for args, outputs in EXPORTS]
    outcomes = fuzz(cases, templates, tmp_path)
    assert [o.code for o in outcomes] == [0] * len(cases) and not any(o.problems for o in outcomes), report(outcomes)


def test_fuzz_datasets(templates, tmp_path):
    cases = dataset_cases(random.Random(f"{SEED}-datasets"), 1000, templates.model) + dataset_sweep(templates.model)
    outcomes = fuzz(cases, templates, tmp_path)
    assert_promise_held(outcomes, {"info", "plant-noise", "audit"})


def test_fuzz_checkpoints(templates, tmp_path):
    valid = templates.root / "ckpt" / "m.pt"
    cases = checkpoint_cases(random.Random(f"{SEED}-checkpoints"), 120) + checkpoint_sweep(valid)
    outcomes = fuzz(cases, templates, tmp_path)
    assert_promise_held(outcomes, {"audit"})


def test_fuzz_audit_directories(templates, tmp_path):
    manifest = json.loads((templates.root / "audit" / "audit" / "manifest.json").read_text())
    cases = audit_cases(random.Random(f"{SEED}-audits"), 500) + audit_sweep(manifest)
    outcomes = fuzz(cases, templates, tmp_path)
    assert_promise_held(outcomes, {"review", "export-corrections"})


def test_fuzz_shards(templates, tmp_path):
    manifest = json.loads((templates.root / "shards" / "s0" / "manifest.json").read_text())
    cases = shard_cases(random.Random(f"{SEED}-shards"), 150) + shard_sweep(manifest)
    outcomes = fuzz(cases, templates, tmp_path)
    assert_promise_held(outcomes, {"merge"})
