"""The ``text-classification`` and ``text-embedding`` presets: a ``tokenizer.json`` (the
``tokenizers`` library), fixed-length feeds, pooling on the host.

Each text is tokenized (the tokenizer's own normalisation and special tokens, e.g. BERT's
[CLS] ... [SEP]), truncated to ``max_length`` and padded to it with the tokenizer's pad
id (0 when it declares none), because the graphs have fixed shapes. The graph's inputs
are fed by role: ``input_ids``, ``attention_mask`` (1 for tokens, 0 for padding),
``token_type_ids`` (the tokenizer's type ids) and ``position_ids`` (0 .. max_length-1).
Every declared input must be fed: by default a role feeds the input of the same name;
``inputs`` maps roles to other names.

``pooling`` turns the chosen output into the prediction: ``mean`` (over the attention
mask) or ``cls`` (the first token) of token embeddings [1, max_length, D], or ``none`` for
an output that is already one vector [1, D] (a sentence embedding or a classifier's
logits). Embeddings are L2-normalised unless ``normalize: false``.

* ``text-embedding``: ``{"embedding": (D,)}`` (pooling default ``mean``), scored by
  ``intent`` or ``text-classification`` (nearest support centroid);
* ``text-classification``: pooling ``none`` (the default) reads a classifier head:
  ``{"logits": (C,), "top_labels": (k,)}`` (``class_names``, default: the pack's classes);
  pooling ``cls`` or ``mean`` gives ``{"embedding": (D,)}`` as above.

The helpers (``read_tokenizer``, ``token_feeds``, ``mean_pool``) also serve the zoo's
MiniLM adapter.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from edgegate.config import FieldProblem
from edgegate.errors import InputError
from edgegate.packs.adapters.base import GraphRunner, Prediction
from edgegate.packs.adapters.presets import (
    GraphInfo,
    OptionError,
    Preset,
    PresetContext,
    PresetOptions,
    check_dtype,
    check_shape,
    class_names,
    names_file,
    existing_file,
    select_outputs,
    top_labels,
)
from edgegate.packs.sample import Sample

Role = Literal["input_ids", "attention_mask", "token_type_ids", "position_ids"]
ROLES: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids", "position_ids")


# ----------------------------------------------------------------------------- tokens


def read_tokenizer(path: Path, max_length: int) -> tuple[Any, int]:
    """The ``tokenizers`` Tokenizer of a tokenizer.json, truncating to ``max_length``
    (special tokens included) and not padding (``token_feeds`` pads), and its pad id."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(path))
    padding = tok.padding
    pad_id = int(padding["pad_id"]) if padding else 0
    tok.no_padding()
    tok.enable_truncation(max_length=max_length)
    return tok, pad_id


def token_feeds(
    ids: Sequence[int], max_length: int, *, type_ids: Sequence[int] | None = None, pad_id: int = 0
) -> dict[str, np.ndarray]:
    """Every role's (1, max_length) float32 array for one tokenized text (ids below 2**24
    are exact in float32, EdgeGate's graph input type)."""
    n = len(ids)
    if n > max_length:
        raise ValueError(f"{n} tokens do not fit max_length {max_length}")
    input_ids = np.full((1, max_length), pad_id, np.float32)
    input_ids[0, :n] = ids
    mask = np.zeros((1, max_length), np.float32)
    mask[0, :n] = 1.0
    types = np.zeros((1, max_length), np.float32)
    if type_ids is not None:
        types[0, :n] = type_ids
    return {
        "input_ids": input_ids,
        "attention_mask": mask,
        "token_type_ids": types,
        "position_ids": np.arange(max_length, dtype=np.float32)[None, :],
    }


