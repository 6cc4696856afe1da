"""Progress of `soprano synth` on a terminal: one rich line on stderr, only when stderr is a terminal."""

from __future__ import annotations

import sys


class TerminalProgress:
    """Draws the library's `Progress` snapshots: a bar, done/total, audio seconds and speed."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self._progress = Progress(
            TextColumn("synth"), BarColumn(), TextColumn("{task.fields[count]}"),
            TextColumn("{task.fields[audio]}"), TimeElapsedColumn(),
            console=Console(stderr=True), transient=False,
        )
        self._task = self._progress.add_task("synth", total=None, count="", audio="")
        self._progress.start()

    def update(self, progress) -> None:
        """Show one `synth_single.Progress`; a total still growing (input being read) gets a '+'."""
        more = "" if progress.total_final else "+"
        self._progress.update(
            self._task, completed=progress.done, total=max(progress.total, 1),
            count=f"{progress.done}/{progress.total}{more} {progress.unit}",
            audio=f"{progress.audio_seconds:.1f} s audio, {progress.speed:.1f}x real time",
        )

    def close(self) -> None:
        self._progress.stop()


def terminal_progress(quiet: bool, verbose: bool) -> type[TerminalProgress] | None:
    """What starts a progress line when stderr is a terminal, else None: pipes and logs get nothing.

    -q shows nothing; -v prints its own lines (a line per sentence and a summary) instead.
    """
    if quiet or verbose or not sys.stderr.isatty():
        return None
    return TerminalProgress
