"""What a model says about its inputs and outputs, for ``edgegate init``.

A model is an ONNX file, a TorchScript file, or a torch factory ``pkg.module:function``
(as a pipeline's ``factory`` names one). An ONNX file names its inputs with their shapes
(a dimension may be dynamic) and dtypes, and its outputs. A TorchScript file keeps its
``forward()`` argument names and how many values it returns, a factory's module its
``forward()`` parameters, but neither keeps shapes: ``--input NAME:DIMS`` gives those
(and fills an ONNX input's dynamic dimensions). A torch model then runs once on zeros of
those shapes, so its outputs' shapes are known too. ``onnx`` and ``torch`` are imported
only when a model of theirs is read.
"""

from __future__ import annotations

import inspect
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from edgegate.errors import InputError
from edgegate.metrics import format_suggestion

ONNX_SUFFIXES = (".onnx",)
TORCHSCRIPT_SUFFIXES = (".pt", ".pth", ".ts", ".torchscript")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
FACTORY_RE = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}$")

ModelKind = Literal["onnx", "torchscript", "factory"]
# pkg.module:function -> the function, imported and checked (edgegate.run.models.resolve_factory)
FactoryResolver = Callable[[str], Callable[[], Any]]
Shape = tuple[int | None, ...]


@dataclass(frozen=True)
class ModelInput:
    name: str
    shape: Shape | None  # None: the model keeps no shape; a None dimension: dynamic
    dtype: str | None  # numpy name; None: not stated (torch models take float32)


@dataclass(frozen=True)
class ModelSignature:
    kind: ModelKind
    source: str  # the file's path or the factory reference, as given
    inputs: tuple[ModelInput, ...]
    outputs: tuple[str, ...]
    output_shapes: tuple[Shape | None, ...]
    ends_in_softmax: bool = False
    batchnorm: bool = False  # has BatchNorm layers (foldable into the convolutions)
    depthwise: bool = False  # has depthwise convolutions (what cross-layer equalization helps)
    # the loaded torch module (TorchScript, factory), run once to learn its outputs' shapes
    module: Any = field(default=None, compare=False, repr=False)

    @property
    def display(self) -> str:
        """How messages and comments name the model: its file name or the factory."""
        return self.source if self.kind == "factory" else Path(self.source).name

    @property
    def kind_label(self) -> str:
        return {"onnx": "ONNX", "torchscript": "TorchScript", "factory": "torch factory"}[self.kind]


def parse_input_option(text: str) -> tuple[str, tuple[int, ...]]:
    """``NAME:1x3x224x224`` -> (NAME, (1, 3, 224, 224)); the name may hold ':' itself."""
    name, sep, dims = text.rpartition(":")
    parts = dims.lower().split("x") if sep else []
    if not name or not parts or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise InputError(f"--input {text}: expected NAME:DIMS with positive dimensions, e.g. image:1x3x224x224")
    return name, tuple(int(p) for p in parts)


