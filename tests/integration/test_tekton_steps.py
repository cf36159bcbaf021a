"""The shipped Tekton steps, run for real: the finally Task's script, the watcher's steps and the sweep CronJob.

Each test takes the step exactly as the YAML in ``tasks/`` and ``pipelines/`` defines it, substitutes
what Tekton (and Triggers) would substitute: param values and defaults, ``$(context.pipelineRun.*)``,
``$(workspaces.X.path)`` ("" for an unbound optional workspace), ``$(tt.params.X)`` and the
TriggerBinding's ``$(body.…)``/``$(header.…)``, and runs it under ``sh`` or as the container's
``command``/``args`` with the real ``chainmail`` first on PATH. The pod's in-cluster config is
replaced by ``KUBECONFIG`` pointing at the Kubernetes API double; images live in the real test
registry (Debian's docker-registry). Nothing is faked: the results are read back from the double
(annotations, one signing PATCH per run) and the registry (``.sig``/``.att`` layers), and checked with
``chainmail verify``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from chainmail import annotations as ann
from chainmail.errors import InputError, NoMatchingSignatureError
from doubles.kube import KubeApiDouble, completed_taskrun, pipelinerun_with_children, running_taskrun
from doubles.registry import RegistryServer, push_test_image
from tooling import require_tool

pytestmark = [
    pytest.mark.registry,
    pytest.mark.skipif(shutil.which("sh") is None or shutil.which("mktemp") is None,
                       reason="needs a POSIX sh and mktemp, as the step image has"),
]

REPO = Path(__file__).resolve().parents[2]
FINALLY_TASK = REPO / "tasks" / "chainmail-finally" / "chainmail-finally.yaml"
FINALLY_SAMPLE = REPO / "tasks" / "chainmail-finally" / "samples" / "pipelinerun-with-finally.yaml"
FINALLY_RBAC = REPO / "tasks" / "chainmail-finally" / "samples" / "rbac.yaml"
WATCHER = REPO / "pipelines" / "chainmail-watcher"
BIN = Path(sys.executable).parent
WATCHER_NS = "chainmail"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"

# The chains-config the finally task gets through its CHAINS_CONFIG param: attestations to the
# annotations and to the registry, image signatures to the registry (Chains' default).
FINALLY_CONFIG = "artifacts.taskrun.storage: tekton,oci\nartifacts.pipelinerun.storage: tekton,oci"
# With deep inspection the PipelineRun attestation names the children's images, so the
# provisional one is stored in the image's .att too.
DEEP_CONFIG = FINALLY_CONFIG + '\nartifacts.pipelinerun.enable-deep-inspection: "true"'
#: (CHAINS_CONFIG, .att layers on the built image: the build TaskRun's attestation, plus the
#: provisional PipelineRun attestation under deep inspection).
FINALLY_CONFIGS = [
    pytest.param(FINALLY_CONFIG, 1, id="tekton-oci"),
    pytest.param(DEEP_CONFIG, 2, id="deep-inspection"),
]
BUILD_TYPES = {1: {"tekton.dev/v1/TaskRun"}, 2: {"tekton.dev/v1/TaskRun", "tekton.dev/v1/PipelineRun"}}


# ------------------------------------------------------------------ Tekton's substitution

_PLACEHOLDER = re.compile(r"\$\((params|context|workspaces|results|step|tt|body|header)\.([^)]*)\)")


@dataclass
class Substitution:
    """What Tekton replaces in a step before the pod starts (values are plain strings)."""

    params: dict[str, str]
    context: dict[str, str]
    workspaces: dict[str, str]
    results: Path | None = None

    def __call__(self, text: str) -> str:
        def one(m: re.Match[str]) -> str:
            scope, rest = m.group(1), m.group(2)
            if scope == "params":
                return self.params[rest]
            if scope == "context":
                return self.context[rest]
            if scope == "workspaces":
                name, attr = rest.rsplit(".", 1)
                assert attr == "path", m.group(0)
                return self.workspaces.get(name, "")  # an unbound optional workspace's path is ""
            if scope in ("results", "step"):
                assert self.results is not None, m.group(0)
                name = re.fullmatch(r"(?:results\.)?([A-Za-z0-9_-]+)\.path", rest)
                assert name, m.group(0)
                return str(self.results / name.group(1))
            raise AssertionError(f"{m.group(0)} is not substituted in a step")

        return _PLACEHOLDER.sub(one, text)


def param_values(specs: list[dict[str, Any]], given: dict[str, str]) -> dict[str, str]:
    """Declared params: the given value, else the default; a required param without a value fails."""
    values: dict[str, str] = {}
    for spec in specs:
        name = spec["name"]
        if name in given:
            values[name] = given[name]
        else:
            assert "default" in spec, f"Tekton rejects the run: param {name} has no value and no default"
            values[name] = spec["default"]
    unknown = set(given) - set(values)
    assert not unknown, f"params not declared: {unknown}"
    return values


def docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def doc(path: Path, kind: str, name: str | None = None) -> dict[str, Any]:
    (found,) = [d for d in docs(path) if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    return found


# ------------------------------------------------------------------ running steps


@dataclass
class StepResult:
    rc: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return f"exit {self.rc}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


def pod_env(tmp: Path, kubeconfig: Path) -> dict[str, str]:
    """The bare environment of a step container, with the API reached through KUBECONFIG."""
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return {"PATH": f"{BIN}{os.pathsep}/usr/bin{os.pathsep}/bin", "HOME": str(home), "TMPDIR": str(tmp),
            "KUBECONFIG": str(kubeconfig), "LANG": "C.UTF-8"}


def step_env(step: dict[str, Any], sub: Substitution) -> dict[str, str]:
    out = {}
    for entry in step.get("env") or []:
        assert "valueFrom" not in entry, "these steps take every value from params"
        out[entry["name"]] = sub(entry["value"])
    return out


def finally_step(params: dict[str, str], pr: dict[str, Any],
                 workspaces: dict[str, str] | None = None) -> tuple[str, dict[str, str]]:
    """The finally Task's script and env, as Tekton renders them for the PipelineRun ``pr``."""
    task = doc(FINALLY_TASK, "Task")
    (step,) = task["spec"]["steps"]
    meta = pr["metadata"]
    # The Pipeline passes the context variables, exactly as the Task's description asks.
    given = {"PIPELINERUN_NAME": "$(context.pipelineRun.name)",
             "PIPELINERUN_NAMESPACE": "$(context.pipelineRun.namespace)",
             "PIPELINERUN_UID": "$(context.pipelineRun.uid)", **params}
    context = {"pipelineRun.name": meta["name"], "pipelineRun.namespace": meta["namespace"],
               "pipelineRun.uid": meta["uid"]}
    pipeline_level = Substitution({}, context, {})
    values = param_values(task["spec"]["params"], {k: pipeline_level(v) for k, v in given.items()})
    sub = Substitution(values, context, workspaces or {})
    return sub(step["script"]), step_env(step, sub)


