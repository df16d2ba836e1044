"""Evidence bundles: DSSE PAE, Ed25519 keys, sign / verify, tampering, artifacts, and a
bundle signed by a real run (CPU device) that securesystemslib's DSSE code verifies."""

from __future__ import annotations

import base64
import copy
import dataclasses
import hashlib
import json
import re
import shutil
import stat
from pathlib import Path
from typing import Any

import pytest

from edgegate.errors import EdgeGateError, InputError
from edgegate.report.evidence import (
    NO_KEY_NOTE,
    PAYLOAD_TYPE,
    PREDICATE_TYPE,
    STATEMENT_TYPE,
    EvidenceMode,
    SigningSetup,
    StatementShapeError,
    SubjectStatus,
    check_subjects,
    generate_keypair,
    key_id,
    load_public_key,
    load_signing_key,
    pack_subject,
    pae,
    prepare_signing,
    qnn_sdk_versions,
    sign_statement,
    verify_bundle,
    verify_envelope,
    write_evidence,
)

ROOT = Path(__file__).resolve().parents[1]
MINI = ROOT / "tests" / "fixtures" / "pipelines" / "person_detect_mini.yaml"
MINI_PACK = ROOT / "tests" / "fixtures" / "packs" / "person_detect_mini"


# ----------------------------------------------------------------------------- helpers


def make_statement(subjects: list[dict[str, Any]], *, passed: bool = True) -> dict[str, Any]:
    """A small, valid EdgeGate statement (not from a run)."""
    config = {"pipeline": {"name": "demo"}, "device": {"name": "cpu", "kind": "cpu"}}
    text = json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {
        "_type": STATEMENT_TYPE,
        "subject": subjects or [{"name": "report.json", "digest": {"sha256": "0" * 64}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "pipeline": {"name": "demo", "config": config,
                         "config_digest": "sha256:" + hashlib.sha256(text.encode()).hexdigest()},
            "device": {"kind": "cpu", "name": "cpu"},
            "versions": {"edgegate": "0.1.0"},
            "measurements": {"candidate": {"run_id": 7, "metrics": {"map50": {"value": 0.9, "source": "computed"}}}},
            "gates": [{"expr": "map50 >= 0.5", "status": "pass" if passed else "fail", "value": 0.9}],
            "verdict": {"passed": passed},
            "started_at": "2026-01-01T00:00:00Z",
            "finished_at": "2026-01-01T00:01:00Z",
        },
    }


def artifact_dir(root: Path) -> tuple[Path, list[dict[str, Any]]]:
    """Three files under stable subject names, and their subjects."""
    files = {"fp32/g.onnx": b"fp32 bytes", "compiled/g_ctx.bin": bytes(range(256)), "report.json": b"{}\n"}
    subjects = []
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
        subjects.append({"name": name, "digest": {"sha256": hashlib.sha256(data).hexdigest()}})
    return root, subjects


def write_bundle(path: Path, envelope: dict[str, Any]) -> Path:
    path.write_text(json.dumps(envelope, indent=2))
    return path


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("keys")
    pair = generate_keypair(d / "a")
    other = generate_keypair(d / "b")
    return load_signing_key(pair.private_path), pair, other


# ----------------------------------------------------------------------------- DSSE


def test_pae_matches_the_dsse_spec_test_vector() -> None:
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )
    assert pae("", b"") == b"DSSEv1 0  0 "


def test_round_trip(keys, tmp_path: Path) -> None:
    key, pair, _ = keys
    env = sign_statement(make_statement([]), key)
    assert env["payloadType"] == PAYLOAD_TYPE
    assert env["signatures"][0]["keyid"] == pair.key_id == key_id(key.public_key())
    res = verify_envelope(env, key.public_key())
    assert res.ok, res.reason
    assert res.statement == make_statement([]) and res.passed is True
    bundle = write_bundle(tmp_path / "b.intoto.json", env)
    assert verify_bundle(bundle, pair.public_path).ok


