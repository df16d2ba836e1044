"""Evidence bundles: an in-toto Statement v1 of a run in a DSSE envelope, signed with Ed25519.

Open formats that other supply-chain tools already verify: the envelope and the keys are
``signing.py``'s (DSSE v1, Ed25519 PEM); the statement is in-toto's Statement v1, whose
subjects are every artifact of the run with its sha256 and whose predicate
(:data:`PREDICATE_TYPE`) is the evidence: config, device, versions, measurements with their
sources, gates, the comparison with golden and the verdict (README "Evidence bundles").

Nothing secret goes into a statement: no key material, no passphrase, no environment value;
config keys that look like secrets (token, password, ...) are redacted on the way in.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path, PurePosixPath
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from edgegate import __version__
from edgegate.artifacts import atomic_write, canonical_json, digest_json, sha256_file
from edgegate.errors import EdgeGateError, InputError, VerificationError

# The signing layer, re-exported: the evidence API is this one module.
from edgegate.report.signing import (  # noqa: F401
    KEY_ENV,
    PROJECT_CONFIG,
    SignatureCheck,
    check_signatures,
    generate_keypair,
    key_id,
    load_public_key,
    load_signing_key,
    no_valid_signature,
    open_envelope,
    pae,
    resolve_signing_key,
    sign_envelope,
)
from edgegate.results import ArtifactKind, PipelineResult
from edgegate.safe_load import JSON_LIMITS, json_depth_exceeds, read_bounded, too_deep
from edgegate.versions import package_versions

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://edgegate.dev/evidence/v1"
NO_KEY_NOTE = (
    f"no signing key configured (--signing-key, {KEY_ENV} or {PROJECT_CONFIG}); evidence not signed"
)

# Artifact kind (as the orchestrator records it) -> subject directory; other kinds keep their name.
SUBJECT_DIRS: dict[str, str] = {
    ArtifactKind.FP32_ONNX.value: "fp32",
    ArtifactKind.QDQ_ONNX.value: "qdq",
    ArtifactKind.ENCODINGS.value: "encodings",
    ArtifactKind.ENCODINGS_ONNX.value: "encodings",
    ArtifactKind.COMPILED.value: "compiled",
    ArtifactKind.PREDICTIONS.value: "outputs",
    ArtifactKind.PER_SAMPLE_SCORES.value: "outputs",
}
REPORT_SUBJECT = "report.json"
PACK_PREFIX = "promptpack/"
_VERSIONED_PACKAGES = ("aimet-torch", "torch", "onnxruntime", "onnxruntime-qnn")
# Config keys that would hold a secret (metric names such as time_to_first_token are not config).
_SECRET_NAME = re.compile(
    r"^([a-z0-9]+_)?(token|password|passwd|passphrase|secret|secret_access_key|api_?key|private_?key|credentials?)$",
    re.IGNORECASE,
)


class EvidenceMode(str, Enum):
    ON_PASS = "on-pass"
    ALWAYS = "always"
    NEVER = "never"


def evidence_mode(value: EvidenceMode | str) -> EvidenceMode:
    try:
        return EvidenceMode(value)
    except ValueError:
        choices = ", ".join(m.value for m in EvidenceMode)
        raise InputError(f"--evidence: '{value}' is not one of {choices}") from None


def utc_timestamp() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def sign_statement(statement: Mapping[str, Any], private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """The statement (strict canonical JSON: no NaN, nothing stringified) as a DSSE envelope
    with one Ed25519 signature."""
    return sign_envelope(PAYLOAD_TYPE, canonical_json(statement, strict=True), private_key)


@dataclass
class SigningSetup:
    """What ``run_pipeline`` resolved before measuring: the mode and the key, or why not."""

    mode: EvidenceMode
    key: Ed25519PrivateKey | None = None
    key_id: str | None = None
    problem: str | None = None


def prepare_signing(
    mode: EvidenceMode | str, signing_key: Path | None = None, *, cwd: Path | None = None
) -> SigningSetup:
    """The mode (an unknown one is an InputError) and the key (signing.resolve_signing_key).
    A missing or unreadable key is not an error: it is returned as ``problem``, for a note."""
    m = evidence_mode(mode)
    if m is EvidenceMode.NEVER:
        return SigningSetup(m)
    try:
        key = resolve_signing_key(signing_key, cwd=cwd)
    except EdgeGateError as exc:
        return SigningSetup(m, problem=f"{exc.message}; evidence not signed")
    if key is None:
        return SigningSetup(m, problem=NO_KEY_NOTE)
    return SigningSetup(m, key, key_id(key.public_key()))


# ----------------------------------------------------------------------------- statement


@dataclass(frozen=True)
class SubjectFile:
    name: str  # the subject name and the file's path under the artifacts directory
    source: Path
    recorded_sha256: str | None = None


def subject_files(result: PipelineResult) -> list[SubjectFile]:
    """The candidate's artifacts and the JSON report, under stable relative names."""
    out: list[SubjectFile] = []
    seen: set[str] = set()
    for a in result.candidate.artifacts:
        src = Path(a["path"])
        name = f"{SUBJECT_DIRS.get(a['kind'], a['kind'])}/{src.name}"
        if name in seen:
            raise InputError(f"evidence: two artifacts map to the subject name '{name}'")
        seen.add(name)
        out.append(SubjectFile(name, src, a.get("sha256")))
    if result.report_path is not None:
        out.append(SubjectFile(REPORT_SUBJECT, Path(result.report_path)))
    return out


