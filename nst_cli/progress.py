"""A progress bar on stderr that shows itself only on a terminal."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Steps per second (iterations or frames), blank until measured."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        return Text(f"{task.speed:.1f} {self.unit}/s" if task.speed else "")


class Bar:
    """Handle on one progress task: set its total, move it, show the latest loss."""

    def __init__(self, progress: Progress, task: TaskID) -> None:
        self._progress = progress
        self._task = task

    def set_total(self, total: int) -> None:
        self._progress.update(self._task, total=total)

    def update(self, done: int, loss: float) -> None:
        self._progress.update(self._task, completed=done, loss=loss)

    def step(self, loss: float) -> None:
        self._progress.update(self._task, advance=1, loss=loss)

    # tasks.stylize.FrameListener: progress from the flow's chunks in this process.
    def planned(self, frames: int) -> None:
        self.set_total(frames)

    def stylized(self, stats) -> None:
        self.step(stats.loss)


@contextmanager
def progress_bar(
    label: str, total: int, *, enabled: bool = True, unit: str = "it"
) -> Iterator[Bar]:
    """Yield a Bar; draws rate, elapsed time and ETA when enabled and stderr is a terminal."""
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("loss {task.fields[loss]:.4g}"),
    )
    with Progress(*columns, console=console, disable=not (enabled and console.is_terminal)) as bar:
        yield Bar(bar, bar.add_task(label, total=total or None, loss=float("nan")))
