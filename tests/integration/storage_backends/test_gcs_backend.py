"""The ``gcs`` backend against gcp-storage-emulator (a real GCS JSON-API server on loopback).

The emulator does not check credentials, so the "credentials refused" case uses a small
HTTP double that answers every call the way GCS does for a caller without access (403 with
GCS's JSON error body).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from backend_cli import TASKRUN, free_port, sign_run, signed_items
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from chainmail.config import Config
from chainmail.context import Context
from chainmail.models import RunRef

pytest.importorskip("google.cloud.storage", reason="install chainmail[test]: google-cloud-storage is a test extra")
emulator = pytest.importorskip("gcp_storage_emulator.server", reason="install chainmail[test]: gcp-storage-emulator")

BUCKET = "chains-provenance"
PREFIX = "taskrun-shop-build-and-push-7xk2p-build-image"
RUN = RunRef("TaskRun", "shop", "build-and-push-7xk2p-build-image", "c3a9d1e2-7b4f-4f6e-b2d8-9a1c0e5f3b27")
GCS = ["artifacts.taskrun.storage=gcs", "artifacts.oci.storage=gcs", f"storage.gcs.bucket={BUCKET}"]


@pytest.fixture
def gcs(monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    """gcp-storage-emulator on a loopback port with an empty bucket; yields a client for checks."""
    port = free_port()
    server = emulator.create_server("127.0.0.1", port, in_memory=True, default_bucket=BUCKET)
    server.start()
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{port}")
    from google.cloud import storage

    try:
        yield storage.Client()
    finally:
        server.stop()


def _objects(client: object) -> dict[str, bytes]:
    return {b.name: b.download_as_bytes() for b in client.list_blobs(BUCKET)}  # type: ignore[attr-defined]


def test_run_stores_chains_layout_byte_for_byte(gcs: object, key: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = sign_run(capsys, key, tmp_path / "ws", GCS)
    assert code == 0, err
    items = {s.payload.artifact.short_key: s for s in signed_items(tmp_path / "ws")}
    short_tr = f"taskrun-{RUN.uid}"
    assert set(items) == {short_tr, "3b1f6a9c2d4e"}
    stored = _objects(gcs)
    # Chains' names: taskrun-<ns>-<name>/<ShortKey>.{signature,payload,cert,chain}; the image under the TaskRun.
    assert set(stored) == {f"{PREFIX}/{short}.{suffix}" for short in items
                           for suffix in ("signature", "payload", "cert", "chain")}
    for short, item in items.items():
        base = f"{PREFIX}/{short}"
        assert stored[f"{base}.payload"] == item.payload.body
        assert stored[f"{base}.signature"] == item.signature  # Chains writes the signer's bytes as they are
        assert stored[f"{base}.cert"] == b"" and stored[f"{base}.chain"] == b""  # key signer: empty, but written
    # The image signature is the raw DER over the simple-signing payload (not base64, unlike the annotations).
    pub = serialization.load_pem_public_key(Path(key, "cosign.pub").read_bytes())
    assert isinstance(pub, ec.EllipticCurvePublicKey)
    pub.verify(stored[f"{PREFIX}/3b1f6a9c2d4e.signature"], stored[f"{PREFIX}/3b1f6a9c2d4e.payload"],
               ec.ECDSA(hashes.SHA256()))
    # The TaskRun attestation is the DSSE envelope JSON whose payload is the .payload object.
    envelope = json.loads(stored[f"{PREFIX}/{short_tr}.signature"])
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    import base64

    assert base64.b64decode(envelope["payload"]) == stored[f"{PREFIX}/{short_tr}.payload"]
    stored_json = json.loads((tmp_path / "ws" / "stored.json").read_text())
    locations = {r["location"] for r in stored_json["stored"] if r["backend"] == "gcs"}
    assert locations == {f"gs://{BUCKET}/{PREFIX}/{short}.signature" for short in items}


def test_read_signatures_by_run_and_by_image(gcs: object, key: str, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from chainmail.storage.gcs import read_signatures

    assert sign_run(capsys, key, tmp_path / "ws", GCS)[0] == 0
    items = {s.payload.artifact.short_key: s for s in signed_items(tmp_path / "ws")}
    ctx = Context(config=Config.from_mapping({"storage.gcs.bucket": BUCKET}))
    by_run = read_signatures(RUN, ctx)
    assert set(by_run) == set(items)
    for short, got in by_run.items():
        assert (got.payload, got.signature, got.cert, got.chain) == (
            items[short].payload.body, items[short].signature, "", "")
    image = items["3b1f6a9c2d4e"].payload.artifact.ref
    assert set(read_signatures(image, ctx)) == {"3b1f6a9c2d4e"}
    other = RunRef("TaskRun", "shop", "other-run", "0")
    assert read_signatures(other, ctx) == {}
    assert read_signatures("registry.example/app@sha256:" + "0" * 64, ctx) == {}


def test_missing_bucket_is_a_storage_error_and_nothing_is_written(gcs: object, key: str, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    settings = [*GCS[:2], "storage.gcs.bucket=no-such-bucket"]
    code, _, err = sign_run(capsys, key, tmp_path / "ws", settings)
    assert code == 8
    assert "bucket 'no-such-bucket' does not exist" in err
    assert "Traceback" not in err and "s3cret" not in err
    assert _objects(gcs) == {}


def test_a_failed_write_removes_what_the_store_wrote(gcs: object, key: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The second artifact's signature upload fails: every object of this store is deleted again."""
    from google.api_core.exceptions import ServiceUnavailable
    from google.cloud.storage import Blob

    real = Blob.upload_from_string
    calls: list[str] = []

    def flaky(self: Blob, data: bytes, **kwargs: object) -> None:
        calls.append(self.name)
        if len(calls) == 8:  # the last object: the second artifact's .signature
            raise ServiceUnavailable("backend error")
        real(self, data, **kwargs)

    monkeypatch.setattr(Blob, "upload_from_string", flaky)
    code, _, err = sign_run(capsys, key, tmp_path / "ws", GCS)
    assert code == 8, err
    assert calls[-1].endswith(".signature") and len(calls) == 8
    assert "HTTP 503" in err
    assert _objects(gcs) == {}


