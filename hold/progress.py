"""Progress display for long work: frames/steps done, rate and ETA (rich), quiet when not a TTY."""
from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

T = TypeVar("T")


def track(items: Iterable[T], description: str, total: int | None = None, enabled: bool = True) -> Iterator[T]:
    """Iterate `items` showing `description  12/30 ━━━  0:00:03 elapsed  0:00:05 ETA` on stderr."""
    if not enabled:
        yield from items
        return
    total = total if total is not None else (len(items) if hasattr(items, "__len__") else None)
    columns = (TextColumn("[bold]{task.description}"), MofNCompleteColumn(), BarColumn(),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    from rich.console import Console

    with Progress(*columns, console=Console(file=sys.stderr), transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
