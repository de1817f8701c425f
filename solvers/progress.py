"""The one progress display: a rich line with a bar, counts, elapsed time and an estimate.

Every long loop of convexdict (column generation, branch and bound, training, census,
sweeps, the regularisation path) shows its progress through :class:`Display`; with
``enabled=False`` it costs nothing and prints nothing. rich is imported only when a
display is actually shown.
"""

from __future__ import annotations

from typing import Any


class Display:
    """A single-task rich progress display.

    Parameters
    ----------
    description : str
        The first text shown.
    total : int, optional
        Number of steps; with it the display shows a bar, ``done/total`` and an estimate of
        the time remaining, without it a spinner.
    enabled : bool
        False makes every method a no-op.
    completed : int
        Steps already done (resumed work).
    transient : bool
        Remove the display when it stops.
    fields : dict, optional
        Extra text fields (``{"stats": ""}``) shown after the counts and updated by
        :meth:`update`.
    """

    def __init__(
        self,
        description: str,
        total: int | None = None,
        *,
        enabled: bool = True,
        completed: int = 0,
        transient: bool = False,
        fields: dict[str, str] | None = None,
    ) -> None:
        self._progress: Any = None
        self._task: Any = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns: list[Any] = [SpinnerColumn(), TextColumn("{task.description}")]
        if total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        columns.append(TimeElapsedColumn())
        if total is not None:
            columns.append(TimeRemainingColumn())
        for name in fields or {}:
            columns.append(TextColumn(f"{{task.fields[{name}]}}"))
        self._progress = Progress(*columns, transient=transient)
        self._task = self._progress.add_task(
            description, total=total, completed=completed, **(fields or {})
        )
        self._progress.start()

    @property
    def enabled(self) -> bool:
        """Whether anything is shown."""
        return self._progress is not None

    def update(
        self,
        description: str | None = None,
        *,
        advance: float = 0,
        completed: float | None = None,
        **fields: str,
    ) -> None:
        """Change the text, advance the count, or set it."""
        if self._progress is None:
            return
        kwargs: dict[str, Any] = dict(fields)
        if description is not None:
            kwargs["description"] = description
        if completed is not None:
            kwargs["completed"] = completed
        if advance:
            kwargs["advance"] = advance
        self._progress.update(self._task, **kwargs)

    def stop(self) -> None:
        """Stop refreshing (idempotent)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def __enter__(self) -> Display:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
