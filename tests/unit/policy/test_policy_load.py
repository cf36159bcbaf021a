"""Loading policies: schema, unknown fields, CEL syntax errors with positions."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from chainmail.errors import ConfigError
from chainmail.policy import SLSA_V02, SLSA_V1, Policy, load_policy, parse_policy

HEAD = "apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata:\n  name: p\nspec:\n"


def config_error(text: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse_policy(text, source="p.yaml")
    assert info.value.exit_code == 3
    return info.value.diagnostics()


@pytest.mark.parametrize("name", ["built-by-builder-from-main", "step-images-pinned", "no-dockerfile-override",
                                  "slsa-v1-only"])
def test_examples_load(examples: Path, name: str) -> None:
    policy = load_policy(examples / f"{name}.yaml")
    assert isinstance(policy, Policy)
    assert policy.name == name
    assert policy.rules and all(r.message for r in policy.rules)


def test_every_example_is_listed(examples: Path) -> None:
    assert sorted(p.stem for p in examples.glob("*.yaml")) == [
        "built-by-builder-from-main", "no-dockerfile-override", "slsa-v1-only", "step-images-pinned"]


def test_rule_fields(write_policy) -> None:
    policy = load_policy(write_policy("""
        - name: a
          expression: builder != ''
          message: has a builder
        - name: b
          expression: "true"
          message: warn only
          severity: warning
    """))
    assert [(r.name, r.expression, r.message, r.severity) for r in policy.rules] == [
        ("a", "builder != ''", "has a builder", "error"), ("b", "true", "warn only", "warning")]


def test_syntax_error_names_rule_and_position_multiline() -> None:
    text = HEAD + """  rules:
    - name: ok
      expression: "true"
      message: fine
    - name: broken-rule
      expression: |
        builder == 'x' &&
        (source.repository ==
      message: m
"""
    msg = config_error(text)
    assert "rule 'broken-rule'" in msg
    assert "CEL syntax error at 2:20" in msg
    assert "p.yaml" in msg


@pytest.mark.parametrize(("expression", "position"), [
    ("builder == 'a' &&& true", "1:18"),
    ("builder = 'a'", "1:9"),
    ("stepImages.all(i, ", "1:17"),
])
def test_syntax_error_single_line(expression: str, position: str) -> None:
    text = HEAD + f"  rules:\n    - name: r1\n      expression: \"{expression}\"\n      message: m\n"
    msg = config_error(text)
    assert f"rule 'r1': CEL syntax error at {position}" in msg


@pytest.mark.parametrize(("body", "expected"), [
    ("  rules:\n    - name: r\n      expresion: 'true'\n      message: m\n",
     "rule 'r': unknown field 'expresion'; did you mean 'expression'?"),
    ("  rules:\n    - name: r\n      expression: 'true'\n      message: m\n      when: always\n",
     "rule 'r': unknown field 'when'"),
    ("  rulez: []\n", "spec: unknown field 'rulez'; did you mean 'rules'?"),
    ("  rules: []\n  mode: enforce\n", "spec: unknown field 'mode'"),
])
def test_unknown_fields_are_rejected(body: str, expected: str) -> None:
    assert expected in config_error(HEAD + body)


def test_unknown_top_level_and_metadata_fields() -> None:
    assert "unknown field 'specs'" in config_error(
        "apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {name: p}\nspecs: {}\n")
    assert "metadata: unknown field 'nmae'" in config_error(
        "apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {nmae: p}\nspec: {}\n")


def test_unnamed_rule_is_identified_by_index() -> None:
    msg = config_error(HEAD + "  rules:\n    - expression: 'true'\n      message: m\n")
    assert "rule #1: 'name' is required" in msg


@pytest.mark.parametrize(("text", "expected"), [
    (HEAD.replace("v1alpha1", "v1") + "  rules: []\n", "apiVersion must be 'chainmail.dev/v1alpha1'"),
    (HEAD.replace("kind: Policy", "kind: ClusterPolicy") + "  rules: []\n", "kind must be 'Policy'"),
    ("apiVersion: chainmail.dev/v1alpha1\nkind: Policy\nmetadata: {}\nspec: {}\n", "metadata.name is required"),
    (HEAD + "  rules: []\n", "no rules"),
    (HEAD + "  rules: {a: b}\n", "spec.rules must be a list"),
    (HEAD + "  rules:\n    - {name: r, expression: 'true'}\n", "rule 'r': 'message' is required"),
    (HEAD + "  rules:\n    - {name: r, expression: '', message: m}\n", "rule 'r': 'expression' is required"),
    (HEAD + "  rules:\n    - {name: r, expression: 'true', message: m, severity: fatal}\n",
     "rule 'r': severity must be one of error, warning"),
    (HEAD + "  rules:\n    - {name: r, expression: 'true', message: m}\n    - {name: r, expression: 'true', message: m}\n",
     "rule 'r' is defined twice"),
    (HEAD + "  rules:\n    - just a string\n", "rule #1 must be a mapping"),
    (HEAD + "  predicateTypes: []\n", "spec.predicateTypes must be a non-empty list"),
    ("- a list\n", "expected a mapping"),
    ("a: [unclosed\n", "YAML error at"),
])
def test_invalid_policies(text: str, expected: str) -> None:
    assert expected in config_error(text)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read it"):
        load_policy(tmp_path / "nope.yaml")


def test_predicate_types_shorthand_and_aliases() -> None:
    policy = parse_policy(HEAD + "  predicateTypes: [slsaprovenance1, slsaprovenance]\n")
    (rule,) = policy.rules
    assert rule.name == "predicate-types"
    assert SLSA_V1 in rule.expression and SLSA_V02 in rule.expression
    assert rule.message == f"the predicate type must be one of: {SLSA_V1}, {SLSA_V02}"


def test_missing_cel_python_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "celpy", None)  # makes `import celpy` raise ImportError
    with pytest.raises(ConfigError) as info:
        parse_policy(HEAD + "  rules:\n    - {name: r, expression: 'true', message: m}\n")
    assert "cel-python" in info.value.diagnostics()
    assert "chainmail[policy]" in info.value.diagnostics()


def test_celpy_is_imported_lazily() -> None:
    import subprocess

    code = "import chainmail.policy, chainmail.report, sys; print('celpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
