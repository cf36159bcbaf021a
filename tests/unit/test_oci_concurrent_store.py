"""A run's tags are written at once when no two payloads share one (``OciBackend._store_concurrently``)."""

from __future__ import annotations

import threading
from typing import Any

from chainmail._internal.registry import Reference
from chainmail.errors import StorageError
from chainmail.storage.oci import OciBackend

REPO = Reference.parse("registry.example/app")


class Probe(OciBackend):
    """An oci backend whose tag writes only record which thread ran them (no registry, no session)."""

    def __init__(self, tags: dict[str, list[str]], *, meet: int = 0, fail: str = "") -> None:
        self.tags, self.fail = tags, fail
        self.meeting = threading.Barrier(meet, timeout=5) if meet else None
        self.threads: dict[str, str] = {}

    def client(self) -> Any:
        return object()

    def _tags_of(self, item: Any) -> list[tuple[Reference, str]]:
        return [(REPO, tag) for tag in self.tags[item]]

    def _store_tags(self, client: Any, item: Any) -> list[Any]:
        self.threads[item] = threading.current_thread().name
        if self.meeting is not None:
            self.meeting.wait()  # every write must be in flight at the same time to get past this
        if item == self.fail:
            raise StorageError(f"{item}: refused")
        return [(f"ref-{item}", None)]


def test_independent_tags_are_written_at_once_and_reported_in_order() -> None:
    probe = Probe({"sig": ["sha256-a.sig"], "att": ["sha256-a.att"], "att2": ["sha256-b.att"]}, meet=3)
    outcomes = probe._store_concurrently(["sig", "att", "att2"])  # type: ignore[arg-type]
    assert outcomes == [[("ref-sig", None)], [("ref-att", None)], [("ref-att2", None)]]
    assert probe.threads["sig"] == threading.current_thread().name  # the first in the caller's own thread
    assert probe.threads["att"].startswith("oci-write") and probe.threads["att2"].startswith("oci-write")


def test_a_failed_write_is_returned_in_its_place() -> None:
    probe = Probe({"sig": ["sha256-a.sig"], "att": ["sha256-a.att"]}, fail="att")
    outcomes = probe._store_concurrently(["sig", "att"])  # type: ignore[arg-type]
    assert outcomes is not None and outcomes[0] == [("ref-sig", None)]
    assert isinstance(outcomes[1], StorageError) and "att: refused" in str(outcomes[1])


def test_payloads_sharing_a_tag_or_alone_keep_the_sequential_path() -> None:
    shared = Probe({"att1": ["sha256-a.att"], "att2": ["sha256-b.att", "sha256-a.att"]})
    assert shared._store_concurrently(["att1", "att2"]) is None  # type: ignore[arg-type]
    assert shared.threads == {}
    assert Probe({"sig": ["sha256-a.sig"]})._store_concurrently(["sig"]) is None  # type: ignore[arg-type]


class Heads:
    """A registry client whose tag HEADs only pass once ``meet`` of them are in flight together."""

    def __init__(self, meet: int) -> None:
        self.meeting = threading.Barrier(meet, timeout=5)

    def head_manifest(self, ref: Reference) -> tuple[str, str, int]:
        self.meeting.wait()
        return (f"sha256:{ref.tag}", "application/vnd.oci.image.manifest.v1+json", 1)


def test_settle_reads_every_written_tag_back_at_once() -> None:
    from chainmail.storage.oci import Written, settle

    writes = [Written(REPO, tag, f"sha256:{tag}", False, latency=0.001) for tag in ("a.sig", "a.att", "b.att")]
    final = settle(Heads(3), writes)  # type: ignore[arg-type]
    assert final == writes  # every tag still holds our write: nothing to redo


def test_a_forked_child_gets_its_own_writer_threads() -> None:
    import os

    from chainmail.storage import oci

    assert oci._writer_pool().submit(lambda: 1).result(timeout=5) == 1
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            ok = oci._writer_pool().submit(lambda: 2).result(timeout=5) == 2
            os.write(write, b"ok" if ok else b"no")
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    with os.fdopen(read, "rb") as fh:
        assert fh.read() == b"ok"
