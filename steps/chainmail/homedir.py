"""A usable home directory under any UID: OpenShift's ``restricted-v2`` runs images as an arbitrary
UID with no passwd entry, so ``HOME`` may be unset, ``/`` or a directory the UID cannot write.

Example::

    ensure_home()   # once, at CLI start: HOME, XDG_CACHE_HOME, XDG_DATA_HOME point somewhere usable

What reads or writes under ``HOME``: the kubeconfig (``~/.kube/config``) and registry credentials
(``~/.docker/config.json``) are only read; sigstore-python's TUF metadata (keyless verification) is
written under ``platformdirs``' data and cache directories, i.e. ``$XDG_DATA_HOME`` and
``$XDG_CACHE_HOME`` (default ``~/.local/share`` and ``~/.cache``). So:

- ``HOME`` unset or not a directory → ``HOME`` becomes a private temp directory (``Path.home()``
  would otherwise raise for a UID without a passwd entry);
- otherwise ``HOME`` stays (a mounted ``~/.docker/config.json`` is still found), and the XDG
  cache/data directories move to the private temp directory when they cannot be created where
  they are (``HOME`` read-only, or ``XDG_*`` set to a read-only place).
"""

from __future__ import annotations

import os
import stat
from collections.abc import MutableMapping
from pathlib import Path


def _usable_dir(path: Path, *, write: bool) -> bool:
    try:
        return path.is_absolute() and path.is_dir() and os.access(path, os.W_OK | os.X_OK if write else os.X_OK)
    except OSError:
        return False


def fallback_dir() -> Path:
    """``$TMPDIR/chainmail-home-<uid>``: created 0700, reused only if it is ours and not a symlink."""
    import tempfile

    base = Path(tempfile.gettempdir())
    path = base / f"chainmail-home-{os.getuid()}"
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return Path(tempfile.mkdtemp(prefix="chainmail-home-"))
    except OSError:
        return Path(tempfile.mkdtemp(prefix="chainmail-home-"))
    return path


def ensure_home(environ: MutableMapping[str, str] | None = None) -> Path | None:
    """Point HOME (or the XDG cache/data dirs) at a private temp dir when they are unusable.

    Returns the fallback directory when one was needed, else None.
    """
    env = os.environ if environ is None else environ
    home = env.get("HOME", "")
    if not home or not _usable_dir(Path(home), write=False):
        fallback = fallback_dir()
        env["HOME"] = str(fallback)
        return fallback
    fallback = None
    for name, sub in (("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".local/share")):
        if not _can_create(env.get(name) or str(Path(home) / sub)):
            fallback = fallback or fallback_dir()
            env[name] = str(fallback / sub)
    return fallback


def _can_create(target: str) -> bool:
    """True when ``target`` exists writable, or its nearest existing parent is writable."""
    path = Path(target)
    if not path.is_absolute():
        return False
    while not path.exists() and path != path.parent:
        path = path.parent
    return _usable_dir(path, write=True)
