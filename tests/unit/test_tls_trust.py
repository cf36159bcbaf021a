"""``CHAINMAIL_CA_BUNDLE``: extra CAs are added to the public ones, read strictly, and never reach the Kubernetes API."""

from __future__ import annotations

import os
from pathlib import Path

import certifi
import pytest
from cryptography import x509

from chainmail._internal import tls
from chainmail.errors import ConfigError
from doubles.pki import TestCA


@pytest.fixture(autouse=True)
def _no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(tls.ENV, raising=False)


def _extra_subjects(path: str) -> list[str]:
    """Subjects of the certificates after the public bundle (which ``path`` must start with)."""
    public = Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n"
    data = Path(path).read_bytes()
    assert data.startswith(public)
    return [c.subject.rfc4514_string() for c in x509.load_pem_x509_certificates(data[len(public):])]


def test_unset_means_the_public_bundle() -> None:
    assert tls.verify() is True


def test_extras_are_added_to_the_public_cas_not_instead(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = tmp_path / "a.crt", tmp_path / "b.pem"
    a.write_bytes(TestCA("extra A").cert_pem)
    b.write_bytes(TestCA("extra B").cert_pem + TestCA("extra C").cert_pem)
    monkeypatch.setenv(tls.ENV, f"{a}{os.pathsep}{b}")
    bundle = tls.verify()
    assert isinstance(bundle, str) and bundle != certifi.where()
    assert _extra_subjects(bundle) == ["CN=extra A", "CN=extra B", "CN=extra C"]
    assert tls.verify() == bundle  # written once per setting
    assert oct(Path(bundle).stat().st_mode & 0o777) == "0o600"


def test_a_new_setting_gives_a_new_bundle(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = tmp_path / "a.crt"
    a.write_bytes(TestCA("first").cert_pem)
    monkeypatch.setenv(tls.ENV, str(a))
    first = tls.verify()
    b = tmp_path / "b.crt"
    b.write_bytes(TestCA("second").cert_pem)
    monkeypatch.setenv(tls.ENV, str(b))
    second = tls.verify()
    assert isinstance(second, str) and second != first and _extra_subjects(second) == ["CN=second"]
    monkeypatch.setenv(tls.ENV, "  ")
    assert tls.verify() is True


def test_only_certificates_pass_through(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ca = TestCA("with a key beside it")
    cert, key = ca.issue("leaf", server_names=("127.0.0.1",))
    mixed = tmp_path / "mixed.pem"
    mixed.write_bytes(b"comment\n" + key + ca.cert_pem)
    monkeypatch.setenv(tls.ENV, str(mixed))
    text = Path(str(tls.verify())).read_bytes()
    assert b"PRIVATE KEY" not in text and b"comment" not in text
    assert _extra_subjects(str(tls.verify())) == ["CN=with a key beside it"]


def test_a_directory_takes_its_visible_certificate_files(tmp_path: Path) -> None:
    d = tmp_path / "mount"
    (d / "..hidden").mkdir(parents=True)
    (d / "..hidden" / "ca.crt").write_bytes(TestCA("hidden").cert_pem)
    (d / "service-ca.crt").write_bytes(TestCA("service").cert_pem)
    (d / "notes.txt").write_text("not a certificate")
    certs = tls.extra_certificates(str(d))
    assert [x509.load_pem_x509_certificate(c).subject.rfc4514_string() for c in certs] == ["CN=service"]


def test_an_empty_directory_adds_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(tls.ENV, str(tmp_path / "empty"))
    assert tls.verify() == certifi.where()


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: None, "does not exist"),
    (lambda p: p.write_text("no certificate"), "holds no PEM certificate"),
    (lambda p: p.write_bytes(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "does not parse"),
    (lambda p: (p.mkdir(), (p / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\n")), "no PEM certificate"),
    (lambda p: p.write_bytes(b"-----BEGIN CERTIFICATE-----" + b"A" * (5 * 1024 * 1024)), "larger than 4 MiB"),
    (lambda p: os.mkfifo(p), "not a regular file"),  # opening a FIFO would wait for a writer forever
])
def test_bad_settings_are_configuration_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make,
                                               problem: str) -> None:
    path = tmp_path / "ca"
    make(path)
    monkeypatch.setenv(tls.ENV, str(path))
    with pytest.raises(ConfigError) as info:
        tls.verify()
    assert problem in str(info.value) and str(path) in str(info.value)
    assert info.value.exit_code == 3


def test_the_kubernetes_api_keeps_its_own_ca(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A request that names its own ``verify`` (the cluster client does) is not given the extra bundle."""
    from chainmail._internal import http

    seen: list[object] = []

    def fake_attempt(method, url, kwargs, max_bytes, follow, attempt):
        seen.append(kwargs["verify"])
        raise http.BadResponseError("stop here")

    monkeypatch.setattr(http, "_attempt", fake_attempt)
    extra = tmp_path / "extra.crt"
    extra.write_bytes(TestCA("extra").cert_pem)
    monkeypatch.setenv(tls.ENV, str(extra))
    for kwargs in ({"verify": "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"}, {}):
        with pytest.raises(http.BadResponseError):
            http.request("GET", "https://example.invalid/", **kwargs)
    assert seen == ["/var/run/secrets/kubernetes.io/serviceaccount/ca.crt", tls.verify()]


@pytest.mark.parametrize(("message", "reason"), [
    ("HTTPSConnectionPool(host='r', port=443): Max retries exceeded (Caused by SSLError(SSLCertVerificationError("
     "1, '[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: unable to get local issuer certificate "
     "(_ssl.c:1006)')))", "certificate verify failed: unable to get local issuer certificate"),
    ("(Caused by SSLError(SSLCertVerificationError(1, \"[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify "
     "failed: IP address mismatch, certificate is not valid for '192.0.2.2'. (_ssl.c:1006)\")))",
     "certificate verify failed: IP address mismatch, certificate is not valid for '192.0.2.2'"),
    ("(Caused by SSLError(SSLError(1, '[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)')))",
     "wrong version number"),
    ("something else", "SSLError"),
])
def test_describe_keeps_only_the_reason(message: str, reason: str) -> None:
    import requests

    assert tls.describe(requests.exceptions.SSLError(message)) == reason
