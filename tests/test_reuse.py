"""Fast feedback (issue 16), the parts that need no network: reuse keys, the cache's refresh
mode, determinism flags, the adversarial result's round trip, prediction workers' slices,
native output capture, ETA and wall-time text. The end-to-end reuse is in test_pipeline."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from edgegate.artifacts import ArtifactCache
from edgegate.progress import eta_text, wall_time_text
from edgegate.run.adversarial import AdversarialResult, Finding, load_result, save_result
from edgegate.run.parallel import default_jobs, split_evenly
from edgegate.run.reuse import ComputedBy, code_digest, with_file_digests


def test_code_digest_follows_a_custom_adapters_source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mod = tmp_path / "my_adapter_mod.py"
    mod.write_text("class MyAdapter:\n    scale = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    import importlib

    m = importlib.import_module("my_adapter_mod")
    first = code_digest([m.MyAdapter()])
    assert first == code_digest([m.MyAdapter()])
    assert first != code_digest([])  # the adapter's module is part of it
    mod.write_text("class MyAdapter:\n    scale = 2\n")  # edited: never served stale predictions
    assert code_digest([m.MyAdapter()]) != first
    assert code_digest([object()]) == code_digest([object()])  # builtins: no source, still a stable key


def test_code_digest_covers_namespace_packages_and_a_lone_modules_helpers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib

    ns = tmp_path / "nspkg_eg"  # no __init__.py: a namespace package
    ns.mkdir()
    (ns / "adapters.py").write_text("class A:\n    pass\n")
    (ns / "helpers.py").write_text("K = 1\n")
    (tmp_path / "lone_eg.py").write_text("class B:\n    pass\n")
    (tmp_path / "lone_helpers_eg.py").write_text("K = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    a = importlib.import_module("nspkg_eg.adapters").A()
    b = importlib.import_module("lone_eg").B()
    before = code_digest([a]), code_digest([b])
    (ns / "helpers.py").write_text("K = 2\n")  # a helper the adapter imports, edited
    (tmp_path / "lone_helpers_eg.py").write_text("K = 2\n")
    assert code_digest([a]) != before[0] and code_digest([b]) != before[1]


def test_adapter_option_files_are_keyed_by_content(tmp_path: Path) -> None:
    names = tmp_path / "classes.txt"
    names.write_text("cat\ndog\n")
    opts = {"class_names": "classes.txt", "size": [224, 224], "layout": "NCHW"}
    a = with_file_digests(opts, lambda v: tmp_path / v)
    assert a["class_names"]["file"] == "classes.txt" and a["size"] == [224, 224] and a["layout"] == "NCHW"
    names.write_text("cat\nbird\n")
    assert with_file_digests(opts, lambda v: tmp_path / v) != a
    tok = tmp_path / "tok"
    tok.mkdir()
    (tok / "tokenizer.json").write_text("{}")
    d = with_file_digests({"tokenizer": "tok"}, lambda v: tmp_path / v)
    (tok / "tokenizer.json").write_text('{"v": 2}')
    assert d["tokenizer"]["dir"] == "tok" and with_file_digests({"tokenizer": "tok"}, lambda v: tmp_path / v) != d


def test_keys_name_the_host_that_computed() -> None:
    from edgegate.run.reuse import runtime_versions

    host = runtime_versions()["host"]
    assert host["machine"] and host["cores"] >= 1 and len(host["isa"]) == 16
    assert runtime_versions()["onnxruntime"] and "torch" in runtime_versions()


def test_only_host_targets_reuse_results() -> None:
    from edgegate.targets.aihub import AihubTarget
    from edgegate.targets.local import CpuTarget, QnnEmulatorTarget
    from edgegate.targets.qnn_remote import QnnRemoteTarget

    assert CpuTarget.deterministic and QnnEmulatorTarget.deterministic
    assert not AihubTarget.deterministic and not QnnRemoteTarget.deterministic


def test_refreshing_cache_builds_again_and_replaces(tmp_path: Path) -> None:
    builds = []

    def build(d: Path) -> dict:
        builds.append(d)
        (d / "x.txt").write_text(f"build {len(builds)}")
        return {"n": len(builds)}

    ArtifactCache(tmp_path).get_or_build("s", {"k": 1}, build)
    fresh = ArtifactCache(tmp_path, refresh=True)
    assert fresh.find("s", {"k": 1}) is None and ArtifactCache(tmp_path).find("s", {"k": 1}) is not None
    again = fresh.get_or_build("s", {"k": 1}, build)
    assert not again.hit and again.meta == {"n": 2} and again.file("x.txt").read_text() == "build 2"
    stored = ArtifactCache(tmp_path).get_or_build("s", {"k": 1}, build)
    assert stored.hit and stored.meta == {"n": 2} and len(builds) == 2
    assert [p.name for p in (tmp_path / "s").iterdir()] == [again.key]  # nothing left aside


def test_adversarial_result_round_trip(tmp_path: Path) -> None:
    img = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    f = Finding("s1", "gradient", "step 2", img, {"boxes": np.ones((1, 4), np.float32)},
                {"boxes": np.zeros((0, 4), np.float32), "label": np.asarray(3)}, 7.0)
    res = AdversarialResult(seeds_tried=4, disagreement_rate=0.25, coverage=0.8, fp32_robustness=0.5,
                            int8_robustness=0.75, inputs_tried=28, elapsed_s=3.5, findings=[f],
                            seeds_planned=4, time_budget_s=60.0)
    save_result(res, tmp_path)
    back = load_result(tmp_path)
    assert back.summary() == res.summary()
    (g,) = back.findings
    assert np.array_equal(g.image, img) and g.image.dtype == np.uint8
    assert g.fp32["boxes"].dtype == np.float32 and g.int8["boxes"].shape == (0, 4) and int(g.int8["label"]) == 3
    assert ComputedBy.from_dict(ComputedBy(3, "k", "p", "d", "t").to_dict()) == ComputedBy(3, "k", "p", "d", "t")


def test_worker_slices_keep_sample_order() -> None:
    ids = [f"s{i}" for i in range(10)]
    parts = split_evenly(ids, 3)
    assert [len(p) for p in parts] == [4, 3, 3] and [i for p in parts for i in p] == ids
    assert split_evenly(ids[:2], 5) == [["s0"], ["s1"]]
    assert default_jobs("aihub", 1000) == 1  # remote: one lockstep predictor
    assert default_jobs("cpu", 1000) == 1  # ONNX Runtime's pool already spans the host
    assert default_jobs("qnn-emulator", 4) == 1  # too few samples to pay for a worker's start


def test_native_output_goes_to_the_run_log(tmp_path: Path) -> None:
    """QNN writes on fd 1 and 2 from C; in a run both go to the native log, never the terminal."""
    log = tmp_path / "native.log"
    code = textwrap.dedent(f"""
        import os
        from pathlib import Path
        from edgegate.targets.ort_runtime import native_log, native_output_captured
        with native_log(Path({str(log)!r})):
            with native_output_captured():
                os.write(1, b" # LIBNATIVE: chatter on stdout\\n")
                os.write(2, b" # LIBNATIVE: chatter on stderr\\n")
        print("report line")
        with native_output_captured():  # no log: stdout's chatter goes to stderr, stdout stays clean
            os.write(1, b"banner\\n")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "report line\n" and "LIBNATIVE" not in proc.stderr and proc.stderr == "banner\n"
    assert log.read_text() == " # LIBNATIVE: chatter on stdout\n # LIBNATIVE: chatter on stderr\n"


