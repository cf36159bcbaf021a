"""Registry auth without a network: WWW-Authenticate parsing, token answers, the token cache's rules."""

from __future__ import annotations

import json
import threading
import time

import pytest

from chainmail._internal.regauth import (
    DEFAULT_TOKEN_TTL,
    MAX_TOKEN_TTL,
    TokenCache,
    TokenResponseError,
    login_id,
    merge_scopes,
    parse_challenge,
    parse_token_response,
    repository_scope,
    widen,
)


def test_bearer_challenge_with_all_parameters() -> None:
    c = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",'
                        'scope="repository:team/app:pull,push"')
    assert c is not None and c.scheme == "bearer"
    assert c.realm == "https://auth.example/token" and c.service == "registry.example"
    assert c.scopes == ("repository:team/app:pull,push",) and not c.insufficient_scope


@pytest.mark.parametrize("header", [
    'Bearer realm="https://a/token", service="s", scope="repository:x:pull", error="insufficient_scope"',
    'bearer Realm="https://a/token",Service=s,Scope="repository:x:pull",ERROR="insufficient_scope"',
    'BEARER  realm = "https://a/token" , service="s",scope="repository:x:pull",error=insufficient_scope',
])
def test_challenge_spelling_variants(header: str) -> None:
    c = parse_challenge(header)
    assert c is not None and c.realm == "https://a/token" and c.insufficient_scope
    assert c.scopes == ("repository:x:pull",)


def test_challenge_quoting_and_several_scopes() -> None:
    c = parse_challenge(r'Bearer realm="https://a/t\"x",scope="repository:a:pull repository:b:pull,push"')
    assert c is not None and c.realm == 'https://a/t"x'
    assert c.scopes == ("repository:a:pull", "repository:b:pull,push")
    # the first value wins when a parameter repeats; unknown parameters are kept but ignored
    c = parse_challenge('Bearer realm="https://first",realm="https://second",x-extra="1"')
    assert c is not None and c.realm == "https://first"


@pytest.mark.parametrize("header", ["", "Negotiate abc", "NTLM", 'Digest realm="x"', "=bad", '"quoted"'])
def test_other_or_broken_challenges_are_ignored(header: str) -> None:
    assert parse_challenge(header) is None


def test_basic_challenge_and_junk_parameters() -> None:
    c = parse_challenge('Basic realm="registry"')
    assert c is not None and c.scheme == "basic" and c.realm == "registry"
    c = parse_challenge('Bearer realm="https://a/t", ,,garbage without equals')
    assert c is not None and c.realm == "https://a/t"
    assert parse_challenge("Bearer " + "x=" * 10000) is not None  # long input ends, no backtracking blow-up


def test_scopes() -> None:
    assert repository_scope("team/app", "pull,push") == "repository:team/app:pull,push"
    assert merge_scopes(["repository:a:pull", "repository:a:push", "repository:b:pull"]) == \
        ("repository:a:pull,push", "repository:b:pull")
    assert merge_scopes(["repository:host:5000/a:pull"]) == ("repository:host:5000/a:pull",)
    assert merge_scopes(["nonsense", "repository:a:pull,push", "repository:a:pull"]) == ("repository:a:pull,push",)


def test_a_challenge_widens_only_the_resources_asked_about() -> None:
    mine = ("repository:team/app:pull",)
    assert widen(mine, ["repository:team/app:pull,push"]) == ("repository:team/app:pull,push",)
    assert widen(mine, ["repository:other/repo:pull,push", "registry:catalog:*"]) == mine
    with_source = ("repository:team/app:pull,push", "repository:team/src:pull")
    assert widen(with_source, ["repository:team/src:pull"]) == with_source


def test_token_answers() -> None:
    assert parse_token_response(json.dumps({"token": "abc.def-ghi", "expires_in": 300}).encode()) == \
        ("abc.def-ghi", 300.0)
    assert parse_token_response(b'{"access_token": "tok"}') == ("tok", DEFAULT_TOKEN_TTL)
    assert parse_token_response(b'{"token": "", "access_token": "tok2", "expires_in": "900"}') == \
        ("tok2", DEFAULT_TOKEN_TTL)
    assert parse_token_response(b'{"token": "t", "expires_in": 1e12}')[1] == MAX_TOKEN_TTL
    assert parse_token_response(b'{"token": "t", "expires_in": true}')[1] == DEFAULT_TOKEN_TTL


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[]", b'"token"', b"{}", b'{"token": 5}', b'{"token": {"a": 1}}',
    b'{"token": "has space"}', b'{"token": "line\\r\\nInjected: header"}',
    json.dumps({"token": "x" * 70000}).encode(), b"[" * 100000,
])
def test_hostile_token_answers_are_refused(body: bytes) -> None:
    with pytest.raises(TokenResponseError) as info:
        parse_token_response(body)
    assert "has space" not in str(info.value) and "Injected" not in str(info.value)


