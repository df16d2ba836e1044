"""Differential testing of FP32 vs INT8, DeepXplore-style: search for inputs they disagree on.

From PromptPack seeds, the search tries

* gradient-guided perturbations inside an L-infinity budget: steps of the sign of the
  gradient of the adapter's *decision margin* (how far the FP32 graphs are from flipping a
  decision; small margins are where quantization error flips outputs) plus a neuron-coverage
  term that rewards activating neurons no input has activated yet (DeepXplore's joint
  objective). Gradients come from the FP32 torch graphs: the INT8 candidate is a QDQ graph,
  whose straight-through gradient is the FP32 one;
* simple physical transforms: brightness, blur, occlusion.

Every candidate input is run through both models end to end (host glue included), and
counts as a disagreement when their predictions differ (``adapter.disagree``). Metrics:
disagreement rate over seeds, neuron coverage reached, and each model's robustness (the
share of seeds whose own prediction no tried input changed). The inputs found are written
out as a small PromptPack.

The search is budgeted in work, not time: ``seeds`` seeds, each with ``steps`` gradient
steps and one try per transform, every random choice drawn from a generator seeded by
(``seed``, the seed's index). The same model, pack and settings give the same inputs and
the same verdict on any machine, loaded or quiet. ``time_budget_s`` is only a safety stop:
when it ends the search early the result is marked incomplete (``stopped``) and its
rates are not reported as the search's (a gate on them is n/a, ``run.checks``), because a
smaller search is not the one the gate's threshold was chosen for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgegate.packs.adapters import GraphRunner, SearchableAdapter
from edgegate.packs.sample import Sample

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AdversarialSettings:
    seeds: int = 16
    epsilon: float = 8.0  # L-infinity budget, in 0..255 pixel units
    steps: int = 4  # gradient steps per seed
    step_size: float = 3.0
    coverage_threshold: float = 0.25  # DeepXplore's t, on per-layer min-max scaled activations
    coverage_weight: float = 0.1
    transforms: tuple[str, ...] = ("brightness", "blur", "occlusion")
    time_budget_s: float | None = None  # a safety stop; None: the whole search always runs
    seed: int = 0


@dataclass
class Finding:
    seed_id: str
    kind: str  # "gradient" | "brightness" | "blur" | "occlusion"
    detail: str
    image: np.ndarray  # HxWx3 uint8
    fp32: Mapping[str, Any]
    int8: Mapping[str, Any]
    linf: float


@dataclass
class AdversarialResult:
    seeds_tried: int  # seeds searched to the end
    disagreement_rate: float
    coverage: float
    fp32_robustness: float
    int8_robustness: float
    inputs_tried: int
    elapsed_s: float
    findings: list[Finding] = field(default_factory=list)
    budget_exhausted: bool = False
    seeds_planned: int = 0  # the search as budgeted: min(settings.seeds, seeds available)
    time_budget_s: float | None = None

    @property
    def stopped(self) -> str | None:
        """Why the search is not the whole one (the time cap ended it), or None when complete."""
        if not self.budget_exhausted:
            return None
        return (f"search stopped by time_budget_s ({self.time_budget_s:g} s) after {self.seeds_tried} of "
                f"{self.seeds_planned} seeds; its rates describe a smaller search than the one budgeted")

    def summary(self) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for f in self.findings:
            kinds[f.kind] = kinds.get(f.kind, 0) + 1
        return {
            "seeds_tried": self.seeds_tried,
            "inputs_tried": self.inputs_tried,
            "disagreement_rate": self.disagreement_rate,
            "coverage": self.coverage,
            "fp32_robustness": self.fp32_robustness,
            "int8_robustness": self.int8_robustness,
            "failure_modes": kinds,
            "elapsed_s": round(self.elapsed_s, 2),
            "budget_exhausted": self.budget_exhausted,
            "seeds_planned": self.seeds_planned,
            "complete": self.stopped is None,
            **({"not_applicable": self.stopped} if self.stopped else {}),
        }


class NeuronCoverage:
    """DeepXplore neuron coverage over the activation modules of torch graphs: a neuron is a
    channel; it is covered once its spatial mean, min-max scaled within its layer, exceeds t."""

    def __init__(self, modules: Mapping[str, Any], threshold: float) -> None:
        import torch

        self.threshold = threshold
        self.covered: dict[str, np.ndarray] = {}
        self.last: dict[str, torch.Tensor] = {}
        self._hooks = []
        for gname, module in modules.items():
            for lname, layer in module.named_modules():
                if isinstance(layer, (torch.nn.PReLU, torch.nn.ReLU)):
                    key = f"{gname}.{lname}"
                    self._hooks.append(layer.register_forward_hook(self._hook(key)))

    def _hook(self, key: str):
        def hook(_module, _inp, out):
            act = out.mean(dim=tuple(range(2, out.dim()))) if out.dim() > 2 else out  # (N, C)
            self.last[key] = act
        return hook

    @staticmethod
    def _scaled(act) -> np.ndarray:
        a = act.detach().numpy()
        lo, hi = a.min(axis=1, keepdims=True), a.max(axis=1, keepdims=True)
        return (a - lo) / np.maximum(hi - lo, 1e-12)

    def update(self) -> None:
        for key, act in self.last.items():
            hit = (self._scaled(act) > self.threshold).any(axis=0)
            self.covered[key] = self.covered.get(key, np.zeros_like(hit)) | hit

    def uncovered_term(self):
        """Mean activation of still-uncovered neurons in the last forward pass (to maximise)."""
        terms = []
        for key, act in self.last.items():
            cov = self.covered.get(key)
            if cov is None or cov.all():
                continue
            idx = np.nonzero(~cov)[0]
            terms.append(act[:, idx].mean())
        if not terms:
            return None
        return sum(terms) / len(terms)

    def coverage(self) -> float:
        total = sum(c.size for c in self.covered.values())
        return float(sum(int(c.sum()) for c in self.covered.values()) / total) if total else 0.0

    def close(self) -> None:
        for h in self._hooks:
            h.remove()


def _brightness(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    delta = float(rng.choice([-1, 1]) * rng.uniform(20, 50))
    return np.clip(img.astype(np.float32) + delta, 0, 255).astype(np.uint8), f"brightness {delta:+.0f}"


def _blur(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    from PIL import Image, ImageFilter

    radius = float(rng.uniform(0.8, 1.6))
    out = Image.fromarray(img).filter(ImageFilter.GaussianBlur(radius))
    return np.asarray(out, dtype=np.uint8), f"gaussian blur r={radius:.1f}"


def _occlusion(img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    h, w = img.shape[:2]
    s = int(rng.integers(max(4, min(h, w) // 10), max(6, min(h, w) // 5)))
    y, x = int(rng.integers(0, h - s)), int(rng.integers(0, w - s))
    out = img.copy()
    out[y : y + s, x : x + s] = 127
    return out, f"grey square {s}px at ({x},{y})"


TRANSFORMS: dict[str, Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, str]]] = {
    "brightness": _brightness,
    "blur": _blur,
    "occlusion": _occlusion,
}


def search(
    adapter: SearchableAdapter,
    seeds: Sequence[Sample],
    fp32_modules: Mapping[str, Any],
    fp32_run: GraphRunner,
    int8_run: GraphRunner,
    settings: AdversarialSettings,
) -> AdversarialResult:
    """Search each seed for an input on which the FP32 and INT8 predictions disagree.

    `adapter` provides ``predict(image, run)``, ``disagree(a, b) -> bool`` and
    ``decision_margin(image_tensor, modules) -> torch scalar`` (differentiable, smaller =
    closer to a flipped decision).
    """
    import torch

    torch.manual_seed(settings.seed)
    coverage = NeuronCoverage(fp32_modules, settings.coverage_threshold)
    t0 = time.perf_counter()
    findings: list[Finding] = []
    fp32_changed = int8_changed = tried = inputs = 0
    planned = list(seeds[: settings.seeds])
    exhausted = False

    def out_of_time() -> bool:
        return settings.time_budget_s is not None and time.perf_counter() - t0 > settings.time_budget_s

    try:
        for index, sample in enumerate(planned):
            if out_of_time():
                exhausted = True
                break
            # One generator per seed: a seed's transforms do not depend on the seeds before it.
            rng = np.random.default_rng([settings.seed, index])
            clean = sample.load_image()
            base_fp32 = adapter.predict(clean, fp32_run)
            base_int8 = adapter.predict(clean, int8_run)
            inputs += 1
            found: Finding | None = None
            if adapter.disagree(base_fp32, base_int8):
                found = Finding(sample.id, "clean", "no perturbation", clean, base_fp32, base_int8, 0.0)
            own_fp32 = own_int8 = False
            for img, kind, detail in _candidates(adapter, clean, fp32_modules, coverage, settings, rng):
                inputs += 1
                p_fp32 = adapter.predict(img, fp32_run)
                p_int8 = adapter.predict(img, int8_run)
                own_fp32 |= adapter.disagree(base_fp32, p_fp32)
                own_int8 |= adapter.disagree(base_int8, p_int8)
                if found is None and adapter.disagree(p_fp32, p_int8):
                    linf = float(np.abs(img.astype(np.int16) - clean.astype(np.int16)).max())
                    found = Finding(sample.id, kind, detail, img, p_fp32, p_int8, linf)
                if out_of_time():
                    exhausted = True
                    break
            if exhausted:  # a seed cut short counts for nothing: its rates would be a guess
                break
            tried += 1
            fp32_changed += own_fp32
            int8_changed += own_int8
            if found is not None:
                findings.append(found)
    finally:
        coverage.close()
    n = max(tried, 1)
    return AdversarialResult(
        seeds_tried=tried,
        disagreement_rate=len(findings) / n,
        coverage=coverage.coverage(),
        fp32_robustness=1.0 - fp32_changed / n,
        int8_robustness=1.0 - int8_changed / n,
        inputs_tried=inputs,
        elapsed_s=time.perf_counter() - t0,
        findings=findings,
        budget_exhausted=exhausted,
        seeds_planned=len(planned),
        time_budget_s=settings.time_budget_s,
    )


def _candidates(
    adapter: SearchableAdapter,
    clean: np.ndarray,
    modules: Mapping[str, Any],
    coverage: NeuronCoverage,
    settings: AdversarialSettings,
    rng: np.random.Generator,
) -> Iterator[tuple[np.ndarray, str, str]]:
    """Yield (image, kind, detail): gradient steps inside the L-inf ball, then transforms."""
    import torch

    x0 = torch.from_numpy(clean.astype(np.float32)).permute(2, 0, 1)[None]
    x = x0.clone()
    for step in range(settings.steps):
        x.requires_grad_(True)
        margin = adapter.decision_margin(x, modules)
        coverage.update()
        objective = -margin
        cov_term = coverage.uncovered_term()
        if cov_term is not None:
            objective = objective + settings.coverage_weight * cov_term
        if not objective.requires_grad:
            break
        (grad,) = torch.autograd.grad(objective, x)
        with torch.no_grad():
            x = x + settings.step_size * grad.sign()
            x = torch.max(torch.min(x, x0 + settings.epsilon), x0 - settings.epsilon).clamp(0, 255)
        img = x.detach()[0].permute(1, 2, 0).round().clamp(0, 255).to(torch.uint8).numpy()
        yield img, "gradient", f"step {step + 1}, L-inf <= {settings.epsilon:g}"
        x = x.detach()
    for name in settings.transforms:
        img, detail = TRANSFORMS[name](clean, rng)
        yield img, name, detail


def save_result(result: AdversarialResult, d: Path) -> None:
    """A whole search's result in `d` (findings' images in an .npz, the rest as JSON), so a
    later run can reuse it (``load_result``)."""
    from edgegate.run.outputs import encode_arrays

    np.savez(d / "findings.npz", **{f"image{i}": f.image for i, f in enumerate(result.findings)})
    fields = {k: v for k, v in result.__dict__.items() if k != "findings"}
    findings = [{"seed_id": f.seed_id, "kind": f.kind, "detail": f.detail, "linf": f.linf,
                 "fp32": encode_arrays(f.fp32), "int8": encode_arrays(f.int8)} for f in result.findings]
    (d / "result.json").write_text(json.dumps({"result": fields, "findings": findings}, sort_keys=True))


def load_result(d: Path) -> AdversarialResult:
    """``save_result`` read back."""
    from edgegate.run.outputs import decode_arrays

    data = json.loads((d / "result.json").read_text())
    with np.load(d / "findings.npz") as images:
        findings = [Finding(f["seed_id"], f["kind"], f["detail"], images[f"image{i}"], decode_arrays(f["fp32"]),
                            decode_arrays(f["int8"]), float(f["linf"])) for i, f in enumerate(data["findings"])]
    return AdversarialResult(**data["result"], findings=findings)


def write_failure_pack(result: AdversarialResult, out_dir: Path, *, name: str, source_pack: str) -> Path | None:
    """The disagreements as a small PromptPack: PNGs, a JSONL of samples with both models'
    boxes, and a manifest with every file's sha256."""
    from PIL import Image

    if not result.findings:
        return None
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    lines = []
    for i, f in enumerate(result.findings):
        rel = f"images/adv-{i:04d}.png"
        Image.fromarray(f.image).save(out_dir / rel, optimize=True)
        lines.append(json.dumps({
            "id": f"adv-{i:04d}", "image": rel, "seed": f.seed_id, "kind": f.kind, "detail": f.detail,
            "linf": f.linf,
            "fp32_boxes": np.asarray(f.fp32.get("boxes", [])).tolist(),
            "int8_boxes": np.asarray(f.int8.get("boxes", [])).tolist(),
        }, sort_keys=True))
    (out_dir / "findings.jsonl").write_text("\n".join(lines) + "\n")
    files = {str(p.relative_to(out_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
             for p in sorted(out_dir.rglob("*")) if p.is_file() and p.name != "manifest.yaml"}
    import yaml

    manifest = {
        "name": name, "kind": "adversarial-findings", "source_pack": source_pack,
        "summary": result.summary(), "files": files,
    }
    (out_dir / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=True))
    return out_dir
