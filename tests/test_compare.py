"""Side-by-side compare: concurrent panes, repeats, spreads, failures, stop and exports."""

from __future__ import annotations

import asyncio
import csv
import io
import json

import pytest

from backends.layers import messages
from backends.layers.fallback import CANNED_BACKEND, CANNED_MODEL
from backends.types import Finished, ImagePart, SamplingParams, TextDelta
from tests.fakes.openai_server import Behaviour, FakeOpenAIServer
from tests.workbench_support import layered_router, openai_router, scripted_router
from workbench.compare import CompareInputError, CompareRun, Pane, PaneSnapshot, spread
from workbench.export import compare_to_csv, compare_to_json, compare_to_markdown
from workbench.runner import RunRecorder, RunSpec


def two_models(**extra: object) -> dict[str, object]:
    return {
        "models": [{"name": "fast"}, {"name": "slow"}],
        "replies": [{"match": "^", "text": "one two three four"}],
        **extra,
    }


async def final(run: CompareRun) -> tuple[PaneSnapshot, ...]:
    snapshot: tuple[PaneSnapshot, ...] = ()
    async for snapshot in run.updates(interval_s=0.01):
        pass
    return snapshot


async def test_compare_runs_each_pane_with_its_settings() -> None:
    router, backends = scripted_router(local=two_models())
    panes = [
        Pane("A", RunSpec("fast", SamplingParams(temperature=0.2, seed=11), system_prompt="Be terse.")),
        Pane("B", RunSpec("slow", SamplingParams(temperature=0.9, max_tokens=2))),
    ]

    snapshot = await final(CompareRun(router, "count", panes))

    assert [pane.label for pane in snapshot] == ["A", "B"]
    assert snapshot[0].text == "one two three four"
    assert snapshot[1].text == "one two "
    assert snapshot[1].latest is not None and snapshot[1].latest.finish_reason == "length"
    assert not any(pane.running for pane in snapshot)
    received = {request.model: request for request in backends["local"].received}
    assert received["fast"].params == SamplingParams(temperature=0.2, seed=11)
    assert received["fast"].messages[0].role == "system"
    assert received["slow"].params == SamplingParams(temperature=0.9, max_tokens=2)
    assert all(request.bypass_cache for request in received.values())


async def test_compare_pane_metrics_are_filled() -> None:
    router, _ = scripted_router(local=two_models(chunk_delay=0.01))
    panes = [Pane("A", RunSpec("fast")), Pane("B", RunSpec("slow"))]

    snapshot = await final(CompareRun(router, "count", panes))

    run = snapshot[0].latest
    assert run is not None
    assert run.ttft_s is not None and run.ttft_s >= 0
    assert run.tokens == 4
    assert run.tokens_estimated is False
    assert run.tokens_per_s is not None and run.tokens_per_s > 0
    assert run.chars == len("one two three four")
    assert run.served_by == "local/fast"


async def test_compare_repeats_give_spread() -> None:
    router, backends = scripted_router(local=two_models())
    panes = [Pane("A", RunSpec("fast")), Pane("B", RunSpec("slow"))]

    snapshot = await final(CompareRun(router, "count", panes, repeats=3))

    assert [len(pane.runs) for pane in snapshot] == [3, 3]
    assert len(backends["local"].received) == 6
    tokens = snapshot[0].spread("tokens")
    assert tokens is not None
    assert (tokens.minimum, tokens.median, tokens.maximum) == (4.0, 4.0, 4.0)
    ttft = snapshot[0].spread("ttft_s")
    assert ttft is not None and ttft.minimum <= ttft.median <= ttft.maximum


async def test_compare_failed_pane_keeps_others() -> None:
    router, _ = scripted_router(
        good={"models": [{"name": "good"}], "replies": [{"text": "fine"}]},
        bad={"models": [{"name": "bad"}], "replies": [{"error": "overloaded", "error_message": "busy"}]},
    )
    panes = [Pane("good", RunSpec("good")), Pane("bad", RunSpec("bad"))]

    snapshot = await final(CompareRun(router, "hi", panes, repeats=2))

    assert [run.ok for run in snapshot[0].runs] == [True, True]
    assert [run.error_code for run in snapshot[1].runs] == ["overloaded", "overloaded"]
    assert snapshot[1].spread("tokens") is None
    assert snapshot[0].text == "fine"


async def test_compare_failed_chain_is_error_not_canned() -> None:
    # The default fallback settings end a failed chain in the canned reply; a compare pane must not.
    router, backend = layered_router(models=[{"name": "bad"}], replies=[{"error": "overloaded"}])
    panes = [Pane("bad", RunSpec("bad")), Pane("bad again", RunSpec("bad"))]
    run = CompareRun(router, "hi", panes, language="zh-CN")

    try:
        snapshot = await final(run)
    finally:
        await router.aclose()

    latest = snapshot[0].latest
    assert latest is not None
    assert not latest.ok
    assert latest.error_code == "overloaded"
    assert snapshot[0].text == ""
    assert [request.allow_canned_reply for request in backend.received] == [False, False]
    exported = json.loads(compare_to_json(run.report()))
    assert exported["panes"][0]["runs"][0]["error_code"] == "overloaded"
    assert exported["panes"][0]["runs"][0]["text"] == ""


def test_canned_reply_seen_by_recorder_is_failed_run() -> None:
    ticks = iter([0.0, 0.5, 1.0])
    recorder = RunRecorder(clock=lambda: next(ticks))

    recorder.record(TextDelta(messages.text("canned_reply", "en")))
    recorder.record(Finished(reason="stop", backend=CANNED_BACKEND, model=CANNED_MODEL, failures=("m: 503 ×2",)))
    result = recorder.result()

    assert not result.ok
    assert result.error_code == "canned_reply"
    assert "m: 503 ×2" in (result.error or "")
    assert result.text == ""
    assert result.ttft_s is None
    assert result.tokens == 0
    assert result.finish_reason == "error"
    assert result.served_by == "parley/canned-reply after m: 503 ×2"


