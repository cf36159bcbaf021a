"""create_payloads: what is signed for a run, in which format, and with which keys."""

from __future__ import annotations

import base64
import copy
import json
import logging

import pytest
from formats_runs import DIGEST, DIGEST2, build_pipelinerun, build_taskrun, child

from chainmail.config import Config
from chainmail.errors import ConfigError, InputError
from chainmail.formats import FORMATTER_FOR_TYPE, artifact_uris, create_payloads, get_formatter
from chainmail.models import Payload, RunSnapshot

IMAGE_RESULTS = [
    {"name": "IMAGE_URL", "value": "gcr.io/acme/app:v1"},
    {"name": "IMAGE_DIGEST", "value": DIGEST},
]


def config(data: dict[str, str] | None = None) -> Config:
    return Config.from_mapping(data or {})


def test_registry_names() -> None:
    assert set(FORMATTER_FOR_TYPE) == {
        "in-toto",
        "slsa/v1",
        "slsa/v2alpha3",
        "slsa/v2alpha4",
        "simplesigning",
        "tekton",
    }
    assert FORMATTER_FOR_TYPE["in-toto"] is FORMATTER_FOR_TYPE["slsa/v1"]


def test_unknown_format_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        get_formatter("slsa/v9", config())
    assert "slsa/v9" in str(err.value)
    for name in ("in-toto", "slsa/v2alpha4", "simplesigning", "tekton"):
        assert name in str(err.value)
    with pytest.raises(ConfigError, match="slsa/v9"):
        create_payloads(RunSnapshot(build_taskrun()), config(), ["slsa/v1", "slsa/v9"])


def test_simplesigning_is_not_a_run_format() -> None:
    with pytest.raises(ConfigError, match="signs images"):
        create_payloads(RunSnapshot(build_taskrun()), config(), ["simplesigning"])


def test_taskrun_attestation_and_image_signature() -> None:
    snap = RunSnapshot(build_taskrun(results=IMAGE_RESULTS))
    attestation, signature = create_payloads(snap, config({"artifacts.taskrun.format": "slsa/v2alpha4"}))

    assert attestation.artifact.kind == "taskrun"
    assert attestation.artifact.full_key == "tekton.dev-v1-TaskRun-tr-uid"
    assert attestation.artifact.short_key == "taskrun-tr-uid"
    assert attestation.artifact.ref == "ci/build"
    assert attestation.format == "slsa/v2alpha4"
    assert attestation.payload_type == "application/vnd.in-toto+json"
    assert attestation.wrap is True
    assert attestation.subjects == (f"gcr.io/acme/app@{DIGEST}",)
    assert artifact_uris(attestation) == [f"gcr.io/acme/app@{DIGEST}"]

    assert signature.artifact.kind == "oci"
    assert signature.artifact.full_key == f"gcr.io/acme/app@{DIGEST}"
    assert signature.artifact.short_key == "a" * 12
    assert signature.format == "simplesigning"
    assert signature.payload_type == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert signature.wrap is False
    assert signature.body == (
        b'{"critical":{"identity":{"docker-reference":"gcr.io/acme/app"},"image":{"docker-manifest-digest":'
        b'"sha256:' + b"a" * 64 + b'"},"type":"cosign container image signature"},"optional":null}'
    )


def test_default_format_is_in_toto() -> None:
    (payload, _) = create_payloads(RunSnapshot(build_taskrun(results=IMAGE_RESULTS)), config())
    assert payload.format == "in-toto"
    assert json.loads(payload.body)["predicateType"] == "https://slsa.dev/provenance/v0.2"


def test_pipelinerun_yields_only_its_attestation() -> None:
    kids = [child("build", image="gcr.io/acme/app")]
    snap = RunSnapshot(build_pipelinerun(kids, results=IMAGE_RESULTS), kids)
    (payload,) = create_payloads(snap, config())
    assert payload.artifact.kind == "pipelinerun"
    assert payload.artifact.full_key == "tekton.dev-v1-PipelineRun-pr-uid"
    assert payload.artifact.short_key == "pipelinerun-pr-uid"
    assert payload.subjects == (f"gcr.io/acme/app@{DIGEST}",)


def test_formats_override_gives_one_payload_each() -> None:
    snap = RunSnapshot(build_taskrun(results=IMAGE_RESULTS))
    payloads = create_payloads(snap, config(), ["slsa/v1", "slsa/v2alpha4", "slsa/v1"])
    assert [p.format for p in payloads] == ["slsa/v1", "slsa/v2alpha4", "simplesigning"]
    assert len({p.artifact.full_key for p in payloads[:2]}) == 1


