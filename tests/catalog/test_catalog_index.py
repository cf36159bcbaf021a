"""catalog.yaml and the files agree: every package is listed with its path, kind, apiVersion,
version and image; the chainmail image is pinned in exactly one place; each package directory
has the README, samples and tests Artifact Hub and the e2e expect."""

from __future__ import annotations

import os
import re
import tomllib

import pytest
import yaml
from catalog_support import (
    PACKAGE_KINDS,
    PINNED_IMAGE,
    PIPELINES,
    REPO,
    SEMVER,
    STEPACTIONS,
    TASKS,
    Doc,
    catalog,
    catalog_image,
    load_docs,
    package_docs,
    steps_of,
    substitute_param_defaults,
    walk_strings,
    yaml_files,
)

PACKAGES = package_docs()
ENTRIES = catalog()["resources"]
ENTRY_IDS = [f"{e['kind']}/{e['name']}" for e in ENTRIES]
CHAINMAIL_REF = re.compile(r"ghcr\.io/chainmail-dev/chainmail:[^\s\"'@]+@sha256:[0-9a-f]{64}")


def test_catalog_header() -> None:
    cat = catalog()
    assert SEMVER.match(str(cat["version"]))
    assert cat["repository"].startswith("https://github.com/")
    assert PINNED_IMAGE.match(catalog_image())
    assert catalog_image().split("@")[0].endswith(":" + str(cat["version"])), "image tag = release version"


def test_version_matches_the_python_package() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert project["version"] == str(catalog()["version"])


@pytest.mark.parametrize("entry", ENTRIES, ids=ENTRY_IDS)
def test_entry_matches_its_file(entry: dict) -> None:
    path = REPO / entry["path"]
    assert path.is_file(), entry["path"]
    (doc,) = load_docs(path)
    assert (doc.kind, doc.api_version, doc.obj["metadata"]["name"]) == (entry["kind"], entry["apiVersion"],
                                                                        entry["name"])
    assert doc.obj["metadata"]["labels"]["app.kubernetes.io/version"] == entry["version"] == str(catalog()["version"])
    assert path.parent.parent == PACKAGE_KINDS[entry["kind"]]
    assert sorted(entry["images"]) == sorted(_images_of(doc)), f"{entry['path']}: images listed in catalog.yaml"
    for extra in entry.get("extras", []):
        assert (REPO / extra).is_file(), extra


def _images_of(doc: Doc) -> set[str]:
    spec = doc.obj["spec"]
    if doc.kind == "Pipeline":
        params = spec.get("params") or []
        found = set()
        for task in (spec.get("tasks") or []) + (spec.get("finally") or []):
            if "taskSpec" in task:
                for step in steps_of(task["taskSpec"], False):
                    image = substitute_param_defaults(step.get("image", ""), task["taskSpec"].get("params") or [])
                    found.add(substitute_param_defaults(image, params))
        return {i for i in found if i}
    steps = steps_of(spec, doc.kind == "StepAction")
    return {substitute_param_defaults(s["image"], spec.get("params") or []) for s in steps if "image" in s}


def test_every_package_is_listed_once() -> None:
    listed = [(e["kind"], e["name"]) for e in ENTRIES]
    assert len(set(listed)) == len(listed)
    assert sorted(listed) == sorted((d.kind, d.obj["metadata"]["name"]) for d in PACKAGES)


def test_bundle_fits_the_contract() -> None:
    """≤ 20 Tekton objects, unique (kind, name): what `chainmail catalog bundle push` packs."""
    assert catalog()["bundle"].startswith("ghcr.io/") and "@" not in catalog()["bundle"]
    tekton = [(e["kind"].lower(), e["name"]) for e in ENTRIES]
    assert len(tekton) <= 20 and len(set(tekton)) == len(tekton)


def test_every_chainmail_image_is_the_catalog_one() -> None:
    """One pinned value: a release changes catalog.yaml and runs generate_stepactions.py --sync-image."""
    ref = catalog_image()
    offenders = []
    for path in yaml_files():
        for found in CHAINMAIL_REF.findall(path.read_text()):
            if found != ref:
                offenders.append(f"{path.relative_to(REPO)}: {found}")
    assert offenders == []
    uses = sum(path.read_text().count(ref) for path in yaml_files())
    assert uses >= 10


