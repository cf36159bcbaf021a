"""The ``file`` storage backend's directory: ``<run dir>/<shortKey>.payload``, ``.signature`` (and ``.cert``).

Like run annotations, every stored signature must verify. The directory name gives the run's kind
(``taskrun-…``/``pipelinerun-…``) but not its uid, so a run key is bound by kind and by the uid the
statement itself records.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from chainmail._internal.encoding import b64decode
from chainmail.errors import Error, InputError, VerificationError
from chainmail.verify.binding import check_run_binding, is_image_key
from chainmail.verify.keys import load_keys
from chainmail.verify.model import Verified
from chainmail.verify.search import MALFORMED, strict_outcome
from chainmail.verify.stored import verify_stored

if TYPE_CHECKING:
    from chainmail.context import Context


def _signature_bytes(sig_path: Path) -> bytes:
    signature = sig_path.read_bytes()
    if signature.lstrip()[:1] == b"{":
        return signature
    try:
        return b64decode(signature.decode(errors="replace"))
    except ValueError:
        raise VerificationError(f"{sig_path.name} is not base64") from None


def verify_file_store(directory: Path, public_keys: list[str], ctx: Context) -> list[Verified]:
    """Every ``<shortKey>.signature`` under ``directory`` (the ``file`` backend's layout) must verify."""
    keys = load_keys(public_keys, ctx)
    root = Path(directory)
    if not root.is_dir():
        raise InputError(f"file store {root} is not a directory")
    verified: list[Verified] = []
    failures: list[str] = []
    for sig_path in sorted(root.rglob("*.signature")):
        payload_path = sig_path.with_suffix(".payload")
        try:
            if not payload_path.is_file():
                raise VerificationError(f"no {payload_path.name} next to the signature")
            signature = _signature_bytes(sig_path)
            payload = payload_path.read_bytes()
            cert_path = sig_path.with_suffix(".cert")
            cert = cert_path.read_text(errors="replace") if cert_path.is_file() else ""
            item = verify_stored(keys, payload, signature, str(sig_path), "file", str(sig_path), cert)
            run_kind = sig_path.parent.name.partition("-")[0]
            if run_kind in ("taskrun", "pipelinerun") or is_image_key(sig_path.stem):
                kind = "TaskRun" if run_kind == "taskrun" else "PipelineRun"
                check_run_binding(sig_path.stem, kind, "", item)
            verified.append(item)
        except (VerificationError, Error, OSError) as exc:
            failures.append(f"{sig_path}: {exc}")
        except MALFORMED as exc:
            failures.append(f"{sig_path}: malformed file ({type(exc).__name__})")
    return strict_outcome(verified, failures, str(root), "*.signature files")
