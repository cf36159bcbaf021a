"""What ``sign`` and ``store`` take from a workspace: only what they can re-derive or check.

Every step in a pod can write the shared workspace, so its files are claims, not facts:

- ``snapshot.json`` from the API (``source: "api:…"``) is re-read: the run by namespace/name,
  whose uid must equal the snapshot's; what the cluster returns is what gets formatted. A
  ``file:`` snapshot has nothing to be checked against; it is used only when the caller
  vouches for it (``--trust-file-snapshot``).
- ``payloads.json`` must equal, payload for payload, what chainmail formats from that run
  itself (formatting is deterministic); the first differing artifact is named.
- ``signed.json`` must carry exactly those payloads, and (in :func:`chainmail.storage.check_signatures`)
  signatures that verify with the operator's key; a transparency log entry (``tlog``) must verify with
  the trusted log keys (``chainmail.transparency.trusted-root``) and log exactly that signature, and
  with ``transparency.enabled: true`` it must be there.

See ``docs/workspace.md`` for the threat model.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from chainmail.errors import WorkspaceError

if TYPE_CHECKING:
    from chainmail.context import Context
    from chainmail.models import Payload, RunSnapshot, SignedPayload
    from chainmail.workspace import Workspace

log = logging.getLogger("chainmail.workspace_trust")

_FIELDS = ("artifact", "format", "payload_type", "body", "wrap", "subjects", "provisional")


def is_api_snapshot(snap: RunSnapshot) -> bool:
    """True when the snapshot says it was read from a Kubernetes API server."""
    return snap.source.startswith("api:")


def trusted_snapshot(ws: Workspace, ctx: Context, *, trust_file: bool = False) -> RunSnapshot:
    """The run to format: re-read from the API for an ``api:`` snapshot, else the file if vouched for."""
    snap = ws.read_snapshot()
    if is_api_snapshot(snap):
        return reread(snap, ctx)
    if not trust_file:
        raise WorkspaceError(
            f"{ws.path('snapshot.json')} was not read from the cluster (source {snap.source!r}), so nothing "
            "but you can vouch for it",
            hint="pass --trust-file-snapshot if you made it from a file nobody else can write, "
                 "or snapshot the run from the cluster",
        )
    return snap


def reread(snap: RunSnapshot, ctx: Context) -> RunSnapshot:
    """The run named by ``snap`` as the API returns it now; its uid must be the snapshot's."""
    from chainmail.snapshot import from_cluster

    ref = snap.ref
    if not ref.name or not ref.uid:
        raise WorkspaceError("snapshot.json names no run (metadata.name and metadata.uid are needed)")
    live = from_cluster(ctx.kube, ref.kind, ref.namespace or None, ref.name)
    if live.ref.uid != ref.uid:
        raise WorkspaceError(
            f"{ref.kind} {live.ref.namespace}/{ref.name} in the cluster has uid {live.ref.uid}, not "
            f"{ref.uid} as snapshot.json says; run the steps again"
        )
    return live


def format_options(recorded: list[Payload]) -> tuple[list[str] | None, bool]:
    """The ``--format`` list and ``--provisional`` flag ``format`` was given, as its payloads show them.

    Both only choose among formats of the same run, so reading them from the file lets no one
    change what a payload says about the run.
    """
    names = list(dict.fromkeys(p.format for p in recorded if p.artifact.kind in ("taskrun", "pipelinerun")))
    return names or None, any(p.provisional for p in recorded)


def first_difference(expected: list[Payload], actual: list[Payload]) -> str:
    """A phrase naming the first artifact where ``actual`` differs from ``expected``, or ""."""
    for want, got in zip(expected, actual, strict=False):
        if want != got:
            fields = [name for name in _FIELDS if getattr(want, name) != getattr(got, name)]
            where = got.artifact.full_key
            if want.artifact.full_key != where:
                where += f" (expected {want.artifact.full_key})"
            return f"the {got.format} payload for {where} differs in {', '.join(fields)}"
    if len(actual) > len(expected):
        extra = actual[len(expected)]
        return f"the {extra.format} payload for {extra.artifact.full_key} is one too many"
    if len(expected) > len(actual):
        missing = expected[len(actual)]
        return f"the {missing.format} payload for {missing.artifact.full_key} is missing"
    return ""


def verified_payloads(ws: Workspace, ctx: Context, snap: RunSnapshot) -> list[Payload]:
    """The payloads chainmail formats from ``snap``, after checking ``payloads.json`` holds exactly them."""
    from chainmail.job import make_payloads

    recorded = ws.read_payloads()
    formats, provisional = format_options(recorded)
    derived = make_payloads(snap, ctx, formats, provisional=provisional)
    origin = "the run in the cluster" if is_api_snapshot(snap) else "snapshot.json"
    problem = first_difference(derived, recorded)
    if problem:
        raise WorkspaceError(f"payloads.json does not hold what {origin} formats to: {problem}; refusing it",
                             hint="the run or the workspace changed after format: run the steps again, "
                                  "with the same chains-config for format, sign and store")
    return derived


def signed_payloads_match(signed: list[SignedPayload], payloads: list[Payload], ctx: Context) -> None:
    """``signed.json`` must carry, in order, every payload whose kind has a signer (what ``sign`` signs)."""
    expected = [p for p in payloads if ctx.config.signer(p.artifact.kind) != "none"]
    problem = first_difference(expected, [s.payload for s in signed])
    if problem:
        raise WorkspaceError(f"signed.json does not carry the payloads of payloads.json: {problem}; run sign again")
