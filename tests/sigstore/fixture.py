"""pytest fixture for the local Sigstore stack (``server.mjs``: @sigstore/mock plus chainmail's Rekor read API).

``tests/sigstore`` must not become a package (an ``__init__.py`` on ``pythonpath=tests`` would shadow
sigstore-python), so a test module loads this file by path and re-exports the fixture::

    _spec = importlib.util.spec_from_file_location("sigstore_stack_fixture", TESTS / "sigstore" / "fixture.py")
    stack_module = sys.modules.setdefault(_spec.name, importlib.util.module_from_spec(_spec))
    _spec.loader.exec_module(stack_module)
    sigstore_stack = stack_module.sigstore_stack

``sigstore_stack`` (module scope) starts one server on a free loopback port with a bounded lifetime,
waits for its ready line and kills it at teardown. It yields a :class:`Stack` with the URL, the
``trusted_root.json`` it wrote, and helpers to reach the test-only fault hook. Missing node or
``@sigstore/mock`` skips locally and fails under ``CI=true`` (``tooling.require_tool``).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tooling import require_tool

HERE = Path(__file__).resolve().parent
JS_DIR = HERE.parent / "js"
SERVER = HERE / "server.mjs"
#: Seconds the server lives at most (it also exits when its parent dies).
LIFETIME = 600
STARTUP_TIMEOUT = 30.0


@dataclass(frozen=True)
class Stack:
    """A running local Sigstore stack."""

    url: str
    trusted_root: Path
    #: The Rekor log's public key (PEM), also inside ``trusted_root``.
    rekor_key: Path

    def fault(self, mode: str | None) -> None:
        """Spoil the next entry response: bad-set, bad-body, bad-proof, other-entry, status-400;
        ``status-500`` lasts until ``fault(None)``."""
        import requests

        resp = requests.post(f"{self.url}/__test__/fault", json={"mode": mode}, timeout=5)
        resp.raise_for_status()


def _start(tmp: Path) -> tuple[subprocess.Popen[str], dict[str, str]]:
    node = shutil.which("node")
    if node is None:
        require_tool("node", "not installed; the local Sigstore stack needs it")
    if not (JS_DIR / "node_modules" / "@sigstore" / "mock").is_dir():
        require_tool("tests/js/node_modules/@sigstore/mock", "absent: run `npm install --prefix tests/js`")
    proc = subprocess.Popen([node, str(SERVER), "0", str(tmp), str(LIFETIME)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    ready: dict[str, str] = {}

    def read() -> None:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.strip():
            ready.update(json.loads(line))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(STARTUP_TIMEOUT)
    if not ready:
        proc.kill()
        err = proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        pytest.fail(f"local Sigstore stack did not start within {STARTUP_TIMEOUT:g}s: {err.strip()[-500:]}",
                    pytrace=False)
    return proc, ready


@pytest.fixture(scope="module")
def sigstore_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A fresh stack per test module: its log starts empty."""
    tmp = tmp_path_factory.mktemp("sigstore-stack")
    proc, ready = _start(tmp)
    try:
        yield Stack(ready["url"], Path(ready["trustedRoot"]), tmp / "rekor.pub")
    finally:
        proc.kill()
        proc.wait(timeout=10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
