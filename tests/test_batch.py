"""Batch jobs: grid planning, failed rows, cancel, concurrency bounds, owners and exports."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import pytest

from backends.errors import ConfigError
from backends.types import SamplingParams
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.workbench_support import layered_router, openai_router, scripted_router
from workbench.batch import BatchSettings, JobManager, base_spec, make_plan, parse_grid_values
from workbench.errors import GridError, GridTooLargeError, JobNotFoundError, NoModelError
from workbench.export import batch_to_csv, batch_to_jsonl
from workbench.inputs import PromptRow

ROWS = tuple(PromptRow(str(i), f"prompt {i}", "ok" if i % 2 else None) for i in range(1, 11))


def plan_for(rows: tuple[PromptRow, ...], models: list[str], settings: BatchSettings, **grid: tuple[float | None, ...]):
    return make_plan(
        rows,
        models,
        grid.get("temperatures", (None,)),
        grid.get("top_ps", (None,)),
        base_spec(SamplingParams(max_tokens=50, seed=1), "Be brief."),
        settings,
        source="test",
    )


async def test_batch_runs_every_prompt_at_every_grid_point() -> None:
    router, backends = scripted_router(local={"models": [{"name": "m"}], "replies": [{"text": "ok"}]})
    settings = BatchSettings(concurrency=3)
    manager = JobManager(router, settings)
    plan = plan_for(ROWS[:4], ["m"], settings, temperatures=(0.2, 0.8), top_ps=(0.5, 1.0))

    job = manager.submit(plan)
    await manager.wait(job.id)

    assert job.state == "done"
    assert plan.total == 16
    assert job.done == 16
    assert job.failed == 0
    rows = job.rows()
    assert [row.index for row in rows] == list(range(16))
    assert {(row.temperature, row.top_p) for row in rows} == {(0.2, 0.5), (0.2, 1.0), (0.8, 0.5), (0.8, 1.0)}
    assert rows[0].prompt == "prompt 1"
    assert rows[0].matches_expected is True
    assert rows[1].served_by == "local/m"
    sent = backends["local"].received
    assert len(sent) == 16
    assert all(request.params.max_tokens == 50 and request.params.seed == 1 for request in sent)
    assert all(request.messages[0].text_content == "Be brief." for request in sent)
    assert manager.progress(job).fraction == 1.0
    assert manager.progress(job).eta_s is None


async def test_failed_rows_are_recorded_and_job_goes_on() -> None:
    router, _ = scripted_router(
        local={
            "models": [{"name": "m"}],
            "replies": [
                {"match": r"prompt (3|7)$", "error": "overloaded", "error_message": "upstream busy"},
                {"text": "ok"},
            ],
        }
    )
    settings = BatchSettings(concurrency=4)
    manager = JobManager(router, settings)

    job = manager.submit(plan_for(ROWS, ["m"], settings))
    await manager.wait(job.id)

    assert job.state == "done"
    assert job.done == 10
    assert job.failed == 2
    failed = [row for row in job.rows() if row.status == "error"]
    assert [row.row_id for row in failed] == ["3", "7"]
    assert all(row.error_code == "overloaded" for row in failed)
    assert all("upstream busy" in (row.error or "") for row in failed)
    assert all(row.matches_expected is None for row in failed)
    assert sum(1 for row in job.rows() if row.status == "ok") == 8


async def test_failed_chain_counts_as_failed_not_canned() -> None:
    # The default fallback settings end a failed chain in the canned reply; a batch run must not.
    router, backend = layered_router(
        models=[{"name": "m"}],
        replies=[{"match": "E503", "error": "overloaded", "error_message": "upstream busy"}, {"text": "4"}],
    )
    rows = (PromptRow("1", "What is 2+2?", "4"), PromptRow("2", "E503 failing", "sorry"))
    settings = BatchSettings()
    manager = JobManager(router, settings)

    try:
        job = manager.submit(plan_for(rows, ["m"], settings))
        await manager.wait(job.id)
    finally:
        await router.aclose()

    assert job.done == 2
    assert job.failed == 1
    assert manager.progress(job).failed == 1
    answered, failed = job.rows()
    assert answered.status == "ok"
    assert answered.matches_expected is True
    assert failed.status == "error"
    assert failed.error_code == "overloaded"
    assert "upstream busy" in (failed.error or "")
    assert failed.output == ""
    assert failed.matches_expected is None
    assert "canned-reply" not in failed.served_by
    assert [request.allow_canned_reply for request in backend.received] == [False, False]

    exported_csv = list(csv.DictReader(io.StringIO(batch_to_csv(job.rows()).removeprefix("\ufeff"))))
    exported_jsonl = [json.loads(line) for line in batch_to_jsonl(job.rows()).splitlines()]
    assert [row["status"] for row in exported_csv] == ["ok", "error"]
    assert exported_csv[1]["error_code"] == "overloaded"
    assert exported_jsonl[1]["status"] == "error"
    assert exported_jsonl[1]["error_code"] == "overloaded"


async def test_unknown_model_fails_rows_not_job() -> None:
    router, _ = scripted_router(local={"models": [{"name": "m"}], "replies": [{"text": "ok"}]})
    settings = BatchSettings()
    manager = JobManager(router, settings)

    job = manager.submit(plan_for(ROWS[:2], ["m", "gone"], settings))
    await manager.wait(job.id)

    assert job.state == "done"
    assert [row.status for row in job.rows()] == ["ok", "error", "ok", "error"]
    assert job.rows()[1].error_code == "not_found"


async def test_concurrency_is_bounded_per_job() -> None:
    router, backends = scripted_router(
        local={"models": [{"name": "m"}], "replies": [{"text": "a b c"}], "chunk_delay": 0.01}
    )
    settings = BatchSettings(concurrency=3)
    manager = JobManager(router, settings)
    job = manager.submit(plan_for(ROWS, ["m"], settings))
    peak = 0

    while job.state == "running":
        peak = max(peak, backends["local"].in_flight)
        await asyncio.sleep(0.002)

    assert peak == 3
    assert job.done == 10


async def test_global_limit_bounds_all_jobs() -> None:
    router, backends = scripted_router(
        local={"models": [{"name": "m"}], "replies": [{"text": "a b c"}], "chunk_delay": 0.01}
    )
    settings = BatchSettings(concurrency=4, max_concurrency=5)
    manager = JobManager(router, settings)
    jobs = [manager.submit(plan_for(ROWS, ["m"], settings)) for _ in range(3)]
    peak = 0

    while any(job.state == "running" for job in jobs):
        peak = max(peak, backends["local"].in_flight)
        await asyncio.sleep(0.002)

    assert peak == 5
    assert [job.done for job in jobs] == [10, 10, 10]


async def test_cancel_mid_job_keeps_finished_rows() -> None:
    router, backends = scripted_router(
        local={"models": [{"name": "m"}], "replies": [{"text": "a b c d"}], "chunk_delay": 0.02}
    )
    settings = BatchSettings(concurrency=2)
    manager = JobManager(router, settings)
    job = manager.submit(plan_for(ROWS, ["m"], settings))
    while job.done < 3:
        await asyncio.sleep(0.005)

    await manager.cancel(job.id)

    assert job.state == "cancelled"
    assert 3 <= job.done < 10
    statuses = [row.status for row in job.rows()]
    assert len(statuses) == 10
    assert statuses.count("ok") == job.done
    assert statuses.count("cancelled") == 10 - job.done
    assert backends["local"].in_flight == 0
    progress = manager.progress(job)
    assert progress.state == "cancelled"
    assert progress.eta_s is None


async def test_progress_estimates_time_left() -> None:
    now = [100.0]
    router, _ = scripted_router(local={"models": [{"name": "m"}], "replies": [{"text": "ok"}], "chunk_delay": 0.5})
    settings = BatchSettings(concurrency=1)
    manager = JobManager(router, settings, clock=lambda: now[0])
    job = manager.submit(plan_for(ROWS[:4], ["m"], settings))

    job.done = 1
    now[0] = 110.0
    progress = manager.progress(job)

    assert progress.elapsed_s == 10.0
    assert progress.eta_s == 30.0
    assert progress.fraction == 0.25
    await manager.cancel(job.id)


async def test_job_outlives_its_caller_and_owner_is_checked() -> None:
    router, _ = scripted_router(local={"models": [{"name": "m"}], "replies": [{"text": "ok"}], "chunk_delay": 0.01})
    settings = BatchSettings()
    manager = JobManager(router, settings)

    async def start_from_a_session() -> str:
        return manager.submit(plan_for(ROWS, ["m"], settings), owner="alice").id

    # The task that started the job ends at once, as a Gradio event does when its tab closes.
    job_id = await asyncio.create_task(start_from_a_session())
    job = await manager.wait(job_id)

    assert manager.get(job_id, owner="alice") is job
    assert job.state == "done"
    assert job.done == 10
    assert [found.id for found in manager.jobs(owner="alice")] == [job_id]
    assert manager.jobs(owner="bob") == []
    with pytest.raises(JobNotFoundError):
        manager.get(job_id, owner="bob")
    with pytest.raises(JobNotFoundError):
        manager.get("nonexistent", owner="alice")


async def test_old_finished_jobs_are_forgotten() -> None:
    router, _ = scripted_router(local={"models": [{"name": "m"}], "replies": [{"text": "ok"}]})
    settings = BatchSettings(keep_jobs=2)
    manager = JobManager(router, settings)
    ids = []
    for _ in range(4):
        job = manager.submit(plan_for(ROWS[:1], ["m"], settings))
        ids.append(job.id)
        await manager.wait(job.id)

    kept = [job.id for job in manager.jobs()]

    assert kept == [ids[3], ids[2], ids[1]]


def test_grid_over_limit_is_rejected() -> None:
    settings = BatchSettings(max_runs=100)

    with pytest.raises(GridTooLargeError) as caught:
        plan_for(ROWS, ["a", "b"], settings, temperatures=(0.1, 0.5, 0.9), top_ps=(0.5, 1.0))

    assert caught.value.params["runs"] == 120
    assert caught.value.params["limit"] == 100
    assert "batch.max_runs" in caught.value.fix


def test_grid_without_model_is_rejected() -> None:
    with pytest.raises(NoModelError, match="no model"):
        plan_for(ROWS, [], BatchSettings())


def test_grid_values_parse() -> None:
    assert parse_grid_values("0.2, 0.7，1.0, 0.7", "temperature", 0, 2, 10) == (0.2, 0.7, 1.0)
    assert parse_grid_values("  ", "temperature", 0, 2, 10) == (None,)


@pytest.mark.parametrize(("text", "fragment"), [("0.2, hot", "'hot'"), ("3", "outside"), ("0.1," * 11, "more than")])
def test_bad_grid_values_are_rejected(text: str, fragment: str) -> None:
    with pytest.raises(GridError, match=fragment):
        parse_grid_values(text, "temperature", 0, 2, 10)


async def test_batch_exports_parse_back() -> None:
    rows = (PromptRow("1", "=1+1", "2"), PromptRow("2", "你好，世界", None))
    router, _ = scripted_router(
        local={"models": [{"name": "m"}], "replies": [{"match": "世界", "error": "rate_limited"}, {"text": "2"}]}
    )
    settings = BatchSettings()
    manager = JobManager(router, settings)
    job = manager.submit(plan_for(rows, ["m"], settings, temperatures=(0.5,)))
    await manager.wait(job.id)

    parsed_csv = list(csv.DictReader(io.StringIO(batch_to_csv(job.rows()).removeprefix("\ufeff"))))
    parsed_jsonl = [json.loads(line) for line in batch_to_jsonl(job.rows()).splitlines()]

    assert [row["prompt"] for row in parsed_csv] == ["'=1+1", "你好，世界"]
    assert [row["status"] for row in parsed_csv] == ["ok", "error"]
    assert parsed_csv[0]["output"] == "2"
    assert parsed_csv[0]["matches_expected"] == "True"
    assert parsed_csv[1]["error_code"] == "rate_limited"
    assert parsed_csv[0]["temperature"] == "0.5"
    assert float(parsed_csv[0]["latency_s"]) >= 0
    assert parsed_csv[0]["served_by"] == "local/m"
    assert [row["prompt"] for row in parsed_jsonl] == ["=1+1", "你好，世界"]
    assert parsed_jsonl[0]["tokens"] == 1
    assert parsed_jsonl[1]["error_code"] == "rate_limited"
    assert parsed_jsonl[1]["output"] == ""


def test_config_batch_section_is_validated() -> None:
    from config import parse_config

    config = parse_config({"batch": {"concurrency": 16, "max_upload_mb": 2}}, source="t.toml", env={})
    assert config.batch.concurrency == 16
    assert config.batch.max_upload_bytes == 2_000_000

    with pytest.raises(ConfigError, match="batch.concurrenc"):
        parse_config({"batch": {"concurrenc": 3}}, source="t.toml", env={})


async def test_batch_against_server_with_failing_rows(openai_server: FakeOpenAIServer) -> None:
    ok = Behaviour(reply="fine", chunk_delay=0.02)
    openai_server.default = ok
    openai_server.script(
        ok,
        Behaviour(status=500),
        ok,
        Behaviour(reply="cut", disconnect_after_chunks=0),
        ok,
        Behaviour(status=400, error_body={"error": {"message": "bad temperature", "type": "invalid_request_error"}}),
    )
    router = openai_router(openai_server.base_url)
    settings = BatchSettings(concurrency=4)
    manager = JobManager(router, settings)

    try:
        job = manager.submit(plan_for(ROWS, ["fake-model"], settings, temperatures=(0.3, 0.9)))
        await manager.wait(job.id)
    finally:
        await router.aclose()

    assert job.state == "done"
    assert job.done == 20
    assert job.failed == 3
    assert openai_server.max_in_flight == 4
    assert len(openai_server.chat_requests) == 20
    failed_codes = sorted(row.error_code or "" for row in job.rows() if row.status == "error")
    assert failed_codes == ["bad_request", "overloaded", "stream_incomplete"]
    assert sum(1 for row in job.rows() if row.output == "fine") == 17
    temperatures = sorted(request.json["temperature"] for request in openai_server.chat_requests)
    assert temperatures == [0.3] * 10 + [0.9] * 10
