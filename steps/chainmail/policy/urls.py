"""Source URLs normalised for comparison, or refused when they cannot be normalised safely.

A policy compares repository URLs as strings (``==``, ``startsWith``), while git fetches what the URL
*means*: ``https://github.com/acme/../mallory/app`` is ``/mallory/app`` to git. So every URL fact goes
through :func:`normalize_source_url`, which returns one canonical spelling or None. None means "no
such fact": a rule that needs the repository then fails closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Schemes git fetches over the network, with their default ports.
_DEFAULT_PORTS = {"https": 443, "http": 80, "ssh": 22, "git": 9418}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://(.*)$")
#: ``[user@]host:path`` (git's scp-like syntax): no slash before the colon, no ``::`` transport helper.
_SCP = re.compile(r"^(?:[^@/:]+@)?([^@/:\[\]]+):([^:]+)$")
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_~")
_MAX_LENGTH = 2048


@dataclass(frozen=True)
class SourceURL:
    """A repository URL in canonical form: ``https://github.com/acme/app``."""

    scheme: str
    #: Lower-case host, with ``:port`` only when it is not the scheme's default.
    host: str
    #: Path segments, none empty, ``.`` or ``..``; no trailing ``.git``; none for a host-only URL.
    segments: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}/{self.path}" if self.segments else f"{self.scheme}://{self.host}"

    @property
    def path(self) -> str:
        """``acme/app`` (no leading or trailing slash)."""
        return "/".join(self.segments)

    @property
    def org(self) -> str:
        """The first path segment: the GitHub organisation or GitLab group ("" for a host-only URL)."""
        return self.segments[0] if self.segments else ""

    def to_fact(self) -> dict[str, str]:
        return {"repository": self.url, "host": self.host, "org": self.org, "path": self.path}


def normalize_source_url(raw: object) -> SourceURL | None:
    """The canonical form of a git URL, or None when it cannot be normalised safely.

    Lower-cases scheme and host; drops ``git+``, userinfo (credentials), default ports, trailing
    ``/`` and one trailing ``.git``; decodes percent-escaped letters and digits. ``ssh://`` on the
    default port and scp-style ``git@host:org/repo`` become ``https://host/org/repo`` (the same
    repository on the hosts policies name). Refused (None): other schemes (``file``, ``ext::``…),
    ``.``/``..``/empty segments, escaped dots, slashes or anything else (``%2e``, ``%2f``, ``%00``),
    backslashes, whitespace and control characters, non-ASCII, query strings and fragments, bad hosts
    or ports.
    """
    if not isinstance(raw, str) or not raw or len(raw) > _MAX_LENGTH:
        return None
    if any(not 0x21 <= ord(c) <= 0x7E for c in raw) or "\\" in raw or "?" in raw or "#" in raw:
        return None
    text = raw[4:] if raw[:4].lower() == "git+" else raw
    match = _SCHEME.match(text)
    if match:
        scheme = match.group(1).lower()
        authority, _, path = match.group(2).partition("/")
        if scheme not in _DEFAULT_PORTS:
            return None
    else:
        scp = _SCP.match(text)
        if scp is None:
            return None
        scheme, authority, path = "ssh", scp.group(1), scp.group(2).removeprefix("/")
    segments = _segments(path)
    if segments == () and authority.lower().endswith(".git"):
        authority = authority[:-4]  # Chains writes CHAINS-GIT_URL + ".git": https://git.example.com.git
    host = _host(authority, scheme)
    if host is None or segments is None:
        return None
    if scheme == "ssh" and ":" not in host.removeprefix("[").rpartition("]")[2]:
        scheme = "https"  # ssh on its default port: the same repository as https on the same host
    return SourceURL(scheme, host, segments)


def normalize_repository(raw: object) -> str:
    """The canonical URL string, or ``""`` when ``raw`` cannot be normalised safely."""
    url = normalize_source_url(raw)
    return url.url if url is not None else ""


def _host(authority: str, scheme: str) -> str | None:
    hostport = authority.rpartition("@")[2]  # drop userinfo (user:token@)
    if hostport.startswith("["):
        host, bracket, port = hostport.partition("]")
        host += bracket
        if port and not port.startswith(":"):
            return None
        port = port[1:]
    else:
        host, _, port = hostport.partition(":")
    host = host.lower()
    host = host[:-1] if host.endswith(".") and not host.startswith("[") else host
    if not (_HOST.match(host) or _IPV6.match(host)):
        return None
    if port:
        if not port.isdigit() or not 0 < int(port) < 65536:
            return None
        if int(port) != _DEFAULT_PORTS[scheme]:
            return f"{host}:{int(port)}"
    elif ":" in hostport.rpartition("]")[2]:
        return None  # "host:" with an empty port
    return host


def _segments(path: str) -> tuple[str, ...] | None:
    decoded = _decode(path)
    if decoded is None:
        return None
    parts = decoded.split("/")
    while parts and parts[-1] == "":
        parts.pop()
    if parts and parts[-1].lower().endswith(".git"):
        parts[-1] = parts[-1][:-4]
        if parts[-1] == "" and len(parts) == 1:
            return None  # the path was only ".git"
    if any(p in ("", ".", "..") for p in parts):
        return None
    return tuple(parts)


def _decode(path: str) -> str | None:
    """Decode ``%XX`` escapes of letters, digits, ``-``, ``_`` and ``~``; None for any other escape."""
    if "%" in _ESCAPE.sub("", path):
        return None  # a stray "%" that is not an escape
    out: list[str] = []
    last = 0
    for match in _ESCAPE.finditer(path):
        char = chr(int(match.group(1), 16))
        if char not in _UNRESERVED:
            return None
        out += [path[last:match.start()], char]
        last = match.end()
    out.append(path[last:])
    return "".join(out)
