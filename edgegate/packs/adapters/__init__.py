"""Adapters: the glue between a PromptPack sample and a model's graphs.

A pipeline names its adapter in ``model.adapter``, either

* a preset, a generic adapter configured by ``model.adapter_options`` (no Python):
  ``image-classification`` (``image.py``), ``object-detection`` (``detection.py``),
  ``text-classification`` and ``text-embedding`` (``text.py``); or
* ``pkg.module:Class``, a user class that follows the Adapter protocol (``base.py``),
  built with ``adapter_options`` as keyword arguments.

``edgegate.run.context.make_adapter`` builds either kind. The protocol's names are
importable from here, as before this became a package.
"""

from __future__ import annotations

import difflib

from edgegate.errors import UnknownNameError
from edgegate.packs.adapters import detection, image, text
from edgegate.packs.adapters.base import (
    Adapter,
    DeclaresInputs,
    ExpectedInputs,
    GraphRunner,
    ImageAdapter,
    Prediction,
    SampleAdapter,
    SearchableAdapter,
    predict_sample,
)
from edgegate.packs.adapters.presets import (
    GraphInfo,
    OptionError,
    Preset,
    PresetContext,
    PresetOptions,
    TensorInfo,
)

__all__ = [
    "PRESETS", "Adapter", "DeclaresInputs", "ExpectedInputs", "GraphInfo", "GraphRunner", "ImageAdapter",
    "OptionError", "Prediction", "Preset", "PresetContext", "PresetOptions", "SampleAdapter",
    "SearchableAdapter", "TensorInfo", "get_preset", "predict_sample", "preset_names",
]

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (image.PRESET, detection.PRESET, text.CLASSIFICATION_PRESET, text.EMBEDDING_PRESET)
}


def preset_names() -> list[str]:
    return list(PRESETS)


def get_preset(name: str) -> Preset:
    """The preset called ``name``; an unknown name is an UnknownNameError with close matches."""
    try:
        return PRESETS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(repr(c) for c in close)}?)" if close else ""
        raise UnknownNameError(f"unknown adapter preset '{name}'{hint}; presets: {', '.join(PRESETS)}") from None