def format_dims(shape: Sequence[int | None] | None) -> str:
    """A shape as messages print it: [1, 3, ?, ?] (? for a dynamic dimension)."""
    return "unknown" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _first_sentence(exc: BaseException) -> str:
    """What a reader library said, cut to its first sentence (torch's run on for lines)."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text.split(". ")[0].rstrip(".")


def _output_names(n: int) -> tuple[str, ...]:
    return ("output",) if n == 1 else tuple(f"output_{i}" for i in range(n))


def read_onnx(path: Path) -> ModelSignature:
    """Input names, shapes (None for a dynamic dim) and dtypes, and the outputs, of an ONNX file."""
    import onnx
    from onnx import helper

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001  onnx raises DecodeError, ValueError, OSError, ...
        raise InputError(f"{path}: cannot read it as ONNX ({_first_sentence(exc)})") from None
    graph = model.graph
    if not graph.node and not graph.output:
        raise InputError(f"{path}: cannot read it as ONNX (no graph in the file)")
    weights = {init.name for init in graph.initializer}

    def shape_of(value: Any) -> Shape | None:
        tensor = value.type.tensor_type
        if not tensor.HasField("shape"):
            return None
        return tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in tensor.shape.dim)

    inputs = []
    for value in graph.input:
        if value.name in weights:
            continue
        elem = value.type.tensor_type.elem_type
        dtype = str(helper.tensor_dtype_to_np_dtype(elem)) if elem else None
        inputs.append(ModelInput(value.name, shape_of(value), dtype))
    producers = {out: node.op_type for node in graph.node for out in node.output}
    outputs = tuple(v.name for v in graph.output)
    groups = [a.i for n in graph.node if n.op_type == "Conv" for a in n.attribute if a.name == "group"]
    return ModelSignature(
        kind="onnx", source=str(path), inputs=tuple(inputs), outputs=outputs,
        output_shapes=tuple(shape_of(v) for v in graph.output),
        ends_in_softmax=bool(outputs) and producers.get(outputs[0]) == "Softmax",
        batchnorm=any(n.op_type == "BatchNormalization" for n in graph.node),
        depthwise=any(g > 1 for g in groups),
    )


def read_torchscript(path: Path) -> ModelSignature:
    """A TorchScript file's forward(): its argument names and how many values it returns."""
    import torch

    try:
        with warnings.catch_warnings():  # torch.jit's deprecation notice is not the user's problem
            warnings.simplefilter("ignore", FutureWarning)
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # noqa: BLE001  torch raises RuntimeError, ValueError, pickle errors, ...
        raise InputError(
            f"{path}: cannot read it as TorchScript ({_first_sentence(exc)}); a state dict or a pickled "
            "module is not TorchScript: save the model with torch.jit.trace(model, example).save(...)"
        ) from None
    schema = module.forward.schema
    inputs = []
    for arg in schema.arguments[1:]:  # [0] is self
        if str(arg.type) != "Tensor":
            raise InputError(f"{path}: forward() argument '{arg.name}' is {arg.type}; init reads models "
                             "whose forward() takes tensors only")
        inputs.append(ModelInput(arg.name, None, None))
    returns = schema.returns[0].type if schema.returns else None
    n = len(returns.elements()) if returns is not None and returns.kind() == "TupleType" else 1
    return ModelSignature(kind="torchscript", source=str(path), inputs=tuple(inputs), outputs=_output_names(n),
                          output_shapes=(None,) * n, module=module.eval(), **_layers(module))


def read_factory(ref: str, resolve: FactoryResolver) -> ModelSignature:
    """A torch factory ``pkg.module:function`` (found and checked by ``resolve``, as a run
    finds a pipeline's factory) called without arguments: its module's forward() parameters
    are the inputs."""
    import torch

    model = resolve(ref)()
    if not isinstance(model, torch.nn.Module):
        raise InputError(f"{ref}: the factory returned {type(model).__name__}, not a torch.nn.Module")
    params = inspect.signature(model.forward).parameters.values()
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    inputs = tuple(ModelInput(p.name, None, None) for p in params
                   if p.kind in positional and p.default is inspect.Parameter.empty)
    return ModelSignature(kind="factory", source=ref, inputs=inputs, outputs=(), output_shapes=(),
                          module=model.eval(), **_layers(model))


def _layers(module: Any) -> dict[str, bool]:
    """Whether a torch module (or a TorchScript one, which keeps its layers' class names and
    weights) has BatchNorm layers and depthwise convolutions (one input channel per filter)."""
    batchnorm = depthwise = False
    for sub in module.modules():
        kind = getattr(sub, "original_name", type(sub).__name__)
        batchnorm |= kind.startswith("BatchNorm")
        weight = getattr(sub, "weight", None) if kind.startswith("Conv") else None
        depthwise |= weight is not None and weight.dim() == 4 and weight.shape[1] == 1 and weight.shape[0] > 1
    return {"batchnorm": batchnorm, "depthwise": depthwise}


