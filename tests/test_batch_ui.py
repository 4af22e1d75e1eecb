"""The Batch, Compare and Scenarios tabs end to end: the whole app on 127.0.0.1, driven through gradio_client."""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from gradio_client import Client, handle_file

from backends.types import SamplingParams
from tests.ui_support import scripted_config, serve_parley
from tests.workbench_support import scripted_router
from ui.batch_tab import job_choice
from workbench.batch import BatchSettings, JobManager, base_spec, make_plan
from workbench.inputs import PromptRow


@pytest.fixture
def workbench_app(tmp_path: Path) -> Iterator[str]:
    raw = scripted_config(
        replies=[{"match": "fail", "error": "overloaded", "error_message": "scripted outage"}, {"text": "done ok"}],
        chunk_delay=0.01,
    )
    raw["backends"][0]["models"].append({"name": "second"})
    raw["presets"] = {"data_dir": str(tmp_path / "data")}
    raw["batch"] = {"concurrency": 2, "max_runs": 500}
    # Failed rows should stay failed here, not be retried for seconds or answered by the canned reply.
    raw["resilience"] = {"retry": {"max_retries": 0}, "fallback": {"canned_reply": False}}
    with serve_parley(raw) as url:
        yield url


def prompts_file(tmp_path: Path, count: int) -> str:
    lines = ["编号,提示词,答案"] + [f"{i},{'fail now' if i % 5 == 0 else f'问题 {i}'},done ok" for i in range(1, count + 1)]
    path = tmp_path / "prompts.csv"
    path.write_bytes(("\n".join(lines) + "\n").encode("gbk"))
    return str(path)


def wait_for_state(client: Client, job_id: str, states: tuple[str, ...], timeout: float = 30.0) -> tuple[Any, ...]:
    deadline = time.monotonic() + timeout
    while True:
        result = client.predict(job_id, api_name="/batch_status")
        if any(f'data-state="{state}"' in result[1] for state in states):
            return tuple(result)
        assert time.monotonic() < deadline, f"job {job_id} did not reach {states}: {result[1]}"
        time.sleep(0.1)


def test_batch_job_survives_client_disconnect(workbench_app: str, tmp_path: Path) -> None:
    starter = Client(workbench_app + "/", verbose=False)
    job_id, status, _, _ = starter.predict(
        handle_file(prompts_file(tmp_path, 40)), ["scripted-echo", "second"], "custom", "0.2, 0.8", "", False,
        api_name="/start_batch",
    )
    starter.close()

    assert len(job_id) == 12
    assert status == f"Job {job_id} started: 160 runs."
    viewer = Client(workbench_app + "/", verbose=False)
    note, progress, table, _, shown_files, _ = wait_for_state(viewer, job_id, ("done",))
    assert 'data-done="160"' in progress
    assert "32 failed" in progress
    assert table["headers"][:4] == ["#", "Row id", "Model", "Temperature"]
    rows = table["data"]
    assert len(rows) == 160
    assert {row[5] for row in rows} == {"ok", "failed"}
    assert len(shown_files) == 2

    files, download_note = viewer.predict(job_id, api_name="/download_batch")
    assert download_note == ""
    paths = {Path(item).suffix: Path(item) for item in files}
    assert sorted(paths) == [".csv", ".jsonl"]
    parsed = list(csv.DictReader(io.StringIO(paths[".csv"].read_text(encoding="utf-8-sig"))))
    assert len(parsed) == 160
    assert parsed[0]["prompt"] == "问题 1"
    assert parsed[0]["matches_expected"] == "True"
    records = [json.loads(line) for line in paths[".jsonl"].read_text(encoding="utf-8").splitlines()]
    assert sum(1 for record in records if record["error_code"] == "overloaded") == 32


