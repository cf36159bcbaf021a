"""chainmail's backlog drain against its floor, side by side in one run.

The floor is the least work that signing a backlog can be: a bare loop, written here with
``requests`` and ``cryptography`` only, that for each completed TaskRun signs a simple-signing
payload and a DSSE-wrapped in-toto statement, pushes the ``.sig`` and ``.att`` blobs and
manifests, and patches the run's annotations (≈11 requests a run), on 4 threads. chainmail's
``sweep`` drains an identical backlog (100 TaskRuns, one image each, ``slsa/v1``, storage
``tekton,oci``) on the same servers right after it.

The API double answers as slowly as a real API server does (measured on a real v1.20
kube-apiserver: GET 5 ms, merge PATCH 11 ms, LIST of 100 ≈ 100 ms), so round trips cost what they
cost in a cluster; the registry is Debian's real ``docker-registry`` on loopback. A separate,
smaller pass through a counting proxy gives requests per run for both. Figures are only
recorded when every run was signed exactly once (one ``.sig`` layer, one ``.att`` layer, one
``signed: "true"`` patch). Results: ``bench/results/floor.json``. Run with ``make bench``.

The machine may be shared, so one pair of figures can be off by a lot: the floor and chainmail run
back to back :data:`ROUNDS` times (``CHAINMAIL_BENCH_ROUNDS``), each round on a fresh backlog, and the
record keeps every round plus the medians (the ratio is the median of the per-round ratios).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from doubles.faultproxy import FaultProxy
from doubles.kube import KubeApiDouble, completed_taskrun
from doubles.registry import RegistryServer, push_test_image

pytestmark = pytest.mark.bench

REPO = Path(__file__).resolve().parents[2]
RESULTS = REPO / "bench" / "results" / "floor.json"
RUNS = 100
THREADS = 4
ROUNDS = int(os.environ.get("CHAINMAIL_BENCH_ROUNDS") or 3)
#: Latency of a real kube-apiserver (v1.20, etcd 3.4, same 2-core machine), median per call.
API_LATENCY = {"GET": 0.005, "PATCH": 0.011, "PUT": 0.011, "POST": 0.011, "DELETE": 0.011, "LIST_100": 0.100}
#: Tekton Chains on the same backlog and servers (issue figures: real controller, 8 threads).
CHAINS = {"wall_s": 35.8, "cpu_s": 30.0, "peak_rss_mb": 994}
#: chainmail before the round-trip cuts (H10), same benchmark and machine: per run, HEAD before each of
#: the 4 blob uploads, a HEAD re-check of each tag before its PUT (image-exists check already in).
BEFORE_H10 = {
    "wall_s": 5.04, "cpu_s": 2.66, "registry_per_run": 21.0, "api_per_run": 2.3,
    "registry_by_kind_per_run": {"HEAD blob 404": 4.0, "POST blob upload": 4.0, "PUT blob upload session": 4.0,
                                 "GET tag 404": 2.0, "HEAD tag 404": 2.0, "PUT tag": 2.0, "HEAD tag 200": 2.0,
                                 "HEAD manifest by digest 200": 1.0},
}
#: chainmail before the perf branch (today's first run of this benchmark, same machine; one round):
#: ``sweep`` at a fixed 4 threads, settle read-backs after sequential .sig/.att writes, every command
#: module, storage backend and signer imported at start.
BEFORE_PERF = {
    "floor_wall_s": 1.58, "wall_s": 3.23, "cpu_s": 2.1, "ratio_wall": 2.04, "total_requests_per_run": 17.15,
    "help_ms": 110,
}
CONFIG = {
    "artifacts.taskrun.format": "slsa/v1",
    "artifacts.taskrun.storage": "tekton,oci",
    "artifacts.oci.storage": "tekton,oci",
    "artifacts.oci.format": "simplesigning",
}
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
SIMPLESIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
DSSE = "application/vnd.dsse.envelope.v1+json"
COSIGN_CONFIG = b'{"architecture":"","config":{},"created":"0001-01-01T00:00:00Z","history":[{"created":"0001-01-01T00:00:00Z"}],"os":"","rootfs":{"type":"layers","diff_ids":[]}}'


class ApiLatency:
    """A hook for the API double: sleep like a real API server before each answer; count calls.

    A LIST costs what the real server charges for the objects it returns (≈ 5 ms, plus ≈ 0.95 ms an
    object: 100 objects ≈ 100 ms), so an empty list is as cheap as a GET, as it is on a real server.
    """

    def __init__(self, api: KubeApiDouble) -> None:
        self.api = api
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _matching(self, parts: list[str]) -> int:
        plural = parts[-1]
        namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else None
        with self.api.lock:
            return sum(1 for (p, ns, _) in list(self.api.objects) if p == plural and namespace in (None, ns))

    def __call__(self, method: str, path: str, query: dict[str, str]) -> None:
        parts = [p for p in path.split("/") if p]
        is_list = method == "GET" and parts[-1] in ("taskruns", "pipelineruns", "customruns", "secrets",
                                                     "configmaps", "serviceaccounts")
        label = "LIST" if is_list else method
        with self._lock:
            self.calls[label] += 1
        if is_list:
            returned = min(int(query.get("limit") or 500), self._matching(parts))
            time.sleep(API_LATENCY["GET"] + (API_LATENCY["LIST_100"] - API_LATENCY["GET"]) * returned / 100)
        else:
            time.sleep(API_LATENCY.get(method, 0.005))


def backlog(api: KubeApiDouble, registry: RegistryServer, namespace: str, runs: int) -> list[dict[str, Any]]:
    """``runs`` completed TaskRuns in ``namespace``, each naming its own image pushed to ``registry``."""
    out = []
    for i in range(runs):
        ref = push_test_image(registry, f"{namespace}/app-{i % 10}", seed=f"{namespace}-{i}", tag=f"v{i}")
        image, digest = ref.split("@")
        run = completed_taskrun(f"build-{i:03d}", namespace, image=image, digest=digest)
        api.add(run)
        out.append({"name": run["metadata"]["name"], "uid": run["metadata"]["uid"], "image": image,
                    "digest": digest})
    return out


# ------------------------------------------------------------------ the floor: a bare signing loop

class Floor:
    """The bare loop. One ``requests.Session`` per thread, like any keep-alive client."""

    def __init__(self, api_url: str, token: str, registry_url: str) -> None:
        self.api_url, self.token, self.registry_url = api_url, token, registry_url
        self.key = ec.generate_private_key(ec.SECP256R1())
        self._local = threading.local()

    @property
    def http(self) -> requests.Session:
        sess = getattr(self._local, "sess", None)
        if sess is None:
            sess = self._local.sess = requests.Session()
            sess.trust_env = False
        return sess

    def sign(self, data: bytes) -> bytes:
        return self.key.sign(data, ec.ECDSA(hashes.SHA256()))

    def push_blob(self, repo: str, data: bytes) -> dict[str, Any]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        resp = self.http.post(f"{self.registry_url}/v2/{repo}/blobs/uploads/")
        resp.raise_for_status()
        location = resp.headers["Location"]
        location = location if location.startswith("http") else self.registry_url + location
        sep = "&" if "?" in location else "?"
        self.http.put(f"{location}{sep}digest={digest}", data=data,
                      headers={"Content-Type": "application/octet-stream"}).raise_for_status()
        return {"digest": digest, "size": len(data)}

    def push_signature(self, repo: str, tag: str, layer: bytes, media_type: str, annotations: dict[str, str]) -> None:
        config = self.push_blob(repo, COSIGN_CONFIG)
        blob = self.push_blob(repo, layer)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config},
                    "layers": [{"mediaType": media_type, **blob, "annotations": annotations}]}
        self.http.put(f"{self.registry_url}/v2/{repo}/manifests/{tag}", data=json.dumps(manifest).encode(),
                      headers={"Content-Type": OCI_MANIFEST}).raise_for_status()

    def list_runs(self, namespace: str) -> list[dict[str, Any]]:
        resp = self.http.get(f"{self.api_url}/apis/tekton.dev/v1/namespaces/{namespace}/taskruns",
                             params={"limit": "500"}, headers={"Authorization": f"Bearer {self.token}"})
        resp.raise_for_status()
        return resp.json()["items"]

    def one(self, run: dict[str, Any]) -> None:
        md = run["metadata"]
        results = {r["name"]: r["value"] for r in run["status"]["results"]}
        image, digest = results["IMAGE_URL"], results["IMAGE_DIGEST"]
        host, _, repo = image.partition("/")
        tag = digest.replace(":", "-")
        simple = json.dumps({"critical": {"identity": {"docker-reference": image},
                                          "image": {"docker-manifest-digest": digest},
                                          "type": "cosign container image signature"}, "optional": None},
                            separators=(",", ":")).encode()
        sig = base64.b64encode(self.sign(simple)).decode()
        self.push_signature(repo, f"{tag}.sig", simple, SIMPLESIGNING, {"dev.cosignproject.cosign/signature": sig})
        statement = json.dumps({"_type": "https://in-toto.io/Statement/v0.1",
                                "predicateType": "https://slsa.dev/provenance/v0.2",
                                "subject": [{"name": image, "digest": {"sha256": digest[7:]}}],
                                "predicate": {"builder": {"id": "https://tekton.dev/chains/v2"},
                                              "invocation": {"parameters": run["spec"].get("params", [])},
                                              "metadata": {"buildStartedOn": run["status"].get("startTime")}}},
                               separators=(",", ":")).encode()
        ptype = "application/vnd.in-toto+json"
        pae = b"DSSEv1 %d %s %d %s" % (len(ptype), ptype.encode(), len(statement), statement)
        envelope = json.dumps({"payloadType": ptype, "payload": base64.b64encode(statement).decode(),
                               "signatures": [{"keyid": "", "sig": base64.b64encode(self.sign(pae)).decode()}]},
                              separators=(",", ":")).encode()
        self.push_signature(repo, f"{tag}.att", envelope, DSSE, {"predicateType": "https://slsa.dev/provenance/v0.2"})
        short = f"taskrun-{md['uid']}"
        patch = {"metadata": {"annotations": {
            "chains.tekton.dev/signed": "true",
            f"chains.tekton.dev/payload-{short}": base64.b64encode(statement).decode(),
            f"chains.tekton.dev/signature-{short}": base64.b64encode(envelope).decode(),
        }}}
        self.http.patch(f"{self.api_url}/apis/tekton.dev/v1/namespaces/{md['namespace']}/taskruns/{md['name']}",
                        data=json.dumps(patch), headers={"Authorization": f"Bearer {self.token}",
                                                         "Content-Type": "application/merge-patch+json"},
                        ).raise_for_status()

    def drain(self, namespace: str) -> int:
        runs = self.list_runs(namespace)
        with ThreadPoolExecutor(THREADS) as pool:
            list(pool.map(self.one, runs))
        return len(runs)


def run_floor_in_child(api: KubeApiDouble, registry_url: str, namespace: str) -> dict[str, Any]:
    """The floor in a forked child, so its wall, CPU and peak RSS are its own (like chainmail's)."""
    read, write = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(read)
        try:
            count = Floor(api.url, api.token, registry_url).drain(namespace)
            os.write(write, json.dumps({"signed": count}).encode())
        finally:
            os._exit(0)
    os.close(write)
    _, status, usage = os.wait4(pid, 0)
    wall = time.monotonic() - started
    with os.fdopen(read) as fh:
        report = json.loads(fh.read() or "{}")
    assert os.waitstatus_to_exitcode(status) == 0 and report.get("signed") == RUNS, report
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "threads": THREADS}


