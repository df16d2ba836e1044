"""DSSE envelopes and Ed25519 keys: the signing layer under evidence bundles.

Generic (nothing here knows in-toto or EdgeGate's predicate):

- DSSE v1 (https://github.com/secure-systems-lab/dsse): ``{"payloadType", "payload" (base64),
  "signatures": [{"keyid", "sig" (base64)}]}``; a signature covers the PAE
  ``"DSSEv1" SP len(type) SP type SP len(payload) SP payload``.
- Keys are PEM files: ``edgegate.key`` (PKCS#8, mode 0600, optionally encrypted) and
  ``edgegate.pub`` (SubjectPublicKeyInfo, 0644). A key id is the hex sha256 of the public
  key's DER SubjectPublicKeyInfo, i.e. of the base64 body of ``edgegate.pub``.

Key material and passphrases stay in memory: no message here ever includes them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edgegate.errors import InputError, VerificationError, os_error

KEY_FILE, PUB_FILE = "edgegate.key", "edgegate.pub"
PROJECT_CONFIG = "edgegate.toml"
KEY_ENV = "EDGEGATE_SIGNING_KEY"
PASSPHRASE_ENV = "EDGEGATE_SIGNING_KEY_PASSPHRASE"


# ----------------------------------------------------------------------------- DSSE


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: what the signature covers."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _b64decode(text: Any, what: str) -> bytes:
    """Standard or URL-safe base64, padded or not (DSSE allows both alphabets)."""
    if not isinstance(text, str):
        raise ValueError(f"{what} is not a base64 string")
    s = text.replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{what} is not valid base64") from None


def sign_envelope(payload_type: str, payload: bytes, private_key: Ed25519PrivateKey) -> dict[str, Any]:
    """A DSSE envelope around ``payload`` with one Ed25519 signature, keyid = key_id."""
    sig = private_key.sign(pae(payload_type, payload))
    return {
        "payloadType": payload_type,
        "payload": _b64encode(payload),
        "signatures": [{"keyid": key_id(private_key.public_key()), "sig": _b64encode(sig)}],
    }


@dataclass(frozen=True)
class SignatureCheck:
    """One signature of an envelope: its key id as the envelope gives it (a hint, DSSE) and
    whether it verifies with the key asked about, or why not."""

    index: int
    keyid: str | None
    valid: bool
    problem: str | None = None

    def line(self) -> str:
        """``signature 1: key KEYID: valid`` / ``...: invalid (why)``, as ``verify`` prints it."""
        return (f"signature {self.index + 1}: key {self.keyid or '(none given)'}: "
                + ("valid" if self.valid else f"invalid ({self.problem})"))


def check_signatures(envelope: Any, payload_type: str, public_key: Ed25519PublicKey) -> tuple[bytes, list[SignatureCheck]]:
    """The payload of a DSSE envelope and every signature's result with ``public_key``.
    A malformed envelope (not an object, another payloadType, no signatures, a payload
    that is not base64) is a VerificationError; a malformed signature is only that
    signature's result, since DSSE ignores signatures that do not verify."""
    if not isinstance(envelope, dict):
        raise VerificationError("the bundle is not a JSON object (DSSE envelope)")
    if envelope.get("payloadType") != payload_type:
        raise VerificationError(f"payloadType is {envelope.get('payloadType')!r}, not {payload_type}")
    sigs = envelope.get("signatures")
    if not isinstance(sigs, list) or not sigs:
        raise VerificationError("the envelope has no signatures")
    try:
        payload = _b64decode(envelope.get("payload"), "payload")
    except ValueError as exc:
        raise VerificationError(str(exc)) from None
    message = pae(payload_type, payload)
    checks = []
    for i, entry in enumerate(sigs):
        keyid = entry.get("keyid") if isinstance(entry, dict) else None
        keyid = keyid if isinstance(keyid, str) and keyid else None
        try:
            sig = _b64decode(entry.get("sig") if isinstance(entry, dict) else None, f"signatures[{i}].sig")
            public_key.verify(sig, message)
        except ValueError as exc:
            checks.append(SignatureCheck(i, keyid, False, str(exc)))
        except InvalidSignature:
            checks.append(SignatureCheck(i, keyid, False, f"does not verify with key {key_id(public_key)[:16]}"))
        else:
            checks.append(SignatureCheck(i, keyid, True))
    return payload, checks


def open_envelope(envelope: Any, payload_type: str, public_key: Ed25519PublicKey) -> bytes:
    """The payload of a DSSE envelope that ``public_key`` signed, or VerificationError.
    One verifying signature is enough (DSSE's threshold 1); a signature's keyid is only a
    hint. ``check_signatures`` gives each signature's result."""
    payload, checks = check_signatures(envelope, payload_type, public_key)
    if any(c.valid for c in checks):
        return payload
    raise no_valid_signature(public_key, checks)


def no_valid_signature(public_key: Ed25519PublicKey, checks: list[SignatureCheck]) -> VerificationError:
    """The error of an envelope none of whose signatures verifies with ``public_key``."""
    signers = ", ".join(c.keyid[:16] for c in checks if c.keyid) or "no key id given"
    return VerificationError(f"no signature verifies with key {key_id(public_key)[:16]} (signed by: {signers})")