def test_key_id_is_sha256_of_the_public_key_der(keys) -> None:
    _, pair, _ = keys
    pem = pair.public_path.read_text().splitlines()
    der = base64.b64decode("".join(line for line in pem if not line.startswith("-----")))
    assert pair.key_id == hashlib.sha256(der).hexdigest()


def test_wrong_key_rejected(keys) -> None:
    key, _, other = keys
    env = sign_statement(make_statement([]), key)
    res = verify_envelope(env, load_public_key(other.public_path))
    assert not res.ok
    assert res.reason == f"no signature verifies with key {other.key_id[:16]} (signed by: {key_id(key.public_key())[:16]})"


def _with(env: dict[str, Any], *, payload: bytes | None = None, sig: bytes | None = None) -> dict[str, Any]:
    out = copy.deepcopy(env)
    if payload is not None:
        out["payload"] = base64.b64encode(payload).decode()
    if sig is not None:
        out["signatures"][0]["sig"] = base64.b64encode(sig).decode()
    return out


def test_every_single_byte_change_of_the_signature_is_detected(keys) -> None:
    key, _, _ = keys
    env = sign_statement(make_statement([]), key)
    pub = key.public_key()
    sig = base64.b64decode(env["signatures"][0]["sig"])
    assert len(sig) == 64
    for i in range(len(sig)):
        for value in range(256):  # every other value of every byte
            if value == sig[i]:
                continue
            bad = sig[:i] + bytes([value]) + sig[i + 1:]
            assert not verify_envelope(_with(env, sig=bad), pub).ok, (i, value)
    for bad in (sig[:-1], sig + b"\0", b""):
        assert not verify_envelope(_with(env, sig=bad), pub).ok


def test_every_single_byte_change_of_the_payload_is_detected(keys) -> None:
    key, _, _ = keys
    env = sign_statement(make_statement([]), key)
    pub = key.public_key()
    payload = base64.b64decode(env["payload"])
    for i in range(len(payload)):
        for flip in (0x01, 0x20, 0x80, 0xFF):  # low bit, case, high bit, every bit
            bad = payload[:i] + bytes([payload[i] ^ flip]) + payload[i + 1:]
            res = verify_envelope(_with(env, payload=bad), pub)
            assert not res.ok and res.reason.startswith("no signature verifies"), (i, flip)
    for bad in (payload[:-1], payload + b" ", b""):
        assert not verify_envelope(_with(env, payload=bad), pub).ok


def test_changed_payload_type_or_envelope_shape_is_rejected(keys) -> None:
    key, _, _ = keys
    env = sign_statement(make_statement([]), key)
    pub = key.public_key()
    assert verify_envelope({**env, "payloadType": "application/json"}, pub).reason == (
        f"payloadType is 'application/json', not {PAYLOAD_TYPE}"
    )
    assert verify_envelope({**env, "signatures": []}, pub).reason == "the envelope has no signatures"
    assert verify_envelope({**env, "payload": "not base64!"}, pub).reason == "payload is not valid base64"
    assert verify_envelope([env], pub).reason == "the bundle is not a JSON object (DSSE envelope)"
    # URL-safe base64 without padding is DSSE too
    urlsafe = copy.deepcopy(env)
    urlsafe["payload"] = base64.urlsafe_b64encode(base64.b64decode(env["payload"])).decode().rstrip("=")
    assert verify_envelope(urlsafe, pub).ok


