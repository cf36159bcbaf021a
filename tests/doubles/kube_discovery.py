"""API discovery for the Kubernetes API double (tests/doubles/kube.py).

``kubectl`` does not know where a resource lives until it has read discovery: ``/api`` and
``/apis`` name the group versions the server has, and ``/api/v1`` and ``/apis/{group}/{version}``
list each one's resources (namespaced or not, kind, verbs, short names, subresources). This module
builds those documents from what the double actually serves, so ``kubectl get taskruns -A``,
``kubectl patch deployment …`` or ``kubectl scale …`` resolve their resources against the double
the way they do against an API server, and a resource the double does not serve is one kubectl
does not find either.

Like a cluster with Tekton installed, ``tekton.dev`` lists ``v1`` (preferred) and ``v1beta1``.
The double keeps Tekton objects at ``v1`` only and converts nothing: ``v1beta1`` is listed in
discovery, so clients pick ``v1`` as they would on a real cluster, but a request for an object at
``v1beta1`` is a 404 instead of a silently unconverted ``v1`` object.

Every document is answered as plain ``application/json``: a client that asks for aggregated
discovery (``as=APIGroupDiscoveryList``) falls back to these, as it does against a server that
predates aggregated discovery.
"""

from __future__ import annotations

from typing import Any

#: What the double's own verbs are (no ``watch``, ``deletecollection``: see kube.py).
OBJECT_VERBS = ["create", "delete", "get", "list", "patch", "update"]
SUBRESOURCE_VERBS = ["get", "patch", "update"]

#: Per plural: (singular name, short names, categories), as the real API server or Tekton's CRDs say them.
NAMES: dict[str, tuple[str, list[str], list[str]]] = {
    "taskruns": ("taskrun", ["tr", "trs"], ["tekton", "tekton-pipelines"]),
    "pipelineruns": ("pipelinerun", ["pr", "prs"], ["tekton", "tekton-pipelines"]),
    "customruns": ("customrun", [], ["tekton", "tekton-pipelines"]),
    "secrets": ("secret", [], []),
    "configmaps": ("configmap", ["cm"], []),
    "serviceaccounts": ("serviceaccount", ["sa"], []),
    "deployments": ("deployment", ["deploy"], ["all"]),
}
#: Subresources whose kind is not the parent's: ``{plural}/scale`` is an ``autoscaling/v1`` Scale.
SUBRESOURCE_KINDS = {"scale": ("autoscaling", "v1", "Scale")}
#: Group versions listed in discovery that the double serves no objects at (see the module docstring).
LISTED_ONLY = {"tekton.dev/v1beta1": "tekton.dev/v1"}


#: ``/version``: the Kubernetes release the double stands in for (readable without credentials, as on a
#: cluster whose default ``system:public-info-viewer`` role lets anyone read it).
VERSION = {"major": "1", "minor": "31", "gitVersion": "v1.31.0", "gitCommit": "", "gitTreeState": "clean",
           "buildDate": "2024-08-13T00:00:00Z", "goVersion": "go1.22.5", "compiler": "gc",
           "platform": "linux/amd64"}


def _group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def _group_versions(kinds: dict[str, tuple[str, str]]) -> dict[str, list[str]]:
    """group → its versions, preferred first ('' is the core group)."""
    out: dict[str, list[str]] = {}
    for _, api_version in kinds.values():
        versions = out.setdefault(_group_of(api_version), [])
        if api_version.rpartition("/")[2] not in versions:
            versions.append(api_version.rpartition("/")[2])
    for listed, served in LISTED_ONLY.items():
        if _group_of(served) in out:
            out[_group_of(served)].append(listed.rpartition("/")[2])
    return out


def _api_group(name: str, versions: list[str]) -> dict[str, Any]:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def _resource_list(group_version: str, kinds: dict[str, tuple[str, str]],
                   subresources: dict[str, frozenset[str]]) -> dict[str, Any] | None:
    served_as = LISTED_ONLY.get(group_version, group_version)
    plurals = [p for p, (_, api_version) in kinds.items() if api_version == served_as]
    if not plurals:
        return None
    resources: list[dict[str, Any]] = []
    for plural in plurals:
        kind = kinds[plural][0]
        singular, short, categories = NAMES[plural]
        entry: dict[str, Any] = {"name": plural, "singularName": singular, "namespaced": True, "kind": kind,
                                 "verbs": OBJECT_VERBS}
        if short:
            entry["shortNames"] = short
        if categories:
            entry["categories"] = categories
        resources.append(entry)
        for sub in sorted(subresources.get(plural, ())):
            sub_entry: dict[str, Any] = {"name": f"{plural}/{sub}", "singularName": "", "namespaced": True,
                                         "kind": kind, "verbs": SUBRESOURCE_VERBS}
            if sub in SUBRESOURCE_KINDS:
                group, version, sub_kind = SUBRESOURCE_KINDS[sub]
                sub_entry.update(group=group, version=version, kind=sub_kind)
            resources.append(sub_entry)
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}


def document(path: str, kinds: dict[str, tuple[str, str]], subresources: dict[str, frozenset[str]],
             server_address: str) -> dict[str, Any] | None:
    """The discovery document served at ``path``, or None when ``path`` is not a discovery path.

    ``kinds`` maps each served plural to ``(Kind, apiVersion)`` and ``subresources`` each plural to
    its subresources, as kube.py serves them.
    """
    path = path.rstrip("/") or "/"
    groups = _group_versions(kinds)
    if path == "/api":
        return {"kind": "APIVersions", "versions": groups.get("", []),
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}
    if path == "/apis":
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [_api_group(name, versions) for name, versions in sorted(groups.items()) if name]}
    parts = path.split("/")[1:]
    if parts[0] == "api" and len(parts) == 2 and parts[1] in groups.get("", []):
        return _resource_list(parts[1], kinds, subresources)
    if parts[0] == "apis" and len(parts) == 2 and parts[1] in groups:
        return {"kind": "APIGroup", "apiVersion": "v1", **_api_group(parts[1], groups[parts[1]])}
    if parts[0] == "apis" and len(parts) == 3 and parts[2] in groups.get(parts[1], []):
        return _resource_list(f"{parts[1]}/{parts[2]}", kinds, subresources)
    return None
