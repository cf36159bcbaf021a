"""Hostile registries and API servers: chainmail refuses what they send, on time, with bounded memory.

Every case runs the CLI against :class:`~doubles.hostile.HostileServer`, a registry on 127.0.0.1
that asks for Basic credentials and then lies, stalls, floods or loops, and asserts the documented
exit code, one ``Error:`` line naming the problem, no traceback, the time bound, no file written,
and that no credential reaches the output or another host. The codes:

* ``verify image``: a registry that never answers properly (timeouts, cut bodies, 5xx until the
  deadline) is 18; a login chainmail will not send is 17; stored content it refuses (too big,
  too deep, a paging loop or a link elsewhere, a digest mismatch) makes that candidate fail, so
  with nothing else stored the answer is 12 and the message names the reason;
* other readers (``catalog bundle inspect``) stop at the first refused answer: 8 (storage), or 4
  when the content breaks the bundle format (a gzip bomb);
* a bad Kubernetes API server is 9.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import REPO, Outcome, assert_rejected, chainmail, files_under
from doubles.hostile import (
    OCI_MANIFEST,
    HostileServer,
    digest_of,
    flood,
    manifest,
    nested,
    redirect,
    reply,
    short,
    trickle,
)

USER, PASSWORD = "robot", "hunter2-registry-password"
REPO_NAME = "team/app"
#: Resident memory (MiB) a refused 1 GiB answer may cost the chainmail process at most.
RSS_BOUND_MIB = 200


@pytest.fixture
def evil() -> Iterator[HostileServer]:
    server = HostileServer(basic=(USER, PASSWORD), max_lifetime=120)
    yield server
    server.close()


@pytest.fixture
def other() -> Iterator[HostileServer]:
    """A second host: it must never see the first registry's credentials."""
    server = HostileServer(max_lifetime=120)
    yield server
    server.close()


@pytest.fixture
def verify(evil: HostileServer, key: str, tmp_path: Path) -> Callable[..., Outcome]:
    """``chainmail verify image`` of a small image on ``evil``, with a login for it; extra args appended."""
    image = evil.serve_image(REPO_NAME)
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {evil.host: {"auth": token}}}))
    before = files_under(tmp_path)

    def run(*extra: str, timeout: float = 60.0, measure: bool = False) -> Outcome:
        args = ["verify", "image", "--insecure-ignore-tlog", f"{evil.host}/{REPO_NAME}@{image}", "--key", f"{key}/cosign.pub",
                "--docker-config", str(config), *extra]
        out = _measured(args, tmp_path, timeout) if measure else chainmail(args, cwd=tmp_path, timeout=timeout)
        assert files_under(tmp_path) == before, "verify wrote files"
        return out

    run.image = image  # type: ignore[attr-defined]
    return run


def _tag(image: str, suffix: str) -> str:
    return f"/v2/{REPO_NAME}/manifests/{image.replace(':', '-')}" + (f".{suffix}" if suffix else "")


def _sig_manifest(layer: bytes) -> bytes:
    return json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "size": 2, "digest": digest_of(b"{}")},
        "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", "size": len(layer),
                    "digest": digest_of(layer),
                    "annotations": {"dev.cosignproject.cosign/signature": base64.b64encode(b"\x30" * 70).decode()}}],
    }).encode()


_WRAPPER = ("import resource, subprocess, sys\n"
            "code = subprocess.run(sys.argv[2:]).returncode\n"
            "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
            "sys.exit(code)\n")


def _measured(args: list[str], cwd: Path, timeout: float) -> Outcome:
    """Like ``chainmail()``, but in a wrapper process that reports the command's peak RSS (KiB)."""
    rss_file = cwd.parent / f"{cwd.name}.rss"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CHAINMAIL_")}
    env.update({"PYTHONPATH": str(REPO / "steps"), "NO_COLOR": "1"})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", _WRAPPER, str(rss_file), sys.executable, "-m", "chainmail",
                           *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = Outcome(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)
    peak_mib = int(rss_file.read_text()) / 1024
    assert peak_mib < RSS_BOUND_MIB, f"chainmail peaked at {peak_mib:.0f} MiB"
    return out


