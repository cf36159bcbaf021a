"""``docdb`` with ``mongo://`` against a MongoDB wire-protocol server (mockupdb).

No MongoDB server installs from PyPI or Debian (mongod is not packaged; pymongo-inmemory
downloads it from mongodb.org at run time; mongomock is an in-process fake, not a server).
mockupdb, from the pymongo authors, speaks the real wire protocol on a loopback port: pymongo
connects, handshakes and sends real ``update`` commands, and the test reads the BSON documents
the server received and answers as mongod does (``n``/``upserted`` counts, or an error code).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from backend_cli import file_settings, sign_run, signed_items

mockupdb = pytest.importorskip("mockupdb", reason="install chainmail[test]: mockupdb is a test extra")
pytest.importorskip("pymongo", reason="install chainmail[test]: pymongo is a test extra")

from chainmail.config import Config  # noqa: E402
from chainmail.context import Context  # noqa: E402
from chainmail.errors import ConfigError, StorageError  # noqa: E402

URL = "mongo://chainsdb/attestations?id_field=name"


class Mongo:
    """A wire-protocol server that records ``update`` commands and answers like mongod."""

    def __init__(self, error: dict[str, Any] | None = None) -> None:
        self.server = mockupdb.MockupDB(auto_ismaster={"maxWireVersion": 21}, verbose=False)
        self.updates: list[dict[str, Any]] = []
        self.error = error
        self.server.autoresponds(self._update)  # a function matcher: mockupdb's "update" matcher misses OP_MSG
        self.server.run()

    @property
    def uri(self) -> str:
        return f"mongodb://127.0.0.1:{self.server.port}"

    def _update(self, request: Any) -> bool:
        if getattr(request, "command_name", None) == "saslStart":  # a user in the URL: mongod refuses it
            return request.replies({"ok": 0, "code": 18, "codeName": "AuthenticationFailed",
                                    "errmsg": "Authentication failed."})
        if getattr(request, "command_name", None) != "update":
            return False  # the handshake is answered by auto_ismaster
        self.updates.append(request.doc)
        if self.error:
            return request.replies({"ok": 0, **self.error})
        ups = request.doc["updates"]
        return request.ok(n=len(ups), nModified=0, upserted=[{"index": i, "_id": u["q"]["_id"]}
                                                           for i, u in enumerate(ups)])

    def stored(self) -> dict[str, dict[str, Any]]:
        return {u["q"]["_id"]: dict(u["u"]) for cmd in self.updates for u in cmd["updates"]}

    def stop(self) -> None:
        self.server.stop()


@pytest.fixture
def mongo() -> Iterator[Mongo]:
    server = Mongo()
    try:
        yield server
    finally:
        server.stop()


def _settings(url: str, server: str) -> list[str]:
    return ["artifacts.taskrun.storage=docdb", "artifacts.oci.storage=docdb", f"storage.docdb.url={url}",
            f"storage.docdb.mongo-server-url={server}"]


def _floats_only(doc: Any) -> bool:
    if isinstance(doc, dict):
        return all(_floats_only(v) for v in doc.values())
    if isinstance(doc, list):
        return all(_floats_only(v) for v in doc)
    return not isinstance(doc, int) or isinstance(doc, bool)


def test_documents_match_mongodocstore(mongo: Mongo, key: str, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings(URL, mongo.uri))
    assert code == 0, err
    assert len(mongo.updates) == 1  # one ordered bulk write for the run's documents
    cmd = mongo.updates[0]
    assert cmd["update"] == "attestations" and cmd["$db"] == "chainsdb" and cmd["ordered"] is True
    assert all(u["upsert"] is True and not u.get("multi") for u in cmd["updates"])  # replace-one, upsert
    stored = mongo.stored()
    for signed in signed_items(tmp_path / "ws"):
        short = signed.payload.artifact.short_key
        assert stored[short] == {
            "_id": short,
            "Signed": signed.payload.body,  # BSON binary subtype 0 decodes to bytes
            "Signature": base64.b64encode(signed.signature).decode(),
            "Cert": "", "Chain": "",
            "Object": json.loads(signed.payload.body),
            "Name": short,  # id_field=name does not match the Go name exactly, so go-cloud keeps "Name"
        }
        assert _floats_only(stored[short]["Object"])  # Go's float64 → BSON double


def test_id_field_with_the_exact_go_name_moves_it_to_id(mongo: Mongo, key: str, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    url = "mongo://chainsdb/attestations?id_field=Name"
    assert sign_run(capsys, key, tmp_path / "ws", _settings(url, mongo.uri))[0] == 0
    for short, doc in mongo.stored().items():
        assert "Name" not in doc and doc["_id"] == short


def test_without_id_field_the_document_has_no_key(key: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = sign_run(capsys, key, tmp_path / "ws", _settings("mongo://chainsdb/attestations",
                                                                     "mongodb://127.0.0.1:9"))
    assert code == 3  # a setting the backend cannot work with: ConfigError before anything is signed or written
    assert "id_field '_id' is not a field of Chains' document" in err


def test_server_url_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from chainmail.storage.docdb_mongo import server_url

    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "MONGO_SERVER_URL").write_text("mongodb://from-dir\n")
    (tmp_path / "url").write_text("mongodb://from-path\n\n")
    full = {"storage.docdb.mongo-server-url-path": str(tmp_path / "url"),
            "storage.docdb.mongo-server-url-dir": str(tmp_path / "dir"),
            "storage.docdb.mongo-server-url": "mongodb://from-config"}
    monkeypatch.setenv("MONGO_SERVER_URL", "mongodb://from-env")
    assert server_url(Config.from_mapping(full)) == "mongodb://from-path\n"  # one trailing newline dropped
    del full["storage.docdb.mongo-server-url-path"]
    assert server_url(Config.from_mapping(full)) == "mongodb://from-dir"
    del full["storage.docdb.mongo-server-url-dir"]
    assert server_url(Config.from_mapping(full)) == "mongodb://from-config"
    assert server_url(Config()) == "mongodb://from-env"
    monkeypatch.delenv("MONGO_SERVER_URL")
    with pytest.raises(ConfigError, match="needs a server URL"):
        server_url(Config())
    with pytest.raises(ConfigError, match="is not a directory"):
        server_url(Config.from_mapping({"storage.docdb.mongo-server-url-dir": str(tmp_path / "none")}))


def _store(ctx: Context, ws: Path) -> None:
    from chainmail.models import RunSnapshot
    from chainmail.storage.docdb import DocdbBackend
    from chainmail.store_session import StoreSession

    DocdbBackend(StoreSession(ctx, RunSnapshot({}))).store(signed_items(ws))


def test_a_rotated_server_url_file_is_followed(key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The same process writes to the new server once the mounted Secret file changes."""
    first, second = Mongo(), Mongo()
    try:
        assert sign_run(capsys, key, tmp_path / "ws", file_settings(tmp_path / "fs"))[0] == 0
        secret = tmp_path / "secret" / "MONGO_SERVER_URL"
        secret.parent.mkdir()
        secret.write_text(first.uri + "\n")
        ctx = Context(config=Config.from_mapping({"storage.docdb.url": URL,
                                                  "storage.docdb.mongo-server-url-dir": str(secret.parent)}))
        _store(ctx, tmp_path / "ws")
        secret.write_text(second.uri + "\n")
        _store(ctx, tmp_path / "ws")
        assert len(first.updates) == 1 and len(second.updates) == 1
    finally:
        first.stop()
        second.stop()