async def test_compare_streams_panes_concurrently() -> None:
    router, backends = scripted_router(
        local={"models": [{"name": f"m{i}"} for i in range(4)], "replies": [{"text": "a b c d e"}],
               "chunk_delay": 0.05}
    )
    panes = [Pane(f"m{i}", RunSpec(f"m{i}")) for i in range(4)]
    peak = 0

    async for _ in CompareRun(router, "hi", panes).updates(interval_s=0.01):
        peak = max(peak, backends["local"].in_flight)

    assert peak == 4


async def test_closing_compare_stops_every_stream() -> None:
    router, backends = scripted_router(
        local={"models": [{"name": "a"}, {"name": "b"}], "replies": [{"text": "x " * 200}], "chunk_delay": 0.05}
    )
    updates = CompareRun(router, "hi", [Pane("a", RunSpec("a")), Pane("b", RunSpec("b"))]).updates(interval_s=0.01)

    first = await anext(updates)
    await updates.aclose()

    assert any(pane.running for pane in first)
    assert backends["local"].in_flight == 0


@pytest.mark.parametrize(
    ("panes", "repeats", "prompt"),
    [(1, 1, "hi"), (5, 1, "hi"), (2, 0, "hi"), (2, 21, "hi"), (2, 1, "  ")],
)
def test_compare_rejects_bad_setup(panes: int, repeats: int, prompt: str) -> None:
    router, _ = scripted_router(local={"models": [{"name": "m"}]})

    with pytest.raises(CompareInputError):
        CompareRun(router, prompt, [Pane("m", RunSpec("m"))] * panes, repeats=repeats)


def test_spread_of_no_values_is_none() -> None:
    assert spread([], "tokens") is None


async def test_compare_exports_parse_back() -> None:
    router, _ = scripted_router(
        local={"models": [{"name": "a"}, {"name": "b"}], "replies": [{"text": "=SUM(A1) 你好 ```code```"}]}
    )
    run = CompareRun(router, "say | hi", [Pane("A", RunSpec("a", SamplingParams(seed=5))), Pane("B", RunSpec("b"))],
                     repeats=2)
    await final(run)
    report = run.report()

    document = json.loads(compare_to_json(report))
    assert document["prompt"] == "say | hi"
    assert document["repeats"] == 2
    assert document["panes"][0]["params"] == {"seed": 5}
    assert [r["text"] for r in document["panes"][1]["runs"]] == ["=SUM(A1) 你好 ```code```"] * 2
    assert document["panes"][0]["spread"]["tokens"]["median"] == 4.0

    text = compare_to_csv(report)
    assert text.startswith("\ufeff")
    rows = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert len(rows) == 4
    assert [row["pane"] for row in rows] == ["A", "A", "B", "B"]
    assert rows[0]["text"] == "'=SUM(A1) 你好 ```code```"
    assert json.loads(rows[0]["params"]) == {"seed": 5}
    assert rows[0]["tokens"] == "4"

    markdown = compare_to_markdown(report)
    assert "| A | a | seed=5 |" in markdown
    assert "````text\n=SUM(A1) 你好 ```code```\n````" in markdown
    assert "> say | hi" in markdown


async def test_cancelled_compare_task_releases_streams() -> None:
    router, backends = scripted_router(
        local={"models": [{"name": "a"}, {"name": "b"}], "replies": [{"text": "x " * 200}], "chunk_delay": 0.05}
    )

    async def consume() -> None:
        async for _ in CompareRun(router, "hi", [Pane("a", RunSpec("a")), Pane("b", RunSpec("b"))]).updates():
            pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.2)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)

    assert backends["local"].in_flight == 0


async def test_four_panes_stream_at_once_from_server(openai_server: FakeOpenAIServer) -> None:
    openai_server.default = Behaviour(reply="one two three four five six", chunk_delay=0.05)
    models = ("m1", "m2", "m3", "m4")
    router = openai_router(openai_server.base_url, models)
    panes = [Pane(model, RunSpec(model, SamplingParams(temperature=0.1 * i, seed=42))) for i, model in enumerate(models)]

    try:
        snapshot = await final(CompareRun(router, "hi", panes))
    finally:
        await router.aclose()

    assert openai_server.max_in_flight == 4
    assert [pane.text for pane in snapshot] == ["one two three four five six"] * 4
    sent = sorted((request.json["model"], request.json["seed"]) for request in openai_server.chat_requests)
    assert sent == [(model, 42) for model in models]
    assert all(pane.latest is not None and pane.latest.tokens_estimated is False for pane in snapshot)


async def test_compare_sends_image_to_each_pane() -> None:
    router, backends = scripted_router(
        local={"models": [{"name": "eyes", "vision": True}, {"name": "blind"}], "replies": [{"text": "a cat"}]}
    )
    image = ImagePart.from_bytes(b"\x89PNG fake bytes", "image/png")
    panes = [Pane("eyes", RunSpec("eyes"), images=(image,)), Pane("blind", RunSpec("blind"), images=(image,))]

    snapshot = await final(CompareRun(router, "what is this?", panes))

    assert snapshot[0].text == "a cat"
    sent = backends["local"].received[0]
    assert sent.messages[-1].text_content == "what is this?"
    assert sent.messages[-1].images == (image,)
    assert snapshot[1].latest is not None
    assert snapshot[1].latest.error_code == "image_not_supported"
