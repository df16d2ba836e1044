"""Code a pipeline names (``model.adapter``, graph ``factory``) is checked before it is called.

Issue 15: ``adapter: subprocess:Popen`` with ``{args: "...", shell: true}`` ran a shell
command from ``edgegate validate``. A reference must resolve to an adapter class that follows
the protocol, or to a factory (function or torch.nn.Module class) outside the refused
modules; ``validate`` calls no factory.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgegate.cli import cli
from edgegate.errors import InputError
from edgegate.run.models import GraphSource, import_object, load_torch_model, resolve_factory, unsafe_module

ROOT = Path(__file__).parents[1]
MINI_PIPELINE = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"
MINI_PACK = ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini"
ADAPTER_LINE = "  adapter: edgegate.zoo.mtcnn:MTCNNAdapter\n"
OPTIONS = """  adapter_options:
    image_size: [120, 160]     # H, W of the PromptPack's images
    min_face_size: 20
    rnet_batch: 16
    onet_batch: 4
"""
PNET_FACTORY = "      factory: edgegate.zoo.mtcnn:pnet\n"


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(ROOT)  # device names resolve against the nearest devices/
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EDGEGATE_DEVICES_DIR", raising=False)
    monkeypatch.delenv("EDGEGATE_DB", raising=False)


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A user package on sys.path: a re-exported subprocess.run, a factory that leaves a
    marker when called, a factory returning a non-module, and non-adapter classes."""
    name = f"eg15_user_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / f"{name}.py").write_text(textwrap.dedent(f"""
        from pathlib import Path
        from subprocess import run

        import torch

        MARKER = Path({str(tmp_path / 'called')!r})

        def make_linear(**kwargs):
            MARKER.write_text("factory was called")
            return torch.nn.Linear(2, 2)

        def not_a_module():
            return "a string"

        def adapter_function(**kwargs):
            MARKER.write_text("adapter function was called")

        class NotAnAdapter:
            def __init__(self, **kwargs):
                MARKER.write_text("NotAnAdapter was built")
    """))
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    yield name
    sys.modules.pop(name, None)


def _validate(path: Path) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, ["validate", str(path)])


def _pipeline(tmp_path: Path, *, adapter: str | None = None, options: str | None = None,
              pnet_factory: str | None = None) -> Path:
    text = MINI_PIPELINE.read_text().replace("  promptpack: ../packs/person_detect_mini\n",
                                             f"  promptpack: {MINI_PACK}\n")
    for old, new in ((ADAPTER_LINE, adapter and f"  adapter: {adapter}\n"), (OPTIONS, options),
                     (PNET_FACTORY, pnet_factory and f"      factory: {pnet_factory}\n")):
        if new is not None:
            assert old in text, "the fixture pipeline changed"
            text = text.replace(old, new)
    out = tmp_path / "pipeline.yaml"
    out.write_text(text)
    return out


def _one_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    (line,) = result.stderr.splitlines()
    return line


def test_popen_adapter_with_a_shell_command_is_refused_and_nothing_runs(tmp_path: Path) -> None:
    marker = tmp_path / "MARKER"
    path = _pipeline(tmp_path, adapter="subprocess:Popen",
                     options=f'  adapter_options:\n    args: "touch {marker}"\n    shell: true\n')
    line = _one_error(_validate(path))
    assert line == (f"error: {path}:10: model.adapter: 'subprocess:Popen': refused: 'subprocess' is part of the "
                    "Python standard library, which holds no models or adapters")
    assert not marker.exists()


@pytest.mark.parametrize("ref", ["os:system", "builtins:eval", "shutil:rmtree", "runpy:run_path",
                                 "subprocess:getoutput", "edgegate.artifacts:atomic_write"])
def test_refused_modules_are_not_imported_or_called(ref: str) -> None:
    with pytest.raises(InputError, match="refused"):
        import_object(ref, what="model.adapter")
    with pytest.raises(InputError, match="refused"):
        resolve_factory(ref, what="model.graphs.pnet.factory")


def test_an_object_reexported_from_a_refused_module_is_refused(user_module: str) -> None:
    with pytest.raises(InputError, match=r"refused: it is defined in 'subprocess'"):
        import_object(f"{user_module}:run", what="model.graphs.pnet.factory")


def test_unsafe_module_rules() -> None:
    assert unsafe_module("subprocess") and unsafe_module("os.path") and unsafe_module("pexpect")
    assert unsafe_module("edgegate.db.engine")
    assert unsafe_module("edgegate.zoo.mtcnn") is None and unsafe_module("edgegate.packs.adapters.image") is None
    assert unsafe_module("torchvision.models") is None


@pytest.mark.parametrize(("attr", "problem"), [
    ("adapter_function", "is a function, not an adapter class"),
    ("NotAnAdapter", "is not an adapter: the class has neither predict(image, run) nor predict_sample"),
])
def test_an_adapter_must_be_a_class_following_the_protocol(tmp_path: Path, user_module: str, attr: str,
                                                           problem: str) -> None:
    line = _one_error(_validate(_pipeline(tmp_path, adapter=f"{user_module}:{attr}")))
    assert line.startswith(f"error: {tmp_path / 'pipeline.yaml'}:10: model.adapter: '{user_module}:{attr}' {problem}")
    assert not (tmp_path / "called").exists()


@pytest.mark.parametrize(("ref", "problem"), [
    ("torch:zeros", "a builtin_function_or_method, not a function or torch.nn.Module class"),
    ("torch:Tensor", "Tensor is a class but not a torch.nn.Module"),
    ("subprocess:Popen", "refused: 'subprocess' is part of the Python standard library"),
])
def test_a_factory_must_be_a_function_or_module_class(tmp_path: Path, ref: str, problem: str) -> None:
    path = _pipeline(tmp_path, pnet_factory=ref)
    line = _one_error(_validate(path))
    assert line.startswith(f"error: {path}:18: model.graphs.pnet.factory: '{ref}': {problem}"), line


def test_validate_resolves_factories_without_calling_them(tmp_path: Path, user_module: str) -> None:
    result = _validate(_pipeline(tmp_path, pnet_factory=f"{user_module}:make_linear"))
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "called").exists()


def test_what_a_factory_returns_is_checked_after_the_call(user_module: str) -> None:
    src = GraphSource("pnet", f"{user_module}:not_a_module", {}, None, None, ("image",), ((1, 3, 4, 4),), ("out",))
    with pytest.raises(InputError, match="the factory returned str, not a torch.nn.Module"):
        load_torch_model(src)
