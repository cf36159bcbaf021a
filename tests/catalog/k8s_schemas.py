"""Small strict JSON schemas for the non-Tekton objects we ship, and for Tekton Triggers.

Triggers' CRDs carry no schema (preserve-unknown-fields at the root) and no Kubernetes OpenAPI is
vendored here, so these cover exactly the fields the Go types define for what we use
(tektoncd/triggers pkg/apis/triggers/v1beta1, k8s.io/api), with unknown fields rejected. They are
deliberately small: a typo or a field in the wrong place fails; exotic valid fields we never use
are not listed and would fail too, which is the point of keeping our YAML boring.
"""

from __future__ import annotations

from typing import Any

STR: dict[str, Any] = {"type": "string"}
INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
STR_LIST: dict[str, Any] = {"type": "array", "items": STR}
STR_MAP: dict[str, Any] = {"type": "object", "additionalProperties": STR}


def obj(required: tuple[str, ...] = (), **props: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": props, "additionalProperties": False}
    if required:
        schema["required"] = list(required)
    return schema


def arr(items: dict[str, Any], min_items: int = 0) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": items}
    if min_items:
        schema["minItems"] = min_items
    return schema


METADATA = obj(name=STR, generateName=STR, namespace=STR, labels=STR_MAP, annotations=STR_MAP)


def top(kind: str, api_version: str, required: tuple[str, ...] = ("metadata",), **props: Any) -> dict[str, Any]:
    return obj(("apiVersion", "kind", *required), apiVersion={"const": api_version}, kind={"const": kind},
               metadata=METADATA, **props)


QUANTITY = {"anyOf": [STR, INT]}
RESOURCES = obj(requests={"type": "object", "additionalProperties": QUANTITY},
                limits={"type": "object", "additionalProperties": QUANTITY})
SECCOMP = obj(("type",), type={"enum": ["RuntimeDefault", "Localhost", "Unconfined"]}, localhostProfile=STR)
CONTAINER_SECURITY = obj(runAsNonRoot=BOOL, runAsUser=INT, runAsGroup=INT, allowPrivilegeEscalation=BOOL,
                         readOnlyRootFilesystem=BOOL, privileged=BOOL, seccompProfile=SECCOMP,
                         capabilities=obj(drop=STR_LIST, add=STR_LIST))
POD_SECURITY = obj(runAsNonRoot=BOOL, runAsUser=INT, runAsGroup=INT, fsGroup=INT, seccompProfile=SECCOMP)
ENV_VAR = obj(("name",), name=STR, value=STR, valueFrom=obj(
    fieldRef=obj(("fieldPath",), fieldPath=STR, apiVersion=STR),
    secretKeyRef=obj(("key",), name=STR, key=STR, optional=BOOL),
    configMapKeyRef=obj(("key",), name=STR, key=STR, optional=BOOL)))
CONTAINER = obj(("name", "image"), name=STR, image=STR, imagePullPolicy={"enum": ["Always", "IfNotPresent", "Never"]},
                command=STR_LIST, args=STR_LIST, workingDir=STR, env=arr(ENV_VAR), resources=RESOURCES,
                securityContext=CONTAINER_SECURITY,
                volumeMounts=arr(obj(("name", "mountPath"), name=STR, mountPath=STR, readOnly=BOOL, subPath=STR)))
KEY_TO_PATH = arr(obj(("key", "path"), key=STR, path=STR, mode=INT))
VOLUME = obj(("name",), name=STR,
             configMap=obj(("name",), name=STR, items=KEY_TO_PATH, optional=BOOL, defaultMode=INT),
             secret=obj(("secretName",), secretName=STR, items=KEY_TO_PATH, optional=BOOL, defaultMode=INT),
             emptyDir=obj(medium=STR, sizeLimit=QUANTITY))
POD_SPEC = obj(("containers",), serviceAccountName=STR, restartPolicy={"enum": ["Never", "OnFailure", "Always"]},
               securityContext=POD_SECURITY, containers=arr(CONTAINER, 1), volumes=arr(VOLUME),
               automountServiceAccountToken=BOOL)
POD_TEMPLATE = obj(("spec",), metadata=METADATA, spec=POD_SPEC)
POLICY_RULE = obj(("verbs",), apiGroups=STR_LIST, resources=STR_LIST, resourceNames=STR_LIST, verbs=STR_LIST,
                  nonResourceURLs=STR_LIST)
ROLE_REF = obj(("apiGroup", "kind", "name"), apiGroup={"const": "rbac.authorization.k8s.io"},
               kind={"enum": ["Role", "ClusterRole"]}, name=STR)
SUBJECT = obj(("kind", "name"), kind={"enum": ["ServiceAccount", "User", "Group"]}, name=STR, namespace=STR,
              apiGroup=STR)
LABEL_SELECTOR = obj(matchLabels=STR_MAP)

ADMISSION = "admissionregistration.k8s.io/v1"
NAMED_EXPRESSION = obj(("name", "expression"), name=STR, expression=STR)
VALIDATION = obj(("expression",), expression=STR, message=STR, messageExpression=STR,
                 reason={"enum": ["Unauthorized", "Forbidden", "Invalid", "RequestEntityTooLarge"]})
RESOURCE_RULE = obj(("apiGroups", "apiVersions", "resources", "operations"), apiGroups=STR_LIST,
                    apiVersions=STR_LIST, resources=STR_LIST,
                    operations=arr({"enum": ["*", "CREATE", "UPDATE", "DELETE", "CONNECT"]}),
                    scope={"enum": ["*", "Cluster", "Namespaced"]})
RBAC = "rbac.authorization.k8s.io/v1"
CORE_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    (ADMISSION, "ValidatingAdmissionPolicy"): top(
        "ValidatingAdmissionPolicy", ADMISSION, ("metadata", "spec"), spec=obj(
            ("matchConstraints", "validations"), failurePolicy={"enum": ["Fail", "Ignore"]},
            matchConstraints=obj(("resourceRules",), matchPolicy={"enum": ["Exact", "Equivalent"]},
                                 namespaceSelector=LABEL_SELECTOR,
                                 resourceRules=arr(RESOURCE_RULE, 1)),
            matchConditions=arr(NAMED_EXPRESSION), variables=arr(NAMED_EXPRESSION),
            validations=arr(VALIDATION, 1))),
    (ADMISSION, "ValidatingAdmissionPolicyBinding"): top(
        "ValidatingAdmissionPolicyBinding", ADMISSION, ("metadata", "spec"), spec=obj(
            ("policyName", "validationActions"), policyName=STR,
            validationActions=arr({"enum": ["Deny", "Warn", "Audit"]}, 1))),
    ("v1", "Namespace"): top("Namespace", "v1"),
    ("v1", "ServiceAccount"): top("ServiceAccount", "v1", automountServiceAccountToken=BOOL,
                                  imagePullSecrets=arr(obj(("name",), name=STR))),
    ("v1", "ConfigMap"): top("ConfigMap", "v1", data=STR_MAP),
    (RBAC, "Role"): top("Role", RBAC, rules=arr(POLICY_RULE)),
    (RBAC, "ClusterRole"): top("ClusterRole", RBAC, rules=arr(POLICY_RULE)),
    (RBAC, "RoleBinding"): top("RoleBinding", RBAC, ("metadata", "roleRef", "subjects"), roleRef=ROLE_REF,
                               subjects=arr(SUBJECT, 1)),
    (RBAC, "ClusterRoleBinding"): top("ClusterRoleBinding", RBAC, ("metadata", "roleRef", "subjects"),
                                      roleRef=ROLE_REF, subjects=arr(SUBJECT, 1)),
    ("batch/v1", "CronJob"): top("CronJob", "batch/v1", ("metadata", "spec"), spec=obj(
        ("schedule", "jobTemplate"), schedule=STR, timeZone=STR, suspend=BOOL,
        concurrencyPolicy={"enum": ["Allow", "Forbid", "Replace"]}, startingDeadlineSeconds=INT,
        successfulJobsHistoryLimit=INT, failedJobsHistoryLimit=INT,
        jobTemplate=obj(("spec",), metadata=METADATA, spec=obj(
            ("template",), backoffLimit=INT, activeDeadlineSeconds=INT, ttlSecondsAfterFinished=INT,
            template=POD_TEMPLATE)))),
    ("networking.k8s.io/v1", "NetworkPolicy"): top("NetworkPolicy", "networking.k8s.io/v1", ("metadata", "spec"),
        spec=obj(("podSelector",), podSelector=LABEL_SELECTOR,
                 policyTypes=arr({"enum": ["Ingress", "Egress"]}),
                 ingress=arr(obj(**{"from": arr(obj(namespaceSelector=LABEL_SELECTOR, podSelector=LABEL_SELECTOR)),
                                    "ports": arr(obj(protocol={"enum": ["TCP", "UDP", "SCTP"]},
                                                     port={"anyOf": [INT, STR]}))})))),
}