def test_a_signed_statement_of_the_wrong_shape_is_rejected(keys) -> None:
    key, _, _ = keys
    pub = key.public_key()
    st = make_statement([])
    cases = [
        ({**st, "_type": "https://in-toto.io/Statement/v0.1"}, "_type is"),
        ({**st, "predicateType": "https://slsa.dev/provenance/v1"}, "predicateType is"),
        ({**st, "subject": []}, "subject is not a non-empty list"),
        ({**st, "subject": [{"name": "x", "digest": {"sha1": "ab"}}]}, "subject[0] (x) has no sha256 digest"),
        ({**st, "predicate": {k: v for k, v in st["predicate"].items() if k != "gates"}}, "predicate has no 'gates'"),
        ({**st, "predicate": {**st["predicate"], "verdict": "PASS"}}, "predicate.verdict is not an object"),
        ({**st, "predicate": {**st["predicate"], "verdict": {"passed": "yes"}}},
         "predicate.verdict.passed is not true or false"),
        ({**st, "predicate": {**st["predicate"], "measurements": []}}, "predicate.measurements is not an object"),
        ({**st, "predicate": {**st["predicate"], "pipeline": "demo"}}, "predicate.pipeline is not an object"),
        ({**st, "predicate": {**st["predicate"], "started_at": 0}}, "predicate.started_at is not a string"),
    ]
    # Validly signed, but not an EdgeGate statement: bad input (exit 2, one line), not "invalid".
    for statement, reason in cases:
        with pytest.raises(StatementShapeError, match="the signed statement is not an EdgeGate evidence statement: "
                                                      + re.escape(reason)):
            verify_envelope(sign_statement(statement, key), pub)
    assert StatementShapeError("x").exit_code == 2 and issubclass(StatementShapeError, InputError)
    # A config that does not hash to its digest is a statement that does not verify.
    bad = {**st, "predicate": {**st["predicate"], "pipeline": {**st["predicate"]["pipeline"], "config": {}}}}
    res = verify_envelope(sign_statement(bad, key), pub)
    assert not res.ok and "config_digest does not match" in res.reason


# ----------------------------------------------------------------------------- artifacts


def test_artifacts_recomputed_changed_and_missing_detected(keys, tmp_path: Path) -> None:
    key, pair, _ = keys
    root, subjects = artifact_dir(tmp_path / "art")
    bundle = write_bundle(tmp_path / "b.json", sign_statement(make_statement(subjects), key))

    res = verify_bundle(bundle, pair.public_path, root)
    assert res.ok and [s for _, s in res.subjects] == [SubjectStatus.OK] * 3

    res = verify_bundle(bundle, pair.public_path)  # no --artifacts: signature only
    assert res.ok and {s for _, s in res.subjects} == {SubjectStatus.NOT_CHECKED}

    blob = root / "compiled" / "g_ctx.bin"
    data = blob.read_bytes()
    blob.write_bytes(data[:100] + bytes([data[100] ^ 1]) + data[101:])
    res = verify_bundle(bundle, pair.public_path, root)
    assert not res.ok
    assert res.reason == f"compiled/g_ctx.bin does not match its sha256 ({subjects[1]['digest']['sha256'][:12]}...)"
    assert dict(res.subjects)["compiled/g_ctx.bin"] is SubjectStatus.CHANGED

    blob.write_bytes(data)
    (root / "report.json").unlink()
    res = verify_bundle(bundle, pair.public_path, root)
    assert not res.ok and res.reason == f"report.json is missing from {root}"
    assert dict(res.subjects)["report.json"] is SubjectStatus.MISSING


def test_subject_names_cannot_escape_the_artifacts_dir(keys, tmp_path: Path) -> None:
    key, _, _ = keys
    (tmp_path / "secret").write_bytes(b"x")
    st = make_statement([{"name": "../secret", "digest": {"sha256": hashlib.sha256(b"x").hexdigest()}}])
    res = check_subjects(verify_envelope(sign_statement(st, key), key.public_key()), tmp_path / "art")
    assert not res.ok and res.reason == "subject name '../secret' is not a relative path"


def test_promptpack_subject_checked_against_the_pack(keys) -> None:
    from edgegate.packs.promptpack import load_promptpack

    key, _, _ = keys
    pack = load_promptpack(MINI_PACK)
    subject = pack_subject({"name": pack.name, "version": pack.version, "digest": pack.digest})
    assert subject["name"] == f"promptpack/{pack.name}@{pack.version}"
    env = sign_statement(make_statement([subject]), key)

    res = check_subjects(verify_envelope(env, key.public_key()), None)
    assert res.ok and res.subjects == [(subject["name"], SubjectStatus.NOT_CHECKED)]
    res = check_subjects(verify_envelope(env, key.public_key()), None, MINI_PACK)
    assert res.ok and res.subjects == [(subject["name"], SubjectStatus.OK)]

    other = {**subject, "digest": {"sha256": "1" * 64}}
    res = check_subjects(verify_envelope(sign_statement(make_statement([other]), key), key.public_key()), None, MINI_PACK)
    assert not res.ok and "has another digest (sha256:" in res.reason


