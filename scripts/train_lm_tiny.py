"""Train (or find) the TinyLM checkpoint for the lm_tiny PromptPack and report its FP32 scores.

The pipeline's factory (``edgegate.zoo.tiny_lm:tiny_lm``) trains the same checkpoint on
first use; this script does it up front and prints the eval split's loss, perplexity and
next-token accuracy in FP32 (PyTorch on the CPU). Deterministic: the same pack, configs
and torch version give a byte-identical checkpoint.

    python scripts/train_lm_tiny.py                 # default: promptpacks/lm_tiny, 800 steps
    python scripts/train_lm_tiny.py --steps 200 --force
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import torch

from edgegate.packs.promptpack import load_promptpack
from edgegate.zoo.tiny_lm import (
    DEFAULT_PACK,
    TinyLMConfig,
    TrainConfig,
    ensure_checkpoint,
    lm_example,
    load_checkpoint,
    one_hot,
    score_logits,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pack", type=Path, default=DEFAULT_PACK)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--seed", type=int, default=TrainConfig.seed)
    parser.add_argument("--home", type=Path, default=None, help="default: $EDGEGATE_HOME or .edgegate")
    parser.add_argument("--force", action="store_true", help="train again even if the checkpoint exists")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    t0 = time.perf_counter()
    path = ensure_checkpoint(
        args.pack, TinyLMConfig(), TrainConfig(steps=args.steps, seed=args.seed), home=args.home, force=args.force
    )
    model = load_checkpoint(path)
    seq_len = model.cfg.seq_len
    totals = {"nll_sum": 0.0, "tokens": 0, "correct": 0}
    with torch.no_grad():
        for sample in load_promptpack(args.pack).samples("eval"):
            inputs, targets = lm_example(sample.text or "", seq_len)
            logits = model(torch.from_numpy(one_hot(inputs, seq_len))).numpy()[0]
            for k, v in score_logits(logits, targets).items():
                totals[k] += v
    loss = totals["nll_sum"] / totals["tokens"]
    print(f"checkpoint: {path} ({time.perf_counter() - t0:.0f} s)")
    print(
        f"eval (FP32, torch): loss {loss:.4f} nats/byte, perplexity {math.exp(loss):.3f}, "
        f"next-token accuracy {totals['correct'] / totals['tokens']:.4f} over {totals['tokens']} bytes"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
