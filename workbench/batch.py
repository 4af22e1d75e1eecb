"""Batch runs: prompts x models x a parameter grid, run in the background by a JobManager.

A job is an asyncio task owned by the JobManager service, not by the Gradio
event that started it, so it keeps running when the browser tab closes and
the user can come back to it by its id. Workers pull runs from the job's
plan, so at most `concurrency` runs of a job are in flight, and at most
`max_concurrency` over all jobs. Each run goes through the Router, so the
backends' rate limits, retries and fallback apply. A failed run is recorded
and the job goes on.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Literal

from pydantic import Field

from backends.router import Router
from backends.settings import StrictModel
from backends.types import SamplingParams
from workbench.errors import GridError, GridTooLargeError, JobNotFoundError, NoModelError
from workbench.inputs import PromptRow
from workbench.runner import Clock, RunSpec, run_once

logger = logging.getLogger(__name__)

JobState = Literal["running", "done", "cancelled", "failed"]
RowStatus = Literal["ok", "error", "cancelled"]


class BatchSettings(StrictModel):
    """The `[batch]` config section."""

    concurrency: int = Field(default=8, ge=1, le=256, description="Runs in flight per job.")
    max_concurrency: int = Field(default=32, ge=1, le=1024, description="Runs in flight over all jobs.")
    max_runs: int = Field(default=5000, ge=1, description="Prompts x models x grid points allowed in one job.")
    max_upload_mb: float = Field(default=10.0, gt=0, description="Largest batch input file, in MB.")
    max_grid_values: int = Field(default=10, ge=1, description="Values per grid parameter.")
    keep_jobs: int = Field(default=20, ge=1, description="Finished jobs kept for viewing; older ones are dropped.")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


@dataclass(frozen=True, slots=True)
class GridPoint:
    model: str
    temperature: float | None
    top_p: float | None


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """The runs of a job: every prompt at every grid point, on top of shared base settings."""

    rows: tuple[PromptRow, ...]
    points: tuple[GridPoint, ...]
    base: RunSpec
    bypass_cache: bool = True
    source: str = ""
    language: str = "en"

    @property
    def total(self) -> int:
        return len(self.rows) * len(self.points)


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One finished (or cancelled) run of a job, as shown in the table and exported."""

    index: int
    row_id: str
    prompt: str
    expected: str | None
    model: str
    temperature: float | None
    top_p: float | None
    status: RowStatus
    output: str
    latency_s: float | None
    ttft_s: float | None
    tokens: int | None
    tokens_per_s: float | None
    served_by: str
    cached: bool
    error: str | None
    error_code: str | None
    # Case- and whitespace-insensitive equality with the expected answer; None without one.
    matches_expected: bool | None


@dataclass(frozen=True, slots=True)
class JobProgress:
    state: JobState
    done: int
    failed: int
    total: int
    elapsed_s: float
    eta_s: float | None

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


def parse_grid_values(text: str, name: str, low: float, high: float, max_values: int) -> tuple[float | None, ...]:
    """Parse "0.2, 0.7, 1.0" into values; an empty field means "not set" (the model's default)."""
    parts = [part.strip() for part in text.replace("，", ",").split(",") if part.strip()]
    if not parts:
        return (None,)
    if len(parts) > max_values:
        raise GridError(
            f"{name} has {len(parts)} values, more than the {max_values} allowed",
            name=name, value=text, low=low, high=high, count=len(parts), max_values=max_values,
        )  # fmt: skip

    values: list[float] = []
    for part in parts:
        try:
            value = float(part)
        except ValueError as exc:
            raise GridError(f"{name} value {part!r} is not a number", name=name, value=part, low=low, high=high) from exc
        if not low <= value <= high:
            raise GridError(
                f"{name} value {value} is outside {low} to {high}", name=name, value=part, low=low, high=high
            )
        if value not in values:
            values.append(value)
    return tuple(values)


