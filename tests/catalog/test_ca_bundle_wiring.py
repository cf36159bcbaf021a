"""Extra CAs reach chainmail wherever the shipped YAML runs it: the watcher's event pipeline and the CronJob.

Both take the ConfigMap ``chainmail-ca-bundle`` as an *optional* mount (a cluster without it still
starts them) and hand its directory to chainmail as ``CHAINMAIL_CA_BUNDLE``. The Tasks and StepActions
are checked by running their scripts (``test_step_scripts.py``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from catalog_support import REPO

WATCHER = REPO / "pipelines" / "chainmail-watcher"
CONFIGMAP = "chainmail-ca-bundle"


def _docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env") or []}


def test_the_event_pipeline_binds_the_configmap_optionally_and_the_sweep_reads_it() -> None:
    [pipeline] = [d for d in _docs(WATCHER / "chainmail-watcher.yaml") if d["kind"] == "Pipeline"]
    declared = {w["name"]: w for w in pipeline["spec"]["workspaces"]}
    assert declared["ssl-ca-directory"].get("optional") is True
    [task] = pipeline["spec"]["tasks"]
    assert {"name": "ssl-ca-directory", "workspace": "ssl-ca-directory"} in task["workspaces"]
    task_ws = {w["name"]: w for w in task["taskSpec"]["workspaces"]}
    assert task_ws["ssl-ca-directory"].get("optional") is True and task_ws["ssl-ca-directory"].get("readOnly")
    sweep = next(s for s in task["taskSpec"]["steps"] if s["name"] == "sweep")
    assert _env(sweep)["CHAINMAIL_CA_BUNDLE"] == "$(workspaces.ssl-ca-directory.path)"

    [template] = [d for d in _docs(WATCHER / "triggers.yaml") if d["kind"] == "TriggerTemplate"]
    [run] = template["spec"]["resourcetemplates"]
    bound = {w["name"]: w for w in run["spec"]["workspaces"]}
    assert bound["ssl-ca-directory"]["configMap"] == {"name": CONFIGMAP, "optional": True}


def test_the_cronjob_mounts_the_configmap_optionally_where_chainmail_looks() -> None:
    [cron] = _docs(WATCHER / "cronjob.yaml")
    pod = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    path = _env(container)["CHAINMAIL_CA_BUNDLE"]
    mount = mounts[path]
    assert mount.get("readOnly") is True
    assert volumes[mount["name"]]["configMap"] == {"name": CONFIGMAP, "optional": True}


def test_the_readme_tells_how_to_create_the_configmap() -> None:
    readme = (WATCHER / "README.md").read_text()
    assert f"create configmap {CONFIGMAP}" in readme
    assert "service.beta.openshift.io/inject-cabundle=true" in readme
