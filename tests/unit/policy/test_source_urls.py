"""Repository URLs: one canonical spelling per repository, or none when a URL is not safe to compare."""

from __future__ import annotations

import pytest

from chainmail.policy import normalize_repository, normalize_source_url

ACME = "https://github.com/acme/app"


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://github.com/acme/app", ACME),
    ("git+https://github.com/acme/app.git", ACME),
    ("https://github.com/acme/app/", ACME),
    ("https://github.com/acme/app.git/", ACME),
    ("https://github.com/acme/app.GIT", ACME),
    ("HTTPS://GitHub.COM/acme/app", ACME),
    ("GIT+HTTPS://github.com/acme/app", ACME),
    ("https://github.com:443/acme/app", ACME),
    ("https://github.com:0443/acme/app", ACME),
    ("https://github.com./acme/app", ACME),
    ("https://x-access-token:ghp_secret@github.com/acme/app", ACME),
    ("https://github.com/%61cme/app", ACME),
    ("git@github.com:acme/app.git", ACME),
    ("github.com:acme/app", ACME),
    ("git+ssh://git@github.com/acme/app.git", ACME),
    ("ssh://git@github.com:22/acme/app", ACME),
    ("ssh://git@github.com:2222/acme/app", "ssh://github.com:2222/acme/app"),
    ("http://github.com:80/acme/app", "http://github.com/acme/app"),
    ("git://github.com/acme/app", "git://github.com/acme/app"),
    ("https://gitlab.com/acme/group/app.git", "https://gitlab.com/acme/group/app"),
    ("https://[::1]:8443/acme/app", "https://[::1]:8443/acme/app"),
    ("https://github.com@evil.example/acme/app", "https://evil.example/acme/app"),
    ("https://github.com.evil.example/acme/app", "https://github.com.evil.example/acme/app"),
    ("https://git.test.com", "https://git.test.com"),
    ("git+https://git.test.com.git", "https://git.test.com"),  # Chains appends .git to a host-only URL
])
def test_equivalent_spellings_normalise_to_one(raw: str, expected: str) -> None:
    assert normalize_repository(raw) == expected


@pytest.mark.parametrize("raw", [
    "https://github.com/acme/../mallory/app",          # git fetches /mallory/app
    "https://github.com/acme/./app",
    "https://github.com/acme/app/..",
    "https://github.com/acme/%2e%2e/mallory/app",
    "https://github.com/acme/%2E%2E/mallory/app",
    "https://github.com/acme/.%2e/mallory/app",
    "https://github.com/acme%2f..%2fmallory/app",
    "https://github.com/acme%2Fapp",
    "https://github.com/acme/%5c..%5cmallory/app",
    "https://github.com/acme\\..\\mallory/app",
    "https://github.com\\@evil.example/acme/app",
    "https://github.com/acme/app%00",
    "https://github.com/acme/app%",
    "https://github.com/acme/app%zz",
    "https://github.com/acme/app%20",
    "https://github.com/acme/app ",
    " https://github.com/acme/app",
    "https://github.com/acme/app\n",
    "https://github.com/acme/app\t.git",
    "https://github.com//acme/app",
    "https://github.com/acme//app",
    "https://github.com/acme/app?ref=main",
    "https://evil.example#@github.com/acme/app",
    "https://evil.example?@github.com/acme/app",
    "https://github.com/acme/app#main",
    "https://gíthub.com/acme/app",                    # non-ASCII host (homograph)
    "https://github.com/acmé/app",
    "https://github.com:99999/acme/app",
    "https://github.com:0/acme/app",
    "https://github.com:http/acme/app",
    "https://github.com:/acme/app",
    "https://git_hub.com/acme/app",
    "https://-github.com/acme/app",
    "https:///acme/app",
    "https://%67ithub.com/acme/app",
    "file:///srv/git/acme/app",
    "ext::sh -c touch% /tmp/pwned",
    "fd::3",
    "/srv/git/acme/app",
    "./app",
    "../acme/app",
    "C:\\repos\\app",
    "git+git+https://github.com/acme/app",
    "ftp://github.com/acme/app",
    "javascript:alert(1)//github.com/acme/app",
    "https://github.com/.git",
    "https://github.com/acme/app/.git",
    "",
    "x" * 3000,
])
def test_unsafe_urls_yield_no_repository(raw: str) -> None:
    assert normalize_source_url(raw) is None
    assert normalize_repository(raw) == ""


@pytest.mark.parametrize("raw", [None, 42, ["https://github.com/acme/app"], {"uri": ACME}])
def test_non_strings_yield_no_repository(raw: object) -> None:
    assert normalize_source_url(raw) is None


def test_parts_for_prefix_safe_rules() -> None:
    url = normalize_source_url("git+https://GitHub.com:443/acme/group/app.git")
    assert url is not None
    assert url.to_fact() == {"repository": "https://github.com/acme/group/app", "host": "github.com",
                             "org": "acme", "path": "acme/group/app"}
    host_only = normalize_source_url("https://git.test.com")
    assert host_only is not None and (host_only.org, host_only.path) == ("", "")


def test_startswith_recipe_is_safe_after_normalisation() -> None:
    """The docs' recipe: once normalised, a prefix with a trailing slash names one organisation."""
    prefix = "https://github.com/acme/"
    for attack in ("https://github.com/acme/../mallory/app", "https://github.com/acme/%2e%2e/mallory/app",
                   "https://github.com/acme/..%2fmallory/app", "https://github.com/acme/.%2E/mallory/app"):
        assert attack.startswith(prefix)  # the raw string would have passed
        assert not normalize_repository(attack).startswith(prefix)
    assert not normalize_repository("https://github.com/acmeevil/app").startswith(prefix)
    assert normalize_repository("git@github.com:acme/app.git").startswith(prefix)