def make_plan(
    rows: Sequence[PromptRow],
    models: Sequence[str],
    temperatures: Sequence[float | None],
    top_ps: Sequence[float | None],
    base: RunSpec,
    settings: BatchSettings,
    *,
    bypass_cache: bool = True,
    source: str = "",
    language: str = "en",
) -> BatchPlan:
    """Build a plan; raises GridTooLargeError when it has more runs than `settings.max_runs`."""
    if not models:
        raise NoModelError("no model is selected")
    points = tuple(GridPoint(m, t, p) for m, t, p in itertools.product(models, temperatures or (None,), top_ps or (None,)))
    total = len(rows) * len(points)
    if total > settings.max_runs:
        raise GridTooLargeError(
            f"the job has {len(rows)} prompts x {len(points)} settings = {total} runs, over the limit of "
            f"{settings.max_runs}",
            runs=total,
            limit=settings.max_runs,
            prompts=len(rows),
            settings=len(points),
        )
    return BatchPlan(
        rows=tuple(rows), points=points, base=base, bypass_cache=bypass_cache, source=source, language=language
    )


def _matches(expected: str | None, output: str) -> bool | None:
    if expected is None:
        return None
    return " ".join(expected.split()).casefold() == " ".join(output.split()).casefold()


@dataclass(eq=False)
class Job:
    """A batch job; its fields are read by the UI while the job's task writes them."""

    id: str
    plan: BatchPlan
    owner: str | None
    created_at: datetime
    started: float
    results: list[BatchRow | None]
    state: JobState = "running"
    done: int = 0
    failed: int = 0
    ended: float | None = None
    problem: str = ""
    task: asyncio.Task[None] | None = field(default=None, repr=False)

    def progress(self, now: float) -> JobProgress:
        end = self.ended if self.ended is not None else now
        elapsed = end - self.started
        eta = None
        if self.state == "running" and self.done:
            eta = elapsed / self.done * (self.plan.total - self.done)
        return JobProgress(self.state, self.done, self.failed, self.plan.total, elapsed, eta)

    def rows(self) -> list[BatchRow]:
        """The finished runs, in plan order."""
        return [row for row in self.results if row is not None]


