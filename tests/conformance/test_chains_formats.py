"""chainmail's payloads against Tekton Chains' own formatter output (../shared/conformance/chains-formats).

Each case holds a run (``input.json``), the chains-config keys (``config.json``) and what
Chains' current release produced for ``slsa/v1``, ``slsa/v2alpha3``, ``slsa/v2alpha4`` and
``simplesigning``. Statements are compared as JSON values; ``subject`` lists and
``artifactURIs`` as sets, because Chains emits them in Go map order. No deviations are
needed: every case matches.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from chainmail.artifacts import oci_images, results_from
from chainmail.config import Config
from chainmail.errors import InputError
from chainmail.formats import artifact_uris, create_payloads, get_formatter, run_artifact
from chainmail.formats._tekton import decode_run
from chainmail.formats.simplesigning import simple_signing_body
from chainmail.models import RunSnapshot

CASES_DIR = "conformance/chains-formats"
IN_TOTO = {"slsa/v1": "slsa-v1", "slsa/v2alpha3": "slsa-v2alpha3", "slsa/v2alpha4": "slsa-v2alpha4"}
#: Known deviations from Chains, by (case, format): a reason each. None today.
DEVIATIONS: dict[tuple[str, str], str] = {}


def _cases_root() -> Path:
    repo = Path(__file__).resolve().parents[2]
    return Path(os.environ.get("CHAINMAIL_SHARED", repo.parent / "shared")).resolve() / CASES_DIR


def _case_names() -> list[str]:
    root = _cases_root()
    if not root.is_dir():
        return ["<missing>"]
    return sorted(p.name for p in root.iterdir() if (p / "input.json").exists())


CASES = _case_names()


def _load(case: str) -> tuple[RunSnapshot, Config, Path]:
    root = _cases_root()
    if case == "<missing>" or not root.is_dir():
        pytest.skip(
            f"Chains conformance cases not found at {root} (set CHAINMAIL_SHARED to the shared/ directory)"
        )
    path = root / case
    doc = json.loads((path / "input.json").read_text())
    if "pipelineRun" in doc:
        snapshot = RunSnapshot(doc["pipelineRun"], doc.get("taskRuns") or [])
    else:
        snapshot = RunSnapshot(doc)
    config = Config.from_mapping(json.loads((path / "config.json").read_text()))
    return snapshot, config, path


def _canon(statement: dict[str, Any]) -> str:
    """The statement as canonical JSON text, its subjects in a fixed order (Chains' is Go map order).

    Comparing text rather than Python values keeps ``true`` apart from ``1``.
    """
    out = dict(statement)
    if "subject" in out:
        out["subject"] = sorted(out["subject"], key=lambda s: json.dumps(s, sort_keys=True))
    return json.dumps(out, sort_keys=True, indent=1)


def _deviation(case: str, fmt: str) -> None:
    reason = DEVIATIONS.get((case, fmt))
    if reason:
        pytest.xfail(reason)


@pytest.mark.parametrize("fmt", list(IN_TOTO))
@pytest.mark.parametrize("case", CASES)
def test_in_toto_statement(case: str, fmt: str) -> None:
    snapshot, config, path = _load(case)
    _deviation(case, fmt)
    expected = json.loads((path / f"expected-{IN_TOTO[fmt]}.json").read_text())
    formatter = get_formatter(fmt, config)
    payload = formatter.payload(run_artifact(snapshot), snapshot)

    assert _canon(json.loads(payload.body)) == _canon(expected["payload"])
    # Chains' v2alpha4 returns a nil list (JSON null) when there are no subjects.
    assert sorted(artifact_uris(payload)) == sorted(expected["artifactURIs"] or [])
    assert payload.wrap is True
    assert payload.payload_type == "application/vnd.in-toto+json"


@pytest.mark.parametrize("case", CASES)
def test_simplesigning(case: str) -> None:
    snapshot, config, path = _load(case)
    _deviation(case, "simplesigning")
    expected = json.loads((path / "expected-simplesigning.json").read_text())["payloads"] or []
    # Chains' OCI extractor applied to the run's own results: bytes must be cosign's, exactly.
    results = results_from(decode_run(snapshot.run, snapshot.kind)["status"].get("results"))
    got = [simple_signing_body(image.repository, image.digest) for image in oci_images(results)]
    want = [json.dumps(p, separators=(",", ":")).encode() for p in expected]
    assert sorted(got) == sorted(want)

    if "status" not in snapshot.run:
        # Chains' formatters accept a run that never ran; the format step refuses it (Chains
        # only signs finished runs, and a run without a status has not even started).
        with pytest.raises(InputError, match="no status"):
            create_payloads(snapshot, config)
        return
    produced = [p for p in create_payloads(snapshot, config) if p.format == "simplesigning"]
    if snapshot.kind == "TaskRun":
        assert sorted(p.body for p in produced) == sorted(want)
        assert all(not p.wrap and p.artifact.kind == "oci" for p in produced)
    else:
        assert produced == []  # Chains never signs images from a PipelineRun


# --- runs signed by a real Chains controller (../shared/fixtures) -----------------------------------


def _fixture(name: str) -> Path:
    path = _cases_root().parent.parent / "fixtures" / name
    if not path.is_dir():
        pytest.skip(f"Chains controller fixtures not found at {path} (set CHAINMAIL_SHARED)")
    return path


def _signed_payload(obj: dict[str, Any]) -> bytes:
    """The payload the controller stored in the ``chains.tekton.dev/payload-<kind>-<uid>`` annotation."""
    import base64

    for key, value in obj["metadata"]["annotations"].items():
        if key.startswith("chains.tekton.dev/payload-"):
            return base64.b64decode(value)
    raise AssertionError("no chains.tekton.dev/payload-* annotation")


def test_controller_taskrun_slsa_v1() -> None:
    """chains-run: slsa/v1 attestation and the image's simplesigning payload, as the controller made them."""
    path = _fixture("chains-run")
    run = json.loads((path / "taskrun-after-chains.json").read_text())
    config = Config.from_mapping(
        {"artifacts.taskrun.format": "slsa/v1", "artifacts.taskrun.storage": "tekton,oci"}
    )
    attestation, signature = create_payloads(RunSnapshot(run), config)

    assert _canon(json.loads(attestation.body)) == _canon(json.loads(_signed_payload(run)))
    assert signature.body == (path / "sig-layer0.json").read_bytes()
    assert attestation.subjects == (signature.artifact.full_key,)


def test_controller_pipelinerun_slsa_v2alpha4() -> None:
    """chains-pipelinerun: the three child TaskRuns and the PipelineRun, slsa/v2alpha4."""
    path = _fixture("chains-pipelinerun")
    config = Config.from_mapping(
        {"artifacts.taskrun.format": "slsa/v2alpha4", "artifacts.pipelinerun.format": "slsa/v2alpha4"}
    )
    children = [
        json.loads((path / f"taskrun-{n}-after-chains.json").read_text()) for n in ("clone", "build", "scan")
    ]
    for child in children:
        payload = create_payloads(RunSnapshot(child), config)[0]
        assert _canon(json.loads(payload.body)) == _canon(json.loads(_signed_payload(child)))
    run = json.loads((path / "pipelinerun-after-chains.json").read_text())
    (payload,) = create_payloads(RunSnapshot(run, children), config)
    assert _canon(json.loads(payload.body)) == _canon(json.loads(_signed_payload(run)))