def stage_artifacts(files: Sequence[SubjectFile], dest: Path) -> list[dict[str, Any]]:
    """Copy every subject file to ``dest/<name>`` and return the subjects, hashed from the
    copies (which must still match the digests recorded when they were measured)."""
    subjects = []
    for f in files:
        target = dest / f.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(f.source, target)
        digest = sha256_file(target)
        if f.recorded_sha256 is not None and digest != f.recorded_sha256:
            raise InputError(f"evidence: {f.source} changed after it was measured (sha256 {digest[:12]}..., "
                             f"recorded {f.recorded_sha256[:12]}...)")
        subjects.append({"name": f.name, "digest": {"sha256": digest}})
    return subjects


def pack_subject(pack: Mapping[str, Any]) -> dict[str, Any]:
    digest = str(pack["digest"]).removeprefix("sha256:")
    return {"name": f"{PACK_PREFIX}{pack['name']}@{pack['version']}", "digest": {"sha256": digest}}


def qnn_sdk_versions(paths: Sequence[Path]) -> list[str]:
    """``ep_sdk_version`` of the EPContext nodes in compiled EP-context ONNX files."""
    import onnx

    found: list[str] = []
    for p in paths:
        if p.suffix != ".onnx" or not p.is_file():
            continue
        for node in onnx.load(str(p), load_external_data=False).graph.node:
            for a in node.attribute if node.op_type == "EPContext" else ():
                if a.name == "ep_sdk_version" and a.s and a.s.decode() not in found:
                    found.append(a.s.decode())
    return found


def tool_versions(result: PipelineResult) -> dict[str, str]:
    packages = [*_VERSIONED_PACKAGES, *(["qai-hub"] if result.device.get("kind") == "aihub" else [])]
    out = {"edgegate": __version__, **package_versions(packages)}
    qnn = qnn_sdk_versions([c.artifact for c in result.candidate.compiled.values()])
    if qnn:
        out["qnn"] = ", ".join(qnn)
    return out


def _clean(obj: Any, path: str, redacted: list[str] | None) -> Any:
    """Strict JSON (non-finite floats -> null); with ``redacted``, secret-looking mapping
    keys get "<redacted>" and their paths are listed there."""
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            sub = f"{path}.{k}" if path else str(k)
            if redacted is not None and _SECRET_NAME.search(str(k)) and v not in (None, "", [], {}):
                redacted.append(sub)
                out[str(k)] = "<redacted>"
            else:
                out[str(k)] = _clean(v, sub, redacted)
        return out
    if isinstance(obj, (list, tuple)):
        return [_clean(v, f"{path}[{i}]", redacted) for i, v in enumerate(obj)]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Enum):
        return obj.value
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return str(obj)


def _measurements(v: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "run_id": v["run_id"], "variant": v["variant"], "from_golden": v["from_golden"],
        "target": v["target"].get("name"), "timing_source": v["target"].get("timing_source"),
        "metrics": v["metrics"], "latency": v["latency"], "memory_method": v.get("memory_method"),
    }