def _assert_no_login(server: HostileServer) -> None:
    assert all(not s.authorization for s in server.seen), [s.authorization for s in server.seen]


# -- referrers paging -----------------------------------------------------------------------------------

def test_self_looping_referrers_link_stops(evil: HostileServer, verify: Callable[..., Outcome]) -> None:
    path = f"/v2/{REPO_NAME}/referrers/{verify.image}"  # type: ignore[attr-defined]
    evil.on(path, reply(200, b'{"schemaVersion":2,"manifests":[]}', {"Link": f'<{path}>; rel="next"'}))
    assert_rejected(verify(), 12, mentions="paging loop", within=20, secrets=(PASSWORD,))


def test_referrers_link_to_another_host_is_not_followed(evil: HostileServer, other: HostileServer,
                                                        verify: Callable[..., Outcome]) -> None:
    path = f"/v2/{REPO_NAME}/referrers/{verify.image}"  # type: ignore[attr-defined]
    other.on(path, reply(200, b'{"schemaVersion":2,"manifests":[]}'))
    evil.on(path, reply(200, b'{"schemaVersion":2,"manifests":[]}', {"Link": f'<{other.url}{path}?n=1>; rel="next"'}))
    assert_rejected(verify(), 12, mentions="another host", within=20, secrets=(PASSWORD,))
    assert other.seen == []


def test_deeply_nested_referrers_list(evil: HostileServer, verify: Callable[..., Outcome]) -> None:
    evil.on(f"/v2/{REPO_NAME}/referrers/{verify.image}", reply(200, nested(100_000)))  # type: ignore[attr-defined]
    assert_rejected(verify(), 12, mentions="nested deeper than 128", within=20, secrets=(PASSWORD,))


# -- manifests: slow, huge, short, deep ------------------------------------------------------------------

def test_trickling_manifest_ends_at_the_retry_deadline(evil: HostileServer, verify: Callable[..., Outcome]) -> None:
    evil.on(_tag(verify.image, "sig"), trickle(b"{" + b" " * 4000 + b"}", 1.0))  # type: ignore[attr-defined]
    out = verify("--set", "chainmail.retry.deadline-seconds=5")
    assert_rejected(out, 18, mentions="timed out", within=20, secrets=(PASSWORD,))


def test_one_gib_manifest_declared(evil: HostileServer, verify: Callable[..., Outcome]) -> None:
    evil.on(_tag(verify.image, "sig"), flood(1 << 30))  # type: ignore[attr-defined]
    out = verify(measure=True)
    assert_rejected(out, 12, mentions="over the 4 MiB limit", within=20, secrets=(PASSWORD,))


def test_one_gib_manifest_streamed(evil: HostileServer, verify: Callable[..., Outcome]) -> None:
    evil.on(_tag(verify.image, "sig"), flood(1 << 30, declare=False))  # type: ignore[attr-defined]
    out = verify(measure=True)
    assert_rejected(out, 12, mentions="larger than the 4 MiB limit", within=30, secrets=(PASSWORD,))


def test_content_length_promising_more_than_is_sent(evil: HostileServer,
                                                    verify: Callable[..., Outcome]) -> None:
    body = _sig_manifest(b"payload")
    evil.on(_tag(verify.image, "sig"), short(body[:100], len(body)))  # type: ignore[attr-defined]
    out = verify("--set", "chainmail.retry.deadline-seconds=3")
    assert_rejected(out, 18, mentions="body cut short", within=20, secrets=(PASSWORD,))
    assert len(evil.requests_to(".sig")) >= 3  # retried (first answer is the Basic challenge)


def test_content_length_declaring_less_than_is_sent(evil: HostileServer, verify: Callable[..., Outcome]) -> None:
    body = _sig_manifest(b"payload")
    evil.on(_tag(verify.image, "sig"), short(body, 60, {"Content-Type": OCI_MANIFEST,  # type: ignore[attr-defined]
                                                          "Docker-Content-Digest": digest_of(body)}))
    assert_rejected(verify(), 12, mentions="does not match its digest", within=20, secrets=(PASSWORD,))


