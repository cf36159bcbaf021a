"""Every manifest under tasks/ and pipelines/ against a strict schema.

Tekton objects use the real CRD schemas from ../shared/schemas (tektoncd/pipeline's
config/300-crds, structural since v0.70) with ``additionalProperties: false`` added to every
object that lists its properties and does not preserve unknown fields (conventions §6); the
schemaless embedded ``taskSpec``/``pipelineSpec`` are checked against the Task/Pipeline ``spec``
subschemas. Triggers objects and core Kubernetes objects use the small schemas in k8s_schemas.py.
"""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
from catalog_support import (
    DNS1123_SUBDOMAIN,
    LABEL_VALUE,
    TEKTON_CRDS,
    Doc,
    all_docs,
    crd_schema,
    embedded_specs,
    manifest_files,
)
from k8s_schemas import CORE_SCHEMAS, TRIGGERS_SCHEMAS

DOCS = all_docs()
DOC_IDS = [d.where for d in DOCS]


def _errors(schema: dict, instance: object) -> list[str]:
    validator = jsonschema.Draft4Validator(schema)
    return [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
            for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))]


def _tekton_schema(schemas: Path, api_version: str, kind: str) -> dict:
    filename, version = TEKTON_CRDS[(api_version, kind)]
    return crd_schema(schemas, filename, version)


def test_there_is_something_to_validate() -> None:
    kinds = {d.kind for d in DOCS}
    assert {"Task", "StepAction", "Pipeline", "EventListener", "Trigger", "TriggerBinding",
            "TriggerTemplate", "CronJob"} <= kinds
    assert len(manifest_files()) >= 20


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_manifest_matches_its_schema(doc: Doc, schemas: Path) -> None:
    key = (doc.api_version, doc.kind)
    if key in TEKTON_CRDS:
        schema = _tekton_schema(schemas, *key)
    elif key in TRIGGERS_SCHEMAS:
        schema = TRIGGERS_SCHEMAS[key]
    elif key in CORE_SCHEMAS:
        schema = CORE_SCHEMAS[key]
    else:
        pytest.fail(f"{doc.where}: no schema for {doc.api_version} {doc.kind}; add one before shipping it")
    assert _errors(schema, doc.obj) == [], doc.where


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_embedded_specs_match_task_and_pipeline_spec(doc: Doc, schemas: Path) -> None:
    subschemas = {
        "task": _tekton_schema(schemas, "tekton.dev/v1", "Task")["properties"]["spec"],
        "pipeline": _tekton_schema(schemas, "tekton.dev/v1", "Pipeline")["properties"]["spec"],
    }
    problems = []
    for where, kind, spec in embedded_specs(doc.obj, doc.where):
        problems += [f"{where}: {e}" for e in _errors(subschemas[kind], spec)]
    assert problems == []


def test_trigger_template_resources_match_their_schema(schemas: Path) -> None:
    """resourcetemplates are RawExtensions in the TriggerTemplate: check each as the object it becomes."""
    checked = 0
    for doc in DOCS:
        if doc.kind != "TriggerTemplate":
            continue
        for i, res in enumerate(doc.obj["spec"]["resourcetemplates"]):
            key = (res["apiVersion"], res["kind"])
            assert key in TEKTON_CRDS, f"{doc.where}: unexpected resource template {key}"
            assert _errors(_tekton_schema(schemas, *key), res) == [], f"{doc.where} resourcetemplates[{i}]"
            for where, kind, spec in embedded_specs(res, f"{doc.where}.resourcetemplates[{i}]"):
                sub = _tekton_schema(schemas, "tekton.dev/v1", "Task" if kind == "task" else "Pipeline")
                assert _errors(sub["properties"]["spec"], spec) == [], where
            checked += 1
    assert checked >= 1


def test_strict_mode_catches_typos(schemas: Path) -> None:
    """The strict schema really rejects an unknown field, a missing step name and a wrong type."""
    task = _tekton_schema(schemas, "tekton.dev/v1", "Task")
    good = {"apiVersion": "tekton.dev/v1", "kind": "Task", "metadata": {"name": "t"},
            "spec": {"steps": [{"name": "s", "image": "x"}]}}
    assert _errors(task, good) == []
    typo = {**good, "spec": {"steps": [{"name": "s", "imagee": "x"}]}}
    assert any("imagee" in e for e in _errors(task, typo))
    assert _errors(task, {**good, "spec": {"steps": [{"image": "x"}]}})
    assert _errors(task, {**good, "spec": {"steps": [{"name": "s", "image": "x"}], "params": "nope"}})
    stepaction = _tekton_schema(schemas, "tekton.dev/v1beta1", "StepAction")
    assert _errors(stepaction, {"apiVersion": "tekton.dev/v1beta1", "kind": "StepAction",
                                "metadata": {"name": "s"}, "spec": {"image": "x", "workspaces": []}})


@pytest.mark.parametrize("doc", DOCS, ids=DOC_IDS)
def test_metadata_names_and_labels_are_valid(doc: Doc) -> None:
    meta = doc.obj["metadata"]
    name = meta.get("name")
    if name is not None:
        assert DNS1123_SUBDOMAIN.match(name) and len(name) <= 253, f"{doc.where}: bad name {name!r}"
    else:
        assert DNS1123_SUBDOMAIN.match(meta["generateName"].rstrip("-")), doc.where
    for key, value in (meta.get("labels") or {}).items():
        assert isinstance(value, str) and LABEL_VALUE.match(value) and len(value) <= 63, (doc.where, key)
        assert len(key.rsplit("/", 1)[-1]) <= 63, (doc.where, key)
    for key, value in (meta.get("annotations") or {}).items():
        assert isinstance(value, str), (doc.where, key)