def test_the_bucket_must_be_configured(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sign_run(capsys, key, tmp_path / "ws", GCS[:2])
    assert code == 3  # a setting the backend cannot work with: ConfigError before anything is signed or written
    assert "storage.gcs.bucket is not set" in err


def test_missing_client_library_names_the_extra(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "google.cloud.storage", None)
    code, _, err = sign_run(capsys, key, tmp_path / "ws", GCS)
    assert code == 8  # the ConfigError surfaces through store_all's StorageError
    assert "chainmail[gcs]" in err


def test_no_application_default_credentials(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    code, _, err = sign_run(capsys, key, tmp_path / "ws", GCS)
    assert code == 8
    assert "gcs storage" in err and "Traceback" not in err


class _Refuse(BaseHTTPRequestHandler):
    """Answers like GCS for a caller whose identity has no access to the bucket."""

    seen: list[str] = []

    def _deny(self) -> None:
        self.seen.append(f"{self.command} {self.path}")
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        body = json.dumps({"error": {"code": 403, "message": "anon@example.iam does not have "
                                     "storage.objects.create access to the Google Cloud Storage object.",
                                     "errors": [{"reason": "forbidden", "domain": "global"}]}}).encode()
        self.send_response(403)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _deny  # noqa: N815 - http.server names

    def log_message(self, *args: object) -> None:
        pass


def test_refused_credentials_are_a_one_line_storage_error(key: str, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Refuse)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{server.server_address[1]}")
        code, _, err = sign_run(capsys, key, tmp_path / "ws", GCS)
    finally:
        server.shutdown()
    assert code == 8
    assert "refused the credentials" in err and "HTTP 403" in err
    assert len(err.strip().splitlines()) <= 2  # message + hint
    assert any("/upload/storage/v1/b/chains-provenance/o" in s for s in _Refuse.seen)
    assert TASKRUN.exists()


def test_pipelinerun_and_children_use_their_own_prefixes(gcs: object, key: str, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from backend_cli import PIPELINERUN

    from chainmail.storage.gcs import read_signatures

    settings = [*GCS, "artifacts.pipelinerun.storage=gcs"]
    args = ["--with-children"]
    code, _, err = sign_run(capsys, key, tmp_path / "ws", [*settings], run=PIPELINERUN, extra=args)
    assert code == 0, err
    names = {n.rsplit(".", 1)[0] for n in _objects(gcs)}
    assert names == {
        f"{PREFIX}/taskrun-{RUN.uid}",
        f"{PREFIX}/3b1f6a9c2d4e",
        "taskrun-shop-build-and-push-7xk2p-fetch-source/taskrun-0b8e7f44-9d1e-4a57-8a0f-2e5c6d7b8a91",
        "pipelinerun-shop-build-and-push-7xk2p/pipelinerun-5f0c3d52-2a61-4c5e-9c1b-6d3f1f2a9e71",
    }
    ctx = Context(config=Config.from_mapping({"storage.gcs.bucket": BUCKET}))
    pr = RunRef("PipelineRun", "shop", "build-and-push-7xk2p", "5f0c3d52-2a61-4c5e-9c1b-6d3f1f2a9e71")
    (got,) = read_signatures(pr, ctx).values()
    import base64

    assert base64.b64decode(json.loads(got.signature)["payload"]) == got.payload
    assert json.loads(got.payload)["_type"].startswith("https://in-toto.io/Statement/")
