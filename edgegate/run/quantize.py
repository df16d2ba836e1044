"""INT8 quantization with AIMET (aimet-torch 2.x): QuantSim, optional BN fold / CLE / AdaRound,
QDQ ONNX export plus the ``.encodings`` file.

This module never imports a target: it turns a torch module and calibration batches into
files. The orchestrator decides where they go and caches them by content.
"""

from __future__ import annotations

import json
import logging
import random
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
import torch

from edgegate.errors import EdgeGateError, InputError
from edgegate.run.parallel import torch_threads
from edgegate.run.qnn_config import align_bias_scales

log = logging.getLogger(__name__)

Scheme = Literal["tf_enhanced", "tf", "percentile"]


class QuantizeError(EdgeGateError):
    """AIMET failed on a model (not an input error: the model or AIMET is at fault)."""

    exit_code = 3


@dataclass(frozen=True)
class QuantizeSettings:
    config: str  # AIMET alias (htp_v66 ...) or a path to a quantsim config JSON
    scheme: Scheme = "tf_enhanced"
    param_bw: int = 8
    output_bw: int = 8
    bn_fold: bool = False
    cle: bool = False
    adaround_iterations: int | None = None
    seed: int = 0


@dataclass(frozen=True)
class QuantizedGraph:
    qdq_onnx: Path  # QDQ ONNX (QuantizeLinear/DequantizeLinear), runnable by ONNX Runtime
    encodings: Path  # AIMET encodings JSON (format 1.0.0) beside the plain ONNX export
    encodings_onnx: Path  # the plain ONNX the encodings refer to (for QNN SDK converters)
    num_calibration_batches: int


def aimet_version() -> str:
    import aimet_torch

    return str(getattr(aimet_torch, "__version__", "unknown"))