def test_login_id_hides_the_secret() -> None:
    assert login_id("", "") == ""
    one, two = login_id("robot", "pw1"), login_id("robot", "pw2")
    assert one != two and "pw1" not in one and one.startswith("robot#")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_cache_honours_expires_in() -> None:
    clock = _Clock()
    cache = TokenCache(clock=clock)
    key = ("reg", "robot#1", ("repository:a:pull",))
    calls: list[int] = []

    def fetch() -> tuple[str, float]:
        calls.append(1)
        return f"tok{len(calls)}", 300.0

    assert cache.fetch(key, fetch) == "tok1"
    clock.now += 200
    assert cache.fetch(key, fetch) == "tok1" and len(calls) == 1
    clock.now += 75  # 275 s: within the 30 s margin before expiry
    assert cache.get(key) is None
    assert cache.fetch(key, fetch) == "tok2"
    # other logins and scopes are other entries
    assert cache.fetch(("reg", "other#2", key[2]), fetch) == "tok3"
    assert cache.fetch(("reg", "robot#1", ("repository:b:pull",)), fetch) == "tok4"
    assert cache.fetches == 4


def test_cache_short_and_zero_lifetimes() -> None:
    clock = _Clock()
    cache = TokenCache(clock=clock)
    cache.fetch(("r", "", ("s",)), lambda: ("short", 10.0))
    clock.now += 8.5
    assert cache.get(("r", "", ("s",))) == "short"  # 10 % margin for short tokens
    clock.now += 1
    assert cache.get(("r", "", ("s",))) is None
    cache.fetch(("r", "", ("z",)), lambda: ("never-cached", 0.0))
    assert cache.get(("r", "", ("z",))) is None


def test_stale_token_is_replaced_but_a_newer_one_is_kept() -> None:
    cache = TokenCache()
    key = ("reg", "", ("s",))
    cache.fetch(key, lambda: ("old", 300.0))
    assert cache.fetch(key, lambda: ("new", 300.0), stale="old") == "new"
    # a second thread that also saw "old" refused gets "new" without a fetch
    assert cache.fetch(key, lambda: pytest.fail("fetched again"), stale="old") == "new"


def test_single_flight() -> None:
    cache = TokenCache()
    key = ("reg", "robot#1", ("repository:a:pull,push",))
    started = threading.Event()
    calls: list[int] = []

    def slow() -> tuple[str, float]:
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return "shared", 300.0

    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(cache.fetch(key, slow))) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["shared"] * 10 and len(calls) == 1


def test_failed_fetch_is_not_cached_and_does_not_block() -> None:
    cache = TokenCache()
    key = ("reg", "", ("s",))

    def boom() -> tuple[str, float]:
        raise RuntimeError("token endpoint down")

    with pytest.raises(RuntimeError):
        cache.fetch(key, boom)
    assert cache.fetch(key, lambda: ("ok", 60.0)) == "ok"


def test_deny_lasts_as_long_as_the_token() -> None:
    clock = _Clock()
    cache = TokenCache(clock=clock)
    key = ("reg", "reader#1", ("repository:a:pull,push",))
    cache.deny(key)
    assert not cache.denied(key)  # nothing cached: nothing to remember
    cache.fetch(key, lambda: ("pull-only", 100.0))
    cache.deny(key)
    assert cache.denied(key)
    clock.now += 100
    assert not cache.denied(key)


def test_cache_is_bounded() -> None:
    cache = TokenCache(limit=3)
    for i in range(10):
        cache.fetch(("r", "", (str(i),)), lambda i=i: (f"t{i}", 60.0))
    assert cache.get(("r", "", ("9",))) == "t9"
    assert sum(cache.get(("r", "", (str(i),))) is not None for i in range(10)) <= 3