def test_deeply_nested_manifest(evil: HostileServer, verify: Callable[..., Outcome]) -> None:
    evil.on(_tag(verify.image, "sig"), manifest(nested(100_000)))  # type: ignore[attr-defined]
    assert_rejected(verify(), 12, mentions="nested deeper than 128", within=20, secrets=(PASSWORD,))


def test_503_forever_gives_up_at_the_interactive_deadline(evil: HostileServer,
                                                          verify: Callable[..., Outcome]) -> None:
    evil.on(_tag(verify.image, "sig"), reply(503))  # type: ignore[attr-defined]
    out = verify(timeout=90)
    assert_rejected(out, 18, mentions="HTTP 503", within=45, secrets=(PASSWORD,))
    # it kept retrying (backoff with jitter, so the count varies) and gave up on the 30 s interactive
    # deadline, not the 300 s one of sign/store/sweep
    tries = [r for r in evil.seen if r.path.startswith(_tag(verify.image, "sig"))]  # type: ignore[attr-defined]
    assert len(tries) >= 3, f"{len(tries)} attempts"
    assert "retried for 30s" in out.stderr


# -- blobs: redirects and digests ------------------------------------------------------------------------

def test_blob_redirect_to_another_host_carries_no_credentials(evil: HostileServer, other: HostileServer,
                                                              verify: Callable[..., Outcome]) -> None:
    payload = b'{"critical":{}}'
    evil.on(_tag(verify.image, "sig"), manifest(_sig_manifest(payload)))  # type: ignore[attr-defined]
    evil.on(f"/v2/{REPO_NAME}/blobs/{digest_of(payload)}", redirect(f"{other.url}/bucket/blob?sig=abc"))
    other.on("/bucket/blob", reply(200, payload))
    assert_rejected(verify(), 12, mentions="does not verify", within=20, secrets=(PASSWORD,))
    assert [s.path for s in other.seen] == ["/bucket/blob?sig=abc"]
    _assert_no_login(other)


def test_blob_that_does_not_match_its_digest(evil: HostileServer, verify: Callable[..., Outcome]) -> None:
    payload = b'{"critical":{}}'
    evil.on(_tag(verify.image, "sig"), manifest(_sig_manifest(payload)))  # type: ignore[attr-defined]
    evil.on(f"/v2/{REPO_NAME}/blobs/{digest_of(payload)}", reply(200, b'{"critical":{"evil":1}}'))
    assert_rejected(verify(), 12, mentions="does not match its digest", within=20, secrets=(PASSWORD,))


def test_oversized_signature_blob(evil: HostileServer, verify: Callable[..., Outcome]) -> None:
    payload = b'{"critical":{}}'
    evil.on(_tag(verify.image, "sig"), manifest(_sig_manifest(payload)))  # type: ignore[attr-defined]
    evil.on(f"/v2/{REPO_NAME}/blobs/{digest_of(payload)}", flood(1 << 30, declare=False))
    out = verify("--set", "chainmail.registry.max-blob-bytes=65536", measure=True)
    assert_rejected(out, 12, mentions="larger than the 65536 bytes limit", within=30, secrets=(PASSWORD,))


# -- auth: a token realm elsewhere -----------------------------------------------------------------------

def test_token_realm_on_another_plain_http_host_gets_no_login(evil: HostileServer, other: HostileServer,
                                                              verify: Callable[..., Outcome]) -> None:
    port = other.host.rsplit(":", 1)[1]
    evil.basic = None
    evil.on("/v2/", reply(401, b"", {"WWW-Authenticate": f'Bearer realm="http://localhost:{port}/token"'}),
            prefix=True)
    assert_rejected(verify(), 17, mentions="plain http on another host", within=20, secrets=(PASSWORD,))
    assert other.seen == []


