"""The ``grafeas`` backend against an HTTP double of the Grafeas / Container Analysis v1 REST API.

Neither Container Analysis nor a Grafeas server installs from PyPI or Debian. The double serves
the three v1 calls the backend makes, as strictly as the real API: ``POST …/notes?noteId=``
(409 ALREADY_EXISTS for a known id), ``POST …/occurrences`` (the note must exist and be of the
occurrence's kind; unknown JSON fields are a 400 as in the real API) and ``DELETE`` of an
occurrence, with Google's JSON error bodies.
"""

from __future__ import annotations

import base64
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from backend_cli import sign_run, signed_items

PROJECT = "shop-prod"
NOTE_FIELDS = {"shortDescription", "longDescription", "relatedUrl", "attestation", "build"}
OCC_FIELDS = {"resourceUri", "noteName", "attestation", "build", "envelope", "remediation"}
BUILD_FIELDS = {"provenance", "provenanceBytes", "intotoProvenance", "intotoStatement", "inTotoSlsaProvenanceV1"}
STATEMENT_FIELDS = {"_type", "subject", "predicateType", "provenance", "slsaProvenance", "slsaProvenanceZeroTwo"}


class Grafeas(BaseHTTPRequestHandler):
    notes: dict[str, dict[str, Any]] = {}
    occurrences: dict[str, dict[str, Any]] = {}
    fail_kind: str | None = None
    status_all: int | None = None

    def _error(self, code: int, status: str, message: str) -> None:
        self._answer(code, {"error": {"code": code, "message": message, "status": status}})

    def _answer(self, code: int, doc: dict[str, Any]) -> None:
        data = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
        if self.status_all:
            return self._error(self.status_all, "PERMISSION_DENIED", "The caller does not have permission")
        url = urlsplit(self.path)
        if url.path == f"/v1/projects/{PROJECT}/notes":
            note_id = parse_qs(url.query).get("noteId", [""])[0]
            unknown = set(body) - NOTE_FIELDS
            if unknown or not note_id or len({"attestation", "build"} & set(body)) != 1:
                return self._error(400, "INVALID_ARGUMENT", f"bad note {sorted(unknown)}")
            name = f"projects/{PROJECT}/notes/{note_id}"
            if name in self.notes:
                return self._error(409, "ALREADY_EXISTS", f"note {name} already exists")
            self.notes[name] = body
            return self._answer(200, {"name": name, **body})
        if url.path == f"/v1/projects/{PROJECT}/occurrences":
            unknown = set(body) - OCC_FIELDS
            kind = ({"attestation", "build"} & set(body) or {""}).pop()
            note = self.notes.get(body.get("noteName", ""))
            if unknown or not body.get("resourceUri") or not kind:
                return self._error(400, "INVALID_ARGUMENT", f"Invalid JSON payload: unknown name {sorted(unknown)}")
            if kind == "build" and (set(body["build"]) - BUILD_FIELDS or
                                    set(body["build"].get("intotoStatement", {})) - STATEMENT_FIELDS):
                return self._error(400, "INVALID_ARGUMENT", "Invalid JSON payload: unknown name in build")
            if note is None:
                return self._error(404, "NOT_FOUND", f"note {body.get('noteName')} not found")
            if kind not in note:
                return self._error(400, "INVALID_ARGUMENT", "occurrence kind does not match its note's kind")
            if kind == self.fail_kind:
                return self._error(400, "INVALID_ARGUMENT", "resource_uri is not valid")
            name = f"projects/{PROJECT}/occurrences/{uuid.uuid4()}"
            self.occurrences[name] = body
            return self._answer(200, {"name": name, **body})
        self._error(404, "NOT_FOUND", "Not Found")

    def do_DELETE(self) -> None:
        name = urlsplit(self.path).path.removeprefix("/v1/")
        if self.occurrences.pop(name, None) is None:
            return self._error(404, "NOT_FOUND", "occurrence not found")
        self._answer(200, {})

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def grafeas(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[Grafeas]]:
    Grafeas.notes, Grafeas.occurrences, Grafeas.fail_kind, Grafeas.status_all = {}, {}, None, None
    server = ThreadingHTTPServer(("127.0.0.1", 0), Grafeas)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("CHAINMAIL_GRAFEAS_ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
    try:
        yield Grafeas
    finally:
        server.shutdown()


SETTINGS = ["artifacts.taskrun.storage=grafeas", "artifacts.oci.storage=grafeas", f"storage.grafeas.projectid={PROJECT}"]
IMAGE = "registry.acme.example/shop/frontend@sha256:3b1f6a9c2d4e8f07a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5c6d7e8f9a0b1c"


def _by_kind(occurrences: dict[str, dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in occurrences.values() if kind in o]


def test_notes_and_occurrences_as_chains_writes_them(grafeas: type[Grafeas], key: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sign_run(capsys, key, tmp_path / "ws", SETTINGS)
    assert code == 0, err
    items = {s.payload.format: s for s in signed_items(tmp_path / "ws")}
    assert grafeas.notes == {
        f"projects/{PROJECT}/notes/tekton-shop-simplesigning": {
            "shortDescription": "OCI Artifact Attestation Note",
            "attestation": {"hint": {"humanReadableName": "This attestation note was generated by Tekton Chains"}}},
        f"projects/{PROJECT}/notes/tekton-shop-taskrun-intoto": {
            "shortDescription": "Build Provenance Note for TaskRun",
            "build": {"builderVersion": "tekton.dev/v1/TaskRun"}},
    }
    (att,) = _by_kind(grafeas.occurrences, "attestation")
    image = items["simplesigning"]
    assert att["resourceUri"] == IMAGE
    assert att["noteName"] == f"projects/{PROJECT}/notes/tekton-shop-simplesigning"
    assert base64.b64decode(att["attestation"]["serializedPayload"]) == image.payload.body
    assert base64.b64decode(att["attestation"]["signatures"][0]["signature"]) == image.signature
    assert att["envelope"]["payloadType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert base64.b64decode(att["envelope"]["payload"]) == image.payload.body
    (build,) = _by_kind(grafeas.occurrences, "build")
    run = items["in-toto"]
    statement = json.loads(run.payload.body)
    assert build["resourceUri"] == IMAGE  # one occurrence per subject name@alg:hex
    assert build["noteName"] == f"projects/{PROJECT}/notes/tekton-shop-taskrun-intoto"
    got = build["build"]["intotoStatement"]
    assert (got["_type"], got["predicateType"], got["subject"]) == (
        statement["_type"], statement["predicateType"], statement["subject"])
    zero_two = got["slsaProvenanceZeroTwo"]
    pred = statement["predicate"]
    assert zero_two["builder"]["id"] == pred["builder"]["id"]
    assert zero_two["buildType"] == pred["buildType"]
    assert zero_two["buildConfig"] == pred["buildConfig"]
    assert zero_two["invocation"]["parameters"] == pred["invocation"]["parameters"]
    assert [m["uri"] for m in zero_two.get("materials", [])] == [m["uri"] for m in pred.get("materials") or []]
    assert base64.b64decode(build["envelope"]["payload"]) == run.payload.body
    assert build["envelope"]["payloadType"] == "application/vnd.in-toto+json"
    # Chains puts the signer's output in the envelope signature: for in-toto, the whole DSSE envelope JSON.
    assert base64.b64decode(build["envelope"]["signatures"][0]["sig"]) == run.signature
    assert "keyid" not in build["envelope"]["signatures"][0]  # signers.kms.kmsref is empty


def test_existing_notes_are_fine(grafeas: type[Grafeas], key: str, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    assert sign_run(capsys, key, tmp_path / "ws", SETTINGS)[0] == 0
    code, _, err = sign_run(capsys, key, tmp_path / "ws2", [*SETTINGS, "storage.grafeas.noteid=tekton-shop"])
    assert code == 0, err
    assert len(grafeas.notes) == 2 and len(grafeas.occurrences) == 4


def test_slsa_1_0_goes_to_in_toto_slsa_provenance_v1(grafeas: type[Grafeas], key: str, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    settings = [*SETTINGS[:1], "artifacts.oci.storage=", SETTINGS[2], "artifacts.taskrun.format=slsa/v2alpha4"]
    code, _, err = sign_run(capsys, key, tmp_path / "ws", settings)
    assert code == 0, err
    (signed,) = signed_items(tmp_path / "ws")
    statement = json.loads(signed.payload.body)
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    (build,) = _by_kind(grafeas.occurrences, "build")
    v1 = build["build"]["inTotoSlsaProvenanceV1"]
    assert v1["predicate"] == statement["predicate"]
    assert v1["subject"] == statement["subject"] and v1["_type"] == statement["_type"]


def test_a_failed_occurrence_removes_the_ones_this_store_created(grafeas: type[Grafeas], key: str, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    grafeas.fail_kind = "attestation"  # the build occurrence is created first, then the image's fails
    code, _, err = sign_run(capsys, key, tmp_path / "ws", SETTINGS)
    assert code == 8
    assert "grafeas storage: creating an occurrence" in err and "HTTP 400: resource_uri is not valid" in err
    assert grafeas.occurrences == {}


def test_refused_credentials_and_missing_project(grafeas: type[Grafeas], key: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    grafeas.status_all = 403
    code, _, err = sign_run(capsys, key, tmp_path / "ws", SETTINGS)
    assert code == 8
    assert "refused the credentials while creating a note (HTTP 403: The caller does not have permission)" in err
    code, _, err = sign_run(capsys, key, tmp_path / "ws2", SETTINGS[:2])
    assert code == 3  # a setting the backend cannot work with: ConfigError before anything is signed or written
    assert "storage.grafeas.projectid is not set" in err


def test_https_endpoint_without_application_default_credentials(key: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAINMAIL_GRAFEAS_ENDPOINT", "https://127.0.0.1:9")
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "missing.json"))
    code, _, err = sign_run(capsys, key, tmp_path / "ws", SETTINGS)
    assert code == 8
    assert "grafeas storage: no usable application-default credentials (DefaultCredentialsError)" in err
