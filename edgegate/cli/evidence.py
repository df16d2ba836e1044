"""Commands on evidence bundles: keys generate, verify."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from edgegate.cli.app import (
    EXIT_GATE_FAILED,
    cli,
    handle_errors,
)
from edgegate.errors import InputError


@cli.group()
def keys() -> None:
    """Make the Ed25519 key pair that signs evidence bundles."""


@keys.command("generate")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Directory for edgegate.key (mode 0600) and edgegate.pub.")
@click.option("--passphrase-env", metavar="VAR", default=None,
              help="Encrypt the private key with the passphrase in environment variable VAR.")
@handle_errors
def keys_generate(out_dir: Path, passphrase_env: str | None) -> None:
    """Generate an Ed25519 signing key pair as PEM files; print the key id."""

    from edgegate.report.evidence import generate_keypair

    passphrase = None
    if passphrase_env is not None:
        passphrase = os.environ.get(passphrase_env)
        if not passphrase:
            raise InputError(f"--passphrase-env: environment variable {passphrase_env} is not set or empty")
    pair = generate_keypair(out_dir, passphrase)
    enc = f", encrypted with ${passphrase_env}" if pair.encrypted else ""
    click.echo(f"private key: {pair.private_path} (mode 0600{enc}); keep it secret")
    click.echo(f"public key:  {pair.public_path} (give it to whoever verifies)")
    click.echo(f"key id:      {pair.key_id}")


@cli.command()
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="The signer's Ed25519 public key (edgegate.pub).")
@click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory holding the subjects by name (evidence/PIPELINE-RUN/): recompute every sha256.")
@click.option("--promptpack", type=click.Path(path_type=Path), default=None,
              help="Check the PromptPack subject against this pack (directory or manifest.yaml).")
@click.option("--require-pass", is_flag=True, help="Also fail (exit 1) when the signed verdict is FAIL.")
@handle_errors
def verify(bundle: Path, key_path: Path, artifacts: Path | None, promptpack: Path | None, require_pass: bool) -> None:
    """Verify an evidence BUNDLE: signature, statement and (with --artifacts) every artifact.

    Exit code 0 when valid, 1 when not (with the reason), 2 when a file cannot be read.
    """
    from edgegate.report.evidence import SubjectStatus, verify_bundle

    res = verify_bundle(bundle, key_path, artifacts, promptpack)
    if not res.ok or res.statement is None:
        click.echo(f"invalid: {bundle}: {res.reason}", err=True)
        sys.exit(EXIT_GATE_FAILED)
    if require_pass and not res.passed:
        click.echo(f"invalid: {bundle}: the signed verdict is FAIL (--require-pass)", err=True)
        sys.exit(EXIT_GATE_FAILED)
    # verify_bundle checked the statement's shape (StatementShapeError otherwise: exit 2)
    pred = res.statement["predicate"]
    run_id = pred["measurements"].get("candidate", {}).get("run_id")
    headline = (f"  {pred['pipeline'].get('name')} run {run_id} on {pred['device'].get('name')}: "
                f"verdict {'PASS' if res.passed else 'FAIL'} ({pred['started_at']} .. {pred['finished_at']})")
    click.echo(f"valid: {bundle}: signed by key {res.key_id}")
    click.echo(headline)
    if len(res.signatures) > 1:  # DSSE: one valid signature is enough; say what each of the others is
        for line in res.signature_lines():
            click.echo(line)
    checked = sum(1 for _, st in res.subjects if st is SubjectStatus.OK)
    unchecked = [n for n, st in res.subjects if st is SubjectStatus.NOT_CHECKED]
    hint = "give --artifacts DIR" if artifacts is None else "give --promptpack PACK"
    click.echo(f"  subjects: {checked} of {len(res.subjects)} digests recomputed"
               + (f"; not checked: {', '.join(unchecked)} ({hint})" if unchecked and len(unchecked) < 3
                  else f"; {len(unchecked)} not checked ({hint})" if unchecked else ""))
