"""A registry behind a private CA (OpenShift's service CA, a corporate CA): ``CHAINMAIL_CA_BUNDLE``.

The real ``docker-registry`` serves HTTPS with a certificate from a test CA, on this machine's routable
address (loopback registries are spoken to over plain http). Without the CA chainmail refuses the
registry with exit 35 and one line naming the reason; with the CA as a file, or as a directory laid out
the way the kubelet mounts a ConfigMap, it signs, stores and verifies as with any registry. The public
CAs stay trusted beside the extra ones (``tests/unit/test_tls_trust.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from regauth_support import STORE, no_ambient_docker_config, run_file

from chainmail._internal import tls
from chainmail.errors import ConfigError, RegistryTLSError
from clirun import cli
from doubles.kube import KubeApiDouble, completed_taskrun
from doubles.pki import TestCA
from doubles.registry import RegistryServer, push_test_image, routable_ipv4, start_tls_registry, stop_registry

pytestmark = pytest.mark.registry


@pytest.fixture(scope="module")
def address() -> str:
    return routable_ipv4()


@pytest.fixture(scope="module")
def tls_registry(tmp_path_factory: pytest.TempPathFactory, address: str) -> Iterator[RegistryServer]:
    tmp = tmp_path_factory.mktemp("tls-registry")
    cert, key, ca = TestCA("chainmail test registry CA").write_server(tmp / "pki", address)
    server = start_tls_registry(tmp, cert, key, ca, address)
    try:
        yield server
    finally:
        stop_registry(server)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    no_ambient_docker_config(monkeypatch, tmp_path)
    monkeypatch.delenv(tls.ENV, raising=False)


def _sign(tmp_path: Path, image: str, key: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    return cli(["run", "--from-file", str(run_file(tmp_path, image)), "--key", key,
                "-w", str(tmp_path / "ws"), *STORE], capsys)


def _sig_stored(server: RegistryServer, image: str) -> bool:
    repo, digest = image.split("/", 1)[1].split("@")
    return server.get_manifest(repo, digest.replace(":", "-") + ".sig") is not None


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _configmap_mount(directory: Path, files: dict[str, bytes]) -> Path:
    """``directory`` as the kubelet lays out a ConfigMap volume: ``..data`` -> a timestamped dir, keys as links."""
    stamp = directory / "..2026_12_05_09_00_00.000000001"
    stamp.mkdir(parents=True)
    for name, data in files.items():
        (stamp / name).write_bytes(data)
    (directory / "..data").symlink_to(stamp.name)
    for name in files:
        (directory / name).symlink_to(f"..data/{name}")
    return directory


def test_an_untrusted_registry_is_refused_with_its_own_exit_code(
        tls_registry: RegistryServer, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    image = push_test_image(tls_registry, "tls/untrusted", "tls-untrusted")
    code, _out, err = _sign(tmp_path, image, key, capsys)
    assert code == RegistryTLSError.exit_code, err
    line = _one_error_line(err)
    assert tls_registry.host in line and "not trusted" in line and "certificate verify failed" in line
    assert tls.ENV in err  # the hint says how to add the CA
    assert not _sig_stored(tls_registry, image)


def test_the_ca_file_lets_chainmail_sign_store_and_verify(
        tls_registry: RegistryServer, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert tls_registry.ca is not None
    monkeypatch.setenv(tls.ENV, str(tls_registry.ca))
    image = push_test_image(tls_registry, "tls/file", "tls-file")
    code, _out, err = _sign(tmp_path, image, key, capsys)
    assert code == 0, err
    assert _sig_stored(tls_registry, image)
    pub = str(Path(key, "cosign.pub"))
    code, _out, err = cli(["verify", "image", image, "--insecure-ignore-tlog", "--key", pub], capsys)
    assert code == 0, err
    monkeypatch.delenv(tls.ENV)
    code, _out, err = cli(["verify", "image", image, "--insecure-ignore-tlog", "--key", pub], capsys)
    assert code == RegistryTLSError.exit_code, err


def test_a_mounted_configmap_directory_works(
        tls_registry: RegistryServer, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert tls_registry.ca is not None
    other = TestCA("some other CA").cert_pem
    mount = _configmap_mount(tmp_path / "ssl-ca-directory",
                             {"service-ca.crt": tls_registry.ca.read_bytes(), "other-ca.crt": other,
                              "README": b"not a certificate, ignored beside the others\n"})
    unbound = tmp_path / "optional-configmap-that-does-not-exist"  # an empty mount adds nothing
    unbound.mkdir()
    monkeypatch.setenv(tls.ENV, f"{unbound}{os.pathsep}{mount}")
    image = push_test_image(tls_registry, "tls/configmap", "tls-configmap")
    code, _out, err = _sign(tmp_path, image, key, capsys)
    assert code == 0, err
    assert _sig_stored(tls_registry, image)


def test_another_ca_is_not_enough(tls_registry: RegistryServer, key: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = tmp_path / "wrong-ca.crt"
    wrong.write_bytes(TestCA("chainmail test registry CA").cert_pem)  # same name, other key
    monkeypatch.setenv(tls.ENV, str(wrong))
    image = push_test_image(tls_registry, "tls/wrong-ca", "tls-wrong-ca")
    code, _out, err = _sign(tmp_path, image, key, capsys)
    assert code == RegistryTLSError.exit_code, err
    assert "certificate verify failed" in _one_error_line(err)


def test_a_certificate_for_another_host_is_refused(tmp_path: Path, address: str, key: str,
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    cert, server_key, ca = TestCA("chainmail test CA").write_server(tmp_path / "pki", "registry.example.com",
                                                                   "203.0.113.9")
    server = start_tls_registry(tmp_path, cert, server_key, ca, address)
    try:
        monkeypatch.setenv(tls.ENV, str(ca))
        image = push_test_image(_trusting_host_anyway(server), "tls/other-host", "tls-other-host")
        code, _out, err = _sign(tmp_path, image, key, capsys)
        assert code == RegistryTLSError.exit_code, err
        line = _one_error_line(err)
        assert "mismatch" in line.lower() and address in line
    finally:
        stop_registry(server)


def _trusting_host_anyway(server: RegistryServer) -> RegistryServer:
    """The test's own uploads skip the host-name check, so only chainmail's client is tested on it."""
    server.http.verify = False
    import urllib3

    urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return server


@pytest.mark.parametrize(("content", "problem"), [
    (None, "does not exist"),
    (b"# nothing here\n", "holds no PEM certificate"),
    (b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n", "does not parse"),
])
def test_a_bad_ca_setting_is_a_configuration_error(tls_registry: RegistryServer, key: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch, content: bytes | None,
                                                   problem: str) -> None:
    path = tmp_path / "ca.pem"
    if content is not None:
        path.write_bytes(content)
    monkeypatch.setenv(tls.ENV, str(path))
    image = push_test_image(tls_registry, "tls/bad-setting", "tls-bad-setting")
    code, _out, err = _sign(tmp_path, image, key, capsys)
    assert code == ConfigError.exit_code, err
    line = _one_error_line(err)
    assert problem in line and str(path) in line
    assert not _sig_stored(tls_registry, image)


def test_bundles_push_over_tls_with_the_ca(tls_registry: RegistryServer, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("oras.provider")
    assert tls_registry.ca is not None
    task = tmp_path / "task.yaml"
    task.write_text("apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: t}\n"
                    "spec: {steps: [{name: s, image: 'registry.example/x:1'}]}\n")
    ref = f"{tls_registry.host}/catalog/tls:0.1"
    args = ["catalog", "bundle", "push", ref, "--ctime", "2024-06-01T12:00:00Z", "-f", str(task)]
    code, _out, err = cli(args, capsys)
    assert code == RegistryTLSError.exit_code, err
    monkeypatch.setenv(tls.ENV, str(tls_registry.ca))
    code, out, err = cli(args, capsys)
    assert code == 0, err
    assert tls_registry.get_manifest("catalog/tls", "0.1") is not None


def test_the_sweep_records_the_reason_then_signs_once_the_ca_is_there(
        kube_api_tls: KubeApiDouble, tls_registry: RegistryServer, key: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The watcher's path: the run carries the reason; the next sweep signs it. The API double serves
    HTTPS from a CA of its own that is *not* in ``CHAINMAIL_CA_BUNDLE``: the cluster keeps its own trust."""
    assert tls_registry.ca is not None
    monkeypatch.delenv("KUBECONFIG", raising=False)
    image = push_test_image(tls_registry, "tls/sweep", "tls-sweep")
    repo, digest = image.split("@")
    kube_api_tls.add(completed_taskrun("build", "team-a", image=repo, digest=digest))
    kubeconfig = kube_api_tls.kubeconfig(tmp_path, namespace="team-a")
    sweep = ["sweep", "-n", "team-a", "--kubeconfig", str(kubeconfig), "--key", key, *STORE, "--retry-failed"]

    code, _out, err = cli(sweep, capsys)
    assert code != 0 and "Traceback" not in err
    marks = kube_api_tls.annotations("taskruns", "team-a", "build")
    assert marks["chains.tekton.dev/signed"] == "failed"
    assert "not trusted" in marks["chainmail.dev/failure-reason"]
    assert not _sig_stored(tls_registry, image)

    monkeypatch.setenv(tls.ENV, str(tls_registry.ca))
    code, out, err = cli(sweep, capsys)
    assert code == 0, err
    assert out.startswith("sweep: 1 signed")
    assert kube_api_tls.annotations("taskruns", "team-a", "build")["chains.tekton.dev/signed"] == "true"
    assert _sig_stored(tls_registry, image)
