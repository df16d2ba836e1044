"""TinyLM: a byte-level causal transformer trained on the lm_tiny PromptPack, as one NPU graph.

Tokenizer: UTF-8 bytes (ids 0-255) plus BOS (256). The graph takes the tokens one-hot,
``tokens`` (1, seq_len, 257) float32, and returns ``logits`` (1, seq_len, 256) over the
next byte. One-hot in, not ids: the embedding becomes a MatMul (no Gather, no integer
inputs), and 0/1 quantizes exactly at any bit width. Padding rows are all zeros; the
model is causal, so padding after a passage never changes the logits scored before it.

Fixed shapes, HTP-friendly ops only (MatMul, Add, Mul, LayerNorm, Softmax, Gelu,
Reshape, Transpose): the causal mask is a constant additive bias of -30 (not -inf, which
would blow the range of a quantized tensor; exp(-30) is ~1e-13).

Weights are not shipped: the factory trains the model on the pack's ``train`` split the
first time (deterministic: seeded, one thread, deterministic algorithms; ~1-2 CPU
minutes) and caches the checkpoint under ``$EDGEGATE_HOME/models/lm_tiny/`` (default
``.edgegate``), named by a digest of the pack and the model and training configs, so a
changed pack or config trains a new one. ``scripts/train_lm_tiny.py`` does the same
from the command line.
"""

from __future__ import annotations

import io
import logging
import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import nn

from edgegate.artifacts import atomic_write, digest_json
from edgegate.errors import InputError

log = logging.getLogger(__name__)

GraphRunner = Callable[[str, dict[str, np.ndarray]], list[np.ndarray]]

BYTES = 256
BOS = 256
VOCAB_IN = 257  # one-hot width: every byte and BOS
TRAINER_VERSION = 1  # bump when the training code changes what a config trains
DEFAULT_PACK = Path(__file__).resolve().parents[2] / "promptpacks" / "lm_tiny"


# ----------------------------------------------------------------------------- tokenizer


def encode(text: str) -> list[int]:
    """Byte-level tokens of ``text`` (its UTF-8 bytes)."""
    return list(text.encode("utf-8"))


def decode(tokens: Sequence[int]) -> str:
    return bytes(t for t in tokens if 0 <= t < BYTES).decode("utf-8", errors="replace")


def lm_example(text: str, seq_len: int) -> tuple[list[int], list[int]]:
    """(inputs, targets) for next-byte prediction on the first ``seq_len`` bytes:
    inputs are BOS then the bytes shifted right, targets the bytes themselves."""
    targets = encode(text)[:seq_len]
    return [BOS] + targets[:-1], targets


def one_hot(tokens: Sequence[int], seq_len: int) -> np.ndarray:
    """(1, seq_len, 257) float32; rows past ``len(tokens)`` (padding) are all zero."""
    if len(tokens) > seq_len:
        raise ValueError(f"{len(tokens)} tokens do not fit seq_len {seq_len}")
    x = np.zeros((1, seq_len, VOCAB_IN), dtype=np.float32)
    x[0, np.arange(len(tokens)), np.asarray(tokens, dtype=np.int64)] = 1.0
    return x


# ----------------------------------------------------------------------------- model


@dataclass(frozen=True)
class TinyLMConfig:
    seq_len: int = 64
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 512
    mask_value: float = -30.0
    # tanh GELU: exported at opset 17 (8-bit activations) it is Tanh/Mul/Add, which the HTP
    # runs; the exact GELU becomes Erf there, which QNN's HTP backend rejects.
    gelu: str = "tanh"


