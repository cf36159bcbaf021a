"""docs/transparency.md's walkthrough, run as written: a run is signed with the log on, found in the log by
its image digest, read back, and verified with the log (no ``--insecure-ignore-tlog``).

The ``sh`` block runs in bash, each ``chainmail`` line as its own process, against the strict API double
(an administrator's token, as the doc's reader has), a real registry and the local Sigstore stack
(tests/sigstore/server.mjs). ``CHAINMAIL_CONFIG`` is the chains-config: the stack's Rekor and trusted root
stand in for rekor.sigstore.dev and the production root.
"""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from chainmail.demo import example_dir
from doubles.registry import push_test_image

_spec = importlib.util.spec_from_file_location("sigstore_stack_fixture",
                                               Path(__file__).resolve().parents[1] / "sigstore" / "fixture.py")
assert _spec is not None and _spec.loader is not None
_stack_module = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_stack_module)
sigstore_stack = _stack_module.sigstore_stack

pytestmark = pytest.mark.registry
DOC = Path(__file__).resolve().parents[2] / "docs" / "transparency.md"


def walkthrough() -> str:
    section = DOC.read_text().split("## The walkthrough, with chainmail alone", 1)[1]
    (block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    return block


def test_the_walkthrough_runs_as_written(sigstore_stack: Any, registry: Any, kube_api: Any, key: str,
                                         tmp_path: Path) -> None:
    image = push_test_image(registry, "demo/app", "walkthrough")
    run = copy.deepcopy(json.loads((example_dir() / "taskrun.json").read_text()))
    run["metadata"].update(name="build-app", namespace="demo", uid="7a1f0c7e-5b1e-4c55-9d3a-2f0e6a1b9c01")
    run["metadata"].pop("resourceVersion", None)
    repo, digest = image.split("@")
    run["status"]["results"] = [{"name": "IMAGE_DIGEST", "type": "string", "value": digest},
                                {"name": "IMAGE_URL", "type": "string", "value": repo}]
    kube_api.add(run)
    keys = Path(key)
    kube_api.add({"kind": "Secret", "metadata": {"name": "signing-secrets", "namespace": "tekton-chains"},
                  "data": {n: base64.b64encode((keys / n).read_bytes()).decode()
                           for n in ("cosign.key", "cosign.pub", "cosign.password")}})
    kube_api.use_admin_token()
    config = tmp_path / "chains-config.yaml"
    config.write_text(json.dumps({
        "transparency.enabled": "true", "transparency.url": sigstore_stack.url,
        "chainmail.transparency.trusted-root": str(sigstore_stack.trusted_root),
        "artifacts.taskrun.format": "slsa/v1", "artifacts.taskrun.storage": "tekton,oci",
        "artifacts.oci.storage": "oci"}))
    work = tmp_path / "work"
    work.mkdir()
    (work / "cosign.pub").write_bytes((keys / "cosign.pub").read_bytes())
    env = {**os.environ, "IMAGE": image, "CHAINMAIL_CONFIG": str(config),
           "KUBECONFIG": str(kube_api.kubeconfig(tmp_path)), "DOCKER_CONFIG": str(tmp_path / "no-docker-config"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for name in ("CHAINMAIL_KEY", "CHAINMAIL_SIGNING_SECRETS", "COSIGN_PASSWORD"):
        env.pop(name, None)
    script = "set -euo pipefail\n" + walkthrough()
    proc = subprocess.run(["bash", "-c", script], cwd=work, env=env, capture_output=True, text=True, timeout=240,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr

    # the sweep logged and annotated the run; the search found a verified entry by the image digest
    marks = kube_api.annotations("taskruns", "demo", "build-app")
    assert marks["chains.tekton.dev/signed"] == "true"
    assert marks["chains.tekton.dev/transparency"].startswith(f"{sigstore_stack.url}/api/v1/log/entries?logIndex=")
    # `tlog get --format json` printed the entry the search found, as rekor-cli does
    start = proc.stdout.index("{\n")
    entry, _ = json.JSONDecoder().raw_decode(proc.stdout[start:])
    assert {"LogIndex", "UUID", "Body", "IntegratedTime", "LogID"} <= set(entry)
    assert next(iter(entry["Body"])) in ("DSSEObj", "HashedRekordObj") or "dsse" in json.dumps(entry["Body"])
    # verify image, verify attestation and verify run each passed with the log
    assert re.search(r"^verified signature for .*demo/app@", proc.stdout, re.M)
    assert re.search(r"^verified attestation https://slsa.dev/provenance/v0.2 for ", proc.stdout, re.M)
    # verify run: the run's annotation names the image signature's entry (logged last, as Chains does)
    assert re.search(r"^verified attestation \S+ for taskrun/demo/build-app ", proc.stdout, re.M)
