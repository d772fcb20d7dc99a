"""The one error type for bad input: it names the file, the line or field, and what was expected."""

from __future__ import annotations

from pathlib import Path


class InputError(Exception):
    """Bad input from the user: printed as one line by the CLI, which then exits with code 2."""

    def __init__(self, message: str, *, path: str | Path | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.line = line
        self.field = field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = self.path or ""
        if self.line is not None:
            where += f":{self.line}"
        if self.field is not None:
            where += f" [{self.field}]" if where else f"[{self.field}]"
        return f"{where}: {self.message}" if where else self.message
