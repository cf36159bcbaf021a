"""chainmail under an arbitrary UID in group 0, as OpenShift's restricted-v2 SCC runs it.

Three layers: the Containerfile (group-0 HOME and caches, numeric non-root USER), the HOME fallback
(:mod:`chainmail.homedir`), and the real CLI signing a run into a file store as UID 1000650000 with
no passwd entry and no HOME (needs root to switch UID; as another user only the HOME cases run).
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from chainmail.homedir import ensure_home, fallback_dir

REPO = Path(__file__).resolve().parents[2]
CONTAINERFILE = REPO / "images" / "chainmail" / "Containerfile"
ARBITRARY_UID = 1000650000


# ---------------------------------------------------------------- the image


def _runtime_stage() -> str:
    text = CONTAINERFILE.read_text()
    return text[text.rindex("\nFROM "):]


def test_image_user_is_numeric_non_root_in_group_zero() -> None:
    users = re.findall(r"^USER\s+(\S+)", _runtime_stage(), re.M)
    assert users, "the runtime stage must set USER (runAsNonRoot needs a numeric non-root user)"
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit() and int(uid) != 0, "USER must be numeric and not root"
    assert gid == "0", "group 0, like the arbitrary UIDs OpenShift assigns"


def test_image_home_and_caches_are_group_zero_writable() -> None:
    stage = _runtime_stage()
    env_home = re.search(r"HOME=(\S+)", stage)
    assert env_home is not None
    home = env_home.group(1)
    for var in ("XDG_CACHE_HOME", "XDG_DATA_HOME"):
        match = re.search(rf"{var}=(\S+)", stage)
        assert match is not None and match.group(1).startswith(home + "/"), f"{var} must live under HOME"
    chown = re.search(r"chown -R \d+:0 ([^\\&\n]+)", stage)
    chmod = re.search(r"chmod -R g=u ([^\\&\n]+)", stage)
    assert chown is not None and home in chown.group(1).split()
    assert chmod is not None and home in chmod.group(1).split()
    assert not re.search(r"chmod\s+(-R\s+)?(777|a\+w|o\+w)", stage), "never world-writable"


# ---------------------------------------------------------------- HOME fallback


def test_unset_home_gets_a_private_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env: dict[str, str] = {}
    fallback = ensure_home(env)
    assert fallback is not None and env["HOME"] == str(fallback)
    info = fallback.lstat()
    assert stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700
    assert ensure_home({"HOME": "relative/dir"}) is not None
    assert ensure_home({"HOME": "/nonexistent/chainmail-home"}) is not None


def test_writable_home_is_left_alone(tmp_path: Path) -> None:
    env = {"HOME": str(tmp_path)}
    assert ensure_home(env) is None and env == {"HOME": str(tmp_path)}


def test_unusable_xdg_dirs_move_but_home_stays(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    env = {"HOME": str(tmp_path), "XDG_CACHE_HOME": "relative/cache", "XDG_DATA_HOME": str(tmp_path / "new" / "data")}
    fallback = ensure_home(env)
    assert fallback is not None and env["HOME"] == str(tmp_path)
    assert env["XDG_CACHE_HOME"] == str(fallback / ".cache")
    assert env["XDG_DATA_HOME"] == str(tmp_path / "new" / "data")  # creatable: left alone


def test_fallback_refuses_a_directory_someone_else_prepared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    planted = tmp_path / f"chainmail-home-{os.getuid()}"
    planted.mkdir(mode=0o777)
    planted.chmod(0o777)
    chosen = fallback_dir()
    assert chosen != planted and stat.S_IMODE(chosen.stat().st_mode) == 0o700


# ---------------------------------------------------------------- the CLI as another UID


def _python_for_other_uids() -> str | None:
    """An interpreter of this Python's version that a UID without a home can execute."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (os.path.realpath(sys.executable), f"/usr/bin/python{version}", f"/usr/local/bin/python{version}"):
        path = Path(candidate)
        if not path.exists():
            continue
        chain = [path, *path.parents]
        if all(os.stat(p).st_mode & stat.S_IXOTH for p in chain) and os.stat(path).st_mode & stat.S_IROTH:
            out = subprocess.run([candidate, "-c", "import sys; print(sys.version_info[:2])"],
                                 capture_output=True, text=True, check=False)
            if out.stdout.strip() == str(tuple(sys.version_info[:2])):
                return candidate
    return None


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A directory the arbitrary UID can reach and, through group 0, write (pytest's tmp_path is private)."""
    path = Path(tempfile.mkdtemp(prefix="chainmail-uid-", dir="/tmp"))
    os.chown(path, os.getuid(), 0)
    path.chmod(0o775)  # group 0 may write (TMPDIR for the fallback home), others may only enter
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _run_as(uid: int | None, python: str, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    def drop() -> None:
        os.setgroups([])
        os.setgid(0)
        os.setuid(uid)  # type: ignore[arg-type]

    paths = sysconfig.get_paths()
    full_env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": os.pathsep.join([str(REPO / "steps"), paths["purelib"],
                                                                         paths["platlib"]]), **env}
    return subprocess.run([python, "-m", "chainmail", *args], env=full_env, cwd="/", capture_output=True, text=True,
                          preexec_fn=drop if uid is not None else None, timeout=120, check=False)


