"""``chainmail config import``: an operator-managed Chains configuration as a chains-config.

The Tekton operator (OpenShift Pipelines) configures Chains through ``TektonConfig.spec.chain``
or a ``TektonChain``'s ``spec`` (``operator.tekton.dev/v1alpha1``). Example::

    result = import_tektonconfig(yaml.safe_load(open("tektonconfig.yaml")))
    result.data            # {"artifacts.taskrun.format": "in-toto", "artifacts.taskrun.storage": "oci", …}
    result.operator_only   # {"generateSigningSecret": "…what it did and what to do instead"}
    result.configmap()     # the ConfigMap manifest openshift-pipelines/chains-config

What it copies, as the operator does when it writes ``chains-config``:

- every chain property (``artifacts.*``, ``storage.*``, ``signers.*``, ``transparency.*``,
  ``builder.id``, ``builddefinition.buildtype``), booleans written as ``true``/``false``;
- the operator's own defaults for what is unset (storage ``oci`` where Chains' default is
  ``tekton``; format ``in-toto``; OCI format ``simplesigning``), so the result is what the
  Chains controller really ran with;
- then ``options.configMaps.chains-config.data``, which the operator applies last.

Operator-only fields (``disabled``, ``generateSigningSecret``, ``controllerEnvs``,
``performance``, the rest of ``options``, a TektonChain's ``config`` and ``networkPolicy``) are
not chains-config keys: they are reported with what to do instead, never copied. Any other
field is an error naming it (exit 3).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from chainmail.config import Config
from chainmail.errors import ConfigError

API_GROUP = "operator.tekton.dev"


@dataclass(frozen=True)
class Preset:
    """Where a platform keeps Chains' configuration and who runs pipelines."""

    namespace: str
    configmap: str
    service_account: str
    signing_secret: str

    @property
    def configmap_ref(self) -> str:
        """``NAMESPACE/NAME``, as ``--configmap`` takes it."""
        return f"{self.namespace}/{self.configmap}"

    @property
    def key_ref(self) -> str:
        """The signing Secret as a ``--key`` URI."""
        return f"k8s://{self.namespace}/{self.signing_secret}"


#: OpenShift Pipelines: the operator installs Chains into ``openshift-pipelines`` and runs every
#: PipelineRun as the ``pipeline`` service account of its namespace.
OPENSHIFT = Preset(namespace="openshift-pipelines", configmap="chains-config",
                   service_account="pipeline", signing_secret="signing-secrets")  # noqa: S106 - a Secret name
#: Upstream Tekton Chains (release.yaml) on Kubernetes.
TEKTON = Preset(namespace="tekton-chains", configmap="chains-config",
                service_account="default", signing_secret="signing-secrets")  # noqa: S106 - a Secret name
PRESETS: dict[str, Preset] = {"openshift": OPENSHIFT, "tekton": TEKTON}

#: The operator's ``ChainProperties``: each is written to chains-config under the same name.
CHAIN_PROPERTIES = (
    "artifacts.taskrun.format", "artifacts.taskrun.storage", "artifacts.taskrun.signer",
    "artifacts.pipelinerun.format", "artifacts.pipelinerun.storage", "artifacts.pipelinerun.signer",
    "artifacts.pipelinerun.enable-deep-inspection",
    "artifacts.oci.format", "artifacts.oci.storage", "artifacts.oci.signer",
    "storage.gcs.bucket", "storage.oci.repository", "storage.oci.repository.insecure",
    "storage.oci.encoding-format", "storage.docdb.url", "storage.docdb.mongo-server-url",
    "storage.docdb.mongo-server-url-dir", "storage.grafeas.projectid", "storage.grafeas.noteid",
    "storage.grafeas.notehint", "builder.id", "builddefinition.buildtype",
    "signers.x509.fulcio.enabled", "signers.x509.fulcio.address", "signers.x509.fulcio.issuer",
    "signers.x509.fulcio.provider", "signers.x509.identity.token.file", "signers.x509.tuf.mirror.url",
    "signers.kms.kmsref", "signers.kms.auth.address", "signers.kms.auth.token", "signers.kms.auth.token-path",
    "signers.kms.auth.oidc.path", "signers.kms.auth.oidc.role", "signers.kms.auth.spire.sock",
    "signers.kms.auth.spire.audience", "transparency.enabled", "transparency.url",
)

#: What the operator writes when a property is unset (its ``Chain.setDefaults``).
OPERATOR_DEFAULTS = {
    "artifacts.taskrun.format": "in-toto",
    "artifacts.taskrun.storage": "oci",
    "artifacts.pipelinerun.format": "in-toto",
    "artifacts.pipelinerun.storage": "oci",
    "artifacts.oci.format": "simplesigning",
    "artifacts.oci.storage": "oci",
}

