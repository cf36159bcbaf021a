"""``chainmail demo``: sign and verify the bundled example PipelineRun, no cluster needed.

It generates a cosign key pair, signs the example's child TaskRuns (attestation and image
signature) and the PipelineRun (attestation) into the ``file`` backend with the example
chains-config, then verifies every stored signature with the public key.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from chainmail.errors import ConfigError

EXAMPLE_RUN = "pipelinerun.json"
EXAMPLE_CONFIG = "chains-config.yaml"


def example_dir() -> Path:
    """Where the bundled example lives: inside the wheel, else the repo's ``examples/``."""
    packaged = Path(__file__).parent / "_examples"
    if (packaged / EXAMPLE_RUN).exists():
        return packaged
    repo = Path(__file__).resolve().parents[2] / "examples"
    if (repo / EXAMPLE_RUN).exists():
        return repo
    raise ConfigError("the bundled example is missing from this installation")


@dataclass
class DemoResult:
    """What the demo did, for the summary and for tests."""

    out: Path
    key_id: str = ""
    lines: list[str] = field(default_factory=list)
    signed: int = 0
    verified: int = 0


def run_demo(out: Path, echo: Callable[[str], None] = print) -> DemoResult:
    """Generate a key, sign the example into ``out/store``, verify it, and report each stage."""
    from chainmail import job, snapshot
    from chainmail.config import Config
    from chainmail.context import Context
    from chainmail.signing import load_signer
    from chainmail.signing.keys import write_keypair
    from chainmail.verify import verify_file_store

    examples = example_dir()
    result = DemoResult(out)
    keys = out / "keys"
    # The example's images were never pushed anywhere: skip the "sign only what exists" check.
    config = Config.load(examples / EXAMPLE_CONFIG, ["chainmail.sign.verify-images-exist=false"])
    ctx = Context(config=config, key=str(keys), file_store=out / "store")
    if not (keys / "cosign.key").exists():
        write_keypair(str(keys), secrets.token_urlsafe(24).encode(), ctx, write_password=True)
    signer = load_signer(str(keys), ctx)
    result.key_id = signer.key_id

    snap = snapshot.from_file(examples / EXAMPLE_RUN)
    ref = snap.ref
    echo(f"chainmail demo: {ref.kind} {ref.namespace}/{ref.name} with {len(snap.task_runs)} TaskRuns "
         f"({examples / EXAMPLE_RUN})")
    echo(f"  key       ECDSA P-256 cosign key pair in {keys} (keyid {signer.key_id})")
    for res in job.sign_with_children(snap, ctx):
        for p in res.payloads:
            what = "image signature" if p.artifact.kind == "oci" else "attestation"
            echo(f"  signed    {p.artifact.owner.kind} {p.artifact.owner.name}: {p.format} {what}"
                 + (f" for {p.artifact.ref}" if p.artifact.kind == "oci" else ""))
        result.signed += len(res.signed)
    echo(f"  stored    {result.signed} signed payloads in {ctx.file_store}")

    public = (keys / "cosign.pub").read_text()
    verified = verify_file_store(ctx.file_store, [public], ctx)  # type: ignore[arg-type]
    result.verified = len(verified)
    for v in verified:
        subject = ""
        if v.statement:
            names = [f"{s.get('name')}@sha256:{s.get('digest', {}).get('sha256', '')[:12]}…"
                     for s in v.statement.get("subject") or []]
            subject = f" subjects: {', '.join(names)}" if names else ""
        echo(f"  verified  {v.ref} [{v.payload_type}]{subject}")
    echo(f"OK: {result.verified}/{result.signed} signatures verified with {keys / 'cosign.pub'}")
    return result
