"""Adapters: the modality glue between a PromptPack sample and a model's graphs.

An adapter turns one sample into graph feeds, runs the graphs through a ``GraphRunner``
(whatever target compiled them) and turns the outputs into the prediction its scorers
read. The same adapter code serves the FP32 baseline and the INT8 candidate, so only
the graphs' numerics differ between them.

Image adapters implement ``predict(image, run)`` on an HxWx3 uint8 array; other
modalities implement ``predict_sample(sample, run)`` and read what they need from the
sample (``sample.text`` for text packs).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Protocol

import numpy as np

GraphRunner = Callable[[str, dict[str, np.ndarray]], list[np.ndarray]]


class Adapter(Protocol):
    def expected_inputs(self) -> dict[str, dict[str, tuple[int, ...]]]:
        """graph -> input name -> shape the adapter feeds (checked against the pipeline)."""
        ...

    def describe(self) -> dict[str, Any]: ...


def predict_sample(adapter: Any, sample: Any, run: GraphRunner) -> Mapping[str, Any]:
    """One prediction for one sample, whichever kind of adapter it is."""
    if hasattr(adapter, "predict_sample"):
        return adapter.predict_sample(sample, run)
    return adapter.predict(sample.load_image(), run)
