"""The Adapter protocol: the modality glue between a PromptPack sample and a model's graphs.

An adapter turns one sample into graph feeds, runs the graphs through a ``GraphRunner``
(whatever target compiled them) and turns the outputs into the prediction its scorers
read. The same adapter code serves the FP32 baseline and the INT8 candidate, so only
the graphs' numerics differ between them.

Adapters need not derive from anything (a custom one is a user class named in a pipeline
file, ``model.adapter: pkg.module:Class``), so what EdgeGate may call on one is declared
here as runtime-checkable protocols and checked with ``isinstance``:

* ``ImageAdapter``: ``predict(image, run)`` on an HxWx3 uint8 array;
* ``SampleAdapter``: ``predict_sample(sample, run)`` for other modalities, reading what
  they need from the sample (``sample.text`` for text packs); preferred when both exist;
* ``DeclaresInputs`` (optional): ``expected_inputs()``, the graphs and input shapes the
  adapter feeds, checked against the pipeline's graphs;
* ``SearchableAdapter`` (optional): ``decision_margin`` and ``disagree``, which the
  adversarial search needs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from edgegate.packs.sample import Sample

GraphRunner = Callable[[str, dict[str, np.ndarray]], list[np.ndarray]]
# A model's output for one sample; its keys depend on the task.
Prediction = Mapping[str, Any]
# graph -> input name -> shape the adapter feeds
ExpectedInputs = dict[str, dict[str, tuple[int, ...]]]


@runtime_checkable
class ImageAdapter(Protocol):
    def predict(self, image: np.ndarray, run: GraphRunner) -> Prediction: ...


@runtime_checkable
class SampleAdapter(Protocol):
    def predict_sample(self, sample: Sample, run: GraphRunner) -> Prediction: ...


# Every adapter is one of the two (a class may be both: predict_sample then wins).
Adapter = ImageAdapter | SampleAdapter


@runtime_checkable
class DeclaresInputs(Protocol):
    def expected_inputs(self) -> ExpectedInputs:
        """graph -> input name -> shape the adapter feeds (checked against the pipeline)."""
        ...


@runtime_checkable
class SearchableAdapter(Protocol):
    """An image adapter the adversarial search can steer (``edgegate.run.adversarial``)."""

    def predict(self, image: np.ndarray, run: GraphRunner) -> Prediction: ...

    def decision_margin(self, x: Any, modules: Mapping[str, Any]) -> Any:
        """How far the FP32 torch graphs are from flipping a decision on image tensor `x`."""
        ...

    def disagree(self, a: Prediction, b: Prediction) -> bool:
        """Whether two predictions for one input differ in a way that matters."""
        ...


def predict_sample(adapter: Adapter, sample: Sample, run: GraphRunner) -> Prediction:
    """One prediction for one sample, whichever kind of adapter it is."""
    if isinstance(adapter, SampleAdapter):
        return adapter.predict_sample(sample, run)
    return adapter.predict(sample.load_image(), run)