# ------------------------------------------------------------------ chainmail

def run_sweep(api: KubeApiDouble, namespace: str, key: str, tmp_path: Path, *, docker_env: dict[str, str]
              ) -> dict[str, Any]:
    kc = api.kubeconfig(tmp_path, name=f"kc-{namespace}")
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "CHAINMAIL_KEY", "DOCKER_CONFIG")}
    env.update(docker_env)
    args = [sys.executable, "-m", "chainmail", "sweep", "-n", namespace, "--kubeconfig", str(kc), "--key", key,
            "-o", "json", *[a for k, v in CONFIG.items() for a in ("--set", f"{k}={v}")]]
    out, err = tmp_path / f"{namespace}.out", tmp_path / f"{namespace}.err"
    with out.open("wb") as o, err.open("wb") as e:
        started = time.monotonic()
        proc = subprocess.Popen(args, stdout=o, stderr=e, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - started
    assert os.waitstatus_to_exitcode(status) == 0, err.read_text()[-3000:]
    report = json.loads(out.read_text())
    assert report["signed"] == RUNS and not report["failed"], report
    concurrency = report.get("concurrency") or {}
    return {"wall_s": round(wall, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "threads": "default",
            "concurrency": {k: concurrency.get(k) for k in ("mode", "start", "final", "peak", "halved")}}


# ------------------------------------------------------------------ checks and the record

def assert_signed_once(api: KubeApiDouble, registry: RegistryServer, namespace: str,
                       runs: list[dict[str, Any]]) -> None:
    """Refuse to report a figure unless every run was signed, and signed exactly once."""
    for run in runs:
        obj = api.get("taskruns", namespace, run["name"])
        assert obj["metadata"]["annotations"].get("chains.tekton.dev/signed") == "true", run["name"]
        repo = run["image"].split("/", 1)[1]
        for suffix in (".sig", ".att"):
            raw = registry.get_manifest(repo, run["digest"].replace(":", "-") + suffix)
            assert raw is not None, f"{run['name']}: no {suffix}"
            layers = json.loads(raw)["layers"]
            assert len(layers) == 1, f"{run['name']}: {len(layers)} {suffix} layers (signed more than once)"


def record(doc: dict[str, Any]) -> None:
    import importlib.metadata as md

    doc["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
    doc["versions"] = {name: md.version(name) for name in ("chainmail", "requests", "cryptography")}
    doc["date"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(doc, indent=2) + "\n")


def request_kind(method: str, path: str, status: int) -> str:
    """A registry request's class for the breakdown: method, API path pattern and (for reads) hit or miss.

    ``GET tags/manifests 404`` and ``HEAD blob 200`` tell a read that found nothing from one that did.
    """
    parts = path.split("/")
    if "uploads" in parts:
        what = "blob upload" if method == "POST" and parts[-1] in ("", "uploads") else "blob upload session"
    elif "blobs" in parts:
        what = "blob"
    elif "manifests" in parts:
        ident = parts[-1]
        what = "manifest by digest" if ":" in ident else "tag"
    elif "referrers" in parts:
        what = "referrers"
    elif path.rstrip("/") == "/v2":
        what = "ping"
    else:
        what = "other"
    suffix = f" {status}" if method in ("GET", "HEAD") else ""
    return f"{method} {what}{suffix}"


class RequestLog:
    """``FaultProxy.on_response`` hook: counts registry answers by :func:`request_kind`."""

    def __init__(self) -> None:
        self.kinds: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.kinds[request_kind(method, path, status)] += 1

    def take(self, runs: int) -> dict[str, float]:
        """Per-run counts since the last call, most frequent first (and reset)."""
        with self._lock:
            out = {k: round(v / runs, 2) for k, v in sorted(self.kinds.items(), key=lambda kv: (-kv[1], kv[0]))}
            self.kinds.clear()
        return out


def count_requests(api: KubeApiDouble, registry: RegistryServer, key: str, tmp_path: Path,
                   latency: ApiLatency) -> dict[str, Any]:
    """Requests per run for both, through a counting proxy in front of the registry (20 runs each)."""
    proxy = FaultProxy(registry.host, rate=0.0, name="count").start()
    kinds = RequestLog()
    proxy.on_response.append(kinds)
    try:
        counts: dict[str, Any] = {}
        for label in ("floor", "chainmail"):
            ns = f"count-{label}"
            # the proxy's host:port names the images, so both sides go through it
            proxied = RegistryServer(proxy.host, registry.process, registry.root)
            n = 20
            runs = backlog(api, proxied, ns, n)
            kinds.take(n)  # drop the pushes of the backlog's images
            before_reg = proxy.stats()["requests"]
            latency.calls.clear()
            sent = None
            if label == "floor":
                Floor(api.url, api.token, f"http://{proxy.host}").drain(ns)
            else:
                kc = api.kubeconfig(tmp_path, name=f"kc-{ns}")
                done = subprocess.run([sys.executable, "-m", "chainmail", "sweep", "-n", ns, "--kubeconfig",
                                       str(kc), "--key", key, "-o", "json",
                                       *[a for k, v in CONFIG.items() for a in ("--set", f"{k}={v}")]],
                                      check=True, capture_output=True)
                # chainmail's own count (chainmail._internal.http.request_counts), when the report has it
                sent = json.loads(done.stdout or b"{}").get("httpRequests")
            reg = proxy.stats()["requests"] - before_reg
            api_calls = sum(latency.calls.values())
            counts[label] = {"registry_per_run": round(reg / n, 2), "api_per_run": round(api_calls / n, 2),
                             "total_per_run": round((reg + api_calls) / n, 2),
                             "api_by_method": dict(latency.calls),
                             "registry_by_kind_per_run": kinds.take(n)}
            if label == "chainmail" and sent:
                counts[label]["sent_by_host"] = sent
            assert len(runs) == n
        return counts
    finally:
        proxy.stop()


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The median of each numeric figure over the rounds; other fields from the median-wall round."""
    mid = sorted(rows, key=lambda r: r["wall_s"])[len(rows) // 2]
    out = dict(mid)
    for key in ("wall_s", "cpu_s", "peak_rss_mb"):
        out[key] = round(statistics.median(r[key] for r in rows), 2)
    return out


def test_bench_backlog_against_floor(kube_api: KubeApiDouble, registry: RegistryServer, key: str,
                                     tmp_path: Path) -> None:
    kube_api.log_bodies = False
    latency = ApiLatency(kube_api)
    kube_api.hooks.append(latency)
    floors, sweeps, rounds = [], [], []
    for i in range(ROUNDS):
        floor_runs = backlog(kube_api, registry, f"floor-{i}", RUNS)
        sweep_runs = backlog(kube_api, registry, f"sweep-{i}", RUNS)
        floor = run_floor_in_child(kube_api, registry.url, f"floor-{i}")
        assert_signed_once(kube_api, registry, f"floor-{i}", floor_runs)
        chainmail = run_sweep(kube_api, f"sweep-{i}", key, tmp_path, docker_env={})
        assert_signed_once(kube_api, registry, f"sweep-{i}", sweep_runs)
        floors.append(floor)
        sweeps.append(chainmail)
        rounds.append({"floor_wall_s": floor["wall_s"], "chainmail_wall_s": chainmail["wall_s"],
                       "ratio_wall": round(chainmail["wall_s"] / floor["wall_s"], 2),
                       "ratio_cpu": round(chainmail["cpu_s"] / floor["cpu_s"], 2),
                       "concurrency_peak": chainmail["concurrency"].get("peak"),
                       "load_average_1m": round(os.getloadavg()[0], 2)})
    requests_per_run = count_requests(kube_api, registry, key, tmp_path, latency)
    floor, chainmail = _median(floors), _median(sweeps)
    ratio = {"wall": round(statistics.median(r["ratio_wall"] for r in rounds), 2),
             "cpu": round(statistics.median(r["ratio_cpu"] for r in rounds), 2)}
    record({"runs": RUNS, "rounds": ROUNDS, "config": CONFIG, "api_latency_s": API_LATENCY, "floor": floor,
            "chainmail": chainmail, "ratio_to_floor": ratio, "per_round": rounds, "requests": requests_per_run,
            "chains": CHAINS, "before_perf": BEFORE_PERF, "before_h10": BEFORE_H10,
            "self_rusage_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)})
    print(f"\nfloor {floor['wall_s']} s / {floor['cpu_s']} CPU-s; chainmail {chainmail['wall_s']} s / "
          f"{chainmail['cpu_s']} CPU-s; ratio wall {ratio['wall']}x, CPU {ratio['cpu']}x (median of {ROUNDS}); "
          f"requests/run floor {requests_per_run['floor']['total_per_run']}, "
          f"chainmail {requests_per_run['chainmail']['total_per_run']}")
