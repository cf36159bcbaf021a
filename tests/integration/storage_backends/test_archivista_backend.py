"""The ``archivista`` backend against an HTTP double of Archivista's upload endpoint.

Archivista needs MySQL/Postgres and blob storage and does not install from PyPI or Debian. The
double serves ``POST /upload`` as Archivista's server does: JSON body only, the DSSE envelope
parsed strictly, ``200 {"gitoid": …}`` (the git blob id of the body, sha256) on success and a
plain-text 400 for a body that is not an envelope.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from backend_cli import sign_run, signed_items

TASKRUN_ONLY = ["artifacts.taskrun.storage=archivista", "artifacts.oci.storage="]


def gitoid(body: bytes) -> str:
    return hashlib.sha256(b"blob %d\0" % len(body) + body).hexdigest()


class Archivista(BaseHTTPRequestHandler):
    uploads: list[bytes] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path != "/upload":
            return self._answer(404, b"404 page not found\n", "text/plain")
        if self.headers.get("Content-Type") != "application/json":
            return self._answer(400, b"expected application/json\n", "text/plain")
        if self.status != 200:
            return self._answer(self.status, b"upstream storage failed\n", "text/plain")
        try:
            env = json.loads(body)
            assert set(env) == {"payload", "payloadType", "signatures"} and env["signatures"]
        except (ValueError, AssertionError):
            return self._answer(400, b"failed to parse dsse envelope\n", "text/plain")
        self.uploads.append(body)
        self._answer(200, json.dumps({"gitoid": gitoid(body)}).encode(), "application/json")

    def _answer(self, status: int, data: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def archivista() -> Iterator[str]:
    Archivista.uploads, Archivista.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Archivista)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_envelope_uploaded_as_archivistas_go_client_sends_it(archivista: str, key: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sign_run(capsys, key, tmp_path / "ws", [*TASKRUN_ONLY, f"storage.archivista.url={archivista}/"])
    assert code == 0, err
    (signed,) = signed_items(tmp_path / "ws")
    env = json.loads(signed.signature)
    # Go's json.Encoder over go-witness' dsse.Envelope: struct field order, compact, one trailing newline.
    expected = json.dumps({"payload": env["payload"], "payloadType": env["payloadType"],
                           "signatures": [{"keyid": s.get("keyid", ""), "sig": s["sig"]} for s in env["signatures"]]},
                          separators=(",", ":")).encode() + b"\n"
    assert Archivista.uploads == [expected]
    stored = json.loads((tmp_path / "ws" / "stored.json").read_text())["stored"]
    assert [r["location"] for r in stored] == [f"{archivista}/download/{gitoid(expected)}"]


def test_simplesigning_is_refused_before_any_upload(archivista: str, key: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    settings = ["artifacts.taskrun.storage=archivista", "artifacts.oci.storage=archivista",
                f"storage.archivista.url={archivista}"]
    code, _, err = sign_run(capsys, key, tmp_path / "ws", settings)
    assert code == 3  # a setting the backend cannot work with: ConfigError before anything is signed or written
    assert "archivista stores DSSE envelopes only" in err
    assert Archivista.uploads == []


@pytest.mark.parametrize(("status", "text"), [(400, "rejected"), (503, "rejected"), (401, "refused the upload")])
def test_server_errors_are_one_line_storage_errors(archivista: str, key: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str], status: int, text: str) -> None:
    Archivista.status = status
    code, _, err = sign_run(capsys, key, tmp_path / "ws", [*TASKRUN_ONLY, f"storage.archivista.url={archivista}"])
    assert code == 8
    assert f"archivista storage: {archivista} {text}" in err and f"HTTP {status}" in err
    assert "Traceback" not in err


def test_url_is_required(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sign_run(capsys, key, tmp_path / "ws", TASKRUN_ONLY)
    assert code == 3  # a setting the backend cannot work with: ConfigError before anything is signed or written
    assert "storage.archivista.url is not set" in err


def test_preflight_refuses_bad_settings() -> None:
    from chainmail.config import Config
    from chainmail.context import Context
    from chainmail.errors import ConfigError
    from chainmail.storage.archivista import ArchivistaBackend

    for cfg in ({}, {"storage.archivista.url": "ftp://x"},
                {"storage.archivista.url": "http://a", "artifacts.oci.storage": "oci,archivista"}):
        with pytest.raises(ConfigError):
            ArchivistaBackend.preflight(Context(config=Config.from_mapping(cfg)))
    ArchivistaBackend.preflight(Context(config=Config.from_mapping({"storage.archivista.url": "http://a"})))