#: Operator-only chain fields: why each is not copied and what to do with chainmail instead.
OPERATOR_ONLY = {
    "disabled": "turns the Chains controller on or off; with chainmail, set it to true so runs are not signed twice",
    "generateSigningSecret": "the operator made a cosign key in the Secret signing-secrets; chainmail reads that "
                             "Secret: --key k8s://NAMESPACE/signing-secrets",
    "controllerEnvs": "environment of the Chains controller Deployment (e.g. MONGO_SERVER_URL); not used by chainmail",
    "performance": "Chains controller tuning (HA, threads, QPS); chainmail sweep has --threads instead",
    "options": "manifest overrides for the operator; only options.configMaps.chains-config.data is copied",
    "config": "scheduling of the Chains controller pod (nodeSelector, tolerations); not used by chainmail",
    "networkPolicy": "NetworkPolicy for the Chains controller; not used by chainmail",
    "targetNamespace": "where the operator installs Chains; used as the ConfigMap's namespace",
}
_CHAIN_FIELDS = {"disabled", "generateSigningSecret", "controllerEnvs", "performance", "options"}
_TEKTONCHAIN_FIELDS = _CHAIN_FIELDS | {"config", "networkPolicy", "targetNamespace"}


@dataclass
class ImportResult:
    """The chains-config data, where it goes, and what was reported rather than copied."""

    data: dict[str, str]
    namespace: str
    name: str = "chains-config"
    #: Keys filled from the operator's defaults (not set in the resource).
    defaulted: list[str] = field(default_factory=list)
    #: Operator-only field → why it is not copied.
    operator_only: dict[str, str] = field(default_factory=dict)
    source: str = "TektonConfig"

    def configmap(self) -> dict[str, Any]:
        """A ConfigMap manifest holding :attr:`data`."""
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "annotations": {"chainmail.dev/imported-from": self.source},
            },
            "data": dict(sorted(self.data.items())),
        }


def _value(key: str, raw: object) -> str:
    if isinstance(raw, bool):
        return "true" if raw else "false"
    if isinstance(raw, int | float | str):
        return str(raw)
    raise ConfigError(f"spec field '{key}': expected a string or boolean, not {type(raw).__name__}")


def _options_data(options: object, path: str, name: str) -> dict[str, str]:
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise ConfigError(f"{path}.options: expected a mapping")
    cms = options.get("configMaps") or {}
    if not isinstance(cms, Mapping):
        raise ConfigError(f"{path}.options.configMaps: expected a mapping")
    cm = cms.get(name) or {}
    data = cm.get("data") if isinstance(cm, Mapping) else None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{path}.options.configMaps.{name}.data: expected a mapping")
    return {str(k): _value(str(k), v) for k, v in data.items()}


def _find_resource(doc: object) -> tuple[str, Mapping[str, Any]]:
    docs = doc if isinstance(doc, list) else [doc]
    found = [d for d in docs if isinstance(d, Mapping) and d.get("kind") in ("TektonConfig", "TektonChain")]
    if not found:
        kinds = sorted({str(d.get("kind")) for d in docs if isinstance(d, Mapping)}) or ["nothing"]
        raise ConfigError(f"expected a TektonConfig or TektonChain ({API_GROUP}), found {', '.join(kinds)}")
    if len(found) > 1:
        raise ConfigError(f"found {len(found)} TektonConfig/TektonChain resources; pass a file holding one")
    resource = found[0]
    api = str(resource.get("apiVersion", ""))
    if api.split("/")[0] != API_GROUP:
        raise ConfigError(f"{resource.get('kind')}: apiVersion '{api}' is not {API_GROUP}/…")
    return str(resource["kind"]), resource


def import_tektonconfig(doc: object, *, preset: Preset = OPENSHIFT, operator_defaults: bool = True) -> ImportResult:
    """Turn a TektonConfig (``spec.chain``) or TektonChain (``spec``) into chains-config data."""
    kind, resource = _find_resource(doc)
    spec = resource.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{kind}: spec must be a mapping")
    if kind == "TektonConfig":
        chain, path, allowed = spec.get("chain") or {}, "spec.chain", _CHAIN_FIELDS
    else:
        chain, path, allowed = spec, "spec", _TEKTONCHAIN_FIELDS
    if not isinstance(chain, Mapping):
        raise ConfigError(f"{kind} {path}: expected a mapping")
    namespace = str(spec.get("targetNamespace") or preset.namespace)
    result = ImportResult(data={}, namespace=namespace, name=preset.configmap, source=f"{kind}/"
                          f"{(resource.get('metadata') or {}).get('name', '')}".rstrip("/"))
    for key, raw in chain.items():
        key = str(key)
        if key in CHAIN_PROPERTIES:
            result.data[key] = _value(f"{path}.{key}", raw)
        elif key in allowed:
            result.operator_only[key] = _describe(key, raw, namespace)
        else:
            raise ConfigError(f"{kind} {path}.{key}: not a field of the operator's chain configuration",
                              hint="fields are the chains-config keys (artifacts.*, storage.*, signers.*, "
                                   "transparency.*, builder.id, builddefinition.buildtype) and "
                                   + ", ".join(sorted(allowed)))
    if operator_defaults:
        for key, value in OPERATOR_DEFAULTS.items():
            if key not in result.data:
                result.data[key] = value
                result.defaulted.append(key)
    result.data.update(_options_data(chain.get("options"), path, preset.configmap))
    Config.from_mapping(result.data)  # fail here, naming the key, rather than when a step reads it
    return result


def _describe(key: str, raw: object, namespace: str) -> str:
    note = OPERATOR_ONLY[key]
    if key == "generateSigningSecret":
        note = note.replace("NAMESPACE", namespace)
    if key == "disabled":
        return f"{'true' if raw is True or str(raw).lower() == 'true' else 'false'}: {note}"
    return note
