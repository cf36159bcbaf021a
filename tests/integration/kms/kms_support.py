"""Shared pieces of the KMS tests: real servers on loopback ports with a bounded lifetime, and CLI runs."""

from __future__ import annotations

import datetime
import ipaddress
import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from clirun import cli

REPO = Path(__file__).resolve().parents[3]
TASKRUN = REPO / "examples" / "taskrun.json"
#: Every server a test starts is killed after this long even if the test run hangs.
SERVER_LIFETIME = 900.0
#: The example run's image is in no registry, and failures should not retry for minutes.
BASE = ["chainmail.sign.verify-images-exist=false", "chainmail.retry.deadline-seconds=3"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def start_server(argv: list[str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` until the caller is done (or :data:`SERVER_LIFETIME` passes); yields the process."""
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    killer = threading.Timer(SERVER_LIFETIME, proc.kill)
    killer.daemon = True
    killer.start()
    try:
        wait_for_port(port, proc)
        yield proc
    finally:
        killer.cancel()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def loopback_tls_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (cert, key): cosign talks HTTPS to an awskms endpoint."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=2))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = directory / "tls.crt", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def sign_run(capsys: pytest.CaptureFixture[str], ws: Path, settings: list[str],
             key: str | None = None) -> tuple[int, str, str]:
    """``chainmail run --from-file examples/taskrun.json [--key KEY]`` into a file store under ``ws``."""
    args = ["run", "--from-file", str(TASKRUN), "-w", str(ws / "ws")]
    if key:
        args += ["--key", key]
    store = ["artifacts.taskrun.storage=file", "artifacts.oci.storage=file",
             f"chainmail.storage.file.directory={ws / 'store'}"]
    for item in [*BASE, *store, *settings]:
        args += ["--set", item]
    return cli(args, capsys)


def envelopes(store: Path) -> list[dict[str, object]]:
    """The DSSE envelopes (attestations) in a file store."""
    found = []
    for path in sorted(store.rglob("*.signature")):
        try:
            doc = json.loads(path.read_bytes())
        except ValueError:
            continue  # a raw simplesigning signature
        if isinstance(doc, dict) and "payloadType" in doc:
            found.append(doc)
    return found


def assert_clean_error(code: int, out: str, err: str, expected: int, *secrets: str) -> None:
    """Exit ``expected``, one ``Error:`` line (plus an optional hint), no traceback, no secret."""
    assert code == expected, (code, out, err)
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[0].startswith("Error: "), err
    assert all(line.startswith(("Error: ", "Hint: ")) for line in lines), err
    assert "Traceback" not in out + err
    for secret in secrets:
        assert secret not in out + err