def test_refused_credentials_and_unreachable_server(key: str, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    denied = Mongo(error={"code": 13, "codeName": "Unauthorized", "errmsg": "not authorized on chainsdb"})
    try:
        assert sign_run(capsys, key, tmp_path / "ws", file_settings(tmp_path / "fs"))[0] == 0
        for server in (denied.uri, denied.uri.replace("//", "//admin:hunter2@")):  # no role; wrong password
            ctx = Context(config=Config.from_mapping({"storage.docdb.url": URL,
                                                      "storage.docdb.mongo-server-url": server}))
            with pytest.raises(StorageError, match="MongoDB refused the credentials") as exc:
                _store(ctx, tmp_path / "ws")
            assert "hunter2" not in str(exc.value)
        assert len(denied.updates) == 1  # the refused login never got to write
    finally:
        denied.stop()
    ctx = Context(config=Config.from_mapping({"storage.docdb.url": URL, "chainmail.retry.deadline-seconds": "1",
                                              "storage.docdb.mongo-server-url": "mongodb://u:hunter2@127.0.0.1:9"}))
    with pytest.raises(StorageError, match=r"MongoDB server mongodb://127.0.0.1:9 unreachable") as exc:
        _store(ctx, tmp_path / "ws")
    assert "hunter2" not in str(exc.value)
