"""Write docs/cli.md from the CLI's own help, so the reference cannot drift from the code.

    python docs/make_cli_md.py            # rewrite docs/cli.md
    python docs/make_cli_md.py --check    # exit 1 when docs/cli.md differs from what the CLI says (a test runs it)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import typer

from auditor.cli import app

OUT = Path(__file__).resolve().parent / "cli.md"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _names(param) -> str:
    names = [*param.opts, *getattr(param, "secondary_opts", [])]
    return ", ".join(f"`{n}`" for n in names) if names[0].startswith("-") else f"`{param.name.upper()}`"


def _default(param) -> str:
    if param.required:
        return "required"
    default = param.default
    if default is None or default == [] or default == ():
        return ""
    if isinstance(default, bool) and getattr(param, "secondary_opts", None):
        return f"`{param.opts[0] if default else param.secondary_opts[0]}`"
    return f"`{getattr(default, 'value', default)}`"


def cli_markdown() -> str:
    """docs/cli.md's text: every command's help, usage and a table of its arguments and options."""
    group = typer.main.get_command(app)
    lines = ["# Command-line reference", "",
             "Generated from the CLI's own help by `python docs/make_cli_md.py`; a test fails when it drifts.",
             "Every command prints this with `--help`; bad input ends in one line naming the file, line or",
             "field, with exit code 2.", "", _cell(group.help), ""]
    for name, command in group.commands.items():
        lines += [f"## `auditor {name}`", "", _cell(command.help or ""), "", "| argument or option | default | what |",
                  "|---|---|---|"]
        for param in command.params:
            if param.name == "help":
                continue
            lines.append(f"| {_names(param)} | {_default(param)} | {_cell(getattr(param, 'help', '') or '')} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args()
    text = cli_markdown()
    if args.check:
        if not OUT.is_file() or OUT.read_text() != text:
            sys.exit(f"{OUT} is out of date: run python docs/make_cli_md.py")
        return
    OUT.write_text(text)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
