"""Rekor, or Rekor and Fulcio, down for 60 s during a sweep: no run lost, none logged twice.

The local Sigstore stack (tests/sigstore/server.mjs, Fulcio and Rekor on one port) sits behind a
:class:`~doubles.faultproxy.FaultProxy`; the registry and the Kubernetes API double are reached
directly. With ``transparency.enabled: true`` a run may only end ``signed: "true"`` with its log
entry, so every run signed during the outage has to wait for the log and then carry it. Key-signed:
the log goes down after the first runs are signed. Keyless: both are down from the start, so the
sweep's first certificate request has to outlast the outage too.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

pytest.register_assert_rewrite("doubles.faultproxy")
from doubles.faultproxy import Fleet, finish_chainmail, start_chainmail  # noqa: E402 - after register_assert_rewrite

pytest_plugins = ["doubles.faultproxy"]
pytestmark = pytest.mark.registry

_spec = importlib.util.spec_from_file_location("sigstore_stack_fixture",
                                               Path(__file__).resolve().parents[1] / "sigstore" / "fixture.py")
assert _spec is not None and _spec.loader is not None
_stack_module = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(_stack_module)
sigstore_stack = _stack_module.sigstore_stack

TRANSPARENCY = "chains.tekton.dev/transparency"
BUNDLE = "dev.sigstore.cosign/bundle"
OUTAGE_SECONDS = 60.0
RUNS = 12
#: Runs signed (with their entries) before the log goes down.
SIGNED_BEFORE = 3


def _tree_size(url: str) -> int:
    return int(requests.get(f"{url}/api/v1/log", timeout=5).json()["treeSize"])


def _keyless_token(path: Path) -> Path:
    """An unsigned JWT shaped like a projected service-account token for audience sigstore (the mock
    Fulcio does not check the signature)."""
    now = int(time.time())
    claims = {"iss": "https://kubernetes.default.svc.cluster.local", "aud": ["sigstore"], "iat": now,
              "exp": now + 900, "sub": "https://kubernetes.io/namespaces/chainmail/serviceaccounts/chainmail-signer"}

    def part(doc: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")

    path.write_text(f"{part({'alg': 'RS256'})}.{part(claims)}.c2lnbmF0dXJl\n")
    return path


@pytest.mark.parametrize(("signer", "signed_before"), [("key", SIGNED_BEFORE), ("keyless", 0)])
def test_sweep_outlasts_a_60_second_sigstore_outage(signer, signed_before, sigstore_stack, registry, kube_api,
                                                    fault_proxy_factory, tmp_path, key):
    rekor_proxy = fault_proxy_factory(urlsplit(sigstore_stack.url).netloc, name="sigstore")
    fleet = Fleet(kube_api, registry, tmp_path, prefix="tlog-outage")
    fleet.add(RUNS)
    size_before = _tree_size(sigstore_stack.url)
    sets = {
        "transparency.enabled": "true",
        "transparency.url": rekor_proxy.url,
        "chainmail.transparency.trusted-root": str(sigstore_stack.trusted_root),
    }
    if signer == "keyless":
        sets.update({"signers.x509.fulcio.enabled": "true", "signers.x509.fulcio.address": rekor_proxy.url,
                     "signers.x509.identity.token.file": str(_keyless_token(tmp_path / "oidc-token"))})
    outage: dict[str, float] = {}
    done = threading.Event()

    def take_the_log_down_after_the_first_runs() -> None:
        while not done.is_set():
            signed = sum(1 for run in fleet.runs
                         if fleet.annotations(run).get("chains.tekton.dev/signed") == "true")
            if signed >= signed_before:
                outage["signed-before"] = signed
                rekor_proxy.outage_for(OUTAGE_SECONDS, cut_in_flight=False).join(OUTAGE_SECONDS + 5)
                outage["end"] = time.monotonic()
                return
            done.wait(0.05)

    watcher = threading.Thread(target=take_the_log_down_after_the_first_runs, daemon=True)
    args = fleet.sweep_args(key, concurrency=2, sets=sets)
    started = time.monotonic()
    proc, retry_file = start_chainmail(args, tmp_path)
    watcher.start()
    result = finish_chainmail(proc, retry_file, args, started, timeout=OUTAGE_SECONDS + 200)
    done.set()
    watcher.join(OUTAGE_SECONDS + 10)
    stats = rekor_proxy.stats()
    print(f"\n[{signer}: sigstore outage] " + json.dumps({
        "runs": RUNS, "signed_before_outage": outage.get("signed-before"), "seconds": round(result.seconds, 1),
        "rejected_during_outage": stats["outage-rejected"], "retries": result.retries["total"]}))

    assert "end" in outage, f"the outage never happened: {result}"
    assert outage["signed-before"] < RUNS, "every run was signed before the log went down"
    assert result.returncode == 0, str(result)
    report = result.json()
    assert report["signed"] == RUNS and report["failed"] == [], report
    assert stats["outage-rejected"] > 0 and result.retries["total"] >= stats["outage-rejected"]
    assert fleet.problems() == []

    indexes: list[int] = []
    for run in fleet.runs:
        where = urlsplit(fleet.annotations(run)[TRANSPARENCY])
        assert f"{where.scheme}://{where.netloc}" == rekor_proxy.url and where.path == "/api/v1/log/entries"
        indexes.append(int(parse_qs(where.query)["logIndex"][0]))
        for suffix in ("sig", "att"):
            (layer,) = fleet.layers(run, suffix)
            entry = json.loads(layer["annotations"][BUNDLE])
            assert entry["Payload"]["logIndex"] >= 0
            has_cert = bool(layer["annotations"].get("dev.sigstore.cosign/certificate"))  # "" when key-signed
            assert has_cert == (signer == "keyless"), layer["annotations"]
    assert len(set(indexes)) == RUNS
    # One image signature and one attestation per run, each logged once: retries never log twice.
    assert _tree_size(sigstore_stack.url) - size_before == 2 * RUNS