def read_model(model: str, resolve_factory: FactoryResolver | None = None) -> ModelSignature:
    """The signature of an .onnx or TorchScript (.pt/.pth/.ts) file, or of a torch factory
    (given ``resolve_factory``, which imports a reference and checks what it names)."""
    path = Path(model)
    if not path.exists() and FACTORY_RE.match(model):
        if resolve_factory is None:
            raise InputError(f"{model}: a torch factory reference; read it with a resolve_factory "
                             "(edgegate.run.models.resolve_factory)")
        return read_factory(model, resolve_factory)
    if not path.exists():
        raise InputError(f"{model}: no such file")
    if not path.is_file():
        raise InputError(f"{model}: not a file; give the model file (.onnx, or TorchScript .pt/.pth)")
    suffix = path.suffix.lower()
    if suffix in ONNX_SUFFIXES:
        return read_onnx(path)
    if suffix in TORCHSCRIPT_SUFFIXES:
        return read_torchscript(path)
    raise InputError(f"{model}: not a model init reads: an .onnx (ONNX) or .pt/.pth (TorchScript) file, "
                     "or a torch factory package.module:function")


def static_inputs(sig: ModelSignature, given: Mapping[str, tuple[int, ...]]) -> list[ModelInput]:
    """Every input with a full static shape: the model's, with ``--input`` filling dynamic
    dimensions (or every dimension of a torch model's input)."""
    names = [i.name for i in sig.inputs]
    for name in given:
        if name not in names:
            raise InputError(f"--input {name}: the model has no input '{name}'{format_suggestion(name, names)}; "
                             f"its inputs: {', '.join(names)}")
    out = []
    for inp in sig.inputs:
        shape = given.get(inp.name)
        if shape is not None and inp.shape is not None:
            fits = len(shape) == len(inp.shape) and all(d is None or d == s for d, s in zip(inp.shape, shape))
            if not fits:
                dims = "x".join(map(str, shape))
                raise InputError(f"--input {inp.name}:{dims}: the model's input '{inp.name}' is "
                                 f"{format_dims(inp.shape)}")
        if shape is None:
            if inp.shape is None:
                why = f"a {sig.kind_label} model keeps no input shapes" if sig.module is not None else "no shape"
                raise InputError(f"{sig.source}: input '{inp.name}': {why}; give it with --input "
                                 f"{inp.name}:DIMS (e.g. {inp.name}:1x3x224x224)")
            if any(d is None for d in inp.shape):
                guess = "x".join("1" if d is None and i == 0 else str(d or "N") for i, d in enumerate(inp.shape))
                raise InputError(f"{sig.source}: input '{inp.name}' has dynamic dimensions "
                                 f"{format_dims(inp.shape)}; give its shape with --input {inp.name}:{guess}")
            shape = tuple(int(d) for d in inp.shape if d is not None)
        out.append(ModelInput(inp.name, shape, inp.dtype))
    return out


def with_torch_outputs(sig: ModelSignature, inputs: Sequence[ModelInput]) -> ModelSignature:
    """A torch model's signature with its outputs' count and shapes, from one run on zeros."""
    if sig.module is None:
        return sig
    import torch

    zeros = [torch.zeros(i.shape or (), dtype=torch.float32) for i in inputs]
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = sig.module(*zeros)
    except Exception as exc:  # noqa: BLE001  whatever the model raises on a wrong shape
        shapes = ", ".join(f"{i.name} {format_dims(i.shape)}" for i in inputs)
        raise InputError(f"{sig.source}: the model does not run on inputs {shapes} "
                         f"({_first_sentence(exc)}); check --input") from None
    values = list(result) if isinstance(result, (tuple, list)) else [result]
    if not all(isinstance(v, torch.Tensor) for v in values):
        raise InputError(f"{sig.source}: forward() returns {type(result).__name__}; init reads models "
                         "that return a tensor or a tuple of tensors")
    names = sig.outputs if len(sig.outputs) == len(values) else _output_names(len(values))
    return replace(sig, outputs=names, output_shapes=tuple(tuple(v.shape) for v in values))
