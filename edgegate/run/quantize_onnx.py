"""INT8 quantization of an ONNX source graph with aimet-onnx (the same AIMET release as
aimet-torch): QuantSim, optional BN fold / CLE / AdaRound, QDQ ONNX plus ``.encodings``.

The counterpart of ``run.quantize.quantize_graph`` for graphs a pipeline declares with
``onnx: path``: same settings (the HTP config by arch, scheme, bit widths), the same
calibration batches, the same files out (``STEM_qdq.onnx``, ``STEM.onnx`` +
``STEM.encodings`` in format 1.0.0), on QUANTIZE_THREADS threads so the bytes do not depend
on the machine's core count. aimet-onnx calibrates through ONNX Runtime on the CPU, so the
graph is quantized as it is, without a conversion to torch.
"""

from __future__ import annotations

import logging
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from edgegate.errors import InputError
from edgegate.run.qnn_config import align_bias_scales
from edgegate.run.parallel import torch_threads
from edgegate.run.quantize import (
    QUANTIZE_THREADS,
    QuantizedGraph,
    QuantizeError,
    QuantizeSettings,
    check_calibration,
    normalise_json,
    seed_everything,
)

log = logging.getLogger(__name__)


def aimet_onnx_version() -> str:
    import aimet_onnx

    return str(getattr(aimet_onnx, "__version__", "unknown"))


@torch_threads(QUANTIZE_THREADS)  # AdaRound optimises in torch
def quantize_onnx_graph(
    onnx_path: Path,
    input_names: Sequence[str],
    calibration: Sequence[Sequence[np.ndarray]],
    settings: QuantizeSettings,
    out_dir: Path,
    stem: str,
) -> QuantizedGraph:
    """Quantize the ONNX graph at `onnx_path` and export it.

    `calibration` is a list of batches, each a tuple of input arrays in `input_names`
    order (what ``quantize_graph`` takes for a torch graph).
    """
    check_calibration(calibration, stem)
    import onnx
    from aimet_onnx import apply_adaround
    from aimet_onnx.common.defs import QuantScheme, qtype
    from aimet_onnx.quantsim import QuantizationSimModel

    seed_everything(settings.seed)
    logging.getLogger("Quant").setLevel(logging.WARNING)  # AIMET's INFO chatter
    model = onnx.load(str(onnx_path))
    source_outputs = [o.name for o in model.graph.output]
    batches = [dict(zip(input_names, (np.ascontiguousarray(a) for a in b))) for b in calibration]
    out_dir.mkdir(parents=True, exist_ok=True)
    qdq = out_dir / f"{stem}_qdq.onnx"
    plain = out_dir / f"{stem}.onnx"

    try:
        with warnings.catch_warnings(), tempfile.TemporaryDirectory(prefix="aimet-onnx-") as tmp:
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            if settings.bn_fold:
                from aimet_onnx.batch_norm_fold import fold_all_batch_norms_to_weight

                fold_all_batch_norms_to_weight(model)
            if settings.cle:
                from aimet_onnx.cross_layer_equalization import equalize_model

                equalize_model(model)
            sim = QuantizationSimModel(
                model,
                param_type=qtype.int(settings.param_bw),
                activation_type=qtype.int(settings.output_bw),
                quant_scheme=QuantScheme.from_str(settings.scheme),
                config_file=settings.config,
                path=tmp,  # its calibration session's files; gone with the directory
                session_options_kwargs={"intra_op_num_threads": QUANTIZE_THREADS, "inter_op_num_threads": 1},
            )
            if settings.adaround_iterations:
                apply_adaround(sim, batches, settings.adaround_iterations)
            sim.compute_encodings(batches)
            # int32 biases (scale = input scale x weight scale), as aimet_torch.onnx.export writes them
            onnx.save(sim.to_onnx_qdq(export_int32_bias=True), str(qdq))
            align_bias_scales(qdq)  # per-channel int32 biases on the QNN EP's grid
            sim.export(str(out_dir), stem, encoding_version="1.0.0")
            del sim  # its session reads files in tmp
    except (InputError, QuantizeError):
        raise
    except Exception as exc:  # AIMET raises bare RuntimeError/ValueError; say which graph
        raise QuantizeError(f"AIMET (aimet-onnx) quantization of graph '{stem}' failed: {type(exc).__name__}: {exc}") from exc

    _inline_external_data(plain)
    _check_outputs(qdq, source_outputs, stem)
    encodings = plain.with_suffix(".encodings")
    normalise_json(encodings)
    return QuantizedGraph(qdq, encodings, plain, len(batches))


def _inline_external_data(path: Path) -> None:
    """aimet-onnx writes the plain ONNX's weights to STEM.data; below protobuf's 2 GB limit,
    one self-contained file is what the torch path writes and what a target uploads."""
    import onnx

    data = path.with_suffix(".data")
    if not data.exists():
        return
    model = onnx.load(str(path))  # reads STEM.data beside it
    if model.ByteSize() >= onnx.checker.MAXIMUM_PROTOBUF:
        return
    onnx.save(model, str(path))
    data.unlink()


def _check_outputs(qdq: Path, source_outputs: Sequence[str], stem: str) -> None:
    """The QDQ graph keeps the source graph's outputs, in order (adapters read them by
    position, like the FP32 graph's)."""
    import onnx

    got = [o.name for o in onnx.load(str(qdq), load_external_data=False).graph.output]
    if got != list(source_outputs):
        raise QuantizeError(
            f"aimet-onnx export of graph '{stem}' changed its outputs: {got}, the source has {list(source_outputs)}"
        )
