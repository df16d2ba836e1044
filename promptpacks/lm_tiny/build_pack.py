"""Build the lm_tiny PromptPack: short English passages from the Python documentation.

The text is ``pydoc_data.topics.topics``, the documentation topics (language
reference sections: statements, operators, types, ...) that CPython ships in its
standard library for ``help()``; so the pack builds offline from any Python install.
That text is Python documentation, licensed under the PSF License Agreement (the
Python docs are (c) Python Software Foundation; see https://docs.python.org/3/license.html).

Only prose is kept: headings, their underlines and indented blocks (code, grammar)
are dropped; each paragraph's lines are joined, and its words are packed greedily
into passages of at most ``--max-bytes`` UTF-8 bytes (64: one byte is one token of
EdgeGate's byte-level TinyLM). Whole topics go to one split, so no eval passage
continues a train passage, and a paragraph of an eval topic that other topics repeat
(the "compound" topic holds "try", "function", ...) is dropped from train. Which
topics are eval is fixed by a hash of their name;
the eval split is then ``--eval`` passages drawn with a seeded ``random.Random``.

The text depends on the Python version that ships it (recorded in the manifest's
``build.environment``): the same version and arguments give byte-identical files.

    python promptpacks/lm_tiny/build_pack.py
"""

from __future__ import annotations

import argparse
import hashlib
import json
import platform
import random
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

PACK_VERSION = "1.0.0"
DEFAULT_SEED = 20261122
EVAL_TOPIC_SHARE = 5  # a topic is eval when the first byte of sha256(name) % 5 == 0 (~1 in 5)
MIN_PASSAGE_BYTES = 24  # shorter tails of paragraphs are dropped: too little context to score


def _topics() -> dict[str, str]:
    from pydoc_data.topics import topics

    return dict(topics)


_UNDERLINE = re.compile(r"^[*=\-~^\"'#+]{3,}$")


def paragraphs(doc: str) -> list[str]:
    """The prose paragraphs of one topic, each on one line, whitespace collapsed."""
    out = []
    for block in re.split(r"\n\s*\n", doc):
        lines = block.split("\n")
        if not lines or not lines[0].strip():
            continue
        if any(_UNDERLINE.match(line.strip()) for line in lines):
            continue  # a heading
        if lines[0].startswith((" ", "\t")):
            continue  # code, grammar, indented notes and lists
        text = " ".join(line.strip() for line in lines)
        text = re.sub(r"\s+", " ", text).strip()
        if len(text.split()) >= 4:
            out.append(text)
    return out


def passages(paragraph: str, max_bytes: int) -> list[str]:
    """Consecutive words of ``paragraph`` packed into passages of <= max_bytes UTF-8 bytes."""
    out: list[str] = []
    current = ""
    for word in paragraph.split(" "):
        if len(word.encode("utf-8")) > max_bytes:
            word = word.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
        candidate = f"{current} {word}" if current else word
        if len(candidate.encode("utf-8")) <= max_bytes:
            current = candidate
            continue
        out.append(current)
        current = word
    if current:
        out.append(current)
    return [p for p in out if len(p.encode("utf-8")) >= MIN_PASSAGE_BYTES]


def is_eval_topic(name: str) -> bool:
    return hashlib.sha256(name.encode("utf-8")).digest()[0] % EVAL_TOPIC_SHARE == 0


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out: Path, *, name: str, n_eval: int, n_train: int | None, max_bytes: int, seed: int) -> dict[str, Any]:
    """Write the pack into ``out`` and return the manifest it wrote."""
    topics = _topics()
    # Topics overlap (e.g. "compound" holds the text of "try" and "function"): a train
    # paragraph that also occurs in an eval topic is dropped, so eval text is unseen.
    eval_paragraphs = {para for t in topics if is_eval_topic(t) for para in paragraphs(topics[t])}
    train: list[tuple[str, str]] = []  # (topic, passage)
    eval_pool: list[tuple[str, str]] = []
    for topic in sorted(topics):
        held_out = is_eval_topic(topic)
        for para in paragraphs(topics[topic]):
            if not held_out and para in eval_paragraphs:
                continue
            (eval_pool if held_out else train).extend((topic, c) for c in passages(para, max_bytes))
    if n_eval > len(eval_pool):
        raise SystemExit(f"only {len(eval_pool)} eval passages available, asked for {n_eval}")
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(eval_pool)), n_eval))
    eval_rows = [eval_pool[i] for i in picked]
    if n_train is not None:
        train = [train[i] for i in sorted(rng.sample(range(len(train)), min(n_train, len(train))))]

    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    splits: dict[str, dict[str, Any]] = {}
    for split, rows in (("eval", eval_rows), ("train", train)):
        lines = [
            json.dumps({"id": f"{split}-{i:05d}", "text": text}, ensure_ascii=False)
            for i, (_, text) in enumerate(rows)
        ]
        samples_file = f"{split}.jsonl"
        (out / samples_file).write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(samples_file)
        splits[split] = {"samples": samples_file, "count": len(rows)}

    script = Path(__file__).resolve()
    if script.parent != out.resolve():
        shutil.copyfile(script, out / script.name)  # every pack carries the script that built it
    written.append(script.name)
    eval_topics = sorted({t for t, _ in eval_rows})

    manifest: dict[str, Any] = {
        "name": name,
        "version": PACK_VERSION,
        "modality": "text",
        "task": "language-modeling",
        "description": (
            f"English prose passages of at most {max_bytes} UTF-8 bytes from the Python "
            "language documentation that ships in CPython's standard library "
            "(pydoc_data.topics). Whole documentation topics go to one split; eval topics: "
            + ", ".join(eval_topics) + "."
        ),
        "input": {"kind": "text", "language": "en", "encoding": "utf-8", "max_chars": max_bytes},
        "splits": splits,
        "scorers": ["language-model"],
        "sources": [
            {
                "name": "python-docs-topics",
                "role": "text",
                "package": f"python {platform.python_version()} standard library",
                "loader": "pydoc_data.topics.topics (prose paragraphs only)",
                "license": (
                    "PSF License Agreement (Python documentation, "
                    "https://docs.python.org/3/license.html); not public domain"
                ),
                "attribution": "Python documentation, Copyright (c) Python Software Foundation",
            }
        ],
        "build": {
            "script": script.name,
            "seed": seed,
            "args": {"name": name, "eval": n_eval, "train": n_train, "max_bytes": max_bytes},
            "environment": {"python": platform.python_version()},
        },
        "files": {rel: _sha256(out / rel) for rel in sorted(written)},
    }
    text = yaml.safe_dump(manifest, sort_keys=False, allow_unicode=True, width=100)
    (out / "manifest.yaml").write_text(text, encoding="utf-8")
    return manifest


def main(argv: list[str] | None = None) -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=here, help="pack directory (default: this script's)")
    parser.add_argument("--name", default="lm_tiny")
    parser.add_argument("--eval", type=int, default=200, dest="n_eval")
    parser.add_argument("--train", type=int, default=None, dest="n_train",
                        help="keep N train passages drawn at random (default: all)")
    parser.add_argument("--max-bytes", type=int, default=64)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if args.n_eval < 1 or args.max_bytes < MIN_PASSAGE_BYTES:
        parser.error(f"--eval must be >= 1 and --max-bytes >= {MIN_PASSAGE_BYTES}")
    manifest = build(args.out, name=args.name, n_eval=args.n_eval, n_train=args.n_train,
                     max_bytes=args.max_bytes, seed=args.seed)
    counts = ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items())
    print(f"wrote {args.out} ({counts})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
