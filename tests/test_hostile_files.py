"""Hostile and broken input files (issue 15, sections 1 and 4): each is one short SpecError
line (exit 2), never a hang, a RecursionError or gigabytes of memory.

Times and memory are measured by bench/hostile_files.py, not asserted here; these tests
check that each file class is refused (or accepted) by its mechanism, with its message.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import textwrap
from pathlib import Path

import pytest

from edgegate.config import load_device, load_pipeline, parse_yaml
from edgegate.errors import GateExpressionError, InputError, SpecError
from edgegate.fleet.spec import load_fleet
from edgegate.gates import MAX_GATE_CHARS, parse_gate
from edgegate.packs.create import PackCreateOptions, create_pack
from edgegate.packs.promptpack import load_promptpack
from edgegate.packs.summary import verify_pack
from edgegate.safe_load import (
    CONFIG_LIMITS,
    JSON_LIMITS,
    MANIFEST_LIMITS,
    Limits,
    excerpt,
    iter_jsonl,
    loads_json,
    read_json,
)
from tests.fakes.pack_data import image_tree

REPO = Path(__file__).resolve().parent.parent
SPECS = REPO / "tests" / "fixtures" / "specs"
MINI_PACK = REPO / "tests" / "fixtures" / "packs" / "person_detect_mini"
# An error is "one line": short enough to read, whatever the file held.
SHORT = 400


def alias_bomb(levels: int, prefix: str = "") -> str:
    """A "billion laughs" YAML: level i is a list of 9 aliases of level i-1 (9**levels values)."""
    lines = [f"{prefix}a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for i in range(1, levels):
        lines.append(f"{prefix}a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def error_of(fn, *args, **kwargs) -> str:
    with pytest.raises(SpecError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message and len(message) < SHORT, message
    return message


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "pack").mkdir()
    (tmp_path / "devices").mkdir()
    for name in ("htp-sim", "cpu"):
        shutil.copy(SPECS / "devices" / f"{name}.yaml", tmp_path / "devices" / f"{name}.yaml")
    (tmp_path / "p.yaml").write_text(PIPELINE)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("EDGEGATE_DEVICES_DIR", raising=False)
    return tmp_path


PIPELINE = """\
name: p
model:
  adapter: "edgegate.zoo.mtcnn:MTCNNAdapter"
  graphs:
    pnet:
      factory: "edgegate.zoo.mtcnn:pnet"
      inputs: [{name: image, shape: [1, 3, 120, 160]}]
      outputs: [prob, reg]
device: htp-sim
evaluation:
  promptpack: pack
  scorers: [detection]
gates:
  - "accuracy >= 0.99 * baseline"