def build_statement(
    result: PipelineResult,
    report: Mapping[str, Any],
    subjects: Sequence[Mapping[str, Any]],
    versions: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The in-toto Statement v1 of one run: its artifacts as subjects, the evidence as predicate."""
    dev = result.device
    predicate = {
        "pipeline": {"name": result.pipeline, "config": result.config, "config_digest": result.config_digest},
        "device": {k: dev.get(k) for k in ("kind", "name", "chipset", "arch", "htp_arch", "soc_model",
                                           "runtime", "timing_source")},
        "versions": dict(versions if versions is not None else tool_versions(result)),
        # what ran each variant's graphs (QAIRT / QNN SDK, the device that ran): edgegate.toolchain
        "toolchain": {"baseline": result.baseline.toolchain, "candidate": result.candidate.toolchain},
        "promptpack": dict(result.pack),
        "measurements": {"baseline": _measurements(report["baseline"]),
                         "candidate": _measurements(report["candidate"])},
        "gates": report["gates"],
        "comparison": {"golden_run_id": result.golden_run_id, "baseline_run_id": result.baseline.run_id,
                       "baseline_from_golden": result.baseline.from_golden, "deltas": report["comparison"]},
        "verdict": {"passed": result.passed, **{k: v for k, v in report["verdict"].items() if k != "passed"}},
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "notes": list(result.notes),
    }
    redacted: list[str] = []
    clean = _clean(predicate, "", None)
    clean["pipeline"]["config"] = _clean(result.config, "pipeline.config", redacted)
    if redacted:
        clean["redacted"] = redacted
    return {
        "_type": STATEMENT_TYPE,
        "subject": [*subjects, pack_subject(result.pack)],
        "predicateType": PREDICATE_TYPE,
        "predicate": clean,
    }


# ----------------------------------------------------------------------------- a run's bundle


@dataclass
class EvidenceOutcome:
    path: Path | None  # the bundle, or None
    message: str  # for the terminal: the bundle, or why none
    note: str | None = None  # for result.notes: only when a bundle was wanted and is missing
    sha256: str | None = None
    key_id: str | None = None
    artifacts_dir: Path | None = None


def _free_stem(evidence_dir: Path, stem: str) -> str:
    """Never overwrite evidence: a run id seen before (another database) gets a suffix."""
    n, candidate = 1, stem
    while (evidence_dir / f"{candidate}.intoto.json").exists() or (evidence_dir / candidate).exists():
        n += 1
        candidate = f"{stem}-{n}"
    return candidate


def write_evidence(
    result: PipelineResult, report: Mapping[str, Any], signing: SigningSetup, evidence_dir: Path | None = None
) -> EvidenceOutcome:
    """Sign the run when the mode says so. Never raises an Exception: the measurements are
    done by now, so any problem is returned as a note and the run stays unsigned."""
    if signing.mode is EvidenceMode.NEVER:
        return EvidenceOutcome(None, "none (--evidence never)")
    if signing.mode is EvidenceMode.ON_PASS and not result.passed:
        return EvidenceOutcome(None, "none (gates failed; --evidence always signs failing runs too)")
    if signing.key is None:
        problem = signing.problem or NO_KEY_NOTE
        return EvidenceOutcome(None, f"none ({problem})", note=problem)
    staging: Path | None = None
    try:
        evidence_dir = Path(evidence_dir or "evidence")
        evidence_dir.mkdir(parents=True, exist_ok=True)
        stem = _free_stem(evidence_dir, f"{result.pipeline}-{result.candidate.run_id}")
        staging = Path(tempfile.mkdtemp(prefix=f".{stem}-", dir=evidence_dir))
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the artifacts from their verifiers
        subjects = stage_artifacts(subject_files(result), staging)
        envelope = sign_statement(build_statement(result, report, subjects), signing.key)
        data = (json.dumps(envelope, indent=2) + "\n").encode()
        artifacts_dir, bundle = evidence_dir / stem, evidence_dir / f"{stem}.intoto.json"
        os.replace(staging, artifacts_dir)
        staging = None
        atomic_write(bundle, data)
    except Exception as exc:  # noqa: BLE001  (a problem here must not lose the run's results)
        text = exc.message if isinstance(exc, EdgeGateError) else f"{type(exc).__name__}: {exc}"
        note = f"evidence not signed: {text}"
        return EvidenceOutcome(None, f"none ({note})", note=note)
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
    return EvidenceOutcome(
        bundle, f"{bundle} (key {signing.key_id[:16]}; artifacts in {artifacts_dir}/)",
        sha256=hashlib.sha256(data).hexdigest(), key_id=signing.key_id, artifacts_dir=artifacts_dir,
    )


# ----------------------------------------------------------------------------- verify


class SubjectStatus(str, Enum):
    OK = "ok"
    CHANGED = "changed"
    MISSING = "missing"
    NOT_CHECKED = "not checked"


@dataclass
class VerifyResult:
    ok: bool
    reason: str
    key_id: str | None = None
    statement: dict[str, Any] | None = None
    subjects: list[tuple[str, SubjectStatus]] = field(default_factory=list)
    # every signature of the envelope and its result: one valid one is enough (DSSE's
    # threshold 1), and the others are reported, never hidden behind "valid"
    signatures: list[SignatureCheck] = field(default_factory=list)

    def signature_lines(self) -> list[str]:
        """One line per signature for ``edgegate verify``: key id, valid or invalid (why)."""
        return [f"  {c.line()}" for c in self.signatures]

    @property
    def passed(self) -> bool | None:
        """The run's verdict inside a valid statement."""
        if self.statement is None:
            return None
        return bool(self.statement["predicate"].get("verdict", {}).get("passed"))


def _statement_problem(st: Any) -> str | None:
    if not isinstance(st, dict):
        return "the payload is not a JSON object"
    if st.get("_type") != STATEMENT_TYPE:
        return f"_type is {st.get('_type')!r}, not {STATEMENT_TYPE}"
    if st.get("predicateType") != PREDICATE_TYPE:
        return f"predicateType is {st.get('predicateType')!r}, not {PREDICATE_TYPE}"
    if not isinstance(st.get("predicate"), dict):
        return "predicate is not an object"
    subjects = st.get("subject")
    if not isinstance(subjects, list) or not subjects:
        return "subject is not a non-empty list"
    names = set()
    for i, s in enumerate(subjects):
        digest = s.get("digest") if isinstance(s, dict) else None
        if not isinstance(s, dict) or not isinstance(s.get("name"), str) or not isinstance(digest, dict):
            return f"subject[{i}] needs a name and a digest"
        sha = digest.get("sha256")
        if not isinstance(sha, str) or not re.fullmatch(r"[0-9a-f]{64}", sha):
            return f"subject[{i}] ({s['name']}) has no sha256 digest"
        if s["name"] in names:
            return f"subject name {s['name']!r} appears twice"
        names.add(s["name"])
    pred = st["predicate"]
    for key in ("pipeline", "device", "versions", "measurements", "gates", "verdict", "started_at", "finished_at"):
        if key not in pred:
            return f"predicate has no '{key}'"
    # what a reader of the verdict (``edgegate verify``, ``VerifyResult.passed``) reads
    wrong = [f"{k} is not an object" for k in ("pipeline", "device", "measurements", "verdict")
             if not isinstance(pred[k], dict)]
    wrong += [f"{k} is not a string" for k in ("started_at", "finished_at") if not isinstance(pred[k], str)]
    if not wrong and not isinstance(pred["verdict"].get("passed"), bool):
        wrong.append("verdict.passed is not true or false")
    if not wrong and not isinstance(pred["measurements"].get("candidate", {}), dict):
        wrong.append("measurements.candidate is not an object")
    return f"predicate.{wrong[0]}" if wrong else None


def _config_problem(pred: Mapping[str, Any]) -> str | None:
    """The config digest must be the sha256 of the canonical JSON of the config it names
    (as spec.config_digest computes it), unless a field had to be redacted."""
    p = pred["pipeline"]
    if pred.get("redacted") or not isinstance(p, dict) or "config" not in p:
        return None
    if "sha256:" + digest_json(p["config"]) != p.get("config_digest"):
        return "predicate.pipeline.config_digest does not match predicate.pipeline.config"
    return None


class StatementShapeError(InputError):
    """A validly signed payload that is not an EdgeGate evidence statement, or not shaped
    like one: nothing in it can be read as a verdict. Bad input (exit 2), one line; the
    signature is fine, so it is not "invalid" (1), and never a traceback."""


def verify_envelope(envelope: Any, public_key: Ed25519PublicKey) -> VerifyResult:
    """Every signature over the PAE (one valid is enough, each one's result is kept), then
    the statement's shape (``StatementShapeError``) and its config digest. No files involved."""
    kid = key_id(public_key)
    try:
        payload, checks = check_signatures(envelope, PAYLOAD_TYPE, public_key)
    except VerificationError as exc:
        return VerifyResult(False, exc.message)
    if not any(c.valid for c in checks):
        return VerifyResult(False, no_valid_signature(public_key, checks).message, signatures=checks)
    try:
        statement = json.loads(payload)
    except RecursionError:
        raise StatementShapeError("the signed payload is nested too deep") from None
    except ValueError:
        raise StatementShapeError("the signed payload is not JSON") from None
    if json_depth_exceeds(statement, JSON_LIMITS.max_depth):
        raise StatementShapeError(f"the signed payload is nested deeper than {JSON_LIMITS.max_depth} levels")
    problem = _statement_problem(statement)
    if problem:
        raise StatementShapeError(f"the signed statement is not an EdgeGate evidence statement: {problem}")
    problem = _config_problem(statement["predicate"])
    if problem:
        return VerifyResult(False, f"not an EdgeGate evidence statement: {problem}", kid, signatures=checks)
    valid = sum(c.valid for c in checks)
    reason = "signature and statement valid" + (f" ({valid} of {len(checks)} signatures verify)" if valid < len(checks) else "")
    return VerifyResult(True, reason, kid, statement, signatures=checks)


def _subject_path(root: Path, name: str) -> Path | None:
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts or not rel.parts:
        return None
    return root.joinpath(*rel.parts)


def check_subjects(
    result: VerifyResult, artifacts_dir: Path | None, promptpack: Path | None = None
) -> VerifyResult:
    """Recompute every subject's sha256 from ``artifacts_dir/<name>``; the PromptPack subject
    from the pack at ``promptpack`` (its manifest digest, every file's hash checked)."""
    if not result.ok or result.statement is None:
        return result
    problems: list[str] = []
    for s in result.statement["subject"]:
        name, want = s["name"], s["digest"]["sha256"]
        if name.startswith(PACK_PREFIX):
            status = _check_pack(name, want, promptpack, problems)
        elif artifacts_dir is None:
            status = SubjectStatus.NOT_CHECKED
        else:
            path = _subject_path(Path(artifacts_dir), name)
            if path is None:
                problems.append(f"subject name {name!r} is not a relative path")
                status = SubjectStatus.CHANGED
            elif not path.is_file():
                problems.append(f"{name} is missing from {artifacts_dir}")
                status = SubjectStatus.MISSING
            elif sha256_file(path) != want:
                problems.append(f"{name} does not match its sha256 ({want[:12]}...)")
                status = SubjectStatus.CHANGED
            else:
                status = SubjectStatus.OK
        result.subjects.append((name, status))
    if problems:
        result.ok = False
        result.reason = problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else "")
    return result


