"""Progress of flow runs that execute elsewhere (a work pool's workers, another machine),
followed through the Prefect API: the run's state and its progress (tasks.progress).

Imported by commands only: Prefect is slow to import, `nst --help` is not.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from uuid import UUID, uuid4

from prefect import tags
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.client.schemas.filters import (
    FlowFilter,
    FlowFilterName,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from nst_video.tasks.progress import flow_progress

POLL_SECONDS = 1.0
Show = Callable[[str, float], None]  # (state name, percent)


@contextmanager
def run_bar(label: str, *, enabled: bool = True) -> Iterator[Show]:
    """Yield `show(state, percent)`: a bar on stderr, drawn only on a terminal."""
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TextColumn("{task.fields[state]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not (enabled and console.is_terminal)) as bar:
        task = bar.add_task(label, total=100.0, state="")

        def show(state: str, percent: float) -> None:
            bar.update(task, completed=percent, state=state)

        yield show


def run_progress(client: SyncPrefectClient, run_id: UUID) -> tuple[FlowRun, float]:
    """A flow run and its progress in percent (0 before it reports any)."""
    percent = flow_progress(client, [run_id]).get(run_id, 0.0)
    return client.read_flow_run(run_id), percent


def follow_run(
    run_id: UUID, show: Show, stop: threading.Event | None = None
) -> tuple[FlowRun, float]:
    """Show a run's state and progress until it ends or `stop` is set; -> (run, percent)."""
    stop = stop or threading.Event()
    with get_client(sync_client=True) as client:
        while True:
            run, percent = run_progress(client, run_id)
            show(run.state_name or "", percent)
            if (run.state and run.state.is_final()) or stop.wait(POLL_SECONDS):
                return run, percent


@contextmanager
def following(flow_name: str, show: Show) -> Iterator[None]:
    """While the body runs a `flow_name` flow in this process, a thread follows that run
    through the API (its videos or chunks may run on other machines)."""
    tag = f"nst-follow-{uuid4().hex[:12]}"
    stop = threading.Event()
    thread = threading.Thread(target=_follow_tagged, args=(flow_name, tag, show, stop))
    thread.start()
    try:
        with tags(tag):
            yield
    finally:
        stop.set()
        thread.join()


def _follow_tagged(flow_name: str, tag: str, show: Show, stop: threading.Event) -> None:
    """Find the `flow_name` run tagged `tag`, then follow it. The bar is cosmetic: an API
    error ends it quietly (the run's own result decides the command's outcome)."""
    try:
        with get_client(sync_client=True) as client:
            while not stop.wait(POLL_SECONDS / 2):
                runs = client.read_flow_runs(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[flow_name])),
                    flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])),
                    limit=1,
                )
                if runs:
                    follow_run(runs[0].id, show, stop)
                    return
    except Exception:  # noqa: BLE001
        return