"""


# --------------------------------------------------------------------------- 1. YAML bombs


@pytest.mark.parametrize("levels", [6, 9])
def test_alias_bomb_in_pipeline_device_and_fleet_files_is_refused(workdir: Path, levels: int) -> None:
    bomb = alias_bomb(levels, prefix="x")
    Path("p.yaml").write_text(bomb + PIPELINE)
    assert "more than 20,000 values (counting what its aliases repeat)" in error_of(load_pipeline, "p.yaml")
    Path("devices/bomb.yaml").write_text("name: bomb\nkind: cpu\n" + bomb)
    assert "devices/bomb.yaml:" in error_of(load_device, "bomb")
    Path("fleet.yaml").write_text("name: f\npipelines: [p.yaml]\ndevices: [cpu]\n" + bomb)
    assert "more than 20,000 values" in error_of(load_fleet, "fleet.yaml")


def test_alias_bomb_in_a_pack_manifest_is_refused(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    with (pack / "manifest.yaml").open("a") as f:
        f.write(alias_bomb(9, prefix="x"))
    message = error_of(load_promptpack, pack)
    assert "more than 60,000 values (counting what its aliases repeat)" in message


def test_recursive_alias_is_refused() -> None:
    assert error_of(parse_yaml, "a: &x [1, *x]\n", "f.yaml") == (
        "f.yaml:1: alias '*x' refers to a value that contains it"
    )


def test_small_aliases_and_merge_keys_still_load() -> None:
    doc = parse_yaml("base: &b {x: 1, y: 2}\nother:\n  <<: *b\n  x: 3\ncopy: *b\n", "f.yaml")
    assert doc.data["other"] == {"x": 3, "y": 2} and doc.data["copy"] == {"x": 1, "y": 2}
    # the aliased mapping is walked once, where it is defined; the alias has its own line
    assert doc.line_of("base", "x") == 1 and doc.line_of("copy") == 5 and doc.line_of("copy", "x") is None


@pytest.mark.parametrize("text", [
    "a: " + "[" * 5000 + "]" * 5000 + "\n",
    "a: " + "{b: " * 3000 + "1" + "}" * 3000 + "\n",
    "".join("  " * i + f"k{i}:\n" for i in range(400)) + "  " * 400 + "leaf\n",
])
def test_deep_yaml_is_one_line_not_recursion_error(text: str) -> None:
    assert "nested deeper than 64 levels" in error_of(parse_yaml, text, "f.yaml")


def test_too_many_values_is_refused() -> None:
    text = "a: [" + ", ".join(["1"] * (CONFIG_LIMITS.max_values + 1)) + "]\n"
    assert error_of(parse_yaml, text, "f.yaml") == (
        "f.yaml:1: more than 20,000 values; a configuration file is limited to 20,000"
    )


def test_huge_yaml_is_refused_by_size_before_it_is_read(workdir: Path) -> None:
    # a 56 MB file (sparse: its size is what is checked, before a byte is read)
    with open("p.yaml", "wb") as f:
        f.truncate(56 * 1024 * 1024)
    assert error_of(load_pipeline, "p.yaml") == (
        "p.yaml: 56 MiB, larger than the 1 MiB a configuration file may have"
    )


def test_large_manifest_is_refused_by_size(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    with open(pack / "manifest.yaml", "ab") as f:
        f.truncate(MANIFEST_LIMITS.max_bytes + 1)
    assert "larger than the 4 MiB a PromptPack manifest may have" in error_of(load_promptpack, pack)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_fifo_is_refused_before_it_is_opened(workdir: Path) -> None:
    os.remove("p.yaml")
    os.mkfifo("p.yaml")  # opening it would block until a writer came
    assert error_of(load_pipeline, "p.yaml") == (
        "p.yaml: not a regular file (a FIFO, device or socket); give a file"
    )


def test_hostile_key_is_quoted_short(workdir: Path) -> None:
    Path("p.yaml").write_text(PIPELINE + "? " + "k" * 200_000 + "\n: 1\n")
    assert "... (+" in error_of(load_pipeline, "p.yaml")


# --------------------------------------------------------------------------- 1. JSON / JSONL


def copy_pack(tmp_path: Path) -> Path:
    dst = tmp_path / "pack"
    shutil.copytree(MINI_PACK, dst)
    return dst


def replace_pack_file(pack: Path, rel: str, data: bytes) -> None:
    """Write a pack file and its new sha256 into the manifest, so only its content is wrong."""
    old = hashlib.sha256((pack / rel).read_bytes()).hexdigest()
    (pack / rel).write_bytes(data)
    manifest = pack / "manifest.yaml"
    manifest.write_text(manifest.read_text().replace(old, hashlib.sha256(data).hexdigest()))


def test_deep_json_line_in_a_pack_is_one_line(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    lines = (pack / "eval.jsonl").read_bytes().splitlines(keepends=True)
    lines[2] = b'{"id": "x", "image": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"
    replace_pack_file(pack, "eval.jsonl", b"".join(lines))
    assert error_of(load_promptpack, pack).endswith(
        "eval.jsonl:3: nested deeper than 64 levels; a samples file never needs that"
    )


def test_non_utf8_jsonl_in_a_pack_is_one_line(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    data = (pack / "eval.jsonl").read_bytes()
    bad = data.index(b"eval-0001") + len(b"eval-")
    replace_pack_file(pack, "eval.jsonl", data.replace(b"eval-0001", b"eval-\xff\xfe01"))
    assert error_of(load_promptpack, pack).endswith(f"eval.jsonl:2: not UTF-8 text (byte {bad})")


def test_json_numbers_and_depth(tmp_path: Path) -> None:
    assert "invalid JSON" in error_of(loads_json, "[" + "1" * 5000 + "]", "x.json")
    assert "nested deeper than 64" in error_of(loads_json, "[" * 65 + "]" * 65, "x.json")
    assert loads_json("[" * 64 + "]" * 64, "x.json") is not None
    bundle = tmp_path / "evidence.json"
    bundle.write_text('{"payload": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert error_of(read_json, bundle, "evidence.json") == (
        "evidence.json: nested deeper than 64 levels; a JSON file never needs that"
    )
    assert JSON_LIMITS.max_depth == 64


def test_jsonl_line_count_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "s.jsonl"
    path.write_text("{}\n" * 11)
    limits = Limits(max_bytes=1000, max_lines=10, kind="samples file")
    assert error_of(lambda: list(iter_jsonl(path, "s.jsonl", limits))) == (
        "s.jsonl: 11 lines, more than the 10 a samples file may have"
    )
    assert [n for n, _ in iter_jsonl(path, "s.jsonl", Limits(max_bytes=1000, max_lines=11))] == list(range(1, 12))


def test_excerpt_bounds_quoted_text() -> None:
    assert excerpt("abc") == "abc"
    assert excerpt("x" * 1000) == "x" * 77 + "... (+923 characters)"


# --------------------------------------------------------------------------- 4. gates


@pytest.mark.parametrize(("expr", "problem"), [
    ("accuracy >= ٠.٩٨", "unexpected character '٠' (U+0660; only ASCII digits 0-9 make numbers) at column 13"),
    ("accuracy >= 0.9٨", "unexpected character '٨' (U+0668; only ASCII digits 0-9 make numbers) at column 16"),
    ("accuracy >= 1e999", "number at column 13: 1e999 is not a finite number"),
    ("accuracy >= -1e999 * baseline", "number at column 13: -1e999 is not a finite number"),
    ("accuracy >= " + "9" * 100, "number at column 13 has 100 characters, more than 32"),
    ("accuracy >= " + "1" * 100_000, "100,012 characters, more than 500"),
    ("accuracy >= 0.99" + " " * 100_000, "100,016 characters, more than 500"),
])
def test_gate_numbers_are_ascii_finite_and_bounded(expr: str, problem: str) -> None:
    with pytest.raises(GateExpressionError) as info:
        parse_gate(expr)
    assert problem in str(info.value)
    assert len(str(info.value)) < SHORT


def test_gate_limits_and_values_that_still_parse() -> None:
    assert parse_gate("accuracy <= 1.7976931348623157e308").threshold == 1.7976931348623157e308
    assert parse_gate("accuracy >= " + " " * (MAX_GATE_CHARS - 20) + "0.5").threshold == 0.5


def test_hostile_gate_in_a_pipeline_file_is_short(workdir: Path) -> None:
    Path("p.yaml").write_text(PIPELINE + '  - "accuracy >= ' + "1" * 100_000 + '"\n')
    message = error_of(load_pipeline, "p.yaml")
    assert message.startswith("p.yaml:15: gates[1]: gate 'accuracy >= 1111") and "more than 500" in message


# --------------------------------------------------------------------------- 4. device fields


def device_error(workdir: Path, text: str) -> str:
    (workdir / "devices" / "dev.yaml").write_text(textwrap.dedent(text))
    return error_of(load_device, "dev")


@pytest.mark.parametrize(("soc", "problem"), [
    ("nonsense", "'nonsense' is not a QNN SoC id; known ids include 30 (SM8350), 36 (SM8450), 43 (SM8550)"),
    ("44", "'44' is not a QNN SoC id"),
    ("-43", "'-43' is not a QNN SoC id"),
    ("SM8550", "'SM8550' is a SoC name; soc_model takes its QNN id: 43"),
    ("0", "0 is QNN's 'unknown SoC'; leave soc_model out (null) instead"),
    ("'٤٣'", "'٤٣' is not a QNN SoC id"),
    ("4.3", "expected a QNN SoC id (a number such as 43 for SM8550), got float"),
])
def test_soc_model_must_be_a_known_qnn_id(workdir: Path, soc: str, problem: str) -> None:
    message = device_error(workdir, f"name: dev\nkind: qnn-emulator\narch: v73\nsoc_model: {soc}\n")
    assert message == f"devices/dev.yaml:4: soc_model: {problem}" or message.startswith(
        f"devices/dev.yaml:4: soc_model: {problem}"
    ), message


@pytest.mark.parametrize("soc", ["43", "'43'", "69", "88"])
def test_known_soc_models_load(workdir: Path, soc: str) -> None:
    (workdir / "devices" / "dev.yaml").write_text(f"name: dev\nkind: qnn-emulator\narch: v73\nsoc_model: {soc}\n")
    assert load_device("dev").soc_model == soc.strip("'")


BOARD = """\
name: dev
kind: ssh
host: rb5.local
user: root
workdir: /data/eg
qnn_sdk_device: /opt/qnn
target_triple: aarch64-ubuntu-gcc9.4
backend: dsp
arch: v66
"""


@pytest.mark.parametrize(("old", "new", "problem"), [
    # a space is fine (the input list survives it: test_targets_qnn_remote), a quote is not
    ("workdir: /data/eg", "workdir: \"/data/my'eg\"", "devices/dev.yaml:5: workdir: '/data/my'eg' is not an absolute path"),
    ("workdir: /data/eg", "workdir: data/eg", "devices/dev.yaml:5: workdir: 'data/eg' is not an absolute path"),
    ("qnn_sdk_device: /opt/qnn", "qnn_sdk_device: \"/opt/qnn;reboot\"",
     "devices/dev.yaml:6: qnn_sdk_device: '/opt/qnn;reboot' is not an absolute path"),
    ("host: rb5.local", "host: \"rb5.local -oProxyCommand=x\"", "devices/dev.yaml:3: host: 'rb5.local -oProxyCommand=x' is not a host name"),
    ("user: root", "user: \"-lroot\"", "devices/dev.yaml:4: user: '-lroot' is not a user name"),
    ("arch: v66", "arch: v66\nenv: {\"A B\": x}", "devices/dev.yaml:10: env.A B: 'A B' is not an environment variable name"),
    ("arch: v66", "arch: v66\nenv: {A: \"x\\ny\"}", "devices/dev.yaml:10: env.A: 'x\\ny' is not a one-line value"),
])
def test_board_fields_that_reach_tools_take_safe_values(workdir: Path, old: str, new: str, problem: str) -> None:
    message = device_error(workdir, BOARD.replace(old, new))
    assert message.startswith(problem), message


def test_board_device_with_safe_values_loads(workdir: Path) -> None:
    (workdir / "devices" / "dev.yaml").write_text(BOARD + "env: {ADSP_LIBRARY_PATH: /opt/qnn/lib}\n")
    assert load_device("dev").workdir == "/data/eg"


def test_aihub_options_are_one_line(workdir: Path) -> None:
    message = device_error(workdir, "name: dev\nkind: aihub\ndevice: X\ncompile_options: \"--a\\n--b\"\n")
    assert message.startswith("devices/dev.yaml:4: compile_options:") and "not one line of options" in message


# --------------------------------------------------------------------------- 4. pack symlinks


def test_pack_file_symlinked_outside_the_pack_is_refused(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    secret = tmp_path / "secret.png"
    shutil.copy(pack / "images" / "eval" / "eval-0000.png", secret)  # same bytes: only the link is wrong
    (pack / "images" / "eval" / "eval-0000.png").unlink()
    (pack / "images" / "eval" / "eval-0000.png").symlink_to(secret)
    message = error_of(load_promptpack, pack, verify=False)
    assert "files.images/eval/eval-0000.png: 'images/eval/eval-0000.png' is a symlink leading outside the pack" in message
    assert error_of(verify_pack, pack) == message


def test_pack_directory_symlinked_outside_the_pack_is_refused(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    shutil.move(pack / "images" / "eval", tmp_path / "elsewhere")
    (pack / "images" / "eval").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    message = error_of(load_promptpack, pack)
    assert ": 'images/eval' is a symlink leading outside the pack" in message


def test_manifest_and_samples_symlinked_outside_are_refused(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    shutil.move(pack / "eval.jsonl", tmp_path / "eval.jsonl")
    (pack / "eval.jsonl").symlink_to(tmp_path / "eval.jsonl")
    assert "'eval.jsonl' is a symlink leading outside the pack" in error_of(load_promptpack, pack)
    other = copy_pack(tmp_path / "b")
    shutil.move(other / "manifest.yaml", tmp_path / "manifest.yaml")
    (other / "manifest.yaml").symlink_to(tmp_path / "manifest.yaml")
    assert "'manifest.yaml' is a symlink leading outside the pack" in error_of(load_promptpack, other)


def test_symlinks_inside_the_pack_and_a_linked_pack_directory_load(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    shutil.move(pack / "images" / "eval", pack / "store")
    (pack / "images" / "eval").symlink_to(pack / "store", target_is_directory=True)
    assert load_promptpack(pack).samples("eval")
    (tmp_path / "alias").symlink_to(pack, target_is_directory=True)  # the pack itself linked
    assert load_promptpack(tmp_path / "alias").samples("eval")


def test_symlink_loop_in_a_pack_is_refused(tmp_path: Path) -> None:
    pack = copy_pack(tmp_path)
    (pack / "images" / "eval" / "eval-0000.png").unlink()
    (pack / "images" / "eval" / "eval-0000.png").symlink_to(pack / "images" / "eval" / "eval-0000.png")
    assert "'images/eval/eval-0000.png' is a symlink loop" in error_of(load_promptpack, pack)


def test_pack_create_link_makes_hard_links_that_load(tmp_path: Path) -> None:
    src = image_tree(tmp_path / "src", {"a": 3, "b": 3})
    linked = create_pack(PackCreateOptions(source=src, out=tmp_path / "linked", calibration=2, name="p", link=True))
    made = linked.path / "images" / "a" / "a-0.png"
    assert not made.is_symlink() and os.path.samefile(made, src / "a" / "a-0.png")
    assert verify_pack(linked.path).problems == []


def test_pack_create_link_across_filesystems_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno

    def no_link(src: object, dst: object) -> None:
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_link)
    src = image_tree(tmp_path / "src", {"a": 2, "b": 2})
    with pytest.raises(InputError, match="--link: cannot hard-link .* \\(Invalid cross-device link\\); write the pack"):
        create_pack(PackCreateOptions(source=src, out=tmp_path / "linked", calibration=1, name="p", link=True))
