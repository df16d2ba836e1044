"""`edgegate keys generate` and `edgegate verify`: files, modes, messages and exit codes."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from edgegate.cli import cli
from edgegate.report.evidence import generate_keypair, key_id, load_public_key, load_signing_key, sign_statement
from test_evidence import artifact_dir, make_statement


@pytest.fixture(autouse=True)
def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("EDGEGATE_HOME", str(tmp_path / "home"))
    for var in ("EDGEGATE_DB", "EDGEGATE_SIGNING_KEY", "EDGEGATE_SIGNING_KEY_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)


def _invoke(*args: str) -> Result:
    try:
        runner = CliRunner(mix_stderr=False)  # type: ignore[call-arg]  # click < 8.2
    except TypeError:
        runner = CliRunner()
    return runner.invoke(cli, list(args))


# ----------------------------------------------------------------------------- keys generate


def test_keys_generate_writes_a_pem_pair_with_modes(tmp_path: Path) -> None:
    result = _invoke("keys", "generate", "--out", "k")
    assert result.exit_code == 0, result.output
    priv, pub = tmp_path / "k" / "edgegate.key", tmp_path / "k" / "edgegate.pub"
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    kid = key_id(load_public_key(pub))
    assert result.stdout == (
        "private key: k/edgegate.key (mode 0600); keep it secret\n"
        "public key:  k/edgegate.pub (give it to whoever verifies)\n"
        f"key id:      {kid}\n"
    )
    assert key_id(load_signing_key(priv).public_key()) == kid


def test_keys_generate_defaults_to_the_current_directory_and_never_overwrites(tmp_path: Path) -> None:
    assert _invoke("keys", "generate").exit_code == 0
    assert (tmp_path / "edgegate.key").is_file() and (tmp_path / "edgegate.pub").is_file()
    before = (tmp_path / "edgegate.key").read_bytes()
    result = _invoke("keys", "generate")
    assert result.exit_code == 2
    assert result.stderr == (
        "error: keys generate: edgegate.key already exists; move it away or choose another --out\n"
    )
    assert (tmp_path / "edgegate.key").read_bytes() == before


def test_keys_generate_encrypted_with_passphrase_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EG_PASS", "s3cret-passphrase")
    result = _invoke("keys", "generate", "--out", "k", "--passphrase-env", "EG_PASS")
    assert result.exit_code == 0, result.output
    assert "encrypted with $EG_PASS" in result.stdout
    assert "s3cret-passphrase" not in result.output
    priv = tmp_path / "k" / "edgegate.key"
    assert priv.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    assert stat.S_IMODE(priv.stat().st_mode) == 0o600
    key = load_signing_key(priv, "EG_PASS")
    assert key_id(key.public_key()) == key_id(load_public_key(tmp_path / "k" / "edgegate.pub"))


def test_keys_generate_with_an_unset_passphrase_env(tmp_path: Path) -> None:
    result = _invoke("keys", "generate", "--passphrase-env", "EG_NOT_SET")
    assert result.exit_code == 2
    assert result.stderr == "error: --passphrase-env: environment variable EG_NOT_SET is not set or empty\n"
    assert not (tmp_path / "edgegate.key").exists()


# ----------------------------------------------------------------------------- verify


@pytest.fixture
def signed(tmp_path: Path):
    """A bundle over three artifacts, its key pair and a second, unrelated pair."""
    pair, other = generate_keypair(tmp_path / "a"), generate_keypair(tmp_path / "b")
    root, subjects = artifact_dir(tmp_path / "art")
    bundle = tmp_path / "demo-7.intoto.json"
    bundle.write_text(json.dumps(sign_statement(make_statement(subjects), load_signing_key(pair.private_path))))
    return bundle, pair, other, root


def test_verify_valid(signed) -> None:
    bundle, pair, _, root = signed
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path), "--artifacts", str(root))
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert result.stdout.splitlines() == [
        f"valid: {bundle}: signed by key {pair.key_id}",
        "  demo run 7 on cpu: verdict PASS (2026-01-01T00:00:00Z .. 2026-01-01T00:01:00Z)",
        "  subjects: 3 of 3 digests recomputed",
    ]
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path))
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "  subjects: 0 of 3 digests recomputed; 3 not checked (give --artifacts DIR)"


def test_verify_prints_each_signature_when_there_are_several(signed) -> None:
    """One valid signature is enough (DSSE threshold 1), and the others are each reported."""
    bundle, pair, other, root = signed
    env = json.loads(bundle.read_text())
    sig = bytearray(base64.b64decode(env["signatures"][0]["sig"]))
    sig[0] ^= 0xFF  # a well-formed signature that does not verify
    bogus = {"keyid": other.key_id, "sig": base64.b64encode(bytes(sig)).decode()}
    env["signatures"].append(bogus)
    bundle.write_text(json.dumps(env))
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path), "--artifacts", str(root))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == f"valid: {bundle}: signed by key {pair.key_id}"
    assert lines[2:4] == [
        f"  signature 1: key {pair.key_id}: valid",
        f"  signature 2: key {other.key_id}: invalid (does not verify with key {pair.key_id[:16]})",
    ]


def test_verify_wrong_key_exits_1_with_the_reason(signed) -> None:
    bundle, pair, other, _ = signed
    result = _invoke("verify", str(bundle), "--key", str(other.public_path))
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        f"invalid: {bundle}: no signature verifies with key {other.key_id[:16]} (signed by: {pair.key_id[:16]})\n"
    )


def test_verify_changed_or_missing_artifact_exits_1(signed) -> None:
    bundle, pair, _, root = signed
    (root / "fp32" / "g.onnx").write_bytes(b"fp32 bytez")
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path), "--artifacts", str(root))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"invalid: {bundle}: fp32/g.onnx does not match its sha256 (")
    (root / "fp32" / "g.onnx").unlink()
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path), "--artifacts", str(root))
    assert result.exit_code == 1
    assert result.stderr == f"invalid: {bundle}: fp32/g.onnx is missing from {root}\n"


def test_verify_tampered_or_garbled_bundle_exits_1(signed) -> None:
    bundle, pair, _, _ = signed
    env = json.loads(bundle.read_text())
    sig = env["signatures"][0]["sig"]
    env["signatures"][0]["sig"] = ("B" if sig[0] == "A" else "A") + sig[1:]
    bundle.write_text(json.dumps(env))
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path))
    assert result.exit_code == 1 and result.stderr.startswith(f"invalid: {bundle}: no signature verifies with key ")
    bundle.write_text("{not json")
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path))
    assert result.exit_code == 1 and result.stderr == f"invalid: {bundle}: {bundle} is not JSON\n"


def test_verify_require_pass_on_a_failing_verdict(tmp_path: Path) -> None:
    pair = generate_keypair(tmp_path / "k")
    bundle = tmp_path / "fail.intoto.json"
    bundle.write_text(json.dumps(sign_statement(make_statement([], passed=False), load_signing_key(pair.private_path))))
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path))
    assert result.exit_code == 0 and "verdict FAIL" in result.stdout
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path), "--require-pass")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == f"invalid: {bundle}: the signed verdict is FAIL (--require-pass)\n"


def test_verify_bad_input_exits_2(signed, tmp_path: Path) -> None:
    bundle, pair, _, _ = signed
    result = _invoke("verify", str(tmp_path / "none.json"), "--key", str(pair.public_path))
    assert result.exit_code == 2
    assert result.stderr == f"error: {tmp_path / 'none.json'}: cannot read the bundle: No such file or directory\n"
    result = _invoke("verify", str(bundle), "--key", str(pair.private_path))
    assert result.exit_code == 2
    assert result.stderr == f"error: --key {pair.private_path} is a private key; verify with the public key (edgegate.pub)\n"
    result = _invoke("verify", str(bundle), "--key", str(pair.public_path), "--artifacts", str(tmp_path / "nodir"))
    assert result.exit_code == 2
    assert result.stderr == f"error: --artifacts {tmp_path / 'nodir'}: not a directory\n"
    result = _invoke("verify", str(bundle))
    assert result.exit_code == 2 and "Missing option '--key'" in result.stderr
