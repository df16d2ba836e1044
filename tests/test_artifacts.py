"""ArtifactCache: content-addressed entries, verified on lookup, written atomically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from edgegate.artifacts import ArtifactCache, digest_json, sha256_file


class CountingBuild:
    """A stage build that writes two files and counts its calls."""

    def __init__(self, payload: bytes = b"compiled graph bytes") -> None:
        self.calls = 0
        self.payload = payload

    def __call__(self, d: Path) -> dict[str, Any]:
        self.calls += 1
        (d / "graph.bin").write_bytes(self.payload)
        (d / "sub").mkdir()
        (d / "sub" / "ctx.json").write_text('{"n": 1}')
        return {"graph": "pnet", "build": self.calls}


def _entries(stage_dir: Path) -> list[str]:
    return sorted(p.name for p in stage_dir.iterdir())


def test_build_runs_once_then_hits(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path / "cache")
    build = CountingBuild()
    parts = {"graph": "pnet", "onnx_sha256": "ab" * 32}

    first = cache.get_or_build("compile", parts, build)
    assert build.calls == 1
    assert first.hit is False
    assert first.key == digest_json({"stage": "compile", **parts})
    assert first.path == tmp_path / "cache" / "compile" / first.key
    assert first.files == {
        "graph.bin": hashlib.sha256(b"compiled graph bytes").hexdigest(),
        "sub/ctx.json": hashlib.sha256(b'{"n": 1}').hexdigest(),
    }
    assert first.meta == {"graph": "pnet", "build": 1}
    assert first.file("graph.bin").read_bytes() == b"compiled graph bytes"

    second = cache.get_or_build("compile", dict(reversed(list(parts.items()))), build)
    assert build.calls == 1
    assert second.hit is True
    assert (second.key, second.path, second.files, second.meta) == (
        first.key, first.path, first.files, first.meta
    )
    # Only the entry itself: no temp directory left next to it.
    assert _entries(tmp_path / "cache" / "compile") == [first.key]
    manifest = json.loads((first.path / "manifest.json").read_text())
    assert manifest == {"key_parts": parts, "files": first.files, "meta": first.meta}


def test_different_key_parts_or_stage_build_again(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    build = CountingBuild()
    a = cache.get_or_build("compile", {"graph": "pnet"}, build)
    b = cache.get_or_build("compile", {"graph": "rnet"}, build)
    c = cache.get_or_build("quantize", {"graph": "pnet"}, build)
    assert build.calls == 3
    assert len({a.key, b.key, c.key}) == 3
    assert (a.hit, b.hit, c.hit) == (False, False, False)


def test_lookup_of_unknown_key_is_none(tmp_path: Path) -> None:
    assert ArtifactCache(tmp_path).lookup("compile", "0" * 64) is None


def test_corrupted_file_misses_and_rebuild_replaces_it(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    build = CountingBuild()
    entry = cache.get_or_build("compile", {"graph": "pnet"}, build)
    blob = entry.file("graph.bin")
    data = bytearray(blob.read_bytes())
    data[0] ^= 0xFF
    blob.write_bytes(bytes(data))

    assert cache.lookup("compile", entry.key) is None

    rebuilt = cache.get_or_build("compile", {"graph": "pnet"}, build)
    assert build.calls == 2
    assert rebuilt.hit is False
    assert rebuilt.path == entry.path
    assert rebuilt.meta == {"graph": "pnet", "build": 2}
    assert blob.read_bytes() == b"compiled graph bytes"
    assert sha256_file(blob) == rebuilt.files["graph.bin"]
    assert _entries(tmp_path / "compile") == [entry.key]

    hit = cache.lookup("compile", entry.key)
    assert hit is not None
    assert hit.hit is True
    assert hit.meta == {"graph": "pnet", "build": 2}


def test_missing_file_misses(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    entry = cache.get_or_build("compile", {"graph": "pnet"}, CountingBuild())
    (entry.path / "sub" / "ctx.json").unlink()
    assert cache.lookup("compile", entry.key) is None


def test_unreadable_manifest_misses(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)
    entry = cache.get_or_build("compile", {"graph": "pnet"}, CountingBuild())
    (entry.path / "manifest.json").write_text("{not json")
    assert cache.lookup("compile", entry.key) is None
    (entry.path / "manifest.json").write_text('{"meta": {}}')  # no "files"
    assert cache.lookup("compile", entry.key) is None


def test_failing_build_leaves_no_entry_and_no_temp_dir(tmp_path: Path) -> None:
    cache = ArtifactCache(tmp_path)

    def build(d: Path) -> dict[str, Any]:
        (d / "half-written.bin").write_bytes(b"partial")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError, match="^compiler crashed$"):
        cache.get_or_build("compile", {"graph": "pnet"}, build)
    assert _entries(tmp_path / "compile") == []
    key = digest_json({"stage": "compile", "graph": "pnet"})
    assert cache.lookup("compile", key) is None

    # The next attempt builds from scratch and succeeds.
    ok = CountingBuild()
    entry = cache.get_or_build("compile", {"graph": "pnet"}, ok)
    assert (ok.calls, entry.hit, entry.key) == (1, False, key)
    assert sorted(entry.files) == ["graph.bin", "sub/ctx.json"]


def test_digest_json_is_key_order_independent() -> None:
    a = {"graph": "pnet", "opts": {"bw": 8, "scheme": "tf_enhanced"}, "shape": [1, 3, 114, 170]}
    b = {"shape": [1, 3, 114, 170], "opts": {"scheme": "tf_enhanced", "bw": 8}, "graph": "pnet"}
    assert digest_json(a) == digest_json(b)
    canonical = b'{"graph":"pnet","opts":{"bw":8,"scheme":"tf_enhanced"},"shape":[1,3,114,170]}'
    assert digest_json(a) == hashlib.sha256(canonical).hexdigest()


def test_digest_json_distinguishes_values_and_list_order() -> None:
    assert digest_json({"bw": 8}) != digest_json({"bw": 16})
    assert digest_json({"shape": [1, 3]}) != digest_json({"shape": [3, 1]})
    assert digest_json({"bw": 8}) != digest_json({"bw": "8"})


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "f"
    p.write_bytes(b"abc")
    assert sha256_file(p) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