def _sign_args(work: Path, key_dir: Path) -> list[str]:
    from chainmail.config import KEYS

    args = ["run", "--from-file", str(REPO / "examples" / "taskrun.json"), "--key", str(key_dir),
            "--config", str(REPO / "examples" / "chains-config.yaml"), "--file-store", str(work / "store"),
            "--set", "chainmail.retry.deadline-seconds=1"]
    if "chainmail.sign.verify-images-exist" in KEYS:  # the example's registry does not exist
        args += ["--set", "chainmail.sign.verify-images-exist=false"]
    return args


def _prepare(work: Path, key: str) -> Path:
    key_dir = work / "keys"
    shutil.copytree(key, key_dir)
    for path in [key_dir, *key_dir.iterdir()]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    store = work / "store"
    store.mkdir()
    os.chown(store, os.getuid(), 0)
    store.chmod(0o770)  # writable by group 0 only, like a volume OpenShift prepares
    return key_dir


@pytest.mark.skipif(os.getuid() != 0, reason="switching to an arbitrary UID needs root (CI runs as root)")
@pytest.mark.parametrize("home", [None, "/", "/nonexistent"])
def test_signs_as_an_arbitrary_uid_without_a_home(shared_tmp: Path, key: str, home: str | None) -> None:
    python = _python_for_other_uids()
    if python is None:
        pytest.skip("no interpreter of this Python version is executable by other users")
    key_dir = _prepare(shared_tmp, key)
    env = {"TMPDIR": str(shared_tmp)} if home is None else {"HOME": home, "TMPDIR": str(shared_tmp)}
    result = _run_as(ARBITRARY_UID, python, _sign_args(shared_tmp, key_dir), env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    written = [p for p in (shared_tmp / "store").rglob("*") if p.is_file()]
    assert any(p.suffix == ".signature" for p in written)
    assert all(p.stat().st_uid == ARBITRARY_UID and p.stat().st_gid == 0 for p in written)
    assert not (Path("/") / "~").exists(), "nothing may expand '~' literally"


@pytest.mark.skipif(os.getuid() != 0, reason="switching to an arbitrary UID needs root (CI runs as root)")
def test_cli_start_sets_a_usable_home_for_an_arbitrary_uid(shared_tmp: Path) -> None:
    """HOME=/ (what CRI-O gives a UID without a passwd entry): caches move to a private temp dir."""
    python = _python_for_other_uids()
    if python is None:
        pytest.skip("no interpreter of this Python version is executable by other users")
    code = ("import os, sys; from chainmail.homedir import ensure_home; ensure_home(); "
            "from pathlib import Path; print(Path.home()); print(os.environ.get('XDG_CACHE_HOME', ''))")
    paths = sysconfig.get_paths()
    env = {"PATH": "/usr/bin:/bin", "HOME": "/", "TMPDIR": str(shared_tmp),
           "PYTHONPATH": os.pathsep.join([str(REPO / "steps"), paths["purelib"], paths["platlib"]])}

    def drop() -> None:
        os.setgroups([])
        os.setgid(0)
        os.setuid(ARBITRARY_UID)

    out = subprocess.run([python, "-c", code], env=env, capture_output=True, text=True, preexec_fn=drop,
                         timeout=60, check=True)
    home, cache = out.stdout.split("\n")[:2]
    assert home == "/"
    assert cache == str(shared_tmp / f"chainmail-home-{ARBITRARY_UID}" / ".cache")


def test_signs_with_home_unset_and_unwritable_as_this_user(tmp_path: Path, key: str) -> None:
    """The same run as the current user: HOME unset, then HOME a read-only directory."""
    readonly = tmp_path / "ro-home"
    readonly.mkdir()
    readonly.chmod(0o555)
    for env in ({"TMPDIR": str(tmp_path)}, {"HOME": str(readonly), "TMPDIR": str(tmp_path)}):
        work = Path(tempfile.mkdtemp(dir=tmp_path))
        result = _run_as(None, sys.executable, _sign_args(work, Path(key)), env)
        assert result.returncode == 0, result.stderr
        assert any(p.suffix == ".signature" for p in (work / "store").rglob("*"))


@pytest.mark.skipif(os.getuid() != 0, reason="switching to an arbitrary UID needs root (CI runs as root)")
def test_kubeconfig_lookup_without_a_passwd_entry_is_a_clear_error(shared_tmp: Path) -> None:
    """``~/.kube/config`` with no HOME and no passwd entry: Path.home() raises; chainmail must not (exit 70)."""
    python = _python_for_other_uids()
    if python is None:
        pytest.skip("no interpreter of this Python version is executable by other users")
    result = _run_as(ARBITRARY_UID, python, ["config", "check", "--configmap", "openshift-pipelines/chains-config"],
                     {"TMPDIR": str(shared_tmp)})
    assert result.returncode in (3, 9), result.stderr  # a configuration or cluster error, never a bug (70)
    assert result.stderr.startswith("Error: ") and "kubeconfig" in result.stderr.lower()
    assert "internal error" not in result.stderr and "Traceback" not in result.stderr
