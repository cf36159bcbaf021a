"""Policy gate: CEL rules over verified provenance ("verify what the provenance says").

Signature verification proves *who* signed a statement; a policy checks *what* the statement
claims. A policy is a small YAML file (``docs/policy.md``)::

    apiVersion: chainmail.dev/v1alpha1
    kind: Policy
    metadata: {name: release}
    spec:
      rules:
        - name: trusted-builder
          expression: facts.platform.builder == 'https://tekton.dev/chains/v2'
          message: the image must be built by the cluster's builder

Use it on what :func:`chainmail.verify.verify_attestation` returned::

    from chainmail.policy import evaluate, load_policy

    result = evaluate(load_policy(Path("release.yaml")), verified)
    print(result.to_text())            # one PASS/FAIL line per rule and statement

Rules see facts split by trust (``facts.platform``: what Tekton and the signer vouch for;
``facts.build``: what the build controls), normalised from SLSA v0.2 and v1.0 so one policy works
for both. The modules: :mod:`.loading` (files → compiled rules), :mod:`.cel` (the CEL environment),
:mod:`.statement` (one statement, normalised), :mod:`.trust` (the platform/build split),
:mod:`.urls` (repository URLs), :mod:`.refs` (the branch params), :mod:`.dockerfile` (override
detection), :mod:`.runs` (run identity from the signed statement), :mod:`.evaluation`.

**Why cel-python (``celpy``).** CEL is what Tekton users already write (Triggers interceptors,
``when`` expressions, Kubernetes validating admission policies). cel-python is maintained, pure
Python and covers the standard library and macros; it is imported lazily (extra
``chainmail[policy]``).
"""

from chainmail.policy.evaluation import VerifiedLike, evaluate, policy_inputs
from chainmail.policy.loading import (
    API_VERSION,
    KIND,
    PREDICATE_ALIASES,
    SLSA_V02,
    SLSA_V1,
    load_policy,
    parse_policy,
    policy_from_mapping,
)
from chainmail.policy.model import SEVERITIES, Policy, PolicyResult, Rule, RuleResult, Severity
from chainmail.policy.runs import run_of_ref, signed_run_identity
from chainmail.policy.signer import cert_identity
from chainmail.policy.statement import statement_facts
from chainmail.policy.urls import SourceURL, normalize_repository, normalize_source_url

__all__ = [
    "API_VERSION", "KIND", "PREDICATE_ALIASES", "SEVERITIES", "SLSA_V02", "SLSA_V1", "Policy", "PolicyResult",
    "Rule", "RuleResult", "Severity", "SourceURL", "VerifiedLike", "cert_identity", "evaluate", "load_policy",
    "normalize_repository", "normalize_source_url", "parse_policy", "policy_from_mapping", "policy_inputs",
    "run_of_ref", "signed_run_identity", "statement_facts",
]