def masked_mean(token_embeddings: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The mean of the token embeddings (S, D) over the real tokens (mask (S,) of 1/0)."""
    m = np.asarray(mask, dtype=np.float64).reshape(-1, 1)
    return (np.asarray(token_embeddings, dtype=np.float64) * m).sum(axis=0) / max(m.sum(), 1e-9)


def l2_normalize(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / max(float(np.linalg.norm(v)), 1e-12)


def mean_pool(token_embeddings: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """sentence-transformers' pooling: mean over real tokens, then L2 normalisation."""
    return l2_normalize(masked_mean(token_embeddings, mask)).astype(np.float32)


# ----------------------------------------------------------------------------- options


class TextOptions(PresetOptions):
    tokenizer: str = Field(description="the model's tokenizer.json, relative to the pipeline file")
    max_length: Annotated[int, Field(ge=1)] | None = Field(
        None, description="tokens per text, padded or truncated (default: the declared sequence length)")
    inputs: dict[Role, str] | None = Field(
        None, description="role -> graph input name (default: the inputs named input_ids, attention_mask, "
        "token_type_ids, position_ids)")
    dtype: Literal["float32", "int64", "int32"] = Field("float32", description="the dtype the ids are fed as")
    output_name: str | None = Field(None, description="the graph output read (default: the first)")
    pooling: Literal["none", "cls", "mean"] = Field(
        description="mean or cls of token embeddings [1, S, D]; none: the output is one vector [1, D]")
    normalize: bool = Field(True, description="L2-normalise embeddings (not logits)")

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_file(cls, value: str, info: ValidationInfo) -> str:
        return existing_file(value, info)


class TextEmbeddingOptions(TextOptions):
    pooling: Literal["none", "cls", "mean"] = Field(
        "mean", description="mean or cls of token embeddings [1, S, D]; none: the output is one vector [1, D]")


class TextClassificationOptions(TextOptions):
    pooling: Literal["none", "cls", "mean"] = Field(
        "none", description="none: the output is a classifier's logits [1, C]; mean or cls: pooled embeddings")
    class_names: Annotated[list[str] | str | None, AfterValidator(names_file)] = Field(
        None, description="pooling none: the head's class names in output order, a list or a file of one "
        "per line (default: the pack's classes)")

    @model_validator(mode="after")
    def _head_only(self) -> TextClassificationOptions:
        if self.pooling == "none" and "normalize" in self.model_fields_set:
            raise FieldProblem("normalize", "only for embeddings (pooling cls or mean); logits are not normalised")
        if self.pooling != "none" and "class_names" in self.model_fields_set:
            raise FieldProblem("class_names", "only for a classifier head (pooling none); embeddings "
                               "are classified by the support split's labels")
        return self


# ----------------------------------------------------------------------------- adapter


@dataclass(frozen=True)
class TextAdapter:
    """Text -> tokens -> graph -> pooled embedding or classifier logits."""

    preset: str
    options: TextOptions
    graph: str
    feeds: tuple[tuple[str, str], ...]  # (role, graph input name)
    max_length: int
    tokenizer: Any
    pad_id: int
    output_index: int
    output_name: str
    names: tuple[str, ...]  # a classifier head's classes; () otherwise

    def expected_inputs(self) -> dict[str, dict[str, tuple[int, ...]]]:
        return {self.graph: {name: (1, self.max_length) for _, name in self.feeds}}

    def _layout_error(self, shape: tuple[int, ...], expected: str) -> InputError:
        return InputError(f"{self.preset}: graph output '{self.output_name}' has shape {list(shape)}; "
                          f"pooling {self.options.pooling} expects {expected}")

    def predict_sample(self, sample: Sample, run: GraphRunner) -> Prediction:
        if sample.text is None:
            raise InputError(f"{self.preset}: sample '{sample.id}' has no text (is this a text pack?)")
        enc = self.tokenizer.encode(sample.text)
        by_role = token_feeds(enc.ids, self.max_length, type_ids=enc.type_ids, pad_id=self.pad_id)
        dtype = np.dtype(self.options.dtype)
        out = np.asarray(run(self.graph, {name: by_role[role].astype(dtype) for role, name in self.feeds})[self.output_index])
        pooling = self.options.pooling
        if pooling == "none":
            if out.size == 0 or len([d for d in out.shape if d != 1]) > 1:
                raise self._layout_error(out.shape, "one vector [1, D]")
            vector = out.reshape(-1).astype(np.float64)
            if self.preset == "text-classification":
                pred: dict[str, Any] = {"logits": vector.astype(np.float32)}
                if self.names:
                    if len(self.names) != vector.size:
                        raise InputError(
                            f"{self.preset}: graph output '{self.output_name}' gives {vector.size} class "
                            f"scores but the class names are {len(self.names)} (adapter_options.class_names; "
                            "default: the pack's classes)"
                        )
                    pred["top_labels"] = top_labels(vector, self.names)
                return pred
        else:
            tokens = out[0] if out.ndim == 3 and out.shape[0] == 1 else out
            if tokens.ndim != 2 or tokens.shape[0] != self.max_length:
                raise self._layout_error(out.shape, f"token embeddings [1, {self.max_length}, D]")
            vector = tokens[0] if pooling == "cls" else masked_mean(tokens, by_role["attention_mask"][0])
        if self.options.normalize:
            vector = l2_normalize(vector)
        return {"embedding": np.asarray(vector, dtype=np.float32)}


def _feeds(graph: GraphInfo, inputs: dict[str, str] | None) -> tuple[tuple[str, str], ...]:
    """(role, input name) for every declared input; each must have a role."""
    declared = [t.name for t in graph.inputs]
    if inputs is None:
        mapping = {name: name for name in declared if name in ROLES}
    else:
        for role, name in inputs.items():
            if name not in declared:
                raise OptionError(f"inputs.{role}", f"graph '{graph.name}' has no input '{name}' "
                                  f"(inputs: {', '.join(declared)})")
        mapping = dict(inputs)
    fed = set(mapping.values())
    for name in declared:
        if name not in fed:
            raise OptionError("inputs", f"graph input '{name}' is not fed: map one of {', '.join(ROLES)} to it "
                              "(inputs: {role: name})")
    if "input_ids" not in mapping:
        raise OptionError("inputs", f"no graph input takes input_ids (inputs: {', '.join(declared)})")
    return tuple((role, mapping[role]) for role in ROLES if role in mapping)


def build_text(preset: str, o: TextOptions, ctx: PresetContext) -> TextAdapter:
    g = ctx.graph(o)
    feeds = _feeds(g, o.inputs)
    index = {t.name: i for i, t in enumerate(g.inputs)}
    for _, name in feeds:
        check_dtype(g, index[name], o.dtype)
    ids_index = index[dict(feeds)["input_ids"]]
    declared = g.inputs[ids_index].shape
    if o.max_length is None and (len(declared) != 2 or declared[0] != 1):
        raise OptionError("max_length", f"{g.field(ids_index)}.shape {list(declared)} is not [1, length]; "
                          "set max_length and declare the inputs as [1, max_length]")
    max_length = o.max_length if o.max_length is not None else declared[1]
    why = f"max_length {max_length}" if o.max_length is not None else "input_ids' declared length"
    for _, name in feeds:
        check_shape(g, index[name], (1, max_length), "max_length" if o.max_length is not None else "inputs", why)
    try:
        tokenizer, pad_id = read_tokenizer(ctx.resolve(o.tokenizer), max_length)
    except Exception as exc:  # noqa: BLE001 - the tokenizers library raises a bare Exception
        raise OptionError("tokenizer", f"cannot load {ctx.resolve(o.tokenizer)}: {exc}") from None
    (out,) = select_outputs(g, None if o.output_name is None else [o.output_name], ("output",), "output_name")
    names: tuple[str, ...] = ()
    if isinstance(o, TextClassificationOptions) and o.pooling == "none":
        names = class_names(o.class_names, ctx)
    return TextAdapter(preset, o, g.name, feeds, max_length, tokenizer, pad_id, out, g.outputs[out], names)


def build_text_classification(o: TextClassificationOptions, ctx: PresetContext) -> TextAdapter:
    return build_text("text-classification", o, ctx)


def build_text_embedding(o: TextEmbeddingOptions, ctx: PresetContext) -> TextAdapter:
    return build_text("text-embedding", o, ctx)


CLASSIFICATION_PRESET = Preset(
    "text-classification", TextClassificationOptions, build_text_classification, "text",
    "tokenizer.json, fixed-length feeds; classifier logits (or pooled embeddings)",
)
EMBEDDING_PRESET = Preset(
    "text-embedding", TextEmbeddingOptions, build_text_embedding, "text",
    "tokenizer.json, fixed-length feeds; a pooled, L2-normalised sentence embedding",
)