# ----------------------------------------------------------------------------- keys


def test_generate_keypair_modes_and_no_overwrite(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path)
    assert stat.S_IMODE(pair.private_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(pair.public_path.stat().st_mode) == 0o644
    assert pair.private_path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    with pytest.raises(InputError, match="already exists"):
        generate_keypair(tmp_path)


def test_encrypted_key_needs_its_passphrase(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pair = generate_keypair(tmp_path, "correct horse")
    assert pair.encrypted
    assert pair.private_path.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    monkeypatch.delenv("EDGEGATE_SIGNING_KEY_PASSPHRASE", raising=False)
    with pytest.raises(InputError) as exc:
        load_signing_key(pair.private_path)
    assert exc.value.message == (
        f"signing key {pair.private_path} is encrypted: put its passphrase in $EDGEGATE_SIGNING_KEY_PASSPHRASE"
    )
    monkeypatch.setenv("MY_PASS", "wrong")
    with pytest.raises(InputError, match="cannot decrypt it with the passphrase in \\$MY_PASS"):
        load_signing_key(pair.private_path, "MY_PASS")
    monkeypatch.setenv("MY_PASS", "correct horse")
    assert key_id(load_signing_key(pair.private_path, "MY_PASS").public_key()) == pair.key_id


def test_public_key_loader_refuses_private_keys_and_junk(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path)
    with pytest.raises(InputError, match="is a private key; verify with the public key"):
        load_public_key(pair.private_path)
    (tmp_path / "junk.pub").write_text("hello")
    with pytest.raises(InputError, match="is not a PEM public key"):
        load_public_key(tmp_path / "junk.pub")


def test_signing_key_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EDGEGATE_SIGNING_KEY", raising=False)
    a, b, c = (generate_keypair(tmp_path / n) for n in "abc")
    assert prepare_signing("on-pass", cwd=tmp_path).problem == NO_KEY_NOTE
    assert prepare_signing("never", a.private_path).key is None
    with pytest.raises(InputError, match="--evidence: 'sometimes' is not one of on-pass, always, never"):
        prepare_signing("sometimes")

    (tmp_path / "edgegate.toml").write_text('[evidence]\nsigning_key = "c/edgegate.key"\n')
    assert prepare_signing("always", cwd=tmp_path).key_id == c.key_id
    monkeypatch.setenv("EDGEGATE_SIGNING_KEY", str(b.private_path))
    assert prepare_signing("always", cwd=tmp_path).key_id == b.key_id
    monkeypatch.setenv("EDGEGATE_SIGNING_KEY", c.private_path.read_text())  # the PEM itself (a CI secret)
    assert prepare_signing("always", cwd=tmp_path).key_id == c.key_id
    setup = prepare_signing(EvidenceMode.ALWAYS, a.private_path, cwd=tmp_path)
    assert setup.key_id == a.key_id and setup.problem is None

    monkeypatch.delenv("EDGEGATE_SIGNING_KEY")
    setup = prepare_signing("always", tmp_path / "nope.key", cwd=tmp_path)
    assert setup.key is None and setup.problem.startswith(f"signing key {tmp_path / 'nope.key'}: cannot read it")
    (tmp_path / "edgegate.toml").write_text('[evidence]\nsigning_kye = "x"\n')
    assert "unknown key(s) signing_kye" in prepare_signing("always", cwd=tmp_path).problem


def test_qnn_sdk_version_from_the_epcontext_node(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    node = helper.make_node("EPContext", ["x"], ["y"], domain="com.microsoft", ep_sdk_version="v2.51.0.260929",
                            ep_cache_context="g_qnn.bin", embed_mode=0)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), str(tmp_path / "g_qnn_ctx.onnx"))
    (tmp_path / "g_qnn.bin").write_bytes(b"\0")
    assert qnn_sdk_versions([tmp_path / "g_qnn_ctx.onnx", tmp_path / "g_qnn.bin"]) == ["v2.51.0.260929"]


# ----------------------------------------------------------------------------- a real run


PASSPHRASE = "evidence-test-passphrase-7c1e"


@pytest.fixture(scope="module")
def signed_run(tmp_path_factory: pytest.TempPathFactory):
    """One run of the mini pipeline on the CPU device, signed with an encrypted key."""
    from edgegate.run.pipeline import RunOptions, run_pipeline

    tmp = tmp_path_factory.mktemp("signed")
    pair = generate_keypair(tmp / "keys", PASSPHRASE)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EDGEGATE_SIGNING_KEY_PASSPHRASE", PASSPHRASE)
        mp.delenv("EDGEGATE_SIGNING_KEY", raising=False)
        result = run_pipeline(MINI, RunOptions(
            device="cpu", db_url=f"sqlite:///{tmp / 'eg.db'}", home=tmp / "home", evidence="always",
            signing_key=pair.private_path, evidence_dir=tmp / "evidence",
        ))
    return tmp, pair, result


def _statement(bundle: Path) -> dict[str, Any]:
    return json.loads(base64.b64decode(json.loads(bundle.read_text())["payload"]))


@pytest.mark.slow
def test_run_writes_a_bundle_recorded_in_the_database(signed_run) -> None:
    from edgegate.db import ExperimentDB

    tmp, pair, result = signed_run
    run_id = result.candidate.run_id
    bundle = tmp / "evidence" / f"person_detect_mini-{run_id}.intoto.json"
    assert result.evidence_path == bundle and bundle.is_file()
    assert result.evidence_status.startswith(str(bundle))
    rows = ExperimentDB(f"sqlite:///{tmp / 'eg.db'}").evidence_for(run_id)
    assert rows == [{"path": str(bundle), "sha256": hashlib.sha256(bundle.read_bytes()).hexdigest(),
                     "key_id": pair.key_id, "created_at": rows[0]["created_at"]}]


@pytest.mark.slow
def test_run_bundle_verifies_with_every_artifact(signed_run) -> None:
    tmp, pair, result = signed_run
    art = tmp / "evidence" / f"person_detect_mini-{result.candidate.run_id}"
    res = verify_bundle(result.evidence_path, pair.public_path, art, MINI_PACK)
    assert res.ok, res.reason
    assert {s for _, s in res.subjects} == {SubjectStatus.OK}
    names = [n for n, _ in res.subjects]
    for g in ("pnet", "rnet", "onet"):
        assert {f"fp32/{g}.onnx", f"qdq/{g}_qdq.onnx", f"encodings/{g}.encodings", f"compiled/{g}_ort_cpu.onnx"} <= set(names)
    assert "report.json" in names and names[-1] == f"promptpack/person_detect_mini@{result.pack['version']}"
    assert (art / "report.json").read_bytes() == Path(result.report_path).read_bytes()


@pytest.mark.slow
def test_run_predicate_holds_the_evidence(signed_run) -> None:
    _, _, result = signed_run
    p = _statement(result.evidence_path)["predicate"]
    assert p["pipeline"]["name"] == "person_detect_mini"
    assert p["pipeline"]["config_digest"] == result.config_digest
    assert p["pipeline"]["config"]["pipeline"]["name"] == "person_detect_mini"
    assert {k: p["device"][k] for k in ("kind", "name", "chipset", "arch")} == {
        "kind": "cpu", "name": "cpu", "chipset": None, "arch": None}
    assert {"edgegate", "aimet-torch", "torch", "onnxruntime"} <= set(p["versions"])
    assert "qnn" not in p["versions"]  # the CPU target compiles no QNN context
    # what ran each variant: the CPU target's runtime, as the run recorded it
    assert p["toolchain"]["candidate"] == result.candidate.toolchain
    assert set(p["toolchain"]["candidate"]) == {"onnxruntime"}
    cand = p["measurements"]["candidate"]
    assert cand["run_id"] == result.candidate.run_id and cand["timing_source"] == "host-cpu"
    assert cand["metrics"]["inference_time_ms"]["source"] == "host-cpu"
    assert cand["metrics"]["map50"]["source"] == "computed"
    assert [g["expr"] for g in p["gates"]] == [g.gate.expr for g in result.gates]
    assert [g["status"] for g in p["gates"]] == [g.status.value for g in result.gates]
    assert p["verdict"]["passed"] == result.passed
    assert p["comparison"]["golden_run_id"] == result.golden_run_id
    assert {r["metric"] for r in p["comparison"]["deltas"]} >= {"map50", "inference_time_ms"}
    assert p["started_at"] <= p["finished_at"] and p["started_at"].endswith("Z")
    assert p["promptpack"]["digest"] == result.pack["digest"]


@pytest.mark.slow
def test_run_bundle_holds_no_secret(signed_run) -> None:
    tmp, pair, result = signed_run
    text = result.evidence_path.read_text()
    payload = base64.b64decode(json.loads(text)["payload"]).decode()
    pem_body = "".join(ln for ln in pair.private_path.read_text().splitlines() if not ln.startswith("-----"))
    for blob in (text, payload):
        assert PASSPHRASE not in blob
        assert pem_body not in blob and pem_body[:24] not in blob
        assert "PRIVATE KEY" not in blob


@pytest.mark.slow
def test_run_bundle_changed_artifact_detected(signed_run, tmp_path: Path) -> None:
    tmp, pair, result = signed_run
    src = tmp / "evidence" / f"person_detect_mini-{result.candidate.run_id}"
    art = shutil.copytree(src, tmp_path / "art")
    (art / "qdq" / "rnet_qdq.onnx").write_bytes(b"not the model")
    res = verify_bundle(result.evidence_path, pair.public_path, art)
    assert not res.ok and res.reason.startswith("qdq/rnet_qdq.onnx does not match its sha256")


@pytest.mark.slow
def test_run_bundle_verifies_with_securesystemslib(signed_run) -> None:
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.dsse import Envelope
    from securesystemslib.exceptions import VerificationError
    from securesystemslib.signer import SSlibKey

    _, pair, result = signed_run
    envelope = json.loads(result.evidence_path.read_text())
    pub = load_pem_public_key(pair.public_path.read_bytes())
    sslib_key = SSlibKey.from_crypto(pub, keyid=pair.key_id)
    accepted = Envelope.from_dict(copy.deepcopy(envelope)).verify([sslib_key], 1)
    assert list(accepted) == [pair.key_id]
    assert Envelope.from_dict(copy.deepcopy(envelope)).pae() == pae(
        PAYLOAD_TYPE, base64.b64decode(envelope["payload"]))
    tampered = copy.deepcopy(envelope)
    tampered["payload"] = base64.b64encode(base64.b64decode(envelope["payload"]).replace(b'"passed":', b'"Passed":')).decode()
    with pytest.raises(VerificationError):
        Envelope.from_dict(tampered).verify([sslib_key], 1)


@pytest.mark.slow
def test_no_key_or_a_late_failure_is_a_note_not_an_error(signed_run, tmp_path: Path) -> None:
    _, _, result = signed_run
    report = json.loads(Path(result.report_path).read_text())
    out = write_evidence(result, report, SigningSetup(EvidenceMode.ON_PASS if result.passed else EvidenceMode.ALWAYS,
                                                      problem=NO_KEY_NOTE), tmp_path)
    assert out.path is None and out.note == NO_KEY_NOTE and out.message == f"none ({NO_KEY_NOTE})"

    out = write_evidence(result, report, SigningSetup(EvidenceMode.NEVER), tmp_path)
    assert out.path is None and out.note is None and out.message == "none (--evidence never)"

    failing = dataclasses.replace(result, passed=False)
    out = write_evidence(failing, report, SigningSetup(EvidenceMode.ON_PASS), tmp_path)
    assert out.path is None and out.note is None and "gates failed" in out.message

    broken = dataclasses.replace(result, report_path=tmp_path / "gone.json", notes=[])
    signing = prepare_signing("always", _plain_key(tmp_path))
    out = write_evidence(broken, report, signing, tmp_path / "ev")
    assert out.path is None and out.note.startswith("evidence not signed: FileNotFoundError")
    assert not list((tmp_path / "ev").iterdir())  # the half-staged artifacts are gone


def _plain_key(tmp: Path) -> Path:
    return generate_keypair(tmp / "plain").private_path


@pytest.mark.slow
def test_secret_looking_config_keys_are_redacted(signed_run, tmp_path: Path) -> None:
    from edgegate.report.evidence import build_statement

    _, _, result = signed_run
    config = copy.deepcopy(result.config)
    config["device"]["api_token"] = "tok-123"
    config["device"]["time_to_first_token"] = 5  # a name, not a secret
    report = json.loads(Path(result.report_path).read_text())
    st = build_statement(dataclasses.replace(result, config=config), report, [], versions={"edgegate": "x"})
    assert "tok-123" not in json.dumps(st)
    assert st["predicate"]["pipeline"]["config"]["device"]["api_token"] == "<redacted>"
    assert st["predicate"]["pipeline"]["config"]["device"]["time_to_first_token"] == 5
    assert st["predicate"]["redacted"] == ["pipeline.config.device.api_token"]
    key = load_signing_key(_plain_key(tmp_path))
    res = verify_envelope(sign_statement(st, key), key.public_key())
    assert res.ok, res.reason  # the config digest is not rechecked over a redacted config


# ----------------------------------------------------------------------------- every signature (issue 15)


def test_one_valid_and_one_bogus_signature_each_reported(keys, tmp_path: Path) -> None:
    """DSSE's threshold 1 stays (one verifying signature is enough), but every signature's
    result is in the result and in the lines ``edgegate verify`` prints."""
    key, pair, other = keys
    env = sign_statement(make_statement([]), key)
    bogus = {"keyid": other.key_id, "sig": base64.b64encode(b"\x01" * 64).decode()}
    garbled = {"keyid": "", "sig": "not base64!"}
    env["signatures"] = [bogus, env["signatures"][0], garbled]
    res = verify_bundle(write_bundle(tmp_path / "b.json", env), pair.public_path)
    assert res.ok and res.reason == "signature and statement valid (1 of 3 signatures verify)"
    assert [(c.keyid, c.valid) for c in res.signatures] == [(other.key_id, False), (pair.key_id, True), (None, False)]
    assert res.signature_lines() == [
        f"  signature 1: key {other.key_id}: invalid (does not verify with key {pair.key_id[:16]})",
        f"  signature 2: key {pair.key_id}: valid",
        "  signature 3: key (none given): invalid (signatures[2].sig is not valid base64)",
    ]
    # no signature verifies: invalid, and each one is still reported
    env["signatures"] = [bogus, garbled]
    res = verify_envelope(env, key.public_key())
    assert not res.ok and res.reason == f"no signature verifies with key {pair.key_id[:16]} (signed by: {other.key_id[:16]})"
    assert [c.valid for c in res.signatures] == [False, False]


def test_a_validly_signed_statement_of_an_unexpected_shape_names_the_bundle(keys, tmp_path: Path) -> None:
    key, pair, _ = keys
    st = make_statement([])
    st["predicate"]["verdict"] = ["passed"]
    bundle = write_bundle(tmp_path / "odd.json", sign_statement(st, key))
    with pytest.raises(StatementShapeError) as info:
        verify_bundle(bundle, pair.public_path)
    assert info.value.message == (f"{bundle}: the signed statement is not an EdgeGate evidence statement: "
                                  "predicate.verdict is not an object")
    from click.testing import CliRunner

    from edgegate.cli import cli

    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()
    result = runner.invoke(cli, ["verify", str(bundle), "--key", str(pair.public_path)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"error: {info.value.message}\n"


def test_a_deeply_nested_bundle_is_one_line_not_a_recursion_error(keys, tmp_path: Path) -> None:
    _, pair, _ = keys
    bundle = tmp_path / "deep.intoto.json"
    bundle.write_text("[" * 1_000_000)
    with pytest.raises(EdgeGateError) as info:
        verify_bundle(bundle, pair.public_path)
    assert info.value.exit_code == 2 and "nested deeper than" in info.value.message
    assert "\n" not in info.value.message
