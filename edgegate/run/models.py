"""Load a source model (torch factory ``pkg.mod:fn``, TorchScript, ONNX) and export FP32 ONNX.

Model code never touches targets or the database: inputs in, files out.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from edgegate.errors import InputError

log = logging.getLogger(__name__)

ONNX_OPSET = 17


# Third-party modules whose callables run commands or unpickle data: never a model factory or
# an adapter. The standard library (sys.stdlib_module_names: subprocess, os, shutil, builtins,
# runpy, pickle, webbrowser, ...) holds neither either, and is refused as a whole.
UNSAFE_MODULES = frozenset({
    "cloudpickle", "dill", "fabric", "invoke", "IPython", "joblib", "paramiko", "pexpect", "plumbum", "sh",
})
# Of EdgeGate itself, only the reference models and the adapters are meant to be named.
EDGEGATE_REFERABLE = ("edgegate.zoo", "edgegate.packs.adapters")


def unsafe_module(module: str) -> str | None:
    """Why code from ``module`` is never a factory or an adapter, or None when it may be."""
    top = module.split(".", 1)[0]
    if top in sys.stdlib_module_names or top in sys.builtin_module_names:
        return f"'{module}' is part of the Python standard library, which holds no models or adapters"
    if top in UNSAFE_MODULES:
        return f"'{module}' runs commands or loads pickles; it holds no models or adapters"
    if top == "edgegate" and not any(module == p or module.startswith(p + ".") for p in EDGEGATE_REFERABLE):
        return f"'{module}' is an EdgeGate tool; only {' and '.join(EDGEGATE_REFERABLE)} may be named"
    return None


def import_object(ref: str, *, what: str = "object") -> Any:
    """Import ``pkg.module:attr`` (attr may be dotted); errors name the reference.

    A pipeline names code by design (see "Trust model" in the README), but a reference into
    the standard library or another module of ``unsafe_module`` is refused before anything
    is imported, and so is an object that such a module defined (``mymod:run``, where mymod
    did ``from subprocess import run``)."""
    if ":" not in ref:
        raise InputError(f"{what} '{ref}': expected 'package.module:attribute'")
    mod_name, attr = ref.split(":", 1)
    why = unsafe_module(mod_name)
    if why is not None:
        raise InputError(f"{what} '{ref}': refused: {why}")
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as exc:
        raise InputError(f"{what} '{ref}': cannot import module '{mod_name}': {exc}") from exc
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(f"{what} '{ref}': module '{mod_name}' has no attribute '{attr}'")
        obj = getattr(obj, part)
    defined_in = getattr(obj, "__module__", None)
    why = unsafe_module(defined_in) if isinstance(defined_in, str) else None
    if why is not None:
        raise InputError(f"{what} '{ref}': refused: it is defined in {why}")
    return obj


def resolve_factory(ref: str, *, what: str) -> Any:
    """The factory ``ref`` names, checked without calling it: a Python function (or a method
    of a class) or a torch.nn.Module class. Builtins, callable instances and other classes
    are refused; what calling it returns is checked by ``load_torch_model``."""
    obj = import_object(ref, what=what)
    if inspect.isclass(obj):
        import torch

        if issubclass(obj, torch.nn.Module):
            return obj
        raise InputError(f"{what} '{ref}': {obj.__qualname__} is a class but not a torch.nn.Module")
    func = obj.__func__ if inspect.ismethod(obj) else obj
    if not inspect.isfunction(func):
        raise InputError(f"{what} '{ref}': a {type(obj).__name__}, not a function or torch.nn.Module class "
                         "that builds the model")
    return obj


@dataclass(frozen=True)
class GraphSource:
    """What a pipeline declares for one graph, resolved to absolute paths."""

    name: str
    factory: str | None
    factory_args: Mapping[str, Any]
    torchscript: Path | None
    onnx: Path | None
    input_names: tuple[str, ...]
    input_shapes: tuple[tuple[int, ...], ...]
    output_names: tuple[str, ...]
    input_dtypes: tuple[str, ...] = ()  # numpy names, aligned with input_names; () = all float32

    def dtype_of(self, index: int) -> str:
        """The numpy dtype name of input `index` (float32 unless the pipeline says otherwise)."""
        return self.input_dtypes[index] if index < len(self.input_dtypes) else "float32"

    @property
    def is_torch(self) -> bool:
        return self.onnx is None


def load_torch_model(src: GraphSource) -> Any:
    """The torch module for a graph (factory or TorchScript), in eval mode."""
    import torch

    if src.factory:
        fn = resolve_factory(src.factory, what=f"model.graphs.{src.name}.factory")
        try:
            model = fn(**dict(src.factory_args))
        except TypeError as exc:
            raise InputError(f"model.graphs.{src.name}.factory_args: {exc}") from exc
    elif src.torchscript:
        model = torch.jit.load(str(src.torchscript), map_location="cpu")
    else:
        # ONNX sources quantize with aimet-onnx (run.quantize_onnx); what still needs torch is
        # the gradient-guided adversarial search.
        raise InputError(
            f"model.graphs.{src.name}: the adversarial search needs a torch model (factory or "
            "torchscript) and this graph is an ONNX file; remove the adversarial section or "
            "declare the graph as a factory or torchscript"
        )
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"model.graphs.{src.name}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    return model.eval()


def export_fp32_onnx(src: GraphSource, out_path: Path) -> Path:
    """Write the FP32 ONNX of a graph (a copy for ONNX sources) and return its path."""
    import torch

    out_path.parent.mkdir(parents=True, exist_ok=True)
    if src.onnx is not None:
        out_path.write_bytes(src.onnx.read_bytes())
        return out_path
    model = load_torch_model(src)
    dummy = tuple(torch.zeros(shape, dtype=getattr(torch, src.dtype_of(i))) for i, shape in enumerate(src.input_shapes))
    # The TorchScript exporter (dynamo=False) is deliberate: AIMET's QDQ export uses it too, so
    # FP32 and INT8 graphs come from the same tracer. Its deprecation notice is not news.
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model,
            dummy,
            str(out_path),
            input_names=list(src.input_names),
            output_names=list(src.output_names),
            opset_version=ONNX_OPSET,
            dynamo=False,
        )
    check_io(src, out_path)
    return out_path


def check_io(src: GraphSource, onnx_path: Path) -> None:
    """The exported graph must have the declared input names/shapes and output count."""
    import onnx

    m = onnx.load(str(onnx_path), load_external_data=False)
    inputs = {i.name: tuple(d.dim_value for d in i.type.tensor_type.shape.dim) for i in m.graph.input}
    for name, shape in zip(src.input_names, src.input_shapes):
        if name not in inputs:
            raise InputError(f"model.graphs.{src.name}.inputs: the graph has no input '{name}' (it has {sorted(inputs)})")
        if inputs[name] != tuple(shape) and all(inputs[name]):
            raise InputError(
                f"model.graphs.{src.name}.inputs: '{name}' is {list(inputs[name])} in the graph, declared {list(shape)}"
            )
    if len(m.graph.output) != len(src.output_names):
        raise InputError(
            f"model.graphs.{src.name}.outputs: the graph has {len(m.graph.output)} outputs, "
            f"{len(src.output_names)} declared"
        )


def weight_bytes(onnx_path: Path, weight_bits: int | None) -> int:
    """Bytes of the graph's parameters at a precision: weights (rank >= 2) at `weight_bits`,
    everything else (biases, PReLU slopes) at 32 bits; FP32 when `weight_bits` is None."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(onnx_path))
    total = 0
    for init in m.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype.kind not in "fc":
            continue
        if weight_bits is not None and arr.ndim >= 2:
            total += int(np.ceil(arr.size * weight_bits / 8))
        else:
            total += arr.size * 4
    return total


def graph_sources(spec: Any) -> list[GraphSource]:
    """GraphSources from a PipelineSpec's ``model.graphs``, paths resolved against the file."""
    out = []
    for name, g in spec.model.graphs.items():
        out.append(
            GraphSource(
                name=name,
                factory=g.factory,
                factory_args=dict(g.factory_args or {}),
                torchscript=spec.graph_path(name) if g.torchscript else None,
                onnx=spec.graph_path(name) if g.onnx else None,
                input_names=tuple(i.name for i in g.inputs),
                input_shapes=tuple(tuple(i.shape) for i in g.inputs),
                output_names=tuple(g.outputs),
                input_dtypes=tuple(i.dtype for i in g.inputs),
            )
        )
    return out


def sequence_names(items: Sequence[Any]) -> list[str]:
    return [getattr(i, "name", str(i)) for i in items]
