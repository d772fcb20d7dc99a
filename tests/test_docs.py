"""The documentation cannot rot: docs/cli.md is the CLI's own help, and the shell blocks of README.md and docs/ run.

A fenced block tagged `bash` or `sh` in README.md or docs/*.md runs as written, with `bash -euo pipefail` and a
60 s limit, unless its first line is `# long-running: <time>` (too long for CI, or a server that runs until
Ctrl-C) or `# setup: <what>` (the install commands that `.ci/run` already runs). The blocks of one page run in
order in one temporary folder holding a copy of sample_data/ and links to the repository's code folders, with
the virtual environment first on PATH, as a reader following the page would. Output samples are tagged `text` or
`console`. The blocks not run still have to name real `auditor` commands and options, and every relative link resolves.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from auditor.cli import app

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINKED_PAGES = [*PAGES, REPO / "benchmarks" / "README.md", REPO / "CHANGELOG.md"]
SHELL = {"bash", "sh"}
INFO_STRINGS = SHELL | {"text", "console", "json"}  # a python snippet goes in bash, as python -c
MARKERS = ("# long-running:", "# setup:")
TIMEOUT_S = 60
README_MAX_LINES = 150
CODE_FOLDERS = ("app", "auditor", "benchmarks", "docs", "tests")
BIN = REPO / ".venv" / "bin" if (REPO / ".venv" / "bin").is_dir() else Path(sys.executable).parent

FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})\s*([^\s`]*)")


@dataclass(frozen=True)
class Block:
    """One fenced code block: its page, the line of its opening fence (1-based), info string and text."""

    page: Path
    line: int
    info: str
    code: str

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def marker(self) -> str | None:
        first = self.code.lstrip("\n").split("\n", 1)[0].strip()
        return next((first for m in MARKERS if first.startswith(m)), None)

    @property
    def runs(self) -> bool:
        return self.info in SHELL and self.marker is None


def fenced_blocks(page: Path) -> list[Block]:
    """Every fenced code block of a Markdown page, in order."""
    blocks, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = len(m.group(1)), m.group(2), m.group(3).lower()
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        body, j = [], i + 1
        while j < len(lines) and not close.match(lines[j]):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j].lstrip())
            j += 1
        blocks.append(Block(page, i + 1, info, "\n".join(body) + "\n"))
        i = j + 1
    return blocks


BLOCKS = [b for page in PAGES for b in fenced_blocks(page)]
RUNNABLE = [b for b in BLOCKS if b.runs]


def _run(block: Block, folder: Path) -> None:
    """Run one block in `folder`; fail with its page and line, the command and the end of its output."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(["bash", "-euo", "pipefail", "-c", block.code], cwd=folder, env=env, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the whole group: the auditor processes the shell started too
        proc.communicate()
        pytest.fail(f"{block.where}: still running after {TIMEOUT_S} s; shorten it or mark it "
                    f"'# long-running: <time>'\n{block.code}")
    if proc.returncode != 0:
        pytest.fail(f"{block.where}: exit code {proc.returncode}\n{block.code}--- output (end) ---\n{out[-4000:]}")


@pytest.fixture(scope="module")
def pages(tmp_path_factory):
    """Per page, lazily: its working folder and the blocks already run there."""
    made: dict[Path, tuple[Path, set[Block]]] = {}

    def page(path: Path) -> tuple[Path, set[Block]]:
        if path not in made:
            folder = tmp_path_factory.mktemp(path.stem.lower())
            shutil.copytree(REPO / "sample_data", folder / "sample_data",
                            ignore=shutil.ignore_patterns("reviews.sqlite*", "__pycache__"))
            for name in CODE_FOLDERS:
                (folder / name).symlink_to(REPO / name, target_is_directory=True)
            made[path] = (folder, set())
        return made[path]

    return page


@pytest.mark.slow
@pytest.mark.parametrize("block", RUNNABLE, ids=[b.where for b in RUNNABLE])
def test_shell_block_runs(block, pages):
    """Each unmarked bash block runs, after the page's earlier blocks (run first when this one is picked alone)."""
    folder, ran = pages(block.page)
    for earlier in [b for b in RUNNABLE if b.page == block.page and b.line < block.line and b not in ran]:
        ran.add(earlier)
        _run(earlier, folder)
    ran.add(block)
    _run(block, folder)


def test_blocks_are_tagged_and_marked():
    """Every block says what it is; a marker gives its reason; commands are not hidden in output samples."""
    assert RUNNABLE, "no runnable blocks found"
    bad = []
    for b in BLOCKS:
        if b.info not in INFO_STRINGS:
            bad.append(f"{b.where}: info string {b.info!r}, expected one of {sorted(INFO_STRINGS)}")
        elif b.marker is not None and not b.marker.split(":", 1)[1].strip():
            bad.append(f"{b.where}: '{b.marker}' says no time or reason")
        elif b.marker is not None and b.info not in SHELL:
            bad.append(f"{b.where}: a {b.info!r} block is never run, it needs no marker")
        elif b.info in {"text", "console"} and re.search(r"^\$? ?(auditor|python3?|streamlit|torchrun) ", b.code, re.M):
            bad.append(f"{b.where}: a command in a {b.info!r} block: tag it bash so that it runs")
    assert not bad, "\n".join(bad)


