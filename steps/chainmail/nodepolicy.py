"""Node signature policies: make CRI-O on OpenShift workers refuse images chainmail did not sign.

Example::

    policy = NodePolicy.create(pem, "registry.example.com/team")
    policy.policy_json()          # containers-policy.json(5) with a sigstoreSigned requirement
    policy.registries_d()         # containers-registries.d(5): use-sigstore-attachments for the scope
    policy.machineconfig()        # both files (and the key) on every worker, as a MachineConfig
    policy.clusterimagepolicy()   # the same rule as config.openshift.io ClusterImagePolicy

chainmail signs images the way cosign does (``.sig`` tag, simple-signing payload whose
``docker-reference`` is the repository without a tag), which is what ``sigstoreSigned`` with
``use-sigstore-attachments: true`` checks. The default identity rule is ``matchRepository``:
``matchRepoDigestOrExact`` would reject a pull by tag, because the signed reference has none.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from chainmail.errors import InputError

Match = Literal["matchRepository", "matchRepoDigestOrExact"]
MATCHES: tuple[Match, ...] = ("matchRepository", "matchRepoDigestOrExact")
FORMATS = ("policy-json", "registries-d", "butane", "machineconfig", "clusterimagepolicy")
#: ClusterImagePolicy: ``v1`` since OpenShift 4.20 (GA), ``v1alpha1`` behind the TechPreview gate before.
CIP_VERSIONS = ("v1", "v1alpha1")

POLICY_PATH = "/etc/containers/policy.json"
REGISTRIES_D = "/etc/containers/registries.d"
KEY_DIR = "/etc/pki/containers"
ROLE_LABEL = "machineconfiguration.openshift.io/role"

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_LABEL = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_LABEL}(?:\.{_LABEL})+(?::[0-9]+)?|localhost(?::[0-9]+)?)"
_SCOPE_RE = re.compile(rf"^{_HOST}(?:/{_COMPONENT})*$")
_WILDCARD_RE = re.compile(rf"^\*(?:\.{_LABEL})+$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def check_scope(scope: str) -> str:
    """A docker-transport scope as containers-policy.json(5) and OpenShift's ImageScope accept it.

    ``REGISTRY[:PORT][/NAMESPACE…/REPO]`` in fully expanded form, or ``*.DOMAIN``; no scheme, tag or
    digest (a policy for one image would not cover its next build).
    """
    text = scope.strip()
    if "://" in text:
        raise InputError(f"--scope '{scope}': no URL scheme; write REGISTRY[/REPO], e.g. quay.io/team/app")
    if "@" in text or re.search(r":[^/]*$", text.split("/", 1)[1] if "/" in text else ""):
        raise InputError(f"--scope '{scope}': no tag or digest; a node policy covers a registry, namespace or "
                         "repository")
    if "*" in text:
        if not _WILDCARD_RE.match(text):
            raise InputError(f"--scope '{scope}': a wildcard is only allowed as '*.DOMAIN' (subdomains, no path)")
        return text
    if not _SCOPE_RE.match(text):
        host = text.split("/")[0]
        if "." not in host and not host.startswith("localhost"):
            raise InputError(f"--scope '{scope}': the first part must be a registry host with a dot "
                             "(or localhost), e.g. docker.io/library/busybox, not busybox")
        raise InputError(f"--scope '{scope}': not a valid REGISTRY[/REPO] (lower-case path components)")
    parts = text.split("/")
    if parts[0] == "docker.io" and len(parts) == 2:
        raise InputError(f"--scope '{scope}': Docker Hub images need their namespace: docker.io/library/{parts[1]}")
    return text


def _dump(doc: object) -> str:
    """YAML with multi-line strings as literal blocks, so inline file contents stay readable."""
    import yaml

    class _Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    _Dumper.add_representer(str, text)
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False)


def _b64(data: str) -> str:
    return base64.b64encode(data.encode()).decode()


def data_url(text: str) -> str:
    """An RFC 2397 data URL, as Ignition's ``contents.source`` takes it."""
    return "data:text/plain;charset=utf-8;base64," + _b64(text)


