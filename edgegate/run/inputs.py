"""Every sample a run will use, decoded before anything expensive happens.

A PromptPack's hashes say its files are the ones its author built, not that they decode:
a truncated PNG or an empty split would otherwise surface after the FP32 compile and the
benchmark. ``check_run_samples`` is step 1's last check of ``run_pipeline`` and what
``edgegate validate`` runs, so a pipeline that validates does not fail later on its data.
"""

from __future__ import annotations

from collections.abc import Iterator

from edgegate.config import PipelineSpec
from edgegate.errors import InputError
from edgegate.packs.promptpack import PromptPack
from edgegate.packs.sample import Sample, decode_image

# (field path of the split's name in the pipeline, split name, how many samples are used)
UsedSplit = tuple[tuple[str, ...], str, int | None]


def used_splits(spec: PipelineSpec) -> list[UsedSplit]:
    """The pack splits a run of `spec` reads, each with the pipeline field that names it."""
    used: list[UsedSplit] = [
        (("evaluation", "split"), spec.evaluation.split, spec.evaluation.limit),
        (("quantization", "calibration", "split"), spec.quantization.calibration.split,
         spec.quantization.calibration.samples),
    ]
    if spec.evaluation.support_split:
        used.append((("evaluation", "support_split"), spec.evaluation.support_split, None))
    return used


def check_run_samples(spec: PipelineSpec, pack: PromptPack) -> int:
    """Decode every sample a run of `spec` would read from `pack` (images in full, text
    present), and refuse a split that would give no samples; returns how many were
    checked. Raises InputError naming the file, the sample and the cause."""
    checked = 0
    seen: set[str] = set()
    for field, split, limit in used_splits(spec):
        samples = pack.samples(split, limit)
        if not samples:
            raise spec.error(field, f"split '{split}' of PromptPack {pack.name} has no samples; "
                                    "a run needs at least one (add samples or choose another split)")
        for sample in _unseen(samples, seen):
            _decode(sample)
            checked += 1
    return checked


def _unseen(samples: list[Sample], seen: set[str]) -> Iterator[Sample]:
    for s in samples:
        key = f"{s.split}\0{s.id}"
        if key not in seen:
            seen.add(key)
            yield s


def _decode(sample: Sample) -> None:
    where = f"sample '{sample.id}' of split '{sample.split}'"
    if sample.image_path is None:
        if sample.text is None:
            raise InputError(f"{where}: has neither an image nor text")
        return  # the loader decoded the text as UTF-8 already
    try:
        image = decode_image(sample.image_path)
    except Exception as exc:  # noqa: BLE001  PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        cause = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{sample.image_path}: {where}: not a decodable image ({cause}); "
                         "replace the file and rebuild the pack") from None
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"{sample.image_path}: {where}: the image has no pixels ({image.shape})")