def test_the_real_qnn_librarys_chatter_goes_to_the_log(tmp_path: Path) -> None:
    """onnxruntime-qnn's library prints `# LIBNATIVE: ...` when its first session opens: with
    a run's log set, the terminal never sees it."""
    log = tmp_path / "native.log"
    code = textwrap.dedent(f"""
        import onnx
        from pathlib import Path
        from onnx import TensorProto, helper
        from edgegate.targets.ort_runtime import native_log, open_session
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
        g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g", [x], [y])
        onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), {str(tmp_path / "relu.onnx")!r})
        with native_log(Path({str(log)!r})):
            open_session({str(tmp_path / "relu.onnx")!r}, "qnn", {{"backend_type": "htp"}}, allow_cpu_fallback=True)
        print("opened")
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "opened\n" and "LIBNATIVE" not in proc.stderr
    assert "# LIBNATIVE:" in log.read_text()


def test_a_bad_edgegate_cache_is_one_input_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgegate.errors import InputError
    from edgegate.run.pipeline import artifact_cache_dir

    (tmp_path / "file").write_text("x")
    monkeypatch.setenv("EDGEGATE_CACHE", str(tmp_path / "file" / "cache"))
    with pytest.raises(InputError, match=r"^EDGEGATE_CACHE=.*/file/cache: cannot use it as the artifact cache \(Not a directory\)$"):
        artifact_cache_dir(tmp_path)
    monkeypatch.setenv("EDGEGATE_CACHE", str(tmp_path / "shared"))
    assert artifact_cache_dir(tmp_path / "home") == tmp_path / "shared" and (tmp_path / "shared").is_dir()
    monkeypatch.delenv("EDGEGATE_CACHE")
    assert artifact_cache_dir(tmp_path / "home") == tmp_path / "home" / "artifacts"


def test_eta_and_wall_time_text() -> None:
    assert eta_text(10.0, 1, 4) == " (10 s, ETA 30 s)"
    assert eta_text(40.0, 4, 4) == " (40 s)"
    assert wall_time_text(48.24) == "48.2 s" and wall_time_text(151) == "2 min 31 s"