def test_no_unpinned_chainmail_image_anywhere() -> None:
    for path in yaml_files():
        for text in walk_strings(list(yaml.safe_load_all(path.read_text()))):
            if "ghcr.io/chainmail-dev/chainmail:" in text and "/bundle" not in text:
                for ref in re.findall(r"ghcr\.io/chainmail-dev/chainmail:\S+", text):
                    assert "@sha256:" in ref, f"{path.relative_to(REPO)}: {ref}"


def test_placeholder_digest_is_flagged_and_blocks_a_release() -> None:
    image = catalog()["images"]["chainmail"]
    is_zero = image["ref"].endswith("@sha256:" + "0" * 64)
    assert bool(image.get("placeholder")) == is_zero, "keep images.chainmail.placeholder in step with the digest"
    if os.environ.get("CHAINMAIL_RELEASE"):
        assert not is_zero, "the release must record the pushed image digest in catalog.yaml"


# -------------------------------------------------------------------------- package directories

README_SECTIONS = ("## Install", "## Parameters", "## Results", "## Platforms", "## Usage")


@pytest.mark.parametrize("doc", PACKAGES, ids=[d.where for d in PACKAGES])
def test_readme_documents_the_interface(doc: Doc) -> None:
    readme = (doc.path.parent / "README.md").read_text()
    name = doc.obj["metadata"]["name"]
    assert readme.startswith(f"# {name}\n")
    for section in README_SECTIONS:
        assert section in readme, f"{doc.rel}: README lacks {section}"
    if doc.obj["spec"].get("workspaces") and doc.kind != "StepAction":
        assert "## Workspaces" in readme
    for p in doc.obj["spec"].get("params") or []:
        assert f"**{p['name']}**" in readme, f"{doc.rel}: README does not document param {p['name']}"
    for w in doc.obj["spec"].get("workspaces") or []:
        assert f"**{w['name']}**" in readme, f"{doc.rel}: README does not document workspace {w['name']}"
    for r in doc.obj["spec"].get("results") or []:
        assert f"**{r['name']}**" in readme, f"{doc.rel}: README does not document result {r['name']}"


@pytest.mark.parametrize("doc", [d for d in PACKAGES if d.kind != "StepAction"],
                         ids=[d.where for d in PACKAGES if d.kind != "StepAction"])
def test_samples_exist_and_use_the_package(doc: Doc) -> None:
    name = doc.obj["metadata"]["name"]
    samples = sorted((doc.path.parent / "samples").glob("*.yaml"))
    assert samples, f"{doc.rel}: Artifact Hub shows samples/*.yaml as examples"
    if doc.kind == "Task":
        assert any(name in s.read_text() for s in samples)


@pytest.mark.parametrize("name", ["chainmail-sign", "chainmail-finally", "chainmail-verify"])
def test_tasks_have_an_e2e_run(name: str) -> None:
    run = TASKS / name / "tests" / "run.yaml"
    assert run.is_file()
    docs = load_docs(run)
    assert any(d.kind in ("TaskRun", "PipelineRun") and name in run.read_text() for d in docs)


def test_every_e2e_run_is_used_by_the_workflow() -> None:
    workflow = (REPO / ".github" / "workflows" / "e2e.yaml").read_text()
    runs = sorted(p for root in (TASKS, PIPELINES) for p in root.rglob("tests/run.yaml"))
    assert runs
    for run in runs:
        assert run.relative_to(REPO).as_posix() in workflow, f"{run} is never run by the e2e workflow"


@pytest.mark.parametrize("kind_dir", [TASKS, STEPACTIONS, PIPELINES], ids=lambda p: p.name)
def test_artifact_hub_repository_file(kind_dir) -> None:
    meta = yaml.safe_load((kind_dir / "artifacthub-repo.yaml").read_text())
    assert meta["owners"] and all("@" in o["email"] for o in meta["owners"])
    assert set(meta) <= {"repositoryID", "owners", "ignore"}