def test_disabled_artifact_types() -> None:
    snap = RunSnapshot(build_taskrun(results=IMAGE_RESULTS))
    only_images = create_payloads(snap, config({"artifacts.taskrun.signer": "none"}))
    assert [p.format for p in only_images] == ["simplesigning"]
    only_attestation = create_payloads(snap, config({"artifacts.oci.signer": "none"}))
    assert [p.format for p in only_attestation] == ["in-toto"]
    assert create_payloads(snap, config({"artifacts.taskrun.storage": "", "artifacts.oci.storage": ""})) == []


def test_provisional_is_passed_through() -> None:
    snap = RunSnapshot(build_taskrun(results=IMAGE_RESULTS))
    payloads = create_payloads(snap, config(), provisional=True)
    assert payloads and all(p.provisional for p in payloads)
    assert not any(p.provisional for p in create_payloads(snap, config()))


def test_tekton_format_signs_the_status() -> None:
    run = build_taskrun(results=IMAGE_RESULTS)
    (payload, _) = create_payloads(RunSnapshot(run), config(), ["tekton"])
    assert payload.payload_type == "application/json"
    assert payload.wrap is False
    status = json.loads(payload.body)
    assert status["podName"] == "build-pod"
    assert status["results"] == IMAGE_RESULTS
    assert payload.body == json.dumps(status, separators=(",", ":")).encode()  # compact, as Go writes it
    with pytest.raises(InputError):
        artifact_uris(payload)


@pytest.mark.parametrize("fmt", ["slsa/v1", "slsa/v2alpha3", "slsa/v2alpha4", "tekton"])
def test_bodies_are_deterministic(fmt: str) -> None:
    kids = [child("build", image="gcr.io/acme/app"), child("scan", image="gcr.io/acme/other")]
    kids[1]["status"]["results"].append(
        {"name": "IMAGES", "value": f"gcr.io/x/y@{DIGEST2}\ngcr.io/x/z@{DIGEST}"}
    )
    run = build_pipelinerun(kids, results=IMAGE_RESULTS)
    cfg = config({"artifacts.pipelinerun.enable-deep-inspection": "true"})
    first = create_payloads(RunSnapshot(run, kids), cfg, [fmt])
    second = create_payloads(RunSnapshot(copy.deepcopy(run), copy.deepcopy(kids)), cfg, [fmt])
    assert [p.body for p in first] == [p.body for p in second]
    # the input's key order does not matter either
    shuffled = json.loads(json.dumps(run, sort_keys=True))
    third = create_payloads(RunSnapshot(shuffled, kids), cfg, [fmt])
    assert [p.body for p in first] == [p.body for p in third]


def test_statement_key_order() -> None:
    (payload, _) = create_payloads(RunSnapshot(build_taskrun(results=IMAGE_RESULTS)), config())
    doc = json.loads(payload.body)
    assert list(doc) == ["_type", "subject", "predicateType", "predicate"]
    assert list(doc["predicate"]) == sorted(doc["predicate"])
    assert list(doc["subject"][0]) == ["name", "digest"]


def test_failed_runs_are_formatted() -> None:
    run = build_taskrun(results=IMAGE_RESULTS, succeeded="False")
    payloads = create_payloads(RunSnapshot(run), config({"artifacts.taskrun.format": "slsa/v2alpha3"}))
    assert [p.format for p in payloads] == ["slsa/v2alpha3", "simplesigning"]
    kids = [child("build", succeeded="False")]
    (payload,) = create_payloads(RunSnapshot(build_pipelinerun(kids), kids), config())
    tasks = json.loads(payload.body)["predicate"]["buildConfig"]["tasks"]
    assert tasks[0]["status"] == "Failed"


