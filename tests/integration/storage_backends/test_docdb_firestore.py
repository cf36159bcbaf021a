"""``docdb`` with ``firestore://`` through the official client's REST transport, against an HTTP double.

Firestore's emulator is a Java program shipped with the gcloud SDK, not on PyPI or Debian, so
the test serves the one v1 endpoint a ``Put`` uses, ``POST /v1/{database}/documents:commit``,
checking the request as Firestore does (path, JSON body: one ``update`` per document, no mask,
no precondition, typed values) and answering with Firestore's success or error bodies.
"""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pytest
from backend_cli import sign_run, signed_items

pytest.importorskip("google.cloud.firestore_v1", reason="install chainmail[test]: google-cloud-firestore")

DATABASE = "projects/shop-prod/databases/(default)"
COLLECTION = f"{DATABASE}/documents/attestations"
URL = f"firestore://{COLLECTION}?name_field=name"


def _plain(value: dict[str, Any]) -> Any:
    """A Firestore REST ``Value`` back to Python; refuses anything go-cloud would not write."""
    (kind, val), = value.items()
    if kind == "stringValue":
        return val
    if kind == "bytesValue":
        return ("bytes", base64.b64decode(val))
    if kind == "nullValue":
        assert val in (None, "NULL_VALUE", 0)  # the client asks for enum-encoding=int
        return None
    if kind == "doubleValue":
        return float(val)
    if kind == "booleanValue":
        return val
    if kind == "arrayValue":
        return [_plain(v) for v in val.get("values", [])]
    if kind == "mapValue":
        return {k: _plain(v) for k, v in val.get("fields", {}).items()}
    raise AssertionError(f"unexpected Firestore value kind {kind}")


class Firestore(BaseHTTPRequestHandler):
    commits: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if unquote(self.path.split("?")[0]) != f"/v1/{DATABASE}/documents:commit":  # "(default)" comes %-encoded
            return self._answer(404, {"error": {"code": 404, "message": "Not Found", "status": "NOT_FOUND"}})
        assert self.headers.get("Content-Type", "").startswith("application/json")
        doc = json.loads(body)
        for write in doc["writes"]:
            assert set(write) == {"update"}, write  # go-cloud's Put: no updateMask, no currentDocument
            assert set(write["update"]) == {"name", "fields"}
            assert write["update"]["name"].startswith(COLLECTION + "/")
        self.commits.append(doc)
        if self.status == 403:
            return self._answer(403, {"error": {"code": 403, "message": "Missing or insufficient permissions.",
                                                "status": "PERMISSION_DENIED"}})
        if self.status == 404:
            return self._answer(404, {"error": {"code": 404, "message": "The database (default) does not exist "
                                                "for project shop-prod", "status": "NOT_FOUND"}})
        now = "2026-12-04T12:00:00.000000Z"
        self._answer(200, {"writeResults": [{"updateTime": now} for _ in doc["writes"]], "commitTime": now})

    def _answer(self, status: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def firestore(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Firestore]]:
    Firestore.commits, Firestore.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), Firestore)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{server.server_address[1]}")
    try:
        yield Firestore
    finally:
        server.shutdown()


def _settings(url: str) -> list[str]:
    return ["artifacts.taskrun.storage=docdb", "artifacts.oci.storage=docdb", f"storage.docdb.url={url}"]


def test_one_atomic_commit_with_go_clouds_document(firestore: type[Firestore], key: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings(URL))
    assert code == 0, err
    assert len(firestore.commits) == 1  # all documents of the run in one (atomic) commit
    writes = {w["update"]["name"]: w["update"]["fields"] for w in firestore.commits[0]["writes"]}
    for signed in signed_items(tmp_path / "ws"):
        short = signed.payload.artifact.short_key
        fields = writes[f"{COLLECTION}/{short}"]
        assert {k: _plain(v) for k, v in fields.items()} == {
            "Signed": ("bytes", signed.payload.body),
            "Signature": base64.b64encode(signed.signature).decode(),
            "Cert": "", "Chain": "",  # Firestore keeps empty strings
            "Object": json.loads(signed.payload.body),
            "Name": short,  # name_field=name is not the exact Go name, so go-cloud keeps the field
        }


def test_name_field_with_the_exact_go_name_is_left_out(firestore: type[Firestore], key: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    url = f"firestore://{COLLECTION}?name_field=Name"
    assert sign_run(capsys, key, tmp_path / "ws", _settings(url))[0] == 0
    for write in firestore.commits[0]["writes"]:
        assert "Name" not in write["update"]["fields"]


@pytest.mark.parametrize(("status", "message"), [(403, "Firestore refused the credentials"),
                                                 (404, "Firestore database for")])
def test_errors_are_one_line_storage_errors(firestore: type[Firestore], key: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str], status: int, message: str) -> None:
    firestore.status = status
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings(URL))
    assert code == 8
    assert message in err
    assert ("HTTP 403" in err) if status == 403 else ("does not exist for project shop-prod" in err)
    assert "Traceback" not in err


def test_name_field_is_required(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings(f"firestore://{COLLECTION}"))
    assert code == 3  # a setting the backend cannot work with: ConfigError before anything is signed or written
    assert "name_field is required for firestore://" in err


def test_without_emulator_or_application_default_credentials(key: str, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FIRESTORE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings(URL))
    assert code == 8
    assert "no application-default credentials found for Firestore" in err