def _auditor_calls(code: str) -> list[list[str]]:
    """The argument lists of the `auditor ...` and `python -m auditor.cli ...` calls in a shell block."""
    calls, pending, heredoc = [], "", None
    for line in code.replace("\\\n", " ").splitlines():
        if heredoc is not None:
            heredoc = None if line.strip() == heredoc else heredoc
            continue
        if m := re.search(r"<<-?\s*'?\"?(\w+)", line):
            heredoc = m.group(1)
        pending += line + "\n"
        lexer = shlex.shlex(pending, posix=True, punctuation_chars=";&|()<>")
        lexer.whitespace_split, lexer.commenters = True, "#"
        try:
            tokens = list(lexer)
        except ValueError:  # a quoted string goes on over the next line
            continue
        pending, current = "", None
        for token in tokens:
            if set(token) <= set(";&|()<>"):
                current = None
            elif current is not None:
                current.append(token)
            elif token in ("auditor", "auditor.cli"):
                current = []
                calls.append(current)
    return calls


def test_commands_name_real_options():
    """Every `auditor` call in a shell block, run or not, names a real command and its real options."""
    group = typer.main.get_command(app)
    bad = []
    for b in (b for b in BLOCKS if b.info in SHELL):
        for args in _auditor_calls(b.code):
            if not args or args[0] not in group.commands:
                bad.append(f"{b.where}: auditor {args[:1]}: no such command")
                continue
            command = group.commands[args[0]]
            known = {o for p in command.params for o in [*p.opts, *getattr(p, "secondary_opts", [])]} | {"--help"}
            bad += [f"{b.where}: auditor {args[0]}: no option {a.split('=')[0]}" for a in args[1:]
                    if a.startswith("-") and a != "-" and a.split("=")[0] not in known]
    assert not bad, "\n".join(bad)


def _make_cli_md():
    spec = importlib.util.spec_from_file_location("make_cli_md", REPO / "docs" / "make_cli_md.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_cli_md_is_generated():
    """docs/cli.md is what `python docs/make_cli_md.py` writes from the CLI, to the byte."""
    assert (REPO / "docs" / "cli.md").read_text() == _make_cli_md().cli_markdown(), \
        "docs/cli.md is out of date: run python docs/make_cli_md.py"


def test_cli_md_matches_help():
    """Every command of docs/cli.md prints its help, and the help names every option the page lists."""
    text = (REPO / "docs" / "cli.md").read_text()
    sections = re.split(r"^## `auditor ([\w-]+)`$", text, flags=re.M)[1:]
    assert sections, "no commands in docs/cli.md"
    runner = CliRunner()
    for name, body in zip(sections[::2], sections[1::2], strict=True):
        result = runner.invoke(app, [name, "--help"], env={"COLUMNS": "200", "TERM": "dumb", "NO_COLOR": "1"})
        assert result.exit_code == 0, f"auditor {name} --help: exit code {result.exit_code}"
        for option in re.findall(r"^\| `(--[\w-]+)`", body, flags=re.M):
            assert option in result.output, f"docs/cli.md lists {option} for auditor {name}; its --help does not"


def test_readme_set_up_commands():
    """README: at most 150 lines, and the two set-up commands where .ci/run and a newcomer look for them."""
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= README_MAX_LINES, f"README.md has {len(text.splitlines())} lines"
    lines, blocks = text.splitlines(), {b.line: b for b in fenced_blocks(REPO / "README.md")}
    for marker, tail in (("<!-- main-command -->", "streamlit run app/main.py"), ("<!-- test-command -->", "pytest")):
        assert marker in lines, f"README.md has no {marker}"
        block = blocks.get(lines.index(marker) + 2)
        assert block is not None, f"README.md: no code block right after {marker}"
        assert block.marker and block.marker.startswith("# setup:"), f"{block.where}: mark it '# setup: <what>'"
        command = [line for line in block.code.splitlines() if line.startswith("python3 ")]
        assert len(command) == 1 and command[0].startswith("python3 -m venv .venv && . .venv/bin/activate && "
                                                           "pip install torch==2.13.0 && pip install -e "), command
        assert command[0].endswith(tail), command
    awk = re.search(r"awk '([^']+)' README.md", (REPO / ".ci" / "run").read_text())
    assert awk, ".ci/run no longer extracts the test command with awk"
    found = subprocess.run(["awk", awk.group(1), "README.md"], cwd=REPO, capture_output=True, text=True, check=True)
    assert found.stdout.strip().endswith("pytest"), f".ci/run would run {found.stdout.strip()!r}"


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    inside = {line for b in fenced_blocks(page) for line in range(b.line, b.line + b.code.count("\n") + 2)}
    seen: dict[str, int] = {}
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        m = re.match(r"^#{1,6} (.+)$", line)
        if m and number not in inside:
            slug = _slug(m.group(1))
            seen[slug] = seen.get(slug, -1) + 1
            if seen[slug]:
                seen[f"{slug}-{seen[slug]}"] = 0
    return set(seen)


def test_links_resolve():
    """Every relative link of the docs, README, benchmarks and changelog names a file that exists, and a heading."""
    bad = []
    for page in LINKED_PAGES:
        text = re.sub(r"^ {0,3}(`{3,}|~{3,}).*?^ {0,3}\1\s*$", "", page.read_text(), flags=re.M | re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            if not linked.exists():
                bad.append(f"{page.relative_to(REPO)}: {target}: no such file")
            elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
                bad.append(f"{page.relative_to(REPO)}: {target}: no such heading")
    assert not bad, "\n".join(bad)
