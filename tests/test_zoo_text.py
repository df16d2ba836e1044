"""The text zoo: MiniLM encoder (parity with sentence-transformers, export, FFN outlier split) and TinyLM
(tokenizer, scoring glue, determinism of training)."""

from __future__ import annotations

import collections
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edgegate.errors import InputError
from edgegate.zoo import minilm as mini
from edgegate.zoo import tiny_lm as tl

SENTENCES = ["Move forward two meters, please.", "what's your battery level?", "stop"]


def _sample(text: str | None) -> SimpleNamespace:
    return SimpleNamespace(id="s0", text=text)


def _torch_runner(model: torch.nn.Module):
    def run(graph: str, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            out = model(*(torch.from_numpy(v) for v in feeds.values()))
        return [out.numpy()]

    return run


def test_minilm_matches_sentence_transformers() -> None:
    sentence_transformers = pytest.importorskip("sentence_transformers")
    adapter = mini.MiniLMAdapter(seq_len=32)
    run = _torch_runner(mini.minilm())
    ours = np.stack([adapter.predict_sample(_sample(s), run)["embedding"] for s in SENTENCES])
    st = sentence_transformers.SentenceTransformer(str(mini.model_dir()), device="cpu")
    st.max_seq_length = 32
    theirs = st.encode(SENTENCES, normalize_embeddings=True)
    assert ours.shape == (3, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.sum(ours * theirs, axis=1), 1.0, atol=1e-5)


def test_minilm_feeds_and_truncation() -> None:
    adapter = mini.MiniLMAdapter(seq_len=8)
    ids = adapter.tokenize("please could you roll forward a little bit more towards the table")
    assert len(ids) == 8 and ids[0] == 101 and ids[-1] == 102  # [CLS] ... [SEP]
    feeds = mini.encoder_feeds(adapter.tokenize("stop"), 8)
    assert list(feeds) == list(mini.INPUT_NAMES)
    assert feeds["attention_mask"].tolist() == [[1, 1, 1, 0, 0, 0, 0, 0]]
    assert feeds["position_ids"].tolist() == [list(range(8))]
    assert all(v.dtype == np.float32 and v.shape == (1, 8) for v in feeds.values())
    assert adapter.expected_inputs() == {"encoder": {n: (1, 8) for n in mini.INPUT_NAMES}}
    with pytest.raises(Exception, match="has no text"):
        adapter.predict_sample(_sample(None), lambda g, f: [])


def test_minilm_exports_without_gathernd_or_sub(tmp_path: Path) -> None:
    import onnx

    from edgegate.run.models import GraphSource, export_fp32_onnx

    src = GraphSource("encoder", "edgegate.zoo.minilm:minilm", {"layers": 1}, None, None,
                      mini.INPUT_NAMES, ((1, 16),) * 4, ("token_embeddings",))
    path = export_fp32_onnx(src, tmp_path / "enc.onnx")
    graph = onnx.load(str(path)).graph
    ops = collections.Counter(n.op_type for n in graph.node)
    assert "GatherND" not in ops and ops["Gather"] == 3 and ops["Softmax"] == 1
    # A float Sub feeding a Mul fails to finalize on HTP v68 (htp-sim): the mask bias is a Mul, then an Add.
    assert "Sub" not in ops
    mask_ops = [n.op_type for n in graph.node if "attention_mask" in n.input]
    assert mask_ops == ["Mul"]


def test_minilm_ffn_split_is_the_same_function() -> None:
    torch.manual_seed(0)
    w_in, b_in, w_out = torch.randn(8, 4), torch.randn(8), torch.randn(3, 8) * 0.1
    w_out[1, 2], w_out[0, 5] = 2.5, -0.45  # the columns of hidden units 2 and 5 peak
    s_in, s_b, s_out = mini.split_ffn_outliers(w_in, b_in, w_out, 1.0)
    assert s_in.shape == (10, 4) and s_b.shape == (10,) and s_out.shape == (3, 10)  # 2 more copies of unit 2
    assert float(s_out.abs().max()) <= 1.0
    x = torch.randn(5, 4)
    gelu = torch.nn.functional.gelu
    torch.testing.assert_close(gelu(x @ s_in.T + s_b) @ s_out.T, gelu(x @ w_in.T + b_in) @ w_out.T)
    s_in, _, s_out = mini.split_ffn_outliers(w_in, b_in, w_out, 0.4)
    assert s_out.shape == (3, 8 + 6 + 1) and float(s_out.abs().max()) <= 0.4  # 2.5: 7 copies; 0.45: 2


def test_minilm_ffn_outliers_split_in_the_checkpoint() -> None:
    """Per-tensor 8-bit weights (htp-sim's AIMET htp_v66) clip the FFN outputs' single large
    weights (7.9 in layer 0); split, no FFN output weight exceeds FFN_WEIGHT_LIMIT, same outputs."""
    split, plain = mini.minilm(layers=2), mini.minilm(layers=2, ffn_weight_limit=None)
    assert [layer.output.in_features for layer in plain.layers] == [mini.FFN] * 2
    assert all(mini.FFN < layer.output.in_features < mini.FFN + 16 for layer in split.layers)
    assert max(float(layer.output.weight.detach().abs().max()) for layer in split.layers) <= mini.FFN_WEIGHT_LIMIT
    assert float(plain.layers[0].output.weight.detach().abs().max()) > 7
    feeds = mini.encoder_feeds([101, 2644, 102], 8)
    with torch.no_grad():
        a, b = (m(*(torch.from_numpy(v) for v in feeds.values())) for m in (split, plain))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    with pytest.raises(InputError, match="ffn_weight_limit must be > 0"):
        mini.minilm(layers=1, ffn_weight_limit=0)


def test_tiny_lm_tokens_and_scoring() -> None:
    inputs, targets = tl.lm_example("héllo", 64)
    assert targets == list("héllo".encode("utf-8")) and inputs == [tl.BOS] + targets[:-1]
    x = tl.one_hot(inputs, 8)
    assert x.shape == (1, 8, 257) and x[0, :6].sum() == 6 and x[0, 6:].sum() == 0 and x[0, 0, 256] == 1
    # Uniform logits: NLL is log(256) per token; the argmax (first index, 0) is never right here.
    r = tl.score_logits(np.zeros((8, 256), np.float32), targets)
    assert r["tokens"] == 6 and r["correct"] == 0 and r["nll_sum"] == pytest.approx(6 * math.log(256))
    logits = np.zeros((8, 256), np.float32)
    logits[np.arange(6), targets] = 50.0
    r = tl.score_logits(logits, targets)
    assert r["correct"] == 6 and r["nll_sum"] < 1e-12
    assert tl.decode(targets) == "héllo"


def test_tiny_lm_adapter_and_causality() -> None:
    torch.manual_seed(0)
    model = tl.TinyLM(tl.TinyLMConfig()).eval()
    adapter = tl.TinyLMAdapter()
    assert adapter.expected_inputs() == {"lm": {"tokens": (1, 64, 257)}}
    pred = adapter.predict_sample(_sample("The assert statement."), _torch_runner(model))
    assert pred["tokens"] == 21 and 0 <= pred["correct"] <= 21 and pred["nll_sum"] > 0
    # Causal: the logits at position i do not depend on later tokens.
    a = tl.one_hot(tl.lm_example("abcdef", 64)[0], 64)
    b = tl.one_hot(tl.lm_example("abcxyz", 64)[0], 64)
    with torch.no_grad():
        la, lb = model(torch.from_numpy(a)), model(torch.from_numpy(b))
    torch.testing.assert_close(la[0, :4], lb[0, :4])
    assert not torch.allclose(la[0, 4], lb[0, 4])


def test_tiny_lm_training_is_deterministic_and_cached(tmp_path: Path) -> None:
    cfg = tl.TrainConfig(steps=3, batch_size=4)
    a = tl.ensure_checkpoint(tl.DEFAULT_PACK, tl.TinyLMConfig(), cfg, home=tmp_path / "a")
    b = tl.ensure_checkpoint(tl.DEFAULT_PACK, tl.TinyLMConfig(), cfg, home=tmp_path / "b")
    assert a.name == b.name and a.read_bytes() == b.read_bytes()
    mtime = a.stat().st_mtime_ns
    assert tl.ensure_checkpoint(tl.DEFAULT_PACK, tl.TinyLMConfig(), cfg, home=tmp_path / "a") == a
    assert a.stat().st_mtime_ns == mtime  # found, not retrained
    other = tl.checkpoint_path("sha256:x", tl.TinyLMConfig(), tl.TrainConfig(steps=4), tmp_path / "a")
    assert other.parent == a.parent and other.name != a.name
    assert isinstance(tl.load_checkpoint(a), tl.TinyLM)