# -- the Kubernetes API ----------------------------------------------------------------------------------

def test_api_server_flooding_a_run(other: HostileServer, key: str, tmp_path: Path) -> None:
    other.on("/apis/tekton.dev/v1/namespaces/demo/taskruns/build", flood(1 << 30, declare=False,
                                                                         headers={"Content-Type": "application/json"}))
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "c", "cluster": {"server": other.url}}],
        "users": [{"name": "u", "user": {"token": "attacker-token-value"}}],
        "contexts": [{"name": "c", "context": {"cluster": "c", "user": "u", "namespace": "demo"}}],
    }))
    out = _measured(["verify", "run", "--insecure-ignore-tlog", "build", "-n", "demo", "--kind", "taskrun", "--key", f"{key}/cosign.pub",
                     "--kubeconfig", str(kubeconfig)], tmp_path, 60)
    assert_rejected(out, 9, mentions="larger than the 64 MiB limit", within=40)


# -- other readers: catalog bundle inspect (no per-candidate search: the first refusal is the answer) -----

@pytest.fixture
def inspect(evil: HostileServer, tmp_path: Path) -> Callable[..., Outcome]:
    config = tmp_path / "docker" / "config.json"
    config.parent.mkdir()
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    config.write_text(json.dumps({"auths": {evil.host: {"auth": token}}}))
    before = files_under(tmp_path)

    def run(*extra: str, measure: bool = False) -> Outcome:
        args = ["catalog", "bundle", "inspect", f"{evil.host}/{REPO_NAME}:v1", "--docker-config", str(config),
                "--set", "chainmail.retry.deadline-seconds=5", *extra]
        out = _measured(args, tmp_path, 60) if measure else chainmail(args, cwd=tmp_path, timeout=60)
        assert files_under(tmp_path) == before, "inspect wrote files"
        return out

    return run


def test_bundle_inspect_streamed_one_gib_manifest(evil: HostileServer, inspect: Callable[..., Outcome]) -> None:
    evil.on(f"/v2/{REPO_NAME}/manifests/v1", flood(1 << 30, declare=False))
    assert_rejected(inspect(measure=True), 8, mentions="larger than the 4 MiB limit", within=30,
                    secrets=(PASSWORD,))


def test_bundle_inspect_deeply_nested_manifest(evil: HostileServer, inspect: Callable[..., Outcome]) -> None:
    evil.on(f"/v2/{REPO_NAME}/manifests/v1", manifest(nested(100_000)))
    assert_rejected(inspect(), 8, mentions="nested deeper than 128", within=20, secrets=(PASSWORD,))


def test_bundle_inspect_redirect_loop(evil: HostileServer, inspect: Callable[..., Outcome]) -> None:
    evil.on(f"/v2/{REPO_NAME}/manifests/v1", redirect(f"/v2/{REPO_NAME}/manifests/v1"))
    assert_rejected(inspect(), 8, mentions="more than 5 redirects", within=20, secrets=(PASSWORD,))


def test_bundle_inspect_gzip_bomb_layer(evil: HostileServer, inspect: Callable[..., Outcome]) -> None:
    bomb = gzip.compress(b"\0" * (100 << 20), compresslevel=9)
    layer = {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(bomb),
             "digest": digest_of(bomb), "annotations": {"dev.tekton.image.apiVersion": "v1",
                                                         "dev.tekton.image.kind": "task",
                                                         "dev.tekton.image.name": "bomb"}}
    raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST, "config": {
        "mediaType": "application/vnd.cncf.tekton.config.v1+json", "size": 2, "digest": digest_of(b"{}")},
        "layers": [layer]}).encode()
    evil.on(f"/v2/{REPO_NAME}/manifests/v1", manifest(raw))
    evil.on(f"/v2/{REPO_NAME}/blobs/{digest_of(bomb)}", reply(200, bomb))
    assert_rejected(inspect(measure=True), 4, mentions="inflates past 64 MiB", within=30, secrets=(PASSWORD,))