class JobManager:
    """Starts, tracks and cancels batch jobs; one per process, created by the composition root.

    `submit` must be called on the event loop that serves the app, because the
    job's task runs there.
    """

    def __init__(self, router: Router, settings: BatchSettings, clock: Clock = time.monotonic) -> None:
        self._router = router
        self.settings = settings
        self._clock = clock
        self._jobs: dict[str, Job] = {}
        self._slots: asyncio.Semaphore | None = None

    def submit(self, plan: BatchPlan, owner: str | None = None) -> Job:
        job = Job(
            id=secrets.token_hex(6),
            plan=plan,
            owner=owner,
            created_at=datetime.now(UTC),
            started=self._clock(),
            results=[None] * plan.total,
        )
        self._jobs[job.id] = job
        job.task = asyncio.get_running_loop().create_task(self._run(job), name=f"batch-{job.id}")
        logger.info("batch job %s started: %d runs from %s", job.id, plan.total, plan.source or "upload")
        self._forget_old_jobs()
        return job

    def get(self, job_id: str, owner: str | None = None) -> Job:
        """Return a job; another owner's job is reported as not found."""
        job = self._jobs.get(job_id.strip())
        if job is None or (job.owner is not None and job.owner != owner):
            raise JobNotFoundError(f"batch job {job_id!r} does not exist", job_id=job_id.strip())
        return job

    def jobs(self, owner: str | None = None) -> list[Job]:
        """Jobs the owner may see, newest first."""
        visible = [job for job in self._jobs.values() if job.owner is None or job.owner == owner]
        return sorted(visible, key=lambda job: job.created_at, reverse=True)

    def progress(self, job: Job) -> JobProgress:
        return job.progress(self._clock())

    async def cancel(self, job_id: str, owner: str | None = None) -> Job:
        job = self.get(job_id, owner)
        if job.task is not None and not job.task.done():
            job.task.cancel()
            await asyncio.gather(job.task, return_exceptions=True)

        # A task cancelled before its first step never ran `_run`, so nothing recorded the end.
        if job.state == "running" and job.task is not None and job.task.done():
            job.state = "cancelled"
            self._mark_unfinished(job)
            job.ended = self._clock()
            logger.info("batch job %s cancelled before it started", job.id)
        return job

    async def wait(self, job_id: str) -> Job:
        """Wait until a job ends (tests, benchmarks and the API use this)."""
        job = self._jobs[job_id]
        if job.task is not None:
            await asyncio.gather(job.task, return_exceptions=True)
        return job

    async def aclose(self) -> None:
        """Cancel running jobs at shutdown."""
        for job in list(self._jobs.values()):
            if job.task is not None and not job.task.done():
                job.task.cancel()
        await asyncio.gather(*(job.task for job in self._jobs.values() if job.task), return_exceptions=True)

    def _forget_old_jobs(self) -> None:
        finished = [job for job in self._jobs.values() if job.state != "running"]
        finished.sort(key=lambda job: job.created_at)
        for job in finished[: max(0, len(finished) - self.settings.keep_jobs)]:
            del self._jobs[job.id]

    async def _run(self, job: Job) -> None:
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.settings.max_concurrency)
        plan = job.plan
        queue = iter(range(plan.total))
        workers = [asyncio.create_task(self._worker(job, queue)) for _ in range(min(self.settings.concurrency, plan.total))]

        try:
            await asyncio.gather(*workers)
            job.state = "done"
        except asyncio.CancelledError:
            job.state = "cancelled"
            logger.info("batch job %s cancelled after %d of %d runs", job.id, job.done, plan.total)
        except Exception as exc:
            # A bug, not a model failure (those become rows): keep what finished and record what broke.
            job.state = "failed"
            job.problem = f"{type(exc).__name__}: {exc}"
            logger.exception("batch job %s failed", job.id)
        finally:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            self._mark_unfinished(job)
            job.ended = self._clock()
            logger.info(
                "batch job %s %s: %d done, %d failed, %.1f s", job.id, job.state, job.done, job.failed, job.ended - job.started
            )

    def _mark_unfinished(self, job: Job) -> None:
        for index, row in enumerate(job.results):
            if row is None:
                job.results[index] = self._empty_row(job.plan, index, "cancelled")

    def _spec_for(self, plan: BatchPlan, point: GridPoint) -> RunSpec:
        params = plan.base.params
        params = replace(
            params,
            temperature=point.temperature if point.temperature is not None else params.temperature,
            top_p=point.top_p if point.top_p is not None else params.top_p,
        )
        return RunSpec(model=point.model, params=params, system_prompt=plan.base.system_prompt)

    @staticmethod
    def _locate(plan: BatchPlan, index: int) -> tuple[PromptRow, GridPoint]:
        return plan.rows[index // len(plan.points)], plan.points[index % len(plan.points)]

    def _empty_row(self, plan: BatchPlan, index: int, status: RowStatus) -> BatchRow:
        prompt, point = self._locate(plan, index)
        return BatchRow(
            index=index, row_id=prompt.row_id, prompt=prompt.prompt, expected=prompt.expected, model=point.model,
            temperature=point.temperature, top_p=point.top_p, status=status, output="", latency_s=None, ttft_s=None,
            tokens=None, tokens_per_s=None, served_by="", cached=False, error=None, error_code=None,
            matches_expected=None,
        )  # fmt: skip

    async def _worker(self, job: Job, queue: Iterator[int]) -> None:
        # Workers share one iterator: on a single event loop, next() hands each index out once.
        plan = job.plan
        for index in queue:
            prompt, point = self._locate(plan, index)
            spec = self._spec_for(plan, point)
            assert self._slots is not None
            async with self._slots:
                result = await run_once(
                    self._router, spec, prompt.prompt, bypass_cache=plan.bypass_cache, language=plan.language
                )

            job.results[index] = BatchRow(
                index=index,
                row_id=prompt.row_id,
                prompt=prompt.prompt,
                expected=prompt.expected,
                model=point.model,
                temperature=spec.params.temperature,
                top_p=spec.params.top_p,
                status="ok" if result.ok else "error",
                output=result.text,
                latency_s=round(result.total_s, 4),
                ttft_s=None if result.ttft_s is None else round(result.ttft_s, 4),
                tokens=result.tokens,
                tokens_per_s=None if result.tokens_per_s is None else round(result.tokens_per_s, 2),
                served_by=result.served_by,
                cached=result.cached,
                error=result.error,
                error_code=result.error_code,
                matches_expected=_matches(prompt.expected, result.text) if result.ok else None,
            )
            job.done += 1
            if not result.ok:
                job.failed += 1


def base_spec(params: SamplingParams, system_prompt: str = "") -> RunSpec:
    """The settings every run of a job shares; the model comes from the grid."""
    return RunSpec(model="", params=params, system_prompt=system_prompt)