def test_pipelinerun_with_customrun_child_is_formatted(caplog: pytest.LogCaptureFixture) -> None:
    kids = [child("build", image="gcr.io/acme/app")]
    refs = [
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "name": "release-build",
            "pipelineTaskName": "build",
        },
        {
            "apiVersion": "tekton.dev/v1beta1",
            "kind": "CustomRun",
            "name": "release-wait",
            "pipelineTaskName": "wait",
        },
    ]
    run = build_pipelinerun(kids, tasks=[{"name": "build"}, {"name": "wait", "taskRef": {"kind": "Wait"}}])
    run["status"]["childReferences"] = refs
    cfg = config(
        {"artifacts.pipelinerun.enable-deep-inspection": "true", "artifacts.pipelinerun.format": "slsa/v1"}
    )
    with caplog.at_level(logging.INFO, logger="chainmail.formats"):
        (payload,) = create_payloads(RunSnapshot(run, kids), cfg)
    assert "CustomRun child release-wait" in caplog.text
    statement = json.loads(payload.body)
    assert [t["name"] for t in statement["predicate"]["buildConfig"]["tasks"]] == ["build"]
    assert statement["subject"] == [{"name": "gcr.io/acme/app", "digest": {"sha256": "a" * 64}}]


def test_missing_children_under_deep_inspection() -> None:
    kids = [child("build"), child("scan")]
    run = build_pipelinerun(kids)
    deep = config({"artifacts.pipelinerun.enable-deep-inspection": "true"})
    with pytest.raises(InputError, match="release-scan"):
        create_payloads(RunSnapshot(run, kids[:1]), deep)
    # without deep inspection Chains formats with what it has
    assert len(create_payloads(RunSnapshot(run, kids[:1]), config())) == 1


def test_run_without_status_is_an_input_error() -> None:
    run = build_taskrun()
    del run["status"]
    with pytest.raises(InputError, match="no status"):
        create_payloads(RunSnapshot(run), config())
    pr = build_pipelinerun([])
    pr["status"] = None
    with pytest.raises(InputError, match="no status"):
        create_payloads(RunSnapshot(pr), config())


def test_other_api_versions_are_refused() -> None:
    run = build_taskrun()
    run["apiVersion"] = "tekton.dev/v1beta1"
    with pytest.raises(InputError, match=r"tekton\.dev/v1beta1"):
        create_payloads(RunSnapshot(run), config())


def test_malformed_fields_are_input_errors() -> None:
    run = build_taskrun()
    run["spec"]["params"] = {"name": "x"}
    with pytest.raises(InputError, match=r"spec\.params: expected a list"):
        create_payloads(RunSnapshot(run), config())
    run = build_taskrun()
    run["status"]["startTime"] = "yesterday"
    with pytest.raises(InputError, match=r"status\.startTime"):
        create_payloads(RunSnapshot(run), config())


def test_bad_step_image_id_is_an_input_error() -> None:
    run = build_taskrun(steps=[{"name": "main", "imageID": ""}])
    with pytest.raises(InputError, match="imageID"):
        create_payloads(RunSnapshot(run), config())


def test_payload_round_trips_through_json() -> None:
    for payload in create_payloads(
        RunSnapshot(build_taskrun(results=IMAGE_RESULTS)), config(), provisional=True
    ):
        assert Payload.from_json(json.loads(json.dumps(payload.to_json()))) == payload


def test_in_toto_subjects_for_oci_skip_non_images() -> None:
    results = [
        *IMAGE_RESULTS,
        {"name": "jar_ARTIFACT_URI", "value": "pkg:maven/acme/app@1.0"},
        {"name": "jar_ARTIFACT_DIGEST", "value": DIGEST2},
        {"name": "sbom_ARTIFACT_URI", "value": "gs://bucket/sbom.json"},
        {"name": "sbom_ARTIFACT_DIGEST", "value": "sha512:" + "d" * 128},
    ]
    (payload, _) = create_payloads(RunSnapshot(build_taskrun(results=results)), config())
    assert sorted(artifact_uris(payload)) == sorted(
        [
            f"gcr.io/acme/app@{DIGEST}",
            f"pkg:maven/acme/app@1.0@{DIGEST2}",
            "gs://bucket/sbom.json@sha512:" + "d" * 128,
        ]
    )
    # only the image (and nothing that fails to parse as one) is an OCI attachment target
    assert payload.subjects == (f"gcr.io/acme/app@{DIGEST}",)


def test_byproduct_content_is_go_json() -> None:
    results = [{"name": "note", "value": "a<b & c>d"}, {"name": "obj", "value": {"z": "1", "a": "2"}}]
    snap = RunSnapshot(build_taskrun(results=results))
    (payload,) = create_payloads(snap, config({"artifacts.taskrun.format": "slsa/v2alpha3"}))
    byproducts = json.loads(payload.body)["predicate"]["runDetails"]["byproducts"]
    contents = [base64.b64decode(b["content"]) for b in byproducts]
    assert contents == [b'"a\\u003cb \\u0026 c\\u003ed"', b'{"a":"2","z":"1"}']
