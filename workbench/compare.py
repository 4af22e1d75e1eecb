"""Side-by-side compare: one prompt, 2 to 4 panes, all streaming at once, each repeated N times."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from backends.errors import InvalidInputError
from backends.router import Router
from backends.types import ImagePart
from workbench.runner import Clock, RunRecorder, RunResult, RunSpec, run_once

logger = logging.getLogger(__name__)

MIN_PANES = 2
MAX_PANES = 4
MAX_REPEATS = 20

# The per-run figures a spread is computed for, in the order exports list them.
METRICS = ("ttft_s", "tokens_per_s", "tokens", "chars", "total_s")


class CompareInputError(InvalidInputError):
    code = "compare_invalid"
    fix = "Use 2 to 4 panes with a model each, 1 to 20 repeats and a non-empty prompt."


@dataclass(frozen=True, slots=True)
class Pane:
    """One column of a compare run: a label shown above it, its settings and the images it sends.

    Images are per pane because each is prepared within its model's limits.
    """

    label: str
    spec: RunSpec
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True, slots=True)
class Spread:
    minimum: float
    median: float
    maximum: float


@dataclass(frozen=True, slots=True)
class PaneSnapshot:
    """The view of a pane at one moment: the live run's text and figures, and the finished runs."""

    label: str
    model: str
    text: str
    reasoning: str
    running: bool
    runs: tuple[RunResult, ...]
    repeats: int
    live_ttft_s: float | None
    live_tokens: int
    live_elapsed_s: float

    @property
    def latest(self) -> RunResult | None:
        return self.runs[-1] if self.runs else None

    def spread(self, metric: str) -> Spread | None:
        return spread([run for run in self.runs if run.ok], metric)


def spread(runs: Sequence[RunResult], metric: str) -> Spread | None:
    """Min, median and max of a metric over runs; None when no run has a value for it."""
    values = [float(value) for run in runs if (value := getattr(run, metric)) is not None]
    if not values:
        return None
    return Spread(min(values), statistics.median(values), max(values))


@dataclass
class _PaneState:
    pane: Pane
    runs: list[RunResult] = field(default_factory=list)
    live: RunRecorder | None = None


@dataclass(frozen=True, slots=True)
class CompareReport:
    """A finished (or stopped) compare run, ready to export."""

    prompt: str
    started_at: datetime
    repeats: int
    panes: tuple[PaneSnapshot, ...]
    specs: tuple[RunSpec, ...]


class CompareRun:
    """Runs every pane at the same time through the Router; each pane repeats its run in turn.

    Iterate `updates()` to get snapshots while the runs stream; closing the
    iterator (Stop, closed tab) cancels every pane and closes their streams.
    """

    def __init__(
        self,
        router: Router,
        prompt: str,
        panes: Sequence[Pane],
        *,
        repeats: int = 1,
        bypass_cache: bool = True,
        language: str = "en",
        clock: Clock = time.perf_counter,
    ) -> None:
        if not MIN_PANES <= len(panes) <= MAX_PANES:
            raise CompareInputError(f"compare needs {MIN_PANES} to {MAX_PANES} panes, got {len(panes)}", count=len(panes))
        if not 1 <= repeats <= MAX_REPEATS:
            raise CompareInputError(f"repeats must be 1 to {MAX_REPEATS}, got {repeats}", count=repeats)
        if not prompt.strip():
            raise CompareInputError("the prompt is empty", count=0)
        for pane in panes:
            router.info(pane.spec.model)

        self._router = router
        self._prompt = prompt
        self._states = [_PaneState(pane) for pane in panes]
        self._repeats = repeats
        self._bypass_cache = bypass_cache
        self._language = language
        self._clock = clock
        self.started_at = datetime.now(UTC)

    async def _run_pane(self, state: _PaneState) -> None:
        for _ in range(self._repeats):
            state.live = RunRecorder(self._clock)
            result = await run_once(
                self._router,
                state.pane.spec,
                self._prompt,
                bypass_cache=self._bypass_cache,
                language=self._language,
                clock=self._clock,
                recorder=state.live,
                images=state.pane.images,
            )
            state.runs.append(result)
        state.live = None

    def snapshot(self) -> tuple[PaneSnapshot, ...]:
        snapshots = []
        for state in self._states:
            live = state.live
            last = state.runs[-1] if state.runs else None
            # A running pane shows its live text, a finished one the text of its last run.
            text, reasoning = "", ""
            if live is not None:
                text, reasoning = live.text, live.reasoning
            elif last is not None:
                text, reasoning = last.text, last.reasoning
            snapshots.append(
                PaneSnapshot(
                    label=state.pane.label,
                    model=state.pane.spec.model,
                    text=text,
                    reasoning=reasoning,
                    running=live is not None,
                    runs=tuple(state.runs),
                    repeats=self._repeats,
                    live_ttft_s=(
                        None if live is None or live.first_token_at is None else live.first_token_at - live.started
                    ),
                    live_tokens=live.chunks if live else 0,
                    live_elapsed_s=live.elapsed() if live else 0.0,
                )
            )
        return tuple(snapshots)

    async def updates(self, interval_s: float = 0.1) -> AsyncIterator[tuple[PaneSnapshot, ...]]:
        """Yield snapshots about every `interval_s` seconds while panes run, then a final one."""
        tasks = [asyncio.create_task(self._run_pane(state)) for state in self._states]
        logger.info("compare started: %d panes x %d repeats", len(tasks), self._repeats)
        try:
            pending: set[asyncio.Task[None]] = set(tasks)
            while pending:
                _, pending = await asyncio.wait(pending, timeout=interval_s)
                if pending:
                    yield self.snapshot()

            # Surface a bug in a pane task; model failures are already results.
            for task in tasks:
                task.result()
            yield self.snapshot()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def report(self) -> CompareReport:
        return CompareReport(
            prompt=self._prompt,
            started_at=self.started_at,
            repeats=self._repeats,
            panes=self.snapshot(),
            specs=tuple(state.pane.spec for state in self._states),
        )