@dataclass(frozen=True)
class NodePolicy:
    """One signing key trusted for one scope, rendered in every format a node or cluster reads."""

    public_key_pem: str
    scope: str
    match: Match = "matchRepository"
    key_data: bool = False
    name: str = "chainmail"
    role: str = "worker"

    @classmethod
    def create(cls, public_key_pem: str, scope: str, *, match: str = "matchRepository", key_data: bool = False,
               name: str = "chainmail", role: str = "worker") -> NodePolicy:
        """Validate the inputs (scope, identity rule, names) and build the policy."""
        if match not in MATCHES:
            raise InputError(f"--match '{match}': expected one of {', '.join(MATCHES)}")
        if not _NAME_RE.match(name) or len(name) > 40:
            raise InputError(f"--name '{name}': use lower-case letters, digits and '-' (at most 40)")
        if not _NAME_RE.match(role):
            raise InputError(f"--role '{role}': not a MachineConfigPool role name")
        if "BEGIN PUBLIC KEY" not in public_key_pem:
            raise InputError("the key must be a PUBLIC KEY PEM (cosign.pub)")
        return cls(public_key_pem.strip() + "\n", check_scope(scope), match, key_data, name, role)  # type: ignore[arg-type]

    # ------------------------------------------------------------ node files

    @property
    def key_path(self) -> str:
        return f"{KEY_DIR}/{self.name}.pub"

    @property
    def registries_d_path(self) -> str:
        return f"{REGISTRIES_D}/{self.name}.yaml"

    def requirement(self) -> dict[str, Any]:
        """The ``sigstoreSigned`` policy requirement for the scope."""
        req: dict[str, Any] = {"type": "sigstoreSigned"}
        if self.key_data:
            req["keyData"] = _b64(self.public_key_pem)
        else:
            req["keyPath"] = self.key_path
        req["signedIdentity"] = {"type": self.match}
        return req

    def policy(self) -> dict[str, Any]:
        """A whole policy.json: OpenShift's node default (accept anything) plus the rule for the scope."""
        return {
            "default": [{"type": "insecureAcceptAnything"}],
            "transports": {
                "docker": {self.scope: [self.requirement()]},
                "docker-daemon": {"": [{"type": "insecureAcceptAnything"}]},
            },
        }

    def policy_json(self) -> str:
        return json.dumps(self.policy(), indent=2) + "\n"

    def registries_d(self) -> str:
        """``registries.d`` YAML: read signatures from the registry's cosign ``.sig`` tags for the scope."""
        import yaml

        doc = {"docker": {self.scope: {"use-sigstore-attachments": True}}}
        return yaml.safe_dump(doc, sort_keys=False)

    def files(self) -> list[tuple[str, str]]:
        """(path, contents) of every file a node needs."""
        out = [(POLICY_PATH, self.policy_json()), (self.registries_d_path, self.registries_d())]
        if not self.key_data:
            out.append((self.key_path, self.public_key_pem))
        return out

    # ------------------------------------------------------------ cluster objects

    @property
    def machineconfig_name(self) -> str:
        return f"51-{self.role}-{self.name}-signatures"

    def butane(self, version: str = "4.14.0") -> str:
        """Butane (``variant: openshift``) for the same files; ``butane`` turns it into a MachineConfig."""
        doc = {
            "variant": "openshift",
            "version": version,
            "metadata": {"name": self.machineconfig_name, "labels": {ROLE_LABEL: self.role}},
            "storage": {"files": [
                {"path": path, "mode": 0o644, "overwrite": True, "contents": {"inline": text}}
                for path, text in self.files()
            ]},
        }
        return _dump(doc)

    def machineconfig(self) -> str:
        """A ``machineconfiguration.openshift.io/v1`` MachineConfig (Ignition 3.2, files as data URLs)."""
        import yaml

        doc = {
            "apiVersion": "machineconfiguration.openshift.io/v1",
            "kind": "MachineConfig",
            "metadata": {"name": self.machineconfig_name, "labels": {ROLE_LABEL: self.role}},
            "spec": {"config": {
                "ignition": {"version": "3.2.0"},
                "storage": {"files": [
                    {"path": path, "mode": 0o644, "overwrite": True, "contents": {"source": data_url(text)}}
                    for path, text in self.files()
                ]},
            }},
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def clusterimagepolicy(self, api_version: str = "v1") -> str:
        """A ``config.openshift.io`` ClusterImagePolicy: the cluster writes the node files itself."""
        import yaml

        if api_version not in CIP_VERSIONS:
            raise InputError(f"--api-version '{api_version}': expected one of {', '.join(CIP_VERSIONS)}")
        match_policy = {"matchRepository": "MatchRepository", "matchRepoDigestOrExact": "MatchRepoDigestOrExact"}
        doc = {
            "apiVersion": f"config.openshift.io/{api_version}",
            "kind": "ClusterImagePolicy",
            "metadata": {"name": f"{self.name}-signatures"},
            "spec": {
                "scopes": [self.scope],
                "policy": {
                    "rootOfTrust": {"policyType": "PublicKey", "publicKey": {"keyData": _b64(self.public_key_pem)}},
                    "signedIdentity": {"matchPolicy": match_policy[self.match]},
                },
            },
        }
        return yaml.safe_dump(doc, sort_keys=False)

    def render(self, fmt: str, *, api_version: str = "v1", butane_version: str = "4.14.0") -> str:
        """The policy in one of :data:`FORMATS`."""
        if fmt == "policy-json":
            return self.policy_json()
        if fmt == "registries-d":
            return self.registries_d()
        if fmt == "butane":
            return self.butane(butane_version)
        if fmt == "machineconfig":
            return self.machineconfig()
        if fmt == "clusterimagepolicy":
            return self.clusterimagepolicy(api_version)
        raise InputError(f"--format '{fmt}': expected one of {', '.join(FORMATS)}")