# ----------------------------------------------------------------------------- keys


def key_id(public_key: Ed25519PublicKey) -> str:
    der = public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


@dataclass(frozen=True)
class KeyPair:
    private_path: Path
    public_path: Path
    key_id: str
    encrypted: bool


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create `path` holding `data`, all or nothing: written to a temporary file and linked
    into place (which fails if `path` exists), so a full or read-only disk never leaves an
    empty key file that blocks the next try."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as exc:
        raise os_error(exc, "keys generate", path) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)  # the umask may have taken bits off a 0644 public key
        os.link(tmp, path)
    except FileExistsError:
        raise InputError(f"keys generate: {path} already exists; move it away or choose another --out") from None
    except OSError as exc:
        raise os_error(exc, "keys generate", path) from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def generate_keypair(out_dir: Path, passphrase: str | None = None) -> KeyPair:
    """A new Ed25519 pair as ``edgegate.key`` (0600) and ``edgegate.pub`` (0644) in out_dir."""
    out_dir = Path(out_dir)
    priv_path, pub_path = out_dir / KEY_FILE, out_dir / PUB_FILE
    for p in (priv_path, pub_path):
        if p.exists():
            raise InputError(f"keys generate: {p} already exists; move it away or choose another --out")
    if passphrase is not None and not passphrase:
        raise InputError("keys generate: the passphrase is empty")
    out_dir.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    enc: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(passphrase.encode()) if passphrase else serialization.NoEncryption()
    )
    _write_new(priv_path, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc), 0o600)
    try:
        pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        _write_new(pub_path, pub, 0o644)
    except BaseException:
        priv_path.unlink(missing_ok=True)
        raise
    return KeyPair(priv_path, pub_path, key_id(key.public_key()), bool(passphrase))


def _private_key_from_pem(data: bytes, passphrase_env: str | None, where: str) -> Ed25519PrivateKey:
    env = passphrase_env or PASSPHRASE_ENV
    secret = os.environ.get(env)
    password = secret.encode() if secret else None
    try:
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except TypeError:
            if password is None:
                raise InputError(f"signing key {where} is encrypted: put its passphrase in ${env}") from None
            key = serialization.load_pem_private_key(data, password=None)  # not encrypted after all
    except ValueError:
        if password is not None:
            raise InputError(
                f"signing key {where}: cannot decrypt it with the passphrase in ${env}, or it is not a PEM private key"
            ) from None
        raise InputError(f"signing key {where} is not a PEM private key (make one: edgegate keys generate)") from None
    except UnsupportedAlgorithm:
        raise InputError(f"signing key {where}: unsupported key type; EdgeGate signs with Ed25519") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(f"signing key {where} is a {type(key).__name__}; EdgeGate signs with Ed25519 keys")
    return key


def load_signing_key(path: Path, passphrase_env: str | None = None) -> Ed25519PrivateKey:
    """Read an Ed25519 PEM private key; an encrypted one takes its passphrase from the
    environment variable ``passphrase_env`` (default EDGEGATE_SIGNING_KEY_PASSPHRASE)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"signing key {path}: cannot read it: {exc.strerror or exc}") from None
    return _private_key_from_pem(data, passphrase_env, str(path))


def load_public_key(path: Path) -> Ed25519PublicKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise InputError(f"--key {path}: cannot read it: {exc.strerror or exc}") from None
    if b"PRIVATE KEY" in data:
        raise InputError(f"--key {path} is a private key; verify with the public key ({PUB_FILE})")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise InputError(f"--key {path} is not a PEM public key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise InputError(f"--key {path} is a {type(key).__name__}; EdgeGate bundles are signed with Ed25519")
    return key


def _project_config(cwd: Path) -> tuple[Path | None, str | None]:
    """``signing_key`` and ``passphrase_env`` from ``[evidence]`` of ./edgegate.toml."""
    path = cwd / PROJECT_CONFIG
    if not path.is_file():
        return None, None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: cannot read it: {exc}") from None
    section = data.get("evidence", {})
    unknown = set(section) - {"signing_key", "passphrase_env"}
    if not isinstance(section, dict) or unknown:
        raise InputError(f"{path}: [evidence]: unknown key(s) {', '.join(sorted(unknown))}; "
                         "known: signing_key, passphrase_env")
    key = section.get("signing_key")
    return ((path.parent / key) if key else None), section.get("passphrase_env")


def resolve_signing_key(signing_key: Path | None = None, *, cwd: Path | None = None) -> Ed25519PrivateKey | None:
    """The signing key from ``signing_key``, else $EDGEGATE_SIGNING_KEY (a path or the PEM
    itself), else ``signing_key`` in ./edgegate.toml; None when none is configured."""
    cfg_key, cfg_env = _project_config(cwd or Path.cwd())
    env_value = os.environ.get(KEY_ENV, "").strip()
    if signing_key is not None:
        return load_signing_key(Path(signing_key), cfg_env)
    if env_value.startswith("-----BEGIN"):
        return _private_key_from_pem(env_value.encode(), cfg_env, f"in ${KEY_ENV}")
    if env_value:
        return load_signing_key(Path(env_value), cfg_env)
    if cfg_key is not None:
        return load_signing_key(cfg_key, cfg_env)
    return None