def _check_pack(name: str, want: str, promptpack: Path | None, problems: list[str]) -> SubjectStatus:
    if promptpack is None:
        return SubjectStatus.NOT_CHECKED
    from edgegate.packs.promptpack import load_promptpack

    try:
        pack = load_promptpack(promptpack, verify=True)
    except EdgeGateError as exc:
        problems.append(f"{name}: {exc.message}")
        return SubjectStatus.CHANGED
    got = pack_subject({"name": pack.name, "version": pack.version, "digest": pack.digest})
    if got["name"] != name:
        problems.append(f"{name}: the PromptPack at {promptpack} is {got['name']}")
        return SubjectStatus.CHANGED
    if got["digest"]["sha256"] != want:
        problems.append(f"{name}: the PromptPack at {promptpack} has another digest ({pack.digest[:19]}...)")
        return SubjectStatus.CHANGED
    return SubjectStatus.OK


def verify_bundle(
    path: Path,
    public_key_path: Path,
    artifacts_dir: Path | None = None,
    promptpack: Path | None = None,
) -> VerifyResult:
    """Verify a bundle file. Unreadable files raise InputError; a bundle that does not
    verify is a VerifyResult with ok False and the reason."""
    public_key = load_public_key(public_key_path)
    path = Path(path)
    try:
        raw = read_bounded(path, str(path), JSON_LIMITS)  # the size is checked before reading
    except OSError as exc:
        raise InputError(f"{path}: cannot read the bundle: {exc.strerror or exc}") from None
    if artifacts_dir is not None and not Path(artifacts_dir).is_dir():
        raise InputError(f"--artifacts {artifacts_dir}: not a directory")
    try:
        envelope = json.loads(raw)
    except RecursionError:  # a hostile bundle: one line, never a traceback
        raise too_deep(str(path), JSON_LIMITS, None) from None
    except ValueError:
        return VerifyResult(False, f"{path} is not JSON")
    if json_depth_exceeds(envelope, JSON_LIMITS.max_depth):
        raise too_deep(str(path), JSON_LIMITS, None)
    try:
        res = verify_envelope(envelope, public_key)
    except StatementShapeError as exc:
        raise StatementShapeError(f"{path}: {exc.message}") from None
    return check_subjects(res, artifacts_dir, promptpack)
