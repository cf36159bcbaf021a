"""Type hinting: image references, digests, structured results, merging."""

from __future__ import annotations

import logging

import pytest
from formats_runs import DIGEST, DIGEST2, build_pipelinerun, build_taskrun, child

from chainmail.artifacts import (
    Descriptors,
    Result,
    build_artifacts,
    images,
    input_materials,
    is_build_artifact,
    object_subjects,
    oci_images,
    parse_digest,
    parse_image,
    structured,
)
from chainmail.models import RunSnapshot

HEX = DIGEST.removeprefix("sha256:")


@pytest.mark.parametrize(
    ("ref", "repository"),
    [
        ("busybox", "index.docker.io/library/busybox"),
        ("busybox:1.36", "index.docker.io/library/busybox"),
        ("library/busybox", "index.docker.io/library/busybox"),
        ("docker.io/busybox", "index.docker.io/library/busybox"),
        ("docker.io/acme/app:v1", "index.docker.io/acme/app"),
        ("index.docker.io/acme/app", "index.docker.io/acme/app"),
        ("acme/app", "index.docker.io/acme/app"),
        ("gcr.io/acme/app:v1.2.3", "gcr.io/acme/app"),
        ("localhost/app", "localhost/app"),
        ("localhost:5000/app:dev", "localhost:5000/app"),
        ("127.0.0.1:5000/demo/app", "127.0.0.1:5000/demo/app"),
        ("Registry.Example.com:443/team/app", "Registry.Example.com:443/team/app"),
        ("abc", "index.docker.io/library/abc"),
    ],
)
def test_image_normalisation(ref: str, repository: str) -> None:
    image = parse_image(f"{ref}@{DIGEST}")
    assert image.repository == repository
    assert image.name == f"{repository}@{DIGEST}"
    assert image.hex == HEX


@pytest.mark.parametrize(
    "ref",
    [
        f"gcr.io/Acme/app@{DIGEST}",  # upper case in the repository
        f"a@{DIGEST}",  # repository shorter than 2 characters
        "gcr.io/acme/app@sha256:abc",  # short digest
        "gcr.io/acme/app@sha256:" + "A" * 64,  # upper-case hex
        "gcr.io/acme/app@sha512:" + "a" * 128,  # only sha256 names an image
        f"gcr.io/acme/app:@{DIGEST}",  # empty tag
        f"gcr.io/acme/app{DIGEST}",  # no @
        f"gcr.io/acme@app@{DIGEST}",  # two @
        f"gcr io/acme/app@{DIGEST}",  # space in the registry
    ],
)
def test_invalid_image_refs(ref: str) -> None:
    with pytest.raises(ValueError):
        parse_image(ref)


def test_parse_digest() -> None:
    assert parse_digest(" SHA256 : " + HEX) == ("sha256", HEX)
    assert parse_digest("sha1:" + "f" * 40) == ("sha1", "f" * 40)
    assert parse_digest("sha512:" + "e" * 128) == ("sha512", "e" * 128)
    for bad in ("sha256:" + "a" * 63, "md5:" + "a" * 32, "sha256", "sha256:a:b", "sha1:" + "F" * 40):
        with pytest.raises(ValueError):
            parse_digest(bad)


def test_invalid_digest_is_skipped_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    results = [
        Result("IMAGE_URL", "gcr.io/acme/app"),
        Result("IMAGE_DIGEST", "sha256:1234"),
        Result("second_IMAGE_URL", "gcr.io/acme/ok"),
        Result("second_IMAGE_DIGEST", DIGEST),
        Result("jar_ARTIFACT_URI", "pkg:maven/a/b@1"),
        Result("jar_ARTIFACT_DIGEST", "crc32:1234"),
    ]
    with caplog.at_level(logging.WARNING, logger="chainmail.formats"):
        found = oci_images(results)
        subjects = list(object_subjects(results))
    assert [i.repository for i in found] == ["gcr.io/acme/ok"]
    assert subjects == [("gcr.io/acme/ok", {"sha256": HEX})]
    assert "sha256:1234" in caplog.text
    assert "crc32" in caplog.text
    assert all(r.name == "chainmail.formats" and r.levelno == logging.WARNING for r in caplog.records)


def test_invalid_digest_in_a_run_is_not_fatal(caplog: pytest.LogCaptureFixture) -> None:
    run = build_taskrun(
        results=[{"name": "IMAGE_URL", "value": "app"}, {"name": "IMAGE_DIGEST", "value": "sha256:"}]
    )
    with caplog.at_level(logging.WARNING, logger="chainmail.formats"):
        assert images(RunSnapshot(run)) == []
    assert "skipping" in caplog.text