def seed_everything(seed: int) -> None:
    """Python, NumPy and torch RNGs from one seed (AdaRound draws from torch's)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _quant_scheme(scheme: Scheme):
    from aimet_torch.common.defs import QuantScheme

    return {
        "tf_enhanced": QuantScheme.post_training_tf_enhanced,
        "tf": QuantScheme.post_training_tf,
        "percentile": QuantScheme.post_training_percentile,
    }[scheme]


def _as_tuple(batch: Sequence[np.ndarray]) -> tuple[torch.Tensor, ...]:
    return tuple(torch.from_numpy(np.ascontiguousarray(b)) for b in batch)


def check_calibration(calibration: Sequence[object], stem: str) -> None:
    """A graph needs at least one calibration batch (the quantizers' ranges come from them)."""
    if not calibration:
        raise InputError(f"quantize {stem}: no calibration batches (check quantization.calibration)")


# AIMET's calibration sums floats; with another thread count the order of the sums changes and
# a scale moves by an ulp (seen: 0.05832527577877045 vs 0.058325279504060745 for P-Net with 2
# threads vs 1). One thread makes the encodings the same bytes on every machine, whatever its
# core count, which is what the reproducibility gate checks (and why it is part of the cache key).
QUANTIZE_THREADS = 1


@torch_threads(QUANTIZE_THREADS)
def quantize_graph(
    model: torch.nn.Module,
    input_names: Sequence[str],
    output_names: Sequence[str],
    calibration: Sequence[Sequence[np.ndarray]],
    settings: QuantizeSettings,
    out_dir: Path,
    stem: str,
) -> QuantizedGraph:
    """Quantize one graph and export it, on QUANTIZE_THREADS torch threads.

    `calibration` is a list of batches, each a tuple of input arrays in `input_names`
    order, with exactly the shapes the graph is compiled for.
    """
    check_calibration(calibration, stem)
    from aimet_torch import onnx as aimet_onnx
    from aimet_torch.common import quantsim as aimet_common_quantsim

    seed_everything(settings.seed)
    # AIMET logs every step at INFO on its own "Quant" logger; keep it to warnings.
    logging.getLogger("Quant").setLevel(logging.WARNING)
    model = model.eval()
    dummy = _as_tuple(calibration[0])
    batches = [_as_tuple(b) for b in calibration]
    out_dir.mkdir(parents=True, exist_ok=True)

    try:
        with warnings.catch_warnings():
            # torch.jit/AIMET tracing deprecation chatter, not about the user's model
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            if settings.bn_fold:
                from aimet_torch.batch_norm_fold import fold_all_batch_norms

                fold_all_batch_norms(model, input_shapes=None, dummy_input=dummy)
            if settings.cle:
                from aimet_torch.cross_layer_equalization import equalize_model

                equalize_model(model, dummy_input=dummy)

            sim = _quantsim(model, dummy, settings)

            if settings.adaround_iterations:
                sim = _adaround(model, sim, dummy, batches, settings, out_dir, stem)

            def forward(m: torch.nn.Module, _: object) -> None:
                with torch.no_grad():
                    for b in batches:
                        m(*b)

            sim.compute_encodings(forward, None)

            qdq = out_dir / f"{stem}_qdq.onnx"
            opset = 21 if max(settings.output_bw, settings.param_bw) > 8 else 17
            aimet_onnx.export(
                sim.model,
                dummy,
                str(qdq),
                input_names=list(input_names),
                output_names=list(output_names),
                opset_version=opset,
                dynamo=False,
            )
            align_bias_scales(qdq)  # per-channel int32 biases on the QNN EP's grid
            # ONNX + .encodings (1.0.0: the format QNN's converters read for v66 parts)
            aimet_common_quantsim.encoding_version = "1.0.0"
            plain = out_dir / f"{stem}.onnx"
            sim.onnx.export(
                dummy,
                str(plain),
                input_names=list(input_names),
                output_names=list(output_names),
                dynamo=False,
            )
    except (InputError, QuantizeError):
        raise
    except Exception as exc:  # AIMET raises bare RuntimeError/ValueError; say which graph
        raise QuantizeError(f"AIMET quantization of graph '{stem}' failed: {type(exc).__name__}: {exc}") from exc

    encodings = plain.with_suffix(".encodings")
    normalise_json(encodings)
    return QuantizedGraph(qdq, encodings, plain, len(batches))


def _quantsim(model: torch.nn.Module, dummy: tuple, settings: QuantizeSettings):
    """AIMET's QuantizationSimModel of `model` with the pipeline's scheme, bit widths and config."""
    from aimet_torch.quantsim import QuantizationSimModel

    return QuantizationSimModel(
        model,
        dummy_input=dummy,
        quant_scheme=_quant_scheme(settings.scheme),
        default_output_bw=settings.output_bw,
        default_param_bw=settings.param_bw,
        config_file=settings.config,
    )


def _forward_all_inputs(model: Any, *args: Any, **kwargs: Any) -> Any:
    """AdaRound's forward: a batch from the data loader (a tuple of every graph input) or a
    block's own arguments."""
    if len(args) == 1 and not kwargs and isinstance(args[0], (tuple, list)):
        return model(*args[0])
    return model(*args, **kwargs)


def _adaround(model, sim, dummy, batches, settings: QuantizeSettings, out_dir: Path, stem: str):
    """Replace the sim's weights with AdaRound-optimised ones (8-bit weights unless told)."""
    from aimet_torch.adaround.adaround_weight import Adaround, AdaroundParameters

    params = AdaroundParameters(
        data_loader=[tuple(b) for b in batches],
        num_batches=len(batches),
        default_num_iterations=settings.adaround_iterations,
        # AIMET's default forward takes a tuple for (inputs, labels): a graph with two inputs
        # got only its first, one with four failed ("too many values to unpack")
        forward_fn=_forward_all_inputs,
    )
    adarounded = Adaround.apply_adaround(
        model,
        dummy,
        params,
        path=str(out_dir),
        filename_prefix=f"{stem}_adaround",
        default_param_bw=settings.param_bw,  # AdaRound's own default is 4 bits
        default_quant_scheme=_quant_scheme(settings.scheme),
        default_config_file=settings.config,
    )
    sim = _quantsim(adarounded, dummy, settings)
    sim.set_and_freeze_param_encodings(str(out_dir / f"{stem}_adaround.encodings"))
    return sim


def normalise_json(path: Path) -> None:
    """Rewrite a JSON file with sorted keys so equal encodings give equal bytes."""
    data = json.loads(path.read_text())
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