def test_batch_failure_with_canned_reply_on_counts_failed(tmp_path: Path) -> None:
    # The default fallback settings, canned reply included: the failing row must still count as failed.
    raw = scripted_config(replies=[{"match": "fail", "error": "overloaded", "error_message": "scripted outage"},
                                   {"text": "done ok"}])
    raw["resilience"] = {"retry": {"max_retries": 0}}
    with serve_parley(raw) as url:
        client = Client(url + "/", verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
        job_id, *_ = client.predict(
            handle_file(prompts_file(tmp_path, 5)), ["scripted-echo"], "custom", "", "", False, api_name="/start_batch"
        )
        _, progress, table, *_ = wait_for_state(client, job_id, ("done",))
        files, _ = client.predict(job_id, api_name="/download_batch")

    assert "失败 1 次" in progress
    failed = table["data"][4]
    assert failed[5] == "失败"
    assert failed[10] == ""
    assert "scripted outage" in failed[11]
    jsonl = next(Path(item) for item in files if item.endswith(".jsonl"))
    records = [json.loads(line) for line in jsonl.read_text(encoding="utf-8").splitlines()]
    assert records[4]["status"] == "error"
    assert records[4]["error_code"] == "overloaded"


def test_batch_cancel_through_client(workbench_app: str, tmp_path: Path) -> None:
    client = Client(workbench_app + "/", verbose=False)
    job_id, *_ = client.predict(
        handle_file(prompts_file(tmp_path, 400)), ["scripted-echo"], "customer_service", "", "", False,
        api_name="/start_batch",
    )

    client.predict(job_id, api_name="/cancel_batch")
    _, progress, table, *_ = wait_for_state(client, job_id, ("cancelled",))

    assert "cancelled" in progress
    assert len(table["data"]) < 400 or any(row[5] == "cancelled" for row in table["data"])


@pytest.mark.parametrize(("name", "content", "message"), [
    ("bad.csv", "text,label\nhello,1\n", "⚠️ bad.csv 中没有提示词列（现有列：'text', 'label'）"),
    ("quote.csv", 'id,prompt\n1,first\n2,"unclosed, here\n3,second\n4,third\n',
     "⚠️ quote.csv：第 3 行开始的引号没有在字段结尾处闭合，第 3 至 5 行会被读成同一条提示词。"),
])  # fmt: skip
def test_batch_rejects_bad_upload_in_chinese(workbench_app: str, tmp_path: Path, name: str, content: str,
                                             message: str) -> None:
    client = Client(workbench_app + "/", verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")

    job_id, status, _, _ = client.predict(
        handle_file(str(path)), ["scripted-echo"], "custom", "", "", False, api_name="/start_batch"
    )

    # No job starts, so the job id field is left as it was.
    assert job_id == {"__type__": "update"}
    assert status.startswith(message)


def test_unknown_job_id_is_reported(workbench_app: str) -> None:
    client = Client(workbench_app + "/", verbose=False)

    note, progress, *_ = client.predict("0123456789ab", api_name="/batch_status")

    assert note.startswith("⚠️ There is no job 0123456789ab.")
    assert progress == ""


def test_download_during_run_refreshes_when_job_ends(workbench_app: str, tmp_path: Path) -> None:
    client = Client(workbench_app + "/", verbose=False, headers={"Accept-Language": "zh-CN"})
    job_id, *_ = client.predict(
        handle_file(prompts_file(tmp_path, 400)), ["scripted-echo"], "custom", "", "", False, api_name="/start_batch"
    )

    partial, note = client.predict(job_id, api_name="/download_batch")
    partial_csv = next(Path(item) for item in partial if item.endswith(".csv"))
    partial_rows = list(csv.DictReader(io.StringIO(partial_csv.read_text(encoding="utf-8-sig"))))
    assert note.startswith("下载文件包含目前已完成的 ")
    assert "/400 次运行；任务结束后文件会自动更新。" in note
    assert len(partial_rows) < 400

    _, progress, table, _, final, _ = wait_for_state(client, job_id, ("done",))
    final_paths = {Path(item).suffix: Path(item) for item in final}
    final_rows = list(csv.DictReader(io.StringIO(final_paths[".csv"].read_text(encoding="utf-8-sig"))))
    jsonl_lines = final_paths[".jsonl"].read_text(encoding="utf-8").splitlines()
    assert f"任务 {job_id} 已完成：" in progress
    assert table["headers"][3] == "温度"
    assert table["headers"][9] == "符合预期"
    assert len(final_rows) == 400
    assert len(jsonl_lines) == 400
    # The downloads are for machines: raw field names and values.
    assert "matches_expected" in final_rows[0]
    assert {row["status"] for row in final_rows} == {"ok", "error"}


async def test_job_choice_translates_state_after_cancel() -> None:
    router, _ = scripted_router(local={"models": [{"name": "m"}], "replies": [{"text": "ok"}], "chunk_delay": 1.0})
    manager = JobManager(router, BatchSettings())
    rows = [PromptRow("1", "hi")]
    plan = make_plan(rows, ["m"], (None,), (None,), base_spec(SamplingParams()), manager.settings, source="a.csv")

    job = manager.submit(plan)
    running = job_choice(job, "zh-CN")
    await manager.cancel(job.id)

    assert running == (f"{job.id} · a.csv · 运行中", job.id)
    assert job.state == "cancelled"
    assert [row.status for row in job.rows()] == ["cancelled"]
    assert job_choice(job, "zh-CN") == (f"{job.id} · a.csv · 已取消", job.id)
    assert job_choice(job, "en") == (f"{job.id} · a.csv · cancelled", job.id)


def test_compare_through_client_exports_files(workbench_app: str) -> None:
    client = Client(workbench_app + "/", verbose=False)
    panes = ["scripted-echo", "code", 0.1, 0.9, 64, "second", "custom", 0.9, 1.0, 64] + ["scripted-echo", "custom", 0.7, 1.0, 64] * 2

    job = client.submit("hello there", None, 2, 2, 7, False, *panes, api_name="/compare")
    outputs = list(job)

    final = outputs[-1]
    assert final[0] == "done ok"
    assert final[1] == "done ok"
    assert "min / median / max over 2 runs" in final[4]
    exported = sorted(Path(item).suffix for item in final[-1])
    assert exported == [".csv", ".json", ".md"]
    document = json.loads(next(Path(item) for item in final[-1] if item.endswith(".json")).read_text(encoding="utf-8"))
    assert document["panes"][0]["params"]["seed"] == 7
    assert document["panes"][0]["params"]["temperature"] == 0.1
    assert document["panes"][0]["system_prompt"].startswith("You are a senior software engineer")
    assert len(document["panes"][1]["runs"]) == 2


def test_saved_preset_through_client_persists(workbench_app: str, tmp_path: Path) -> None:
    client = Client(workbench_app + "/", verbose=False)

    _, status = client.predict("短回复", 0.35, 0.8, 256, 0.0, 0.5, 3, "Reply briefly.", api_name="/save_preset")

    assert status == "Saved preset “短回复”."
    saved = json.loads((tmp_path / "data" / "user_presets.json").read_text(encoding="utf-8"))
    assert saved["presets"]["短回复"]["temperature"] == 0.35
    assert saved["presets"]["短回复"]["seed"] == 3


def test_preset_with_empty_name_is_refused_in_chinese(workbench_app: str, tmp_path: Path) -> None:
    client = Client(workbench_app + "/", verbose=False, headers={"Accept-Language": "zh-CN,zh;q=0.9"})

    _, status = client.predict("", 0.35, 0.8, 256, 0.0, 0.5, 3, "", api_name="/save_preset")

    assert status == "⚠️ 预设名称为空或无效。请输入 1 到 64 个可打印字符作为名称。"
    assert not (tmp_path / "data" / "user_presets.json").exists()


def test_chat_tab_has_preset_picker(workbench_app: str) -> None:
    client = Client(workbench_app + "/", verbose=False)

    components = {c["id"]: c for c in client.config["components"]}
    by_elem = {c.get("props", {}).get("elem_id"): c for c in components.values()}

    picker = by_elem["parley-preset"]
    values = [choice[1] for choice in picker["props"]["choices"]]
    assert values[:3] == ["custom", "customer_service", "creative_writing"]
    assert picker["props"]["value"] == "custom"


def test_compare_sends_image_through_pipeline(tmp_path: Path) -> None:
    from PIL import Image

    picture = tmp_path / "cat.png"
    Image.new("RGB", (64, 48), (200, 120, 40)).save(picture)
    raw = scripted_config(model="eyes", replies=[{"text": "an orange square"}])
    raw["backends"][0]["models"] = [{"name": "eyes", "vision": True}, {"name": "blind"}]
    raw["presets"] = {"data_dir": str(tmp_path / "data")}

    with serve_parley(raw) as url:
        client = Client(url + "/", verbose=False)
        image_box = next(c for c in client.config["components"] if c.get("props", {}).get("elem_id") == "parley-cmp-image")
        if not image_box["props"].get("visible", True):
            pytest.skip("the app does not pass an image pipeline to the UI")
        panes = ["eyes", "custom", 0.7, 1.0, 64, "blind", "custom", 0.7, 1.0, 64] + ["eyes", "custom", 0.7, 1.0, 64] * 2

        final = client.predict("what is this?", handle_file(str(picture)), 2, 1, None, False, *panes, api_name="/compare")

    assert final[0] == "an orange square"
    assert final[1] == ""
    assert "blind: This model cannot see images." in final[5]


@pytest.mark.slow
def test_compare_voice_fills_prompt(workbench_app: str) -> None:
    recording = Path(__file__).resolve().parents[1].parent / "shared" / "testdata" / "audio" / "en-jfk.flac"
    client = Client(workbench_app + "/", verbose=False)
    voice_box = next(c for c in client.config["components"] if c.get("props", {}).get("elem_id") == "parley-cmp-voice")
    if not voice_box["props"].get("visible", True):
        pytest.skip("the app does not pass a transcriber to the UI")

    prompt, status = client.predict(handle_file(str(recording)), "typed before", api_name="/compare_transcribe")

    assert status == ""
    assert "ask not what your country can do for you" in prompt.lower()


def test_batch_start_names_ignored_params(tmp_path: Path) -> None:
    raw = scripted_config(model="reasoner", replies=[{"text": "ok"}])
    raw["backends"][0]["models"] = [{"name": "reasoner", "ignored_params": ["temperature", "top_p"]}]
    raw["presets"] = {"data_dir": str(tmp_path / "data")}

    with serve_parley(raw) as url:
        client = Client(url + "/", verbose=False)
        job_id, status, _, _ = client.predict(
            handle_file(prompts_file(tmp_path, 2)), ["reasoner"], "code", "0.3", "", False, api_name="/start_batch"
        )

    assert status.startswith(f"Job {job_id} started: 2 runs.")
    assert "reasoner ignores temperature, top_p: these settings are not sent to it." in status