def test_images_list_and_dedup() -> None:
    results = [
        Result(
            "IMAGES", f" gcr.io/a/b@{DIGEST} ,\ngcr.io/a/c:tag@{DIGEST2}\n\n,docker.io/library/b@{DIGEST}"
        ),
        Result("IMAGE_URL", "gcr.io/a/b:latest"),
        Result("IMAGE_DIGEST", f"  {DIGEST}  "),
    ]
    # *IMAGE_URL pairs first, then IMAGES in order; the same image twice is kept once
    assert [i.name for i in oci_images(results)] == [
        f"gcr.io/a/b@{DIGEST}",
        f"gcr.io/a/c@{DIGEST2}",
        f"index.docker.io/library/b@{DIGEST}",
    ]


def test_images_of_a_snapshot() -> None:
    run = build_taskrun(results=[{"name": "IMAGES", "value": f"busybox@{DIGEST}"}])
    (artifact,) = images(RunSnapshot(run))
    assert artifact.kind == "oci"
    assert artifact.full_key == f"index.docker.io/library/busybox@{DIGEST}"
    assert artifact.short_key == HEX[:12]
    assert artifact.owner.name == "build"
    kids = [child("build", image="gcr.io/acme/app")]
    assert images(RunSnapshot(build_pipelinerun(kids, results=run["status"]["results"]), kids)) == []


def test_structured_results(caplog: pytest.LogCaptureFixture) -> None:
    results = [
        Result("src-ARTIFACT_INPUTS", {"uri": "https://github.com/acme/app", "digest": "SHA1:" + "f" * 40}),
        Result("bad-ARTIFACT_INPUTS", "https://github.com/acme/app"),  # a string where an object is expected
        Result("nouri-ARTIFACT_INPUTS", {"digest": DIGEST}),
        Result(
            "out-ARTIFACT_OUTPUTS", {"uri": "gcr.io/acme/app", "digest": DIGEST, "isBuildArtifact": "true"}
        ),
        Result(
            "side-ARTIFACT_OUTPUTS", {"uri": "gs://b/report", "digest": DIGEST2, "isBuildArtifact": "false"}
        ),
        Result(
            "broken-ARTIFACT_OUTPUTS", {"uri": "gs://b/x", "digest": "sha256:zz", "isBuildArtifact": "true"}
        ),
    ]
    with caplog.at_level(logging.WARNING, logger="chainmail.formats"):
        assert input_materials(results) == [("https://github.com/acme/app", {"sha1": "f" * 40})]
        assert structured(results, "ARTIFACT_OUTPUTS") == [
            ("gcr.io/acme/app", DIGEST),
            ("gs://b/report", DIGEST2),
        ]
        assert build_artifacts(results) == [("gcr.io/acme/app", DIGEST)]
    assert "bad-ARTIFACT_INPUTS" in caplog.text
    assert [is_build_artifact(r) for r in results[3:]] == [True, False, None]
    assert is_build_artifact(Result("x-ARTIFACT_OUTPUTS", "not an object")) is None
    assert is_build_artifact(Result("plain", "x")) is False


def test_descriptors_merge_like_chains() -> None:
    d = Descriptors()
    d.add("a", {"sha256": "1"})
    d.add("a", {"sha256": "1", "sha512": "2"})  # same name, shared digest: merged
    d.add("a", {"sha256": "3"})  # same name, different digest: appended
    d.add("b", {"sha256": "1"})
    assert list(d) == [("a", {"sha256": "1", "sha512": "2"}), ("a", {"sha256": "3"}), ("b", {"sha256": "1"})]
    assert len(d) == 3
    # Go looks up a missing algorithm as "": an empty hex matches an entry without that algorithm
    blank = Descriptors([("c", {"sha256": ""})])
    blank.add("c", {"sha512": "9"})
    assert list(blank) == [("c", {"sha256": "", "sha512": "9"})]


def test_each_skipped_hint_is_reported_once_per_run(caplog: pytest.LogCaptureFixture) -> None:
    from chainmail.config import Config
    from chainmail.formats import create_payloads

    bad = {"uri": "gcr.io/acme/app", "digest": "sha256:zz", "isBuildArtifact": "true"}
    run = build_taskrun(results=[{"name": "out-ARTIFACT_OUTPUTS", "value": bad}])
    with caplog.at_level(logging.WARNING, logger="chainmail.formats"):
        create_payloads(RunSnapshot(run), Config(), ["slsa/v1", "slsa/v2alpha3", "slsa/v2alpha4"])
    assert len([r for r in caplog.records if "out-ARTIFACT_OUTPUTS" in r.getMessage()]) == 1
