"""Go's view of a run: decoding defaults, spellings of times, durations and quantities."""

from __future__ import annotations

import pytest

from chainmail.errors import InputError
from chainmail.formats._goval import format_duration, go_json, parse_duration, parse_time, quantity
from chainmail.formats._tekton import decode, decode_run, param_value


def test_taskrun_spec_as_go_writes_it() -> None:
    spec = {
        "params": [],
        "timeout": "1h",
        "Unknown": "dropped",
        "taskSpec": {"steps": [{"name": "a", "image": "x", "Args": ["--v"], "unknownField": 1}]},
        "workspaces": [
            {
                "name": "src",
                "volumeClaimTemplate": {
                    "spec": {
                        "accessModes": ["ReadWriteOnce"],
                        "resources": {"requests": {"storage": "1024Mi"}},
                    }
                },
            }
        ],
        "podTemplate": {"securityContext": {"runAsUser": 1000}, "nodeSelector": {"b": "2", "a": "1"}},
    }
    out = decode("TaskRunSpec", spec)
    assert out == {
        "serviceAccountName": "",
        "taskSpec": {"steps": [{"name": "a", "image": "x", "args": ["--v"], "computeResources": {}}]},
        "timeout": "1h0m0s",
        "podTemplate": {"nodeSelector": {"a": "1", "b": "2"}, "securityContext": {"runAsUser": 1000}},
        "workspaces": [
            {
                "name": "src",
                "volumeClaimTemplate": {
                    "metadata": {},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
                    "status": {},
                },
            }
        ],
    }
    assert list(out) == ["serviceAccountName", "taskSpec", "timeout", "podTemplate", "workspaces"]


def test_embedded_pipeline_task_spec() -> None:
    out = decode("PipelineTask", {"name": "t", "taskSpec": {"steps": [{"name": "s", "image": "i"}]}})
    assert out == {
        "name": "t",
        "taskSpec": {
            "spec": None,
            "metadata": {},
            "steps": [{"name": "s", "image": "i", "computeResources": {}}],
        },
    }


def test_status_fields_and_times() -> None:
    run = {
        "metadata": {"name": "x", "creationTimestamp": "2024-02-09T10:14:00+01:00"},
        "status": {
            "startTime": "2024-02-09T09:14:00.250Z",
            "conditions": [{"type": "Succeeded", "status": "True"}],
            "steps": [{"name": "s", "terminated": {"exitCode": 0, "reason": "Completed"}}],
        },
    }
    out = decode_run(run, "TaskRun")
    assert list(out) == ["metadata", "spec", "status"]
    assert out["metadata"] == {"name": "x", "creationTimestamp": "2024-02-09T09:14:00Z"}
    status = out["status"]
    assert status["conditions"] == [{"type": "Succeeded", "status": "True", "lastTransitionTime": None}]
    assert status["podName"] == ""
    assert status["startTime"] == "2024-02-09T09:14:00Z"
    assert status["startTime"].rfc3339nano() == "2024-02-09T09:14:00.25Z"
    assert status["startTime"].protojson() == "2024-02-09T09:14:00.250Z"
    assert status["steps"] == [
        {
            "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": None, "finishedAt": None},
            "name": "s",
        }
    ]


def test_field_names_match_case_insensitively() -> None:
    out = decode("Provenance", {"FeatureFlags": {"EnableAPIFields": "beta", "ENABLESTEPACTIONS": True}})
    assert out == {"featureFlags": {"enableAPIFields": "beta", "enableStepActions": True}}


def test_param_values() -> None:
    assert param_value("x") == "x"
    assert param_value(["a", None]) == ["a", ""]
    assert param_value({"b": "1", "a": None}) == {"a": "", "b": "1"}
    assert param_value(None) == ""
    assert param_value(["a", 1]) == '["a",1]'  # does not fit []string: kept as text, like Tekton
    with pytest.raises(InputError, match=r"params\[0\]\.value: missing"):
        decode("TaskRunSpec", {"params": [{"name": "p"}]})


def test_type_mismatches() -> None:
    with pytest.raises(InputError, match=r"TaskRunSpec\.retries: expected an integer"):
        decode("TaskRunSpec", {"retries": "3"})
    with pytest.raises(InputError, match="duration"):
        decode("TaskRunSpec", {"timeout": "soon"})


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1h", "1h0m0s"),
        ("90s", "1m30s"),
        ("1.5s", "1.5s"),
        ("0", "0s"),
        ("1500ns", "1.5\u00b5s"),
        ("-2m", "-2m0s"),
        ("1h30m", "1h30m0s"),
        ("250ms", "250ms"),
        ("10us", "10\u00b5s"),
    ],
)
def test_durations(text: str, canonical: str) -> None:
    assert format_duration(parse_duration(text)) == canonical


@pytest.mark.parametrize("text", ["", "1", "h", "1x", "1.h5"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("1000m", "1"),
        ("500m", "500m"),
        ("0.5", "500m"),
        ("1.5", "1500m"),
        ("1024Mi", "1Gi"),
        ("1536Mi", "1536Mi"),
        ("0.5Gi", "512Mi"),
        ("1000", "1k"),
        ("100M", "100M"),
        ("1e3", "1e3"),
        ("0.0", "0"),
        ("05", "05"),
        ("0.1m", "100u"),
        ("0.0000000001", "1n"),
        ("2048", "2048"),
    ],
)
def test_quantities(text: str, canonical: str) -> None:
    assert quantity(text) == canonical


@pytest.mark.parametrize("text", ["", "1.2.3", "1Q", "abc", "1e"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(ValueError):
        quantity(text)


def test_times() -> None:
    assert parse_time("2021-03-29T09:50:15Z") == "2021-03-29T09:50:15Z"
    assert parse_time("2021-03-29T11:50:15.5+02:00").rfc3339nano() == "2021-03-29T09:50:15.5Z"
    for bad in ("2021-03-29", "2021-02-30T00:00:00Z", "2021-03-29T25:00:00Z", "2021-03-29 09:50:15Z"):
        with pytest.raises(ValueError):
            parse_time(bad)


def test_go_json_escapes() -> None:
    assert go_json({"a": "<&>\u2028"}) == b'{"a":"\\u003c\\u0026\\u003e\\u2028"}'
