"""Read a ``tekton.dev/v1`` run the way Tekton Chains sees it after Go decodes it.

Chains unmarshals a TaskRun/PipelineRun into Tekton's Go types and marshals pieces of it
back into the provenance (``runSpec``, ``ref``, ``results``, feature flags, the whole
TaskRun for ``slsa-tekton``). That round trip drops unknown fields, matches field names
case-insensitively, fills in fields that are never omitted (``serviceAccountName: ""``,
``computeResources: {}``), and respells times, durations and quantities. :func:`decode`
does the same in one pass: it returns the JSON that Go's ``json.Marshal`` would write for
the decoded object, with struct fields in declaration order and map keys sorted.

The table below lists each type's JSON fields in order. Field syntax: ``name:type``, a
``?`` suffix for ``omitempty``, ``!`` for ``omitzero``; ``...Type`` inlines a struct.
Types: ``str int bool float any time dur qty pv raw``, ``*T`` pointer, ``[T]`` list,
``{T}`` map with string keys, or a type name. Rarely used Kubernetes types (probes,
lifecycle, affinity, cloud volume sources) are kept as written (``any``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from chainmail.errors import InputError
from chainmail.formats._goval import format_duration, parse_duration, parse_time, quantity

_TYPES: dict[str, str] = {
    # --- meta ---
    "TypeMeta": "kind:str? apiVersion:str?",
    "RuntimeTypeMeta": "apiVersion:str? kind:str?",
    "ObjectMeta": (
        "name:str? generateName:str? namespace:str? selfLink:str? uid:str? resourceVersion:str? "
        "generation:int? creationTimestamp:time! deletionTimestamp:*time? deletionGracePeriodSeconds:*int? "
        "labels:{str}? annotations:{str}? ownerReferences:[OwnerReference]? finalizers:[str]? "
        "managedFields:[ManagedFieldsEntry]?"
    ),
    "OwnerReference": "apiVersion:str kind:str name:str uid:str controller:*bool? blockOwnerDeletion:*bool?",
    "ManagedFieldsEntry": (
        "manager:str? operation:str? apiVersion:str? time:*time? fieldsType:str? fieldsV1:any? "
        "subresource:str?"
    ),
    "LabelSelector": "matchLabels:{str}? matchExpressions:[LabelSelectorRequirement]?",
    "LabelSelectorRequirement": "key:str operator:str values:[str]?",
    "KnStatus": "observedGeneration:int? conditions:[Condition]? annotations:{str}?",
    "Condition": "type:str status:str severity:str? lastTransitionTime:time reason:str? message:str?",
    # --- TaskRun ---
    "TaskRun": "...TypeMeta metadata:ObjectMeta? spec:TaskRunSpec? status:TaskRunStatus?",
    "TaskRunSpec": (
        "debug:*TaskRunDebug? params:[Param]? serviceAccountName:str taskRef:*TaskRef? taskSpec:*TaskSpec? "
        "status:str? statusMessage:str? retries:int? timeout:*dur? podTemplate:*PodTemplate? "
        "workspaces:[WorkspaceBinding]? stepSpecs:[TaskRunStepSpec]? sidecarSpecs:[TaskRunSidecarSpec]? "
        "computeResources:*ResourceRequirements? managedBy:*str?"
    ),
    "TaskRunDebug": "breakpoints:*TaskBreakpoints?",
    "TaskBreakpoints": "onFailure:str? beforeSteps:[str]?",
    "TaskRunStepSpec": "name:str computeResources:ResourceRequirements",
    "TaskRunSidecarSpec": "name:str computeResources:ResourceRequirements",
    "TaskRunStatus": "...KnStatus ...TaskRunStatusFields",
    "TaskRunStatusFields": (
        "podName:str startTime:*time? completionTime:*time? steps:[StepState]? "
        "retriesStatus:[TaskRunStatus]? "
        "results:[TaskRunResult]? artifacts:*Artifacts? sidecars:[SidecarState]? taskSpec:*TaskSpec? "
        "provenance:*Provenance? spanContext:{str}?"
    ),
    "StepState": (
        "...ContainerState name:str? container:str? imageID:str? results:[TaskRunResult]? "
        "provenance:*Provenance? terminationReason:str? inputs:[Artifact]? outputs:[Artifact]?"
    ),
    "SidecarState": "...ContainerState name:str? container:str? imageID:str?",
    "TaskRunResult": "name:str type:str? value:pv",
    "Artifacts": "inputs:[Artifact]? outputs:[Artifact]?",
    "Artifact": "name:str? values:[ArtifactValue]? buildOutput:bool?",
    "ArtifactValue": "digest:{str}? uri:str?",
    "Provenance": "refSource:*RefSource? featureFlags:*FeatureFlags?",
    "RefSource": "uri:str? digest:{str}? entryPoint:str?",
    "FeatureFlags": (
        "disableCredsInit:bool? runningInEnvWithInjectedSidecars:bool? requireGitSSHSecretKnownHosts:bool? "
        "enableAPIFields:str? sendCloudEventsForRuns:bool? awaitSidecarReadiness:bool? "
        "enforceNonfalsifiability:str? enableKeepPodOnCancel:bool? verificationNoMatchPolicy:str? "
        "enableProvenanceInStatus:bool? resultExtractionMethod:str? maxResultSize:int? "
        "setSecurityContext:bool? setSecurityContextReadOnlyRootFilesystem:bool? coschedule:str? "
        "enableCELInWhenExpression:bool? enableStepActions:bool? enableParamEnum:bool? enableArtifacts:bool? "
        "disableInlineSpec:str? enableConciseResolverSyntax:bool? enableKubernetesSidecar:bool? "
        "enableWaitExponentialBackoff:bool? enableTerminationMessageCompression:bool? "
        "enableTektonOCIBundles:*bool?"
    ),
    # --- params, refs, specs ---
    "Param": "name:str value:pv",
    "ParamSpec": "name:str type:str? description:str? properties:{PropertySpec}? default:*pv? enum:[str]?",
    "PropertySpec": "type:str?",
    "ResolverRef": "resolver:str? params:[Param]?",
    "TaskRef": "name:str? kind:str? apiVersion:str? ...ResolverRef",
    "PipelineRef": "name:str? apiVersion:str? ...ResolverRef",
    "Ref": "name:str? ...ResolverRef",
    "TaskSpec": (
        "params:[ParamSpec]? displayName:str? description:str? steps:[Step]? volumes:[Volume]? "
        "stepTemplate:*StepTemplate? sidecars:[Sidecar]? workspaces:[WorkspaceDeclaration]? "
        "results:[TaskResult]?"
    ),
    "Step": (
        "name:str displayName:str? image:str? command:[str]? args:[str]? workingDir:str? "
        "envFrom:[EnvFromSource]? env:[EnvVar]? computeResources:ResourceRequirements? "
        "volumeMounts:[VolumeMount]? volumeDevices:[VolumeDevice]? imagePullPolicy:str? "
        "securityContext:*SecurityContext? script:str? timeout:*dur? workspaces:[WorkspaceUsage]? "
        "onError:str? "
        "stdoutConfig:*StepOutputConfig? stderrConfig:*StepOutputConfig? ref:*Ref? params:[Param]? "
        "results:[StepResult]? when:[WhenExpression]?"
    ),
    "StepOutputConfig": "path:str?",
    "StepTemplate": (
        "image:str? command:[str]? args:[str]? workingDir:str? envFrom:[EnvFromSource]? env:[EnvVar]? "
        "computeResources:ResourceRequirements? volumeMounts:[VolumeMount]? volumeDevices:[VolumeDevice]? "
        "imagePullPolicy:str? securityContext:*SecurityContext?"
    ),
    "Sidecar": (
        "name:str image:str? command:[str]? args:[str]? workingDir:str? ports:[ContainerPort]? "
        "envFrom:[EnvFromSource]? env:[EnvVar]? computeResources:ResourceRequirements? "
        "volumeMounts:[VolumeMount]? volumeDevices:[VolumeDevice]? livenessProbe:any? readinessProbe:any? "
        "startupProbe:any? lifecycle:any? terminationMessagePath:str? terminationMessagePolicy:str? "
        "imagePullPolicy:str? securityContext:*SecurityContext? stdin:bool? stdinOnce:bool? tty:bool? "
        "script:str? workspaces:[WorkspaceUsage]? restartPolicy:*str?"
    ),
    "WorkspaceDeclaration": "name:str description:str? mountPath:str? readOnly:bool? optional:bool?",
    "WorkspaceUsage": "name:str mountPath:str",
    "TaskResult": "name:str type:str? properties:{PropertySpec}? description:str? value:*pv?",
    "StepResult": "name:str type:str? properties:{PropertySpec}? description:str?",
    "WhenExpression": "input:str? operator:str? values:[str]? cel:str?",
    "WorkspaceBinding": (
        "name:str subPath:str? volumeClaimTemplate:*PersistentVolumeClaim? "
        "persistentVolumeClaim:*PersistentVolumeClaimVolumeSource? emptyDir:*EmptyDirVolumeSource? "
        "configMap:*ConfigMapVolumeSource? secret:*SecretVolumeSource? projected:*ProjectedVolumeSource? "
        "csi:*CSIVolumeSource?"
    ),
    "PodTemplate": (
        "nodeSelector:{str}? env:[EnvVar]? tolerations:[Toleration]? affinity:any? "
        "securityContext:*PodSecurityContext? volumes:[Volume]? runtimeClassName:*str? "
        "automountServiceAccountToken:*bool? dnsPolicy:*str? dnsConfig:*PodDNSConfig? "
        "enableServiceLinks:*bool? "
        "priorityClassName:*str? schedulerName:str? imagePullSecrets:[LocalObjectReference]? "
        "hostAliases:[HostAlias]? hostNetwork:bool? hostUsers:*bool? topologySpreadConstraints:[any]?"
    ),
    # --- PipelineRun ---
    "PipelineRun": "...TypeMeta metadata:ObjectMeta? spec:PipelineRunSpec? status:PipelineRunStatus?",
    "PipelineRunSpec": (
        "pipelineRef:*PipelineRef? pipelineSpec:*PipelineSpec? params:[Param]? status:str? "
        "timeouts:*TimeoutFields? taskRunTemplate:PipelineTaskRunTemplate? workspaces:[WorkspaceBinding]? "
        "taskRunSpecs:[PipelineTaskRunSpec]? managedBy:*str?"
    ),
    "TimeoutFields": "pipeline:*dur? tasks:*dur? finally:*dur?",
    "PipelineTaskRunTemplate": "podTemplate:*PodTemplate? serviceAccountName:str?",
    "PipelineTaskRunSpec": (
        "pipelineTaskName:str? serviceAccountName:str? podTemplate:*PodTemplate? "
        "stepSpecs:[TaskRunStepSpec]? "
        "sidecarSpecs:[TaskRunSidecarSpec]? metadata:*PipelineTaskMetadata? "
        "computeResources:*ResourceRequirements? timeout:*dur?"
    ),
    "PipelineTaskMetadata": "labels:{str}? annotations:{str}?",
    "PipelineSpec": (
        "displayName:str? description:str? tasks:[PipelineTask]? params:[ParamSpec]? "
        "workspaces:[PipelineWorkspaceDeclaration]? results:[PipelineResult]? finally:[PipelineTask]?"
    ),
    "PipelineTask": (
        "name:str? displayName:str? description:str? taskRef:*TaskRef? taskSpec:*EmbeddedTask? "
        "when:[WhenExpression]? retries:int? runAfter:[str]? params:[Param]? matrix:*Matrix? "
        "workspaces:[WorkspacePipelineTaskBinding]? timeout:*dur? pipelineRef:*PipelineRef? "
        "pipelineSpec:*PipelineSpec? onError:str?"
    ),
    "EmbeddedTask": "...RuntimeTypeMeta spec:raw metadata:PipelineTaskMetadata ...TaskSpec",
    "Matrix": "params:[Param]? include:[IncludeParams]?",
    "IncludeParams": "name:str? params:[Param]?",
    "WorkspacePipelineTaskBinding": "name:str workspace:str? subPath:str?",
    "PipelineWorkspaceDeclaration": "name:str description:str? optional:bool?",
    "PipelineResult": "name:str type:str? description:str value:pv",
    "PipelineRunStatus": "...KnStatus ...PipelineRunStatusFields",
    "PipelineRunStatusFields": (
        "startTime:*time? completionTime:*time? results:[PipelineRunResult]? pipelineSpec:*PipelineSpec? "
        "skippedTasks:[SkippedTask]? childReferences:[ChildStatusReference]? finallyStartTime:*time? "
        "provenance:*Provenance? spanContext:{str}?"
    ),
    "PipelineRunResult": "name:str value:pv",
    "SkippedTask": "name:str reason:str whenExpressions:[WhenExpression]?",
    "ChildStatusReference": (
        "...RuntimeTypeMeta name:str? displayName:str? pipelineTaskName:str? "
        "whenExpressions:[WhenExpression]?"
    ),
    # --- core/v1 ---
    "ContainerState": (
        "waiting:*ContainerStateWaiting? running:*ContainerStateRunning? "
        "terminated:*ContainerStateTerminated?"
    ),
    "ContainerStateWaiting": "reason:str? message:str?",
    "ContainerStateRunning": "startedAt:time",
    "ContainerStateTerminated": (
        "exitCode:int signal:int? reason:str? message:str? startedAt:time finishedAt:time containerID:str?"
    ),
    "EnvVar": "name:str value:str? valueFrom:*EnvVarSource?",
    "EnvVarSource": (
        "fieldRef:*ObjectFieldSelector? resourceFieldRef:*ResourceFieldSelector? "
        "configMapKeyRef:*ConfigMapKeySelector? secretKeyRef:*SecretKeySelector? fileKeyRef:*FileKeySelector?"
    ),
    "ObjectFieldSelector": "apiVersion:str? fieldPath:str",
    "ResourceFieldSelector": "containerName:str? resource:str divisor:qty",
    "ConfigMapKeySelector": "...LocalObjectReference key:str optional:*bool?",
    "SecretKeySelector": "...LocalObjectReference key:str optional:*bool?",
    "FileKeySelector": "volumeName:str path:str key:str optional:*bool?",
    "LocalObjectReference": "name:str?",
    "EnvFromSource": "prefix:str? configMapRef:*ConfigMapEnvSource? secretRef:*SecretEnvSource?",
    "ConfigMapEnvSource": "...LocalObjectReference optional:*bool?",
    "SecretEnvSource": "...LocalObjectReference optional:*bool?",
    "ResourceRequirements": "limits:{qty}? requests:{qty}? claims:[ResourceClaim]?",
    "ResourceClaim": "name:str request:str?",
    "VolumeResourceRequirements": "limits:{qty}? requests:{qty}?",
    "VolumeMount": (
        "name:str readOnly:bool? recursiveReadOnly:*str? mountPath:str subPath:str? mountPropagation:*str? "
        "subPathExpr:str?"
    ),
    "VolumeDevice": "name:str devicePath:str",
    "SecurityContext": (
        "capabilities:*Capabilities? privileged:*bool? seLinuxOptions:*SELinuxOptions? "
        "windowsOptions:*WindowsSecurityContextOptions? runAsUser:*int? runAsGroup:*int? runAsNonRoot:*bool? "
        "readOnlyRootFilesystem:*bool? allowPrivilegeEscalation:*bool? procMount:*str? "
        "seccompProfile:*SeccompProfile? appArmorProfile:*AppArmorProfile?"
    ),
    "Capabilities": "add:[str]? drop:[str]?",
    "SELinuxOptions": "user:str? role:str? type:str? level:str?",
    "WindowsSecurityContextOptions": (
        "gmsaCredentialSpecName:*str? gmsaCredentialSpec:*str? runAsUserName:*str? hostProcess:*bool?"
    ),
    "SeccompProfile": "type:str localhostProfile:*str?",
    "AppArmorProfile": "type:str localhostProfile:*str?",
    "PodSecurityContext": (
        "seLinuxOptions:*SELinuxOptions? windowsOptions:*WindowsSecurityContextOptions? runAsUser:*int? "
        "runAsGroup:*int? runAsNonRoot:*bool? supplementalGroups:[int]? supplementalGroupsPolicy:*str? "
        "fsGroup:*int? sysctls:[Sysctl]? fsGroupChangePolicy:*str? seccompProfile:*SeccompProfile? "
        "appArmorProfile:*AppArmorProfile? seLinuxChangePolicy:*str?"
    ),
    "Sysctl": "name:str value:str",
    "ContainerPort": "name:str? hostPort:int? containerPort:int protocol:str? hostIP:str?",
    "Toleration": "key:str? operator:str? value:str? effect:str? tolerationSeconds:*int?",
    "PodDNSConfig": "nameservers:[str]? searches:[str]? options:[PodDNSConfigOption]?",
    "PodDNSConfigOption": "name:str? value:*str?",
    "HostAlias": "ip:str hostnames:[str]?",
    "Volume": "name:str ...VolumeSource",
    "VolumeSource": (
        "hostPath:*HostPathVolumeSource? emptyDir:*EmptyDirVolumeSource? gcePersistentDisk:any? "
        "awsElasticBlockStore:any? gitRepo:any? secret:*SecretVolumeSource? nfs:*NFSVolumeSource? iscsi:any? "
        "glusterfs:any? persistentVolumeClaim:*PersistentVolumeClaimVolumeSource? rbd:any? flexVolume:any? "
        "cinder:any? cephfs:any? flocker:any? downwardAPI:*DownwardAPIVolumeSource? fc:any? azureFile:any? "
        "configMap:*ConfigMapVolumeSource? vsphereVolume:any? quobyte:any? azureDisk:any? "
        "photonPersistentDisk:any? projected:*ProjectedVolumeSource? portworxVolume:any? scaleIO:any? "
        "storageos:any? csi:*CSIVolumeSource? ephemeral:*EphemeralVolumeSource? image:*ImageVolumeSource?"
    ),
    "HostPathVolumeSource": "path:str type:*str?",
    "EmptyDirVolumeSource": "medium:str? sizeLimit:*qty?",
    "SecretVolumeSource": "secretName:str? items:[KeyToPath]? defaultMode:*int? optional:*bool?",
    "KeyToPath": "key:str path:str mode:*int?",
    "NFSVolumeSource": "server:str path:str readOnly:bool?",
    "PersistentVolumeClaimVolumeSource": "claimName:str readOnly:bool?",
    "DownwardAPIVolumeSource": "items:[DownwardAPIVolumeFile]? defaultMode:*int?",
    "DownwardAPIVolumeFile": (
        "path:str fieldRef:*ObjectFieldSelector? resourceFieldRef:*ResourceFieldSelector? mode:*int?"
    ),
    "ConfigMapVolumeSource": "...LocalObjectReference items:[KeyToPath]? defaultMode:*int? optional:*bool?",
    "ProjectedVolumeSource": "sources:[VolumeProjection] defaultMode:*int?",
    "VolumeProjection": (
        "secret:*SecretProjection? downwardAPI:*DownwardAPIProjection? configMap:*ConfigMapProjection? "
        "serviceAccountToken:*ServiceAccountTokenProjection? "
        "clusterTrustBundle:*ClusterTrustBundleProjection? "
        "podCertificate:*PodCertificateProjection?"
    ),
    "SecretProjection": "...LocalObjectReference items:[KeyToPath]? optional:*bool?",
    "ConfigMapProjection": "...LocalObjectReference items:[KeyToPath]? optional:*bool?",
    "DownwardAPIProjection": "items:[DownwardAPIVolumeFile]?",
    "ServiceAccountTokenProjection": "audience:str? expirationSeconds:*int? path:str",
    "ClusterTrustBundleProjection": (
        "name:*str? signerName:*str? labelSelector:*LabelSelector? optional:*bool? path:str"
    ),
    "PodCertificateProjection": (
        "signerName:str? keyType:str? maxExpirationSeconds:*int? credentialBundlePath:str? keyPath:str? "
        "certificateChainPath:str? userAnnotations:{str}?"
    ),
    "CSIVolumeSource": (
        "driver:str readOnly:*bool? fsType:*str? volumeAttributes:{str}? "
        "nodePublishSecretRef:*LocalObjectReference?"
    ),
    "EphemeralVolumeSource": "volumeClaimTemplate:*PersistentVolumeClaimTemplate?",
    "PersistentVolumeClaimTemplate": "metadata:ObjectMeta? spec:PersistentVolumeClaimSpec",
    "ImageVolumeSource": "reference:str? pullPolicy:str?",
    "PersistentVolumeClaim": (
        "...TypeMeta metadata:ObjectMeta? spec:PersistentVolumeClaimSpec? status:PersistentVolumeClaimStatus?"
    ),
    "PersistentVolumeClaimSpec": (
        "accessModes:[str]? selector:*LabelSelector? resources:VolumeResourceRequirements? volumeName:str? "
        "storageClassName:*str? volumeMode:*str? dataSource:*TypedLocalObjectReference? "
        "dataSourceRef:*TypedObjectReference? volumeAttributesClassName:*str?"
    ),
    "TypedLocalObjectReference": "apiGroup:*str kind:str name:str",
    "TypedObjectReference": "apiGroup:*str kind:str name:str namespace:*str?",
    "PersistentVolumeClaimStatus": (
        "phase:str? accessModes:[str]? capacity:{qty}? conditions:[PersistentVolumeClaimCondition]? "
        "allocatedResources:{qty}? allocatedResourceStatuses:{str}? currentVolumeAttributesClassName:*str? "
        "modifyVolumeStatus:*ModifyVolumeStatus?"
    ),
    "PersistentVolumeClaimCondition": (
        "type:str status:str lastProbeTime:time lastTransitionTime:time reason:str? message:str?"
    ),
    "ModifyVolumeStatus": "targetVolumeAttributesClassName:str? status:str",
}

_ABSENT: Any = object()

#: A codec turns the JSON found for a field (or ``_ABSENT``) into (Go's JSON for it, is it empty).
Codec = Callable[[Any, str], tuple[Any, bool]]


def _bad(path: str, want: str, got: Any) -> InputError:
    kind = "null" if got is None else type(got).__name__
    return InputError(f"{path}: expected {want}, got {kind} (Tekton's Go types would reject this object)")


def _str(v: Any, path: str) -> tuple[Any, bool]:
    if v is _ABSENT or v is None:
        return "", True
    if not isinstance(v, str):
        raise _bad(path, "a string", v)
    return v, v == ""


def _bool(v: Any, path: str) -> tuple[Any, bool]:
    if v is _ABSENT or v is None:
        return False, True
    if not isinstance(v, bool):
        raise _bad(path, "true or false", v)
    return v, not v


def _int(v: Any, path: str) -> tuple[Any, bool]:
    if v is _ABSENT or v is None:
        return 0, True
    if isinstance(v, bool) or not isinstance(v, int):
        raise _bad(path, "an integer", v)
    return v, v == 0


def _float(v: Any, path: str) -> tuple[Any, bool]:
    if v is _ABSENT or v is None:
        return 0, True
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise _bad(path, "a number", v)
    return v, v == 0


def _any(v: Any, path: str) -> tuple[Any, bool]:
    if v is _ABSENT or v is None:
        return None, True
    return v, False


def _raw(v: Any, path: str) -> tuple[Any, bool]:
    # runtime.RawExtension: a struct, written back as given (null when unset).
    return (None if v is _ABSENT else v), False


def _time(v: Any, path: str) -> tuple[Any, bool]:
    # metav1.Time value: null when zero; "empty" only matters for omitzero.
    if v is _ABSENT or v is None:
        return None, True
    if not isinstance(v, str):
        raise _bad(path, "an RFC 3339 time", v)
    try:
        return parse_time(v), False
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


def _dur(v: Any, path: str) -> tuple[Any, bool]:
    if v is _ABSENT or v is None:
        return "0s", False
    if not isinstance(v, str):
        raise _bad(path, "a duration string", v)
    try:
        return format_duration(parse_duration(v)), False
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


def _qty(v: Any, path: str) -> tuple[Any, bool]:
    if v is _ABSENT or v is None:
        return "0", False
    if isinstance(v, bool) or not isinstance(v, str | int | float):
        raise _bad(path, "a quantity", v)
    try:
        return quantity(v if isinstance(v, str) else repr(v)), False
    except ValueError as exc:
        raise InputError(f"{path}: {exc}") from None


def param_value(v: Any) -> Any:
    """A Tekton ``ParamValue`` as Go re-encodes it: a string, a list of strings or a string map.

    Arrays and objects that do not fit fall back to their JSON text, as Tekton's decoder does.
    """
    if isinstance(v, str):
        return v
    if v is None:
        return ""
    if isinstance(v, list) and all(x is None or isinstance(x, str) for x in v):
        return [x or "" for x in v]
    if isinstance(v, dict) and all(x is None or isinstance(x, str) for x in v.values()):
        return {k: v[k] or "" for k in sorted(v)}
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    return compact_text(v)


def compact_text(v: Any) -> str:
    """Compact JSON text of ``v`` (how a value that fits no parameter type is kept)."""
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _pv(v: Any, path: str) -> tuple[Any, bool]:
    if v is _ABSENT:
        raise InputError(
            f"{path}: missing (Tekton Chains cannot serialise a parameter or result without a value)"
        )
    return param_value(v), False


_SCALARS: dict[str, Codec] = {
    "str": _str,
    "bool": _bool,
    "int": _int,
    "float": _float,
    "any": _any,
    "raw": _raw,
    "time": _time,
    "dur": _dur,
    "qty": _qty,
    "pv": _pv,
}


@dataclass
class _Field:
    name: str
    codec: Codec
    omitempty: bool
    omitzero: bool
    always: bool  # a Go struct value: omitempty never drops it


@dataclass
class _Struct:
    name: str
    fields: list[_Field] = field(default_factory=list)
    exact: dict[str, _Field] = field(default_factory=dict)
    folded: dict[str, _Field] = field(default_factory=dict)


_STRUCTS: dict[str, _Struct] = {}
_CODECS: dict[str, Codec] = {}


def _struct_def(name: str) -> _Struct:
    """The compiled field table of ``name``; built once, then shared (safe across threads)."""
    found = _STRUCTS.get(name)
    if found is not None:
        return found
    if name not in _TYPES:
        raise KeyError(f"unknown Tekton type {name}")
    st = _Struct(name)
    for token in _TYPES[name].split():
        if token.startswith("..."):
            for f in _struct_def(token[3:]).fields:
                if f.name not in st.exact:
                    st.fields.append(f)
                    st.exact[f.name] = f
            continue
        fname, _, spec = token.partition(":")
        omitzero = spec.endswith("!")
        omitempty = spec.endswith("?") or omitzero
        spec = spec.rstrip("?!")
        always = spec in ("time", "dur", "qty", "pv", "raw") or spec in _TYPES
        f = _Field(fname, codec(spec), omitempty, omitzero, always)
        st.fields.append(f)
        st.exact[fname] = f
    st.folded = {f.name.lower(): f for f in st.fields}
    # Published only when complete: a thread that races here builds an identical table.
    _STRUCTS[name] = st
    return st


def codec(spec: str) -> Codec:
    """The codec for a type expression (see the module docstring)."""
    found = _CODECS.get(spec)
    if found is not None:
        return found
    if spec in _SCALARS:
        result = _SCALARS[spec]
    elif spec.startswith("*"):
        inner = codec(spec[1:])

        def result(v: Any, path: str) -> tuple[Any, bool]:
            if v is _ABSENT or v is None:
                return None, True
            return inner(v, path)[0], False
    elif spec.startswith("["):
        inner = codec(spec[1:-1])

        def result(v: Any, path: str) -> tuple[Any, bool]:
            if v is _ABSENT or v is None:
                return None, True
            if not isinstance(v, list):
                raise _bad(path, "a list", v)
            return [inner(x, f"{path}[{i}]")[0] for i, x in enumerate(v)], not v
    elif spec.startswith("{"):
        inner = codec(spec[1:-1])

        def result(v: Any, path: str) -> tuple[Any, bool]:
            if v is _ABSENT or v is None:
                return None, True
            if not isinstance(v, dict):
                raise _bad(path, "an object", v)
            return {k: inner(v[k], f"{path}.{k}")[0] for k in sorted(v)}, not v
    else:
        name = spec

        def result(v: Any, path: str) -> tuple[Any, bool]:
            return _decode_struct(_struct_def(name), v, path), False

    _CODECS[spec] = result
    return result


def _decode_struct(st: _Struct, value: Any, path: str) -> dict[str, Any]:
    if value is _ABSENT or value is None:
        value = {}
    elif not isinstance(value, dict):
        raise _bad(path, "an object", value)
    found: dict[str, Any] = {}
    for key, v in value.items():
        f = st.exact.get(key) or st.folded.get(key.lower())
        if f is not None:
            found[f.name] = v
    out: dict[str, Any] = {}
    for f in st.fields:
        enc, empty = f.codec(found.get(f.name, _ABSENT), f"{path}.{f.name}")
        if empty and (f.omitzero or (f.omitempty and not f.always)):
            continue
        out[f.name] = enc
    return out


def decode(type_name: str, value: Any, path: str = "") -> dict[str, Any]:
    """Decode ``value`` as the Go type ``type_name`` and return Go's JSON for it (a dict)."""
    return _decode_struct(_struct_def(type_name), value, path or type_name)


