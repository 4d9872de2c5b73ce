"""Errors and problem reports for the sequence contract.

One vocabulary for both uses: `load_sequence` raises the first problem as a `SequenceError`,
`validate` collects every `Problem`. Both name the file, the field, what was found, what was
expected, and how to fix it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


def _format(path: Path | str, field: str | None, message: str, fix: str | None) -> str:
    """`<path>: field '<field>' <message>. Fix: <fix>` (field and fix optional)."""
    text = f"{path}: "
    if field:
        text += f"field '{field}' "
    text += message.rstrip(".")
    text += "."
    if fix:
        text += f" Fix: {fix}"
    return text


class SequenceError(ValueError):
    """A build (or ground-truth folder) breaks the contract; the message says where and how to fix it."""

    def __init__(
        self,
        path: Path | str,
        field: str | None = None,
        expected: str | None = None,
        found: str | None = None,
        fix: str | None = None,
        message: str | None = None,
    ):
        self.path = Path(path)
        """The offending file (or folder)."""
        self.field = field
        """The key inside it (json key or npz array name), None when the file itself is the problem."""
        self.expected = expected
        """What the contract wants, in words (e.g. '(30, 3) (T=30 from sequence.json num_frames)')."""
        self.found = found
        """What is there, in words (e.g. 'shape (29, 3)')."""
        self.fix = fix
        """What to run or change to repair it."""
        if message is None:
            message = f"has {found}, expected {expected}" if expected is not None else "is invalid"
        self.message = message
        """The problem clause, starting with a verb ('has shape ..., expected ...', 'is missing')."""
        super().__init__(_format(self.path, field, message, fix))

    @property
    def problem(self) -> Problem:
        """This error as a `Problem` (severity 'error')."""
        return Problem("error", self.path, self.field, self.message, self.fix)


@dataclass(frozen=True)
class Problem:
    """One finding of `validate`: an error makes the build unusable, a warning does not."""

    severity: Severity
    """'error' or 'warning'."""
    path: Path
    """The offending file (or folder)."""
    field: str | None
    """The key inside it, None when the file itself is the problem."""
    message: str
    """The problem clause, starting with a verb ('has shape ..., expected ...')."""
    fix: str | None = None
    """What to run or change to repair it."""

    def __str__(self) -> str:
        return _format(self.path, self.field, self.message, self.fix)

    def to_error(self) -> SequenceError:
        """This problem as a raisable `SequenceError`."""
        return SequenceError(self.path, self.field, fix=self.fix, message=self.message)


class ProblemLog:
    """Where checks report to: collects every problem, or raises the first error (fail_fast).

    The same check functions serve `load_sequence` (fail_fast: stop at the first error) and
    `validate` (collect all), so the two can never disagree about what is valid.
    """

    def __init__(self, fail_fast: bool):
        self.fail_fast = fail_fast
        self.problems: list[Problem] = []

    def error(
        self,
        path: Path | str,
        field: str | None,
        message: str | None = None,
        fix: str | None = None,
        *,
        expected: str | None = None,
        found: str | None = None,
    ) -> None:
        """Report an error; raises it as `SequenceError` in fail-fast mode."""
        err = SequenceError(path, field, expected=expected, found=found, fix=fix, message=message)
        if self.fail_fast:
            raise err
        self.problems.append(err.problem)

    def warning(self, path: Path | str, field: str | None, message: str, fix: str | None = None) -> None:
        """Report a warning (never raised: a warning does not make the build unusable)."""
        self.problems.append(Problem("warning", Path(path), field, message, fix))

    @property
    def num_errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    def mark(self) -> int:
        """Error count now; compare with `errors_since` to know whether a block of checks passed."""
        return self.num_errors

    def errors_since(self, mark: int) -> bool:
        """True when an error was reported after `mark()` returned `mark`."""
        return self.num_errors > mark