def start_script(script: str, env: dict[str, str], tmp: Path, name: str) -> subprocess.Popen[str]:
    path = tmp / f"{name}.sh"
    path.write_text(script)
    return subprocess.Popen(["sh", str(path)], env=env, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> StepResult:
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
    return StepResult(proc.returncode, out, err)


def run_container(command: list[str], args: list[str], env: dict[str, str], tmp: Path) -> StepResult:
    assert command == ["chainmail"], command
    exe = shutil.which(command[0], path=env["PATH"])
    assert exe and Path(exe).parent == BIN, f"not the venv's chainmail: {exe}"
    proc = subprocess.run([exe, *args], env=env, cwd=tmp, capture_output=True, text=True, timeout=300, check=False)
    return StepResult(proc.returncode, proc.stdout, proc.stderr)


def remap(value: str, mounts: dict[str, Path]) -> str:
    """A path under a container mount, moved to the test's directory for that mount."""
    for mount, local in mounts.items():
        if value == mount or value.startswith(mount + "/"):
            return str(local) + value[len(mount):]
    return value


# ------------------------------------------------------------------ cluster and registry content


def _fixture_key(shared: Path, name: str) -> Path:
    path = shared / "fixtures" / "cosign-keys" / name
    if not (path / "cosign.key").exists():
        require_tool("../shared", f"cosign test key not found at {path}")
    return path


@pytest.fixture(scope="module")
def key_dir(shared: Path) -> Path:
    return _fixture_key(shared, "ecdsa-p256-password")


@pytest.fixture(scope="module")
def other_key_dir(shared: Path) -> Path:
    return _fixture_key(shared, "ecdsa-p256-empty-password")


def key_secret(key_dir: Path, namespace: str, name: str = "signing-secrets") -> dict[str, Any]:
    data = {f: base64.b64encode((key_dir / f).read_bytes()).decode()
            for f in ("cosign.key", "cosign.pub", "cosign.password")}
    return {"kind": "Secret", "metadata": {"name": name, "namespace": namespace}, "type": "Opaque", "data": data}


def recent(seconds_ago: int = 60) -> str:
    return (dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def ensure_namespace(api: KubeApiDouble, namespace: str) -> None:
    """The namespace's ``default`` ServiceAccount (every namespace has one; the runs name it)."""
    if api.get("serviceaccounts", namespace, "default") is None:
        api.add({"kind": "ServiceAccount", "metadata": {"name": "default", "namespace": namespace}})


def running_pipelinerun(api: KubeApiDouble, registry: RegistryServer, namespace: str,
                        name: str) -> tuple[dict[str, Any], str]:
    """A PipelineRun in its finally phase: clone and build finished (build pushed an image), sign running.

    Returns the PipelineRun and the pushed image (``host/repo@digest``).
    """
    pr, children = pipelinerun_with_children(name, namespace, tasks=("clone", "build"), finished=False,
                                             finally_tasks=("sign",), uid=str(uuid.uuid4()))
    image = push_test_image(registry, f"{namespace}/{name}", seed=name)
    repo, digest = image.split("@")
    built: list[dict[str, Any]] = []
    for child in children:
        meta = child["metadata"]
        task = meta["labels"]["tekton.dev/pipelineTask"]
        if task == "sign":
            new = running_taskrun(meta["name"], namespace, labels=meta["labels"], image="")
        else:
            new = completed_taskrun(meta["name"], namespace, labels=meta["labels"], finished=recent(),
                                    image=repo if task == "build" else "", digest=digest)
        new["metadata"]["ownerReferences"] = meta["ownerReferences"]
        built.append(new)
    for obj in (pr, *built):
        api.add(obj)
    ensure_namespace(api, namespace)
    return pr, image


def finish_pipelinerun(api: KubeApiDouble, namespace: str, name: str, *, succeeded: bool = True) -> None:
    """The finally TaskRun, then the PipelineRun, finish (as Tekton writes their status)."""
    with api.lock:
        sign = api.objects[("taskruns", namespace, f"{name}-sign")]
        sign["status"] = completed_taskrun(f"{name}-sign", namespace, image="", finished=recent(10))["status"]
        sign["metadata"]["resourceVersion"] = api.next_rv()
        obj = api.objects[("pipelineruns", namespace, name)]
        obj["status"]["conditions"] = [{"type": "Succeeded", "status": "True" if succeeded else "False",
                                        "reason": "Succeeded" if succeeded else "Failed",
                                        "lastTransitionTime": recent(5)}]
        obj["status"]["completionTime"] = recent(5)
        obj["status"]["results"] = []
        obj["metadata"]["resourceVersion"] = api.next_rv()


def standalone_taskrun(api: KubeApiDouble, registry: RegistryServer, namespace: str, name: str,
                       **kwargs: Any) -> tuple[dict[str, Any], str]:
    """A TaskRun (no PipelineRun) that finished a minute ago and pushed an image; returns it and the image."""
    image = push_test_image(registry, f"{namespace}/{name}", seed=name)
    repo, digest = image.split("@")
    run = api.add(completed_taskrun(name, namespace, image=repo, digest=digest, uid=str(uuid.uuid4()),
                                    finished=recent(), **kwargs))
    ensure_namespace(api, namespace)
    return run, image


def provisional_patches(api: KubeApiDouble, namespace: str, name: str) -> int:
    n = 0
    for r in api.writes("pipelineruns"):
        notes = ((r.body or {}).get("metadata") or {}).get("annotations") or {}
        if r.key == ("pipelineruns", namespace, name) and notes.get(ann.PROVISIONAL_SIGNED) == "true":
            n += 1
    return n


def layers(registry: RegistryServer, image: str, suffix: str) -> list[dict[str, Any]]:
    """The layers of the image's ``.sig`` or ``.att`` manifest ([] when there is none)."""
    host_repo, digest = image.split("@")
    repo = host_repo.split("/", 1)[1]
    raw = registry.get_manifest(repo, f"{digest.replace(':', '-')}.{suffix}")
    return [] if raw is None else json.loads(raw)["layers"]


def att_statements(registry: RegistryServer, image: str) -> list[dict[str, Any]]:
    """The in-toto statements in the image's ``.att`` layers (DSSE envelopes), in layer order."""
    repo = image.split("@")[0].split("/", 1)[1]
    out = []
    for layer in layers(registry, image, "att"):
        envelope = json.loads(registry.get_blob(repo, layer["digest"]))
        out.append(json.loads(base64.b64decode(envelope["payload"])))
    return out


def chains_annotations(obj: dict[str, Any], kind: str) -> dict[str, str]:
    """The payload/signature/cert/chain annotations Chains writes for the run's own attestation."""
    uid = obj["metadata"]["uid"]
    notes = ann.annotations_of(obj)
    keys = [f(f"{kind}-{uid}") for f in (ann.payload_key, ann.signature_key, ann.cert_key, ann.chain_key)]
    missing = [k for k in keys if k not in notes]
    assert not missing, f"{obj['metadata']['name']}: missing {missing}"
    return {k: notes[k] for k in keys}


def verify(what: str, image: str, pub: Path, tmp: Path, *flags: str) -> StepResult:
    """``chainmail verify image|attestation IMAGE --key PUB …`` (the registry only; no cluster)."""
    env = pod_env(tmp, tmp / "no-kubeconfig")
    # these runs are signed with transparency off: verify as before the log was checked
    return run_container(["chainmail"], ["verify", what, "--insecure-ignore-tlog", image, "--key", str(pub), *flags],
                         env, tmp)


def assert_image_signed_once(registry: RegistryServer, image: str, pub: Path, tmp: Path, *,
                             atts: int, att_type: str = "slsaprovenance", docker_config: Path | None = None) -> None:
    sig = layers(registry, image, "sig")
    assert len(sig) == 1, f"{image}: {len(sig)} .sig layers"
    att = layers(registry, image, "att")
    assert len(att) == atts, f"{image}: {len(att)} .att layers, expected {atts}"
    statements = {json.dumps(s, sort_keys=True) for s in att_statements(registry, image)}
    assert len(statements) == atts, "the same attestation stored twice"
    login = ["--docker-config", str(docker_config)] if docker_config else []
    out = verify("image", image, pub, tmp, *login)
    assert out.rc == 0, out
    out = verify("attestation", image, pub, tmp, "--type", att_type, *login)
    assert out.rc == 0, out


def verify_run(api: KubeApiDouble, tmp: Path, pub: Path, kind: str, namespace: str, name: str) -> StepResult:
    env = pod_env(tmp, api.kubeconfig(tmp, name=f"kc-verify-{name}"))
    return run_container(["chainmail"], ["verify", "run", "--insecure-ignore-tlog", name, "-n", namespace,
                                         "--kind", kind, "--key", str(pub)], env, tmp)


# ------------------------------------------------------------------ the finally Task


def finally_kubeconfig(api: KubeApiDouble, where: Path, ns: str) -> Path:
    """A kubeconfig for the finally step's pod: the sample's ``pipeline-signer`` account in ``ns``, with
    exactly the permissions the sample's rbac.yaml grants it."""
    if api.get("serviceaccounts", ns, "pipeline-signer") is None:
        api.load_rbac(FINALLY_RBAC, namespace=ns)
    return api.kubeconfig(where, namespace=ns, token=api.sa_token(ns, "pipeline-signer"),
                          name=f"kubeconfig-{where.name}-signer")


@pytest.mark.parametrize(("config", "atts"), FINALLY_CONFIGS)
def test_finally_step_signs_the_children_and_a_provisional_pipelinerun(kube_api, registry, tmp_path, key_dir,
                                                                       config, atts):
    ns, name = "team-b", unique("release")
    kube_api.add(key_secret(key_dir, ns))
    pr, image = running_pipelinerun(kube_api, registry, ns, name)
    script, env = finally_step({"CHAINS_CONFIG": config}, pr)
    assert env["PARAM_KEY"] == "" and env["WORKSPACE_SIGNING_SECRETS_PATH"] == "", "the default key is used"

    out = finish(start_script(script, {**pod_env(tmp_path, finally_kubeconfig(kube_api, tmp_path, ns)), **env},
                              tmp_path, "finally"))
    assert out.rc == 0, out
    assert out.stdout.splitlines() == [f"TaskRun {name}-clone: signed", f"TaskRun {name}-build: signed",
                                       f"PipelineRun {ns}/{name}: provisional"]

    # Each finished child: signed once, with Chains' annotations for its attestation.
    assert kube_api.signed_writes() == Counter({("taskruns", ns, f"{name}-clone"): 1,
                                                ("taskruns", ns, f"{name}-build"): 1})
    for child in ("clone", "build"):
        obj = kube_api.get("taskruns", ns, f"{name}-{child}")
        notes = ann.annotations_of(obj)
        assert notes[ann.SIGNED] == "true" and ann.CLAIM not in notes
        statement = json.loads(base64.b64decode(chains_annotations(obj, "taskrun")[
            ann.payload_key(f"taskrun-{obj['metadata']['uid']}")]))
        assert statement["predicateType"] == SLSA_V02
        res = verify_run(kube_api, tmp_path, key_dir / "cosign.pub", "taskrun", ns, f"{name}-{child}")
        assert res.rc == 0, res
    # The finally TaskRun itself is still running and is not touched.
    assert ann.annotations_of(kube_api.get("taskruns", ns, f"{name}-sign")) == {}

    # The image: one signature and one attestation per attestation naming it (the build TaskRun's,
    # and under deep inspection the provisional PipelineRun's), all verify.
    assert_image_signed_once(registry, image, key_dir / "cosign.pub", tmp_path, atts=atts)
    statements = att_statements(registry, image)
    assert {s["predicate"]["buildType"] for s in statements} == BUILD_TYPES[atts]
    for statement in statements:
        assert {"name": image.split("@")[0], "digest": {"sha256": image.split(":")[-1]}} in statement["subject"]

    # The PipelineRun: a provisional attestation, never chains.tekton.dev/signed.
    pr_obj = kube_api.get("pipelineruns", ns, name)
    notes = ann.annotations_of(pr_obj)
    assert notes[ann.PROVISIONAL_SIGNED] == "true"
    assert ann.SIGNED not in notes
    chains_annotations(pr_obj, "pipelinerun")
    assert provisional_patches(kube_api, ns, name) == 1
    res = verify_run(kube_api, tmp_path, key_dir / "cosign.pub", "pipelinerun", ns, name)
    assert res.rc == 0, res


def test_finally_step_reads_chains_config_from_a_configmap(kube_api, registry, tmp_path, key_dir):
    """CHAINS_CONFIGMAP (NAMESPACE/NAME) instead of the inline config; the same key Secret."""
    ns, name = "team-c", unique("cm")
    kube_api.add(key_secret(key_dir, ns))
    kube_api.add({"kind": "ConfigMap", "metadata": {"name": "chains-config", "namespace": "tekton-chains"},
                  "data": {"artifacts.taskrun.storage": "tekton,oci", "artifacts.taskrun.format": "slsa/v2alpha4",
                           "artifacts.pipelinerun.storage": "tekton"}})
    pr, image = running_pipelinerun(kube_api, registry, ns, name)
    script, env = finally_step({"CHAINS_CONFIGMAP": "tekton-chains/chains-config"}, pr)
    kubeconfig = finally_kubeconfig(kube_api, tmp_path, ns)
    denied = finish(start_script(script, {**pod_env(tmp_path, kubeconfig), **env}, tmp_path, "finally"))
    assert denied.rc == 19 and "cannot get configmaps tekton-chains/chains-config" in denied.stderr, denied
    grant = (FINALLY_RBAC.parent / "rbac-chains-configmap.yaml").read_text().replace("team-a", ns)
    for obj in yaml.safe_load_all(grant):
        kube_api.load_rbac(obj)
    out = finish(start_script(script, {**pod_env(tmp_path, finally_kubeconfig(kube_api, tmp_path, ns)), **env},
                              tmp_path, "finally"))
    assert out.rc == 0, out
    assert len(layers(registry, image, "sig")) == 1
    (statement,) = att_statements(registry, image)
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1", "the ConfigMap's format was used"
    res = verify("attestation", image, key_dir / "cosign.pub", tmp_path, "--type", "slsaprovenance1")
    assert res.rc == 0, res
    assert ann.annotations_of(kube_api.get("pipelineruns", ns, name))[ann.PROVISIONAL_SIGNED] == "true"


def test_finally_step_as_the_sample_pipeline_wires_it(kube_api, auth_registry, tmp_path, key_dir):
    """The sample's finally entry verbatim (context params, multi-line CHAINS_CONFIG), its dockerconfig
    workspace bound to a kubernetes.io/dockerconfigjson Secret, pushing to a registry that needs a login."""
    sample = doc(FINALLY_SAMPLE, "PipelineRun")
    (entry,) = sample["spec"]["pipelineSpec"]["finally"]
    assert entry["taskRef"] == {"name": doc(FINALLY_TASK, "Task")["metadata"]["name"]}
    params = {p["name"]: p["value"] for p in entry["params"]}
    assert {"PIPELINERUN_NAME", "PIPELINERUN_NAMESPACE", "PIPELINERUN_UID"} <= set(params)
    assert [w["name"] for w in entry["workspaces"]] == ["dockerconfig"]
    secret_volume = tmp_path / "ws-dockerconfig"  # a dockerconfigjson Secret mounted as a directory
    secret_volume.mkdir()
    user, password = auth_registry.auth
    login = base64.b64encode(f"{user}:{password}".encode()).decode()
    (secret_volume / ".dockerconfigjson").write_text(json.dumps({"auths": {auth_registry.host: {"auth": login}}}))

    ns, name = "team-j", unique("build-and-sign")
    kube_api.add(key_secret(key_dir, ns))
    pr, image = running_pipelinerun(kube_api, auth_registry, ns, name)
    script, env = finally_step(params, pr, workspaces={"dockerconfig": str(secret_volume)})
    assert env["WORKSPACE_DOCKERCONFIG_PATH"] == str(secret_volume)
    out = finish(start_script(script, {**pod_env(tmp_path, finally_kubeconfig(kube_api, tmp_path, ns)), **env},
                              tmp_path, "finally"))
    assert out.rc == 0, out
    assert out.stdout.splitlines()[-1] == f"PipelineRun {ns}/{name}: provisional"
    assert kube_api.signed_writes() == Counter({("taskruns", ns, f"{name}-clone"): 1,
                                                ("taskruns", ns, f"{name}-build"): 1})
    assert_image_signed_once(auth_registry, image, key_dir / "cosign.pub", tmp_path, atts=1,
                             att_type="slsaprovenance1", docker_config=secret_volume)
    (statement,) = att_statements(auth_registry, image)
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1", "the sample's slsa/v2alpha4"
    notes = ann.annotations_of(kube_api.get("pipelineruns", ns, name))
    assert notes[ann.PROVISIONAL_SIGNED] == "true" and ann.SIGNED not in notes


@pytest.mark.parametrize(("config", "atts"), FINALLY_CONFIGS)
def test_two_concurrent_finally_signers_produce_one_signature_set(kube_api, registry, tmp_path, key_dir,
                                                                  config, atts):
    ns, name = "team-d", unique("race")
    kube_api.add(key_secret(key_dir, ns))
    pr, image = running_pipelinerun(kube_api, registry, ns, name)
    script, env = finally_step({"CHAINS_CONFIG": config}, pr)
    kube_api.delay = 0.002  # widen the window between read and claim
    envs = []
    for i in range(2):
        pod = tmp_path / f"pod-{i}"
        pod.mkdir()
        envs.append((pod, {**pod_env(pod, finally_kubeconfig(kube_api, pod, ns)), **env}))
    gate = threading.Barrier(2)
    procs: list[subprocess.Popen[str] | None] = [None, None]

    def launch(i: int) -> None:
        pod, penv = envs[i]
        gate.wait()
        procs[i] = start_script(script, penv, pod, "finally")

    threads = [threading.Thread(target=launch, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    results = [finish(p) for p in procs if p is not None]
    assert len(results) == 2
    for res in results:
        assert res.rc == 0, res
        assert res.stdout.splitlines()[-1] == f"PipelineRun {ns}/{name}: provisional"

    # Each child signed by exactly one of them; the other skipped it.
    assert kube_api.signed_writes() == Counter({("taskruns", ns, f"{name}-clone"): 1,
                                                ("taskruns", ns, f"{name}-build"): 1})
    child_lines = Counter(line for res in results for line in res.stdout.splitlines()[:-1])
    for child in ("clone", "build"):
        line = f"TaskRun {name}-{child}: "
        assert child_lines[line + "signed"] == 1, child_lines
        assert child_lines[line + "skipped: claimed by another signer"] + \
            child_lines[line + "skipped: already signed"] == 1, child_lines
    # One signature set in the registry: no duplicate .sig or .att layers (both signers store the
    # same provisional PipelineRun attestation; it is kept once).
    assert_image_signed_once(registry, image, key_dir / "cosign.pub", tmp_path, atts=atts)
    assert {s["predicate"]["buildType"] for s in att_statements(registry, image)} == BUILD_TYPES[atts]
    # One set of annotations on every child, and it verifies.
    for child in ("clone", "build"):
        obj = kube_api.get("taskruns", ns, f"{name}-{child}")
        assert sum(1 for k in ann.annotations_of(obj) if k.startswith(ann.PREFIX + "signature-")) == 1
        res = verify_run(kube_api, tmp_path, key_dir / "cosign.pub", "taskrun", ns, f"{name}-{child}")
        assert res.rc == 0, res
    notes = ann.annotations_of(kube_api.get("pipelineruns", ns, name))
    assert notes[ann.PROVISIONAL_SIGNED] == "true" and ann.SIGNED not in notes
    assert sum(1 for k in notes if k.startswith(ann.PREFIX + "signature-")) == 1
    # Whichever provisional write landed last, its payload and signature belong together.
    res = verify_run(kube_api, tmp_path, key_dir / "cosign.pub", "pipelinerun", ns, name)
    assert res.rc == 0, res


def test_finally_step_refuses_another_runs_uid(kube_api, registry, tmp_path, key_dir):
    ns, name = "team-e", unique("uid")
    kube_api.add(key_secret(key_dir, ns))
    pr, image = running_pipelinerun(kube_api, registry, ns, name)
    impostor = {**pr, "metadata": {**pr["metadata"], "uid": str(uuid.uuid4())}}
    script, env = finally_step({"CHAINS_CONFIG": FINALLY_CONFIG}, impostor)
    out = finish(start_script(script, {**pod_env(tmp_path, finally_kubeconfig(kube_api, tmp_path, ns)), **env},
                              tmp_path, "finally"))
    assert out.rc == InputError.exit_code, out
    assert (f"PipelineRun {ns}/{name} has uid {pr['metadata']['uid']}, not {impostor['metadata']['uid']}: "
            "it is not the run that started this task") in out.stderr, out
    assert kube_api.writes() == []
    assert layers(registry, image, "sig") == [] and layers(registry, image, "att") == []


# ------------------------------------------------------------------ the watcher


def watcher_cluster(api: KubeApiDouble, key_dir: Path, other_key_dir: Path) -> dict[str, str]:
    """What the watcher's install puts in its namespace: the shipped ConfigMaps and the key Secrets.

    Returns the namespace-keys ConfigMap's data (the files of its workspace).
    """
    config = WATCHER / "config.yaml"
    for cm in docs(config):
        api.add(cm)
    api.add(key_secret(key_dir, WATCHER_NS))
    keys = yaml.safe_load(doc(config, "ConfigMap", "chainmail-namespace-keys")["data"]["namespace-keys.yaml"])
    for uri in keys.values():  # every key the map names: here all the other test key
        secret_ns, secret = uri.removeprefix("k8s://").split("/")
        assert secret_ns == WATCHER_NS
        api.add(key_secret(other_key_dir, WATCHER_NS, secret))
    return dict(doc(config, "ConfigMap", "chainmail-namespace-keys")["data"])


def _resolve_path(doc_: dict[str, Any], path: str) -> str:
    value: Any = doc_
    for part in path.split("."):
        value = value[part]
    return str(value)


def triggered_pipelinerun(kind: str, event_body: dict[str, Any], ce_type: str) -> dict[str, Any]:
    """The signing PipelineRun the EventListener creates: TriggerBinding → TriggerTemplate."""
    triggers = WATCHER / "triggers.yaml"
    binding = doc(triggers, "TriggerBinding", f"chainmail-{kind}")
    template = doc(triggers, "TriggerTemplate", "chainmail-sign-run")

    def bind(value: str) -> str:
        value = re.sub(r"\$\(body\.([^)]+)\)", lambda m: _resolve_path(event_body, m.group(1)), value)
        return re.sub(r"\$\(header\.([^)]+)\)", lambda m: {"ce-type": ce_type}[m.group(1).lower()], value)

    bound = {p["name"]: bind(p["value"]) for p in binding["spec"]["params"]}
    tt = param_values(template["spec"]["params"], bound)
    (resource,) = template["spec"]["resourcetemplates"]
    text = re.sub(r"\$\(tt\.params\.([a-z-]+)\)", lambda m: tt[m.group(1)], json.dumps(resource))
    pr = json.loads(text)
    pr["metadata"].update(namespace=WATCHER_NS, uid=str(uuid.uuid4()))  # Triggers creates it in the EL's namespace
    return pr


def watcher_steps(pr: dict[str, Any], workspaces: dict[str, Path]) -> list[tuple[str, list[str], list[str],
                                                                                   dict[str, str]]]:
    """The steps of the Pipeline's one task for the PipelineRun ``pr``: (name, command, args, env)."""
    pipeline = doc(WATCHER / "chainmail-watcher.yaml", "Pipeline", pr["spec"]["pipelineRef"]["name"])
    assert pr["metadata"]["namespace"] == pipeline["metadata"]["namespace"]
    context = {"pipelineRun.name": pr["metadata"]["name"], "pipelineRun.namespace": pr["metadata"]["namespace"],
               "pipelineRun.uid": pr["metadata"]["uid"]}
    pipeline_params = param_values(pipeline["spec"]["params"], {p["name"]: p["value"] for p in pr["spec"]["params"]})
    bound_ws = {w["name"] for w in pr["spec"]["workspaces"]}
    (task,) = pipeline["spec"]["tasks"]
    at_pipeline = Substitution(pipeline_params, context, {})
    task_params = param_values(task["taskSpec"]["params"],
                               {p["name"]: at_pipeline(p["value"]) for p in task["params"]})
    task_ws = {w["name"]: str(workspaces[w["workspace"]]) for w in task["workspaces"] if w["workspace"] in bound_ws}
    sub = Substitution(task_params, context, task_ws)
    steps = []
    for step in task["taskSpec"]["steps"]:
        steps.append((step["name"], [sub(c) for c in step["command"]], [sub(a) for a in step["args"]],
                      step_env(step, sub)))
    return steps


def run_watcher(api: KubeApiDouble, tmp: Path, kind: str, run: dict[str, Any], namespace_keys: dict[str, str], *,
                claimed_uid: str | None = None, bind_dockerconfig: bool = True) -> list[tuple[str, StepResult]]:
    """Deliver a finished-run event to the watcher and run its signing PipelineRun's steps in order.

    The event body is the run in the form Tekton's events carry it; ``claimed_uid`` lies about its uid.
    ``bind_dockerconfig=False`` leaves the optional dockerconfig workspace unbound (a signing
    PipelineRun created by hand), so its path is "".
    """
    body_key = {"taskrun": "taskRun", "pipelinerun": "pipelineRun"}[kind]
    body = {body_key: json.loads(json.dumps(run))}
    if claimed_uid is not None:
        body[body_key]["metadata"]["uid"] = claimed_uid
    pr = triggered_pipelinerun(kind, body, f"dev.tekton.event.{kind}.successful.v1")
    if not bind_dockerconfig:
        pr["spec"]["workspaces"] = [w for w in pr["spec"]["workspaces"] if w["name"] != "dockerconfig"]
    ws_keys = tmp / "ws-namespace-keys"  # the ConfigMap's data as files
    ws_keys.mkdir()
    for fname, content in namespace_keys.items():
        (ws_keys / fname).write_text(content)
    ws_docker = tmp / "ws-dockerconfig"  # bound to the optional Secret registry-credentials, which is absent
    ws_docker.mkdir()
    ws_ca = tmp / "ws-ssl-ca-directory"  # bound to the optional ConfigMap chainmail-ca-bundle, which is absent
    ws_ca.mkdir()
    scratch = tmp / "scratch"
    scratch.mkdir()
    pipeline = doc(WATCHER / "chainmail-watcher.yaml", "Pipeline")
    (task,) = pipeline["spec"]["tasks"]
    mounts = {v["mountPath"]: scratch for s in task["taskSpec"]["steps"] for v in s.get("volumeMounts") or []}
    base = pod_env(tmp, api.kubeconfig(tmp, namespace=WATCHER_NS))
    done = []
    for name, command, args, env in watcher_steps(pr, {"namespace-keys": ws_keys, "dockerconfig": ws_docker,
                                                      "ssl-ca-directory": ws_ca}):
        res = run_container(command, [remap(a, mounts) for a in args], {**base, **env}, tmp)
        done.append((name, res))
        if res.rc != 0:
            break  # Tekton skips the remaining steps
    return done


@pytest.mark.parametrize("bind_dockerconfig", [True, False], ids=["dockerconfig-secret-absent", "dockerconfig-unbound"])
def test_watcher_signs_a_standalone_taskrun_from_its_event(kube_api, registry, tmp_path, key_dir, other_key_dir,
                                                           bind_dockerconfig):
    namespace_keys = watcher_cluster(kube_api, key_dir, other_key_dir)
    ns, name = "team-f", unique("build")
    run, image = standalone_taskrun(kube_api, registry, ns, name)
    steps = run_watcher(kube_api, tmp_path, "taskrun", run, namespace_keys, bind_dockerconfig=bind_dockerconfig)
    assert [s for s, _ in steps] == ["check-run", "sweep"]
    for step, res in steps:
        assert res.rc == 0, f"{step}: {res}"
    assert (tmp_path / "scratch" / "snapshot.json").exists()

    assert kube_api.signed_writes() == Counter({("taskruns", ns, name): 1})
    obj = kube_api.get("taskruns", ns, name)
    assert ann.annotations_of(obj)[ann.SIGNED] == "true"
    chains_annotations(obj, "taskrun")
    # team-f is not in the namespace-keys map: the default key, k8s://chainmail/signing-secrets.
    assert_image_signed_once(registry, image, key_dir / "cosign.pub", tmp_path, atts=1,
                             att_type="slsaprovenance1")
    (statement,) = att_statements(registry, image)
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1", "chainmail-config's slsa/v2alpha4"


def test_watcher_signs_with_the_namespace_key_from_the_map(kube_api, registry, tmp_path, key_dir, other_key_dir):
    namespace_keys = watcher_cluster(kube_api, key_dir, other_key_dir)
    ns, name = "team-a", unique("build")  # mapped to k8s://chainmail/signing-secrets-team-a
    run, image = standalone_taskrun(kube_api, registry, ns, name)
    steps = run_watcher(kube_api, tmp_path, "taskrun", run, namespace_keys)
    assert all(res.rc == 0 for _, res in steps), steps
    assert verify("image", image, other_key_dir / "cosign.pub", tmp_path).rc == 0
    wrong = verify("image", image, key_dir / "cosign.pub", tmp_path)
    assert wrong.rc == NoMatchingSignatureError.exit_code, f"not signed with the default key: {wrong}"


def test_watcher_refuses_an_event_with_the_wrong_uid(kube_api, registry, tmp_path, key_dir, other_key_dir):
    namespace_keys = watcher_cluster(kube_api, key_dir, other_key_dir)
    ns, name = "team-f", unique("forged")
    run, image = standalone_taskrun(kube_api, registry, ns, name)
    forged = str(uuid.uuid4())
    steps = run_watcher(kube_api, tmp_path, "taskrun", run, namespace_keys, claimed_uid=forged)
    assert [s for s, _ in steps] == ["check-run"], "the sweep never starts"
    res = steps[0][1]
    assert res.rc == InputError.exit_code, res
    assert f"TaskRun {ns}/{name} has uid {run['metadata']['uid']}, not {forged}" in res.stderr, res
    assert kube_api.writes() == []
    assert ann.annotations_of(kube_api.get("taskruns", ns, name)) == {}
    assert layers(registry, image, "sig") == [] and layers(registry, image, "att") == []


def test_watcher_signs_a_finished_pipelinerun_after_its_children(kube_api, registry, tmp_path, key_dir,
                                                                  other_key_dir):
    namespace_keys = watcher_cluster(kube_api, key_dir, other_key_dir)
    ns, name = "team-g", unique("release")
    pr, image = running_pipelinerun(kube_api, registry, ns, name)
    finish_pipelinerun(kube_api, ns, name)
    steps = run_watcher(kube_api, tmp_path, "pipelinerun", kube_api.get("pipelineruns", ns, name), namespace_keys)
    assert all(res.rc == 0 for _, res in steps), steps
    writes = kube_api.signed_writes()
    assert writes == Counter({("taskruns", ns, f"{name}-clone"): 1, ("taskruns", ns, f"{name}-build"): 1,
                              ("taskruns", ns, f"{name}-sign"): 1, ("pipelineruns", ns, name): 1})
    order = [r.key for r in kube_api.writes()
             if ((r.body or {}).get("metadata") or {}).get("annotations", {}).get(ann.SIGNED) == "true"]
    assert order[-1] == ("pipelineruns", ns, name), "children before their PipelineRun"
    assert len(layers(registry, image, "sig")) == 1


def test_finally_then_the_watcher_signs_the_finished_run_once(kube_api, registry, tmp_path, key_dir,
                                                               other_key_dir):
    """The whole life of a run: the finally step signs children + a provisional attestation, the run
    ends, its event reaches the watcher, which signs only what is left: the finally TaskRun and the
    final PipelineRun attestation."""
    namespace_keys = watcher_cluster(kube_api, key_dir, other_key_dir)
    ns, name = "team-k", unique("release")
    kube_api.add(key_secret(key_dir, ns))
    pr, image = running_pipelinerun(kube_api, registry, ns, name)
    script, env = finally_step({"CHAINS_CONFIG": FINALLY_CONFIG}, pr)
    pod = tmp_path / "finally-pod"
    pod.mkdir()
    out = finish(start_script(script, {**pod_env(pod, finally_kubeconfig(kube_api, pod, ns)), **env}, pod,
                              "finally"))
    assert out.rc == 0, out
    provisional = ann.annotations_of(kube_api.get("pipelineruns", ns, name))
    assert provisional[ann.PROVISIONAL_SIGNED] == "true"

    finish_pipelinerun(kube_api, ns, name)
    kube_api.request_log.clear()
    watcher = tmp_path / "watcher-pod"
    watcher.mkdir()
    steps = run_watcher(kube_api, watcher, "pipelinerun", kube_api.get("pipelineruns", ns, name), namespace_keys)
    assert all(res.rc == 0 for _, res in steps), steps
    assert kube_api.signed_writes() == Counter({("taskruns", ns, f"{name}-sign"): 1, ("pipelineruns", ns, name): 1})
    final = kube_api.get("pipelineruns", ns, name)
    notes = ann.annotations_of(final)
    assert notes[ann.SIGNED] == "true"
    payload = ann.payload_key(f"pipelinerun-{pr['metadata']['uid']}")
    assert notes[payload] != provisional[payload], "the final attestation replaced the provisional one"
    res = verify_run(kube_api, tmp_path, key_dir / "cosign.pub", "pipelinerun", ns, name)
    assert res.rc == 0, res
    # The image keeps the one signature and the one attestation the finally step stored.
    assert_image_signed_once(registry, image, key_dir / "cosign.pub", tmp_path, atts=1)


# ------------------------------------------------------------------ the sweep CronJob


def test_cronjob_sweep_signs_every_completed_unsigned_run(kube_api, registry, tmp_path, key_dir, other_key_dir):
    namespace_keys = watcher_cluster(kube_api, key_dir, other_key_dir)
    cron = doc(WATCHER / "cronjob.yaml", "CronJob")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}

    # The pod's volumes, as local directories.
    mounts: dict[str, Path] = {}
    for vm in container["volumeMounts"]:
        local = tmp_path / "mounts" / vm["name"]
        local.mkdir(parents=True)
        volume = volumes[vm["name"]]
        if "configMap" in volume and volume["configMap"]["name"] == "chainmail-ca-bundle":
            assert volume["configMap"].get("optional") is True  # absent ConfigMap: an empty directory
        elif "configMap" in volume:
            assert volume["configMap"]["name"] == "chainmail-namespace-keys"
            for fname, content in namespace_keys.items():
                (local / fname).write_text(content)
        elif "secret" in volume:
            assert volume["secret"].get("optional") is True  # absent Secret: an empty directory
        mounts[vm["mountPath"]] = local

    # Runs everywhere: unsigned, already signed, failed once, still running, too old.
    images: dict[tuple[str, str], str] = {}
    expected: set[tuple[str, str, str]] = set()
    for ns in ("team-a", "team-h", "team-i"):
        for i in range(2):
            name = unique(f"build-{i}")
            notes = {ann.SIGNED: "failed", ann.RETRIES: "1"} if i == 1 and ns == "team-h" else {}
            _, images[(ns, name)] = standalone_taskrun(kube_api, registry, ns, name, annotations=notes)
            expected.add(("taskruns", ns, name))
    kube_api.add(completed_taskrun("done-before", "team-h", finished=recent(), annotations={ann.SIGNED: "true"}))
    kube_api.add(running_taskrun("still-running", "team-h"))
    kube_api.add(completed_taskrun("last-week", "team-h", finished=recent(7 * 86400)))
    pr, pr_image = running_pipelinerun(kube_api, registry, "team-i", unique("release"))
    prn = pr["metadata"]["name"]
    finish_pipelinerun(kube_api, "team-i", prn, succeeded=False)  # failed runs are signed too
    expected |= {("taskruns", "team-i", f"{prn}-{t}") for t in ("clone", "build", "sign")}
    expected.add(("pipelineruns", "team-i", prn))

    base = pod_env(tmp_path, kube_api.kubeconfig(tmp_path, namespace=WATCHER_NS))
    env = {**base, **{e["name"]: remap(e["value"], {**mounts, "/tmp": tmp_path}) for e in container["env"]}}
    args = [remap(a, mounts) for a in container["args"]]
    res = run_container(container["command"], args, env, tmp_path)
    assert res.rc == 0, res
    assert res.stdout.startswith(f"sweep: {len(expected)} signed"), res

    writes = kube_api.signed_writes()
    assert set(writes) == expected and set(writes.values()) == {1}
    for key in expected:
        assert ann.is_signed(kube_api.get(*key))
    for name in ("still-running", "last-week"):
        assert ann.SIGNED not in ann.annotations_of(kube_api.get("taskruns", "team-h", name))
    for (ns, _), image in images.items():
        pub = (other_key_dir if ns == "team-a" else key_dir) / "cosign.pub"
        assert_image_signed_once(registry, image, pub, tmp_path, atts=1, att_type="slsaprovenance1")
    assert len(layers(registry, pr_image, "sig")) == 1

    # A second pass (the next schedule) finds nothing to do.
    kube_api.request_log.clear()
    again = run_container(container["command"], args, env, tmp_path)
    assert again.rc == 0, again
    assert again.stdout.startswith("sweep: 0 signed"), again
    assert kube_api.signed_writes() == Counter()
