"""Build the robot_intents PromptPack: robot-command utterances written for EdgeGate.

Every utterance comes from the phrasings below (written for this pack, CC0): each
intent has 14 core phrasings, and each core appears twice, once as written and once
wrapped in a politeness or attention phrase ("hey robot, ...", "could you ...?").
Casing and end punctuation vary. A seeded ``random.Random`` makes every choice, so
the same arguments give byte-identical files on any Python 3.

Splits:

* ``support``: both utterances of 2 cores per intent (4 per intent); the intent scorer
  builds one class centroid per intent from their embeddings (few-shot, nearest
  centroid). Quantization calibrates on this split too, never on ``eval``.
* ``eval``: the rest, interleaved intent by intent, so ``evaluation.limit: N`` keeps
  the classes balanced.

    python promptpacks/robot_intents/build_pack.py              # the real pack
    python promptpacks/robot_intents/build_pack.py --out tests/fixtures/packs/robot_intents_mini \\
        --name robot_intents_mini --support-cores 1 --eval 12
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import shutil
import sys
from pathlib import Path
from typing import Any

import yaml

PACK_VERSION = "1.0.0"
DEFAULT_SEED = 20261122
SUPPORT_CORES = 2  # per intent; each core gives two support utterances
MAX_CHARS = 120

# (core phrasing, kind): "do" = an order (takes "could you ...?" and "... please"),
# "ask" = a question, "now" = urgent (no politeness added after it).
INTENTS: dict[str, list[tuple[str, str]]] = {
    "move_forward": [
        ("move forward", "do"), ("go straight ahead", "do"), ("drive forward two meters", "do"),
        ("roll ahead a little", "do"), ("advance one step", "do"), ("keep going straight", "do"),
        ("head forward until you reach the wall", "do"), ("move ahead slowly", "do"),
        ("go forward a bit", "do"), ("proceed forward", "do"), ("inch forward", "do"),
        ("take three steps forward", "do"), ("continue straight on", "do"),
        ("push on towards the window", "do"),
    ],
    "turn_left": [
        ("turn left", "do"), ("rotate to the left", "do"), ("make a left turn", "do"),
        ("spin left ninety degrees", "do"), ("go left at the next corner", "do"),
        ("take a left", "do"), ("face left", "do"), ("veer left", "do"),
        ("turn counterclockwise", "do"), ("swing round to your left", "do"), ("hang a left", "do"),
        ("rotate left by forty five degrees", "do"), ("bear left at the door", "do"),
        ("point yourself to the left", "do"),
    ],
    "turn_right": [
        ("turn right", "do"), ("rotate to the right", "do"), ("make a right turn", "do"),
        ("spin right ninety degrees", "do"), ("go right at the end of the hall", "do"),
        ("take a right", "do"), ("face right", "do"), ("veer right", "do"),
        ("turn clockwise", "do"), ("swing round to your right", "do"), ("hang a right", "do"),
        ("rotate right by thirty degrees", "do"), ("bear right past the table", "do"),
        ("point yourself to the right", "do"),
    ],
    "stop": [
        ("stop", "now"), ("halt", "now"), ("freeze", "now"), ("stop moving", "now"),
        ("hold still", "now"), ("stay where you are", "do"), ("don't move", "now"),
        ("emergency stop", "now"), ("that's enough, stop", "now"), ("wait right there", "do"),
        ("cease all motion", "now"), ("stop immediately", "now"), ("pause your movement", "do"),
        ("kill the motors", "now"),
    ],
    "pick_up": [
        ("pick up the cup", "do"), ("grab the red block", "do"), ("lift the box off the floor", "do"),
        ("take the bottle from the table", "do"), ("get hold of that screwdriver", "do"),
        ("pick the apple up", "do"), ("collect the toy from the floor", "do"),
        ("fetch the package and hold it", "do"), ("grasp the mug by the handle", "do"),
        ("snatch up the pen", "do"), ("lift that item", "do"),
        ("pick up the small part on the left", "do"), ("retrieve the wrench from the bench", "do"),
        ("scoop up the sock under the chair", "do"),
    ],
    "put_down": [
        ("put it down", "do"), ("set the cup on the table", "do"), ("place the box on the shelf", "do"),
        ("drop the object", "do"), ("put the bottle back", "do"), ("lay it down gently", "do"),
        ("lower the package to the floor", "do"), ("leave the block here", "do"),
        ("place that in the bin", "do"), ("set it down over there", "do"),
        ("put the tool on the bench", "do"), ("rest the tray on the counter", "do"),
        ("deposit the item in the basket", "do"), ("let go of the parcel on the mat", "do"),
    ],
    "open_gripper": [
        ("open the gripper", "do"), ("open your claw", "do"), ("open your hand", "do"),
        ("spread the fingers", "do"), ("widen the grip", "do"), ("unclench the gripper", "do"),
        ("open the jaws all the way", "do"), ("loosen your grip", "do"),
        ("open the end effector", "do"), ("relax the gripper", "do"),
        ("move the gripper fingers apart", "do"), ("set the gripper to open", "do"),
        ("open the clamp", "do"), ("make your fingers wide open", "do"),
    ],
    "close_gripper": [
        ("close the gripper", "do"), ("close your claw", "do"), ("close your hand", "do"),
        ("squeeze the fingers together", "do"), ("tighten the grip", "do"),
        ("clench the gripper", "do"), ("shut the jaws", "do"), ("clamp down", "do"),
        ("close the end effector", "do"), ("grip tightly", "do"),
        ("bring the gripper fingers together", "do"), ("set the gripper to closed", "do"),
        ("close the clamp", "do"), ("pinch your fingers shut", "do"),
    ],
    "go_to_dock": [
        ("go to the dock", "do"), ("return to your charging station", "do"),
        ("go and charge yourself", "do"), ("head back to the charger", "do"), ("dock now", "now"),
        ("go plug yourself in", "do"), ("drive to the docking station", "do"),
        ("time to recharge, go to the dock", "do"), ("park at the charger", "do"),
        ("return to base to charge", "do"), ("find your charging pad", "do"),
        ("go top up your battery at the dock", "do"), ("back to the charging dock", "now"),
        ("head to your dock for a recharge", "do"),
    ],
    "follow_me": [
        ("follow me", "do"), ("come with me", "do"), ("stay behind me", "do"),
        ("keep up with me", "do"), ("tag along", "do"), ("walk with me", "do"),
        ("track me as I move", "do"), ("follow my lead", "do"), ("come along", "do"),
        ("stick with me", "do"), ("shadow me to the kitchen", "do"), ("follow me to the lab", "do"),
        ("trail behind me", "do"), ("walk along behind me to the door", "do"),
    ],
    "report_battery": [
        ("what's your battery level", "ask"), ("how much charge do you have", "ask"),
        ("report battery status", "do"), ("check your battery", "do"), ("how's your power", "ask"),
        ("battery percentage", "do"), ("tell me your charge level", "do"),
        ("are you running low on power", "ask"), ("how long can you run before charging", "ask"),
        ("give me a battery report", "do"), ("how full is your battery", "ask"),
        ("what is your remaining power", "ask"), ("status of your battery", "do"),
        ("do you have enough juice left", "ask"),
    ],
    "take_photo": [
        ("take a photo", "do"), ("snap a picture", "do"), ("take a picture of this", "do"),
        ("capture an image", "do"), ("photograph the shelf", "do"), ("grab a snapshot", "do"),
        ("take a pic of the room", "do"), ("shoot a photo of the door", "do"),
        ("record a still image", "do"), ("click a picture", "do"), ("capture what you see", "do"),
        ("take a photo of the table", "do"), ("get a shot of the hallway", "do"),
        ("use your camera on the whiteboard", "do"),
    ],
}

_DO_PREFIX = ("please ", "hey robot, ", "robot, ", "okay robot, ", "I need you to ", "now ")
_DO_ASK = ("could you ", "can you ", "would you ", "will you ")
_DO_SUFFIX = (" please", " now", " right away", " for me", " when you are ready")
_ASK_PREFIX = ("hey robot, ", "robot, ", "quick question: ", "tell me, ")
_NOW_PREFIX = ("robot, ", "hey, ", "hey robot, ")
_NOW_SUFFIX = (" now", " right now", " at once")


def _wrap(core: str, kind: str, rng: random.Random) -> str:
    """The core inside a politeness or attention phrase chosen by ``rng``."""
    if kind == "ask":
        return rng.choice(_ASK_PREFIX) + core + "?"
    if kind == "now":
        if rng.random() < 0.5:
            return rng.choice(_NOW_PREFIX) + core
        return core + rng.choice(_NOW_SUFFIX)
    roll = rng.random()
    if roll < 0.35:
        return rng.choice(_DO_ASK) + core + "?"
    if roll < 0.7:
        return rng.choice(_DO_PREFIX) + core
    return core + rng.choice(_DO_SUFFIX)


def _style(text: str, kind: str, rng: random.Random) -> str:
    """Vary casing and end punctuation, as people type them."""
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    if text[-1] not in "?!":
        text += rng.choice(("", ".", "!") if kind == "now" else ("", ".", "?" if kind == "ask" else ""))
    return text


def utterances(seed: int) -> dict[str, list[str]]:
    """Intent -> its utterances (each core as written, then wrapped), all distinct."""
    rng = random.Random(seed)
    out: dict[str, list[str]] = {}
    seen: dict[str, str] = {}
    for intent, cores in INTENTS.items():
        texts = []
        for core, kind in cores:
            for text in (_style(core, kind, rng), _style(_wrap(core, kind, rng), kind, rng)):
                key = text.lower().rstrip(".!?")
                if key in seen:
                    raise RuntimeError(f"'{text}' ({intent}) repeats an utterance of {seen[key]}")
                seen[key] = intent
                texts.append(text)
        out[intent] = texts
    return out


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build(out: Path, *, name: str, support_cores: int, n_eval: int | None, seed: int) -> dict[str, Any]:
    """Write the pack into ``out`` and return the manifest it wrote."""
    by_intent = utterances(seed)
    rng = random.Random(seed + 1)
    support: list[tuple[str, str]] = []
    rest: dict[str, list[str]] = {}
    for intent, texts in by_intent.items():
        # Support takes whole cores (both their variants), so no eval utterance shares
        # its core phrasing with a support one.
        n_cores = len(texts) // 2
        chosen = set(rng.sample(range(n_cores), support_cores))
        support += [(texts[2 * c + v], intent) for c in sorted(chosen) for v in (0, 1)]
        rest[intent] = [t for i, t in enumerate(texts) if i // 2 not in chosen]
    # Interleave the intents (one of each in turn, each intent's order shuffled once)
    # so that the first N eval samples are as balanced as N allows.
    for texts in rest.values():
        rng.shuffle(texts)
    longest = max(len(t) for t in rest.values())
    eval_rows = [
        (rest[intent][k], intent) for k in range(longest) for intent in rest if k < len(rest[intent])
    ]
    if n_eval is not None:
        eval_rows = eval_rows[:n_eval]

    out.mkdir(parents=True, exist_ok=True)
    written: list[str] = []
    splits: dict[str, dict[str, Any]] = {}
    for split, rows in (("support", support), ("eval", eval_rows)):
        lines = [
            json.dumps({"id": f"{split}-{i:04d}", "text": text, "label": label}, ensure_ascii=False)
            for i, (text, label) in enumerate(rows)
        ]
        samples_file = f"{split}.jsonl"
        (out / samples_file).write_text("\n".join(lines) + "\n", encoding="utf-8")
        written.append(samples_file)
        splits[split] = {"samples": samples_file, "count": len(rows)}

    script = Path(__file__).resolve()
    if script.parent != out.resolve():
        shutil.copyfile(script, out / script.name)  # every pack carries the script that built it
    written.append(script.name)

    manifest: dict[str, Any] = {
        "name": name,
        "version": PACK_VERSION,
        "modality": "text",
        "task": "intent-classification",
        "description": (
            f"Spoken-style commands to a mobile robot with a gripper, {len(INTENTS)} intents: "
            "utterances written for EdgeGate with varied phrasing, casing and politeness. "
            "Few-shot: the support split gives each intent's centroid, eval is scored by "
            "nearest centroid."
        ),
        "input": {"kind": "text", "language": "en", "encoding": "utf-8", "max_chars": MAX_CHARS},
        "splits": splits,
        "scorers": ["intent"],
        "classes": list(INTENTS),
        "sources": [
            {
                "name": "robot_intents_utterances",
                "role": "text",
                "package": None,
                "loader": f"{script.name}: INTENTS (14 core phrasings per intent, each also wrapped)",
                "license": "CC0-1.0 (written for EdgeGate, dedicated to the public domain)",
                "attribution": "written for EdgeGate",
            }
        ],
        "build": {
            "script": script.name,
            "seed": seed,
            "args": {"name": name, "support_cores": support_cores, "eval": n_eval},
            # Only the standard library's seeded random is used: no versions to pin.
            "environment": {},
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
    parser.add_argument("--name", default="robot_intents")
    parser.add_argument("--support-cores", type=int, default=SUPPORT_CORES, dest="support_cores",
                        help="core phrasings per intent whose two utterances go to support")
    parser.add_argument("--eval", type=int, default=None, dest="n_eval",
                        help="keep the first N eval utterances (default: all)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    args = parser.parse_args(argv)
    if not 1 <= args.support_cores < 14:
        parser.error("--support-cores must be between 1 and 13")
    if args.n_eval is not None and args.n_eval < 1:
        parser.error("--eval must be >= 1")
    manifest = build(args.out, name=args.name, support_cores=args.support_cores,
                     n_eval=args.n_eval, seed=args.seed)
    counts = ", ".join(f"{k} {v['count']}" for k, v in manifest["splits"].items())
    print(f"wrote {args.out} ({counts})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