# -------------------------------------------------------------------------- Tekton Triggers v1beta1
TRIGGERS = "triggers.tekton.dev/v1beta1"
T_PARAM = obj(("name", "value"), name=STR, value=STR)
T_PARAM_SPEC = obj(("name",), name=STR, description=STR, default=STR)
INTERCEPTOR = obj(("ref",), name=STR,
                  ref=obj(("name",), name=STR, kind={"enum": ["ClusterInterceptor", "NamespacedInterceptor"]},
                          apiVersion=STR),
                  params=arr(obj(("name", "value"), name=STR, value={})),
                  webhook={"type": "object"})
BINDING = obj(name=STR, value=STR, ref=STR, kind={"enum": ["TriggerBinding", "ClusterTriggerBinding"]},
              apiversion=STR)
TEMPLATE_REF = obj(ref=STR, apiversion=STR, spec={"type": "object"})
EL_TRIGGER = obj(triggerRef=STR, name=STR, bindings=arr(BINDING), template=TEMPLATE_REF,
                 interceptors=arr(INTERCEPTOR), serviceAccountName=STR)

TRIGGERS_SCHEMAS: dict[tuple[str, str], dict[str, Any]] = {
    (TRIGGERS, "EventListener"): top("EventListener", TRIGGERS, ("metadata", "spec"), spec=obj(
        ("triggers",), serviceAccountName=STR, triggers=arr(EL_TRIGGER, 1), cloudEventURI=STR,
        namespaceSelector=obj(matchNames=STR_LIST), labelSelector=LABEL_SELECTOR,
        resources=obj(kubernetesResource=obj(replicas=INT, serviceType=STR, servicePort=INT,
                                             spec={"type": "object"})))),
    (TRIGGERS, "Trigger"): top("Trigger", TRIGGERS, ("metadata", "spec"), spec=obj(
        ("bindings", "template"), name=STR, serviceAccountName=STR, bindings=arr(BINDING),
        template=TEMPLATE_REF, interceptors=arr(INTERCEPTOR))),
    (TRIGGERS, "TriggerBinding"): top("TriggerBinding", TRIGGERS, ("metadata", "spec"),
                                      spec=obj(("params",), params=arr(T_PARAM, 1))),
    (TRIGGERS, "TriggerTemplate"): top("TriggerTemplate", TRIGGERS, ("metadata", "spec"), spec=obj(
        ("resourcetemplates",), params=arr(T_PARAM_SPEC),
        resourcetemplates=arr({"type": "object", "required": ["apiVersion", "kind", "metadata", "spec"]}, 1))),
}
