"""Atomic file writes, and paths confined to a directory.

A failed step never leaves a half-written file; a name taken from a run (its name, namespace,
an artifact key) never writes outside the directory it was meant for.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from chainmail.errors import StorageError


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def _plain_name(part: str) -> bool:
    return bool(part) and part not in (".", "..") and not any(c in part for c in ("/", "\\", "\0"))


def confined(root: Path, *parts: str) -> Path:
    """``root/part/…`` after checking it stays inside ``root``, or :class:`StorageError`.

    Each part must be one plain file name (no ``/``, ``\\``, NUL, ``.`` or ``..``), and the
    path, with every symlink already on disk resolved, must still lie under ``root``; a
    symlink planted in the directory that points elsewhere is refused.
    """
    for part in parts:
        if not _plain_name(part):
            raise StorageError(f"file storage: refusing the name {part!r}: it is not a plain file name and "
                               f"could write outside {root}")
    base = Path(os.path.abspath(root))
    path = base.joinpath(*parts)
    real_base = base.resolve()
    real = path.resolve()
    if real != real_base and not real.is_relative_to(real_base):
        raise StorageError(f"file storage: {path} resolves to {real}, outside {root} (a symlink in the "
                           "store directory?); refusing to write there")
    return path