class _Block(nn.Module):
    """Pre-LayerNorm transformer block: causal self-attention, then a GELU MLP."""

    def __init__(self, cfg: TinyLMConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.n_heads = cfg.n_heads
        self.d_head = d // cfg.n_heads
        self.ln1 = nn.LayerNorm(d)
        self.q = nn.Linear(d, d)
        self.k = nn.Linear(d, d)
        self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc1 = nn.Linear(d, cfg.d_ff)
        self.act = nn.GELU(approximate=cfg.gelu)
        self.fc2 = nn.Linear(cfg.d_ff, d)

    def forward(self, x: torch.Tensor, causal_bias: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        y = self.ln1(x)
        q = self.q(y).reshape(b, t, self.n_heads, self.d_head).transpose(1, 2)
        k = self.k(y).reshape(b, t, self.n_heads, self.d_head).permute(0, 2, 3, 1)
        v = self.v(y).reshape(b, t, self.n_heads, self.d_head).transpose(1, 2)
        att = torch.softmax(torch.matmul(q, k) * (1.0 / math.sqrt(self.d_head)) + causal_bias, dim=-1)
        # "* 1.0" is a requantization point: AIMET leaves Transpose/Reshape outputs
        # unquantized, and QNN's EP only keeps the next Linear on the HTP when its input
        # comes from a DequantizeLinear (else its weight/bias DQ nodes fall to the CPU).
        ctx = torch.matmul(att, v).transpose(1, 2).reshape(b, t, d) * 1.0
        x = x + self.o(ctx)
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class TinyLM(nn.Module):
    """One-hot bytes (1, S, 257) -> next-byte logits (1, S, 256)."""

    def __init__(self, cfg: TinyLMConfig = TinyLMConfig()) -> None:
        super().__init__()
        if cfg.d_model % cfg.n_heads:
            raise ValueError(f"d_model {cfg.d_model} is not a multiple of n_heads {cfg.n_heads}")
        self.cfg = cfg
        self.embed = nn.Linear(VOCAB_IN, cfg.d_model, bias=False)
        self.pos = nn.Parameter(torch.zeros(1, cfg.seq_len, cfg.d_model))
        self.blocks = nn.ModuleList(_Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, BYTES)
        causal = torch.triu(torch.full((cfg.seq_len, cfg.seq_len), cfg.mask_value), diagonal=1)
        self.register_buffer("causal_bias", causal, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        x = self.embed(tokens) + self.pos
        for block in self.blocks:
            x = block(x, self.causal_bias)
        return self.head(self.ln_f(x))


# ----------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 800
    batch_size: int = 32
    lr: float = 3e-3
    warmup_steps: int = 40
    weight_decay: float = 0.01
    seed: int = 0
    split: str = "train"


def _home() -> Path:
    return Path(os.environ.get("EDGEGATE_HOME", ".edgegate"))


def checkpoint_digest(pack_digest: str, model: TinyLMConfig, train: TrainConfig) -> str:
    payload = {
        "pack": pack_digest,
        "model": asdict(model),
        "train": asdict(train),
        "trainer": TRAINER_VERSION,
        "torch": torch.__version__.split("+")[0],
    }
    return digest_json(payload)


def checkpoint_path(pack_digest: str, model: TinyLMConfig, train: TrainConfig, home: Path | None = None) -> Path:
    digest = checkpoint_digest(pack_digest, model, train)
    return (home or _home()) / "models" / "lm_tiny" / f"{digest[:32]}.pt"


def _examples(texts: Sequence[str], seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """All passages as (N, S) input ids (VOCAB_IN = padding) and (N, S) targets (-100 = padding)."""
    x = np.full((len(texts), seq_len), VOCAB_IN, dtype=np.int64)
    y = np.full((len(texts), seq_len), -100, dtype=np.int64)
    for i, text in enumerate(texts):
        inputs, targets = lm_example(text, seq_len)
        x[i, : len(inputs)] = inputs
        y[i, : len(targets)] = targets
    return torch.from_numpy(x), torch.from_numpy(y)


def _one_hot(ids: torch.Tensor) -> torch.Tensor:
    """(B, S) ids -> (B, S, 257) float; the padding id gives an all-zero row (as one_hot())."""
    return nn.functional.one_hot(ids, VOCAB_IN + 1)[..., :VOCAB_IN].float()


def train_tiny_lm(
    texts: Sequence[str], model_cfg: TinyLMConfig = TinyLMConfig(), train_cfg: TrainConfig = TrainConfig()
) -> tuple[TinyLM, dict[str, Any]]:
    """Train from scratch on ``texts``; the same inputs give the same weights, bit for bit."""
    if not texts:
        raise InputError("TinyLM: no training passages")
    threads = torch.get_num_threads()
    deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    try:
        torch.manual_seed(train_cfg.seed)
        rng = np.random.default_rng(train_cfg.seed)
        model = TinyLM(model_cfg)
        with torch.no_grad():
            model.pos.normal_(0.0, 0.02)
        x_all, y_all = _examples(texts, model_cfg.seq_len)
        opt = torch.optim.AdamW(model.parameters(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)

        def lr_at(step: int) -> float:
            if step < train_cfg.warmup_steps:
                return (step + 1) / train_cfg.warmup_steps
            progress = (step - train_cfg.warmup_steps) / max(1, train_cfg.steps - train_cfg.warmup_steps)
            return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
        loss_fn = nn.CrossEntropyLoss(ignore_index=-100)
        model.train()
        t0 = time.perf_counter()
        recent: list[float] = []
        for step in range(train_cfg.steps):
            idx = torch.from_numpy(rng.integers(0, len(texts), train_cfg.batch_size))
            logits = model(_one_hot(x_all[idx]))
            loss = loss_fn(logits.reshape(-1, BYTES), y_all[idx].reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            recent = (recent + [float(loss.detach())])[-50:]
            if step % 200 == 0 or step == train_cfg.steps - 1:
                log.info("TinyLM step %d/%d: loss %.3f", step + 1, train_cfg.steps, recent[-1])
        model.eval()
        stats = {"train_loss_last50": sum(recent) / len(recent), "passages": len(texts)}
        log.info("TinyLM: trained in %.0f s", time.perf_counter() - t0)
        return model, stats
    finally:
        torch.use_deterministic_algorithms(deterministic)
        torch.set_num_threads(threads)


def ensure_checkpoint(
    pack: str | Path = DEFAULT_PACK,
    model_cfg: TinyLMConfig = TinyLMConfig(),
    train_cfg: TrainConfig = TrainConfig(),
    *,
    home: Path | None = None,
    force: bool = False,
) -> Path:
    """The cached checkpoint for (pack, configs), training it first if it is missing."""
    from edgegate.packs.promptpack import load_promptpack

    loaded = load_promptpack(pack, verify=True)
    if loaded.task.value != "language-modeling":
        raise InputError(f"TinyLM trains on a language-modeling pack; {loaded.name} is {loaded.task.value}")
    path = checkpoint_path(loaded.digest, model_cfg, train_cfg, home)
    if path.is_file() and not force:
        return path
    texts = [s.text or "" for s in loaded.samples(train_cfg.split)]
    log.warning(
        "TinyLM: no checkpoint at %s; training one on %s/%s (%d passages, %d steps, ~1-2 CPU minutes)",
        path, loaded.name, train_cfg.split, len(texts), train_cfg.steps,
    )
    model, stats = train_tiny_lm(texts, model_cfg, train_cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()  # a file name would go into the zip's record names: bytes would differ
    torch.save(
        {
            "model_config": asdict(model_cfg),
            "train_config": asdict(train_cfg),
            "pack": {"name": loaded.name, "version": loaded.version, "digest": loaded.digest},
            "trainer": TRAINER_VERSION,
            "stats": stats,
            "state_dict": model.state_dict(),
        },
        buf,
    )
    atomic_write(path, buf.getvalue())  # concurrent trainers: the last rename wins
    log.warning("TinyLM: trained (last-50-step train loss %.3f); saved %s", stats["train_loss_last50"], path)
    return path


def load_checkpoint(path: Path) -> TinyLM:
    data = torch.load(path, map_location="cpu", weights_only=True)
    model = TinyLM(TinyLMConfig(**data["model_config"]))
    model.load_state_dict(data["state_dict"])
    return model.eval()


def tiny_lm(pack: str | None = None, steps: int = TrainConfig.steps, seed: int = TrainConfig.seed) -> TinyLM:
    """TinyLM trained on ``pack`` (default: the repo's promptpacks/lm_tiny) (factory for
    pipeline YAML); trains and caches the checkpoint on first use."""
    path = ensure_checkpoint(pack or DEFAULT_PACK, TinyLMConfig(), TrainConfig(steps=steps, seed=seed))
    return load_checkpoint(path)


# ----------------------------------------------------------------------------- adapter


def score_logits(logits: np.ndarray, targets: Sequence[int]) -> dict[str, Any]:
    """Next-token NLL sum (nats), token count and argmax hits of (S, 256) logits."""
    n = len(targets)
    z = np.asarray(logits, dtype=np.float64)[:n]
    z = z - z.max(axis=1, keepdims=True)
    log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    t = np.asarray(targets, dtype=np.int64)
    nll = float(-log_probs[np.arange(n), t].sum())
    correct = int((np.argmax(z, axis=1) == t).sum())
    return {"nll_sum": nll, "tokens": n, "correct": correct}


class TinyLMAdapter:
    """Host glue: a passage's bytes in, next-byte NLL / count / hits out (one graph call)."""

    graph_names = ("lm",)

    def __init__(self, *, seq_len: int = TinyLMConfig.seq_len, graph: str = "lm") -> None:
        self.seq_len = int(seq_len)
        self.graph = graph

    def expected_inputs(self) -> dict[str, dict[str, tuple[int, ...]]]:
        return {self.graph: {"tokens": (1, self.seq_len, VOCAB_IN)}}

    def describe(self) -> dict[str, Any]:
        return {
            "adapter": "TinyLMAdapter",
            "tokenizer": "utf-8 bytes + BOS, one-hot",
            "seq_len": self.seq_len,
            "graph": self.graph,
            "truncation": f"passages are scored on their first {self.seq_len} bytes",
        }

    def predict_sample(self, sample: Any, run: GraphRunner) -> dict[str, Any]:
        if sample.text is None:
            raise InputError(f"TinyLMAdapter: sample '{sample.id}' has no text (is this a text pack?)")
        inputs, targets = lm_example(sample.text, self.seq_len)
        logits = run(self.graph, {"tokens": one_hot(inputs, self.seq_len)})[0]
        return score_logits(np.asarray(logits)[0], targets)