def string_map(value: Any) -> dict[str, str] | None:
    """A ``map[string]string`` as Go decodes it: None when absent or null, else the map."""
    if not isinstance(value, dict):
        return None
    return {k: ("" if v is None else v) for k, v in value.items() if v is None or isinstance(v, str)}


def _field_of(obj: dict[str, Any], name: str) -> Any:
    """``obj[name]`` with Go's case-insensitive fallback (None when absent)."""
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if key.lower() == lowered:
            return value
    return None


def decode_run(run: Any, kind: str, where: str = "run") -> dict[str, Any]:
    """Decode a ``tekton.dev/v1`` TaskRun or PipelineRun; InputError when it is not one.

    ``apiVersion``/``kind`` may be absent (Chains' own fixtures omit them); when present
    they must say ``tekton.dev/v1`` and ``kind``. A missing status decodes as an empty one,
    as in Go (:func:`require_status` is the stricter check the format step applies).
    """
    if not isinstance(run, dict):
        raise InputError(f"{where}: expected a {kind} object")
    api_version = _field_of(run, "apiVersion")
    if api_version not in (None, "", "tekton.dev/v1"):
        raise InputError(
            f"{where}: apiVersion '{api_version}' is not supported; "
            "Tekton Chains reads tekton.dev/v1 objects",
            hint="read the run through the tekton.dev/v1 API (kubectl get taskrun.v1.tekton.dev …)",
        )
    found_kind = _field_of(run, "kind")
    if found_kind not in (None, "", kind):
        raise InputError(f"{where}: expected a {kind}, got kind '{found_kind}'")
    return decode(kind, run, where)


def require_status(run: Any, kind: str, where: str = "run") -> None:
    """InputError unless ``run`` is an object with a ``status`` (a run that never ran has none)."""
    if not isinstance(run, dict) or not isinstance(_field_of(run, "status"), dict):
        raise InputError(f"{where}: the {kind} has no status (was it captured before it ran?)")


def status_results(snapshot: Any) -> list[dict[str, Any]]:
    """The decoded ``status.results`` of a snapshot's run (TaskRun or PipelineRun)."""
    decoded = decode_run(snapshot.run, snapshot.kind)
    return list(decoded["status"].get("results") or [])
