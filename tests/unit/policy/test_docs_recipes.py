"""The recipes in docs/policy.md compile and only name facts that exist."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from chainmail.policy import evaluate, policy_from_mapping


def recipes(repo: Path) -> list[dict[str, str]]:
    text = (repo / "docs" / "policy.md").read_text()
    section = text[text.index("## Recipes"):]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    return yaml.safe_load(block.group(1))


def test_recipes_compile_and_name_existing_facts(repo: Path, conformance, standin) -> None:
    rules = recipes(repo)
    assert len(rules) >= 10
    policy = policy_from_mapping({"apiVersion": "chainmail.dev/v1alpha1", "kind": "Policy",
                                  "metadata": {"name": "recipes"}, "spec": {"rules": rules}})
    for fmt in ("v1", "v2alpha4"):
        result = evaluate(policy, [standin("img@sha256:1", conformance("taskrun-remote-resolver", fmt))])
        errors = [(r.rule, r.error) for r in result.results if r.error]
        assert not errors, errors


def test_every_platform_fact_in_the_docs_exists(repo: Path, conformance, standin) -> None:
    from chainmail.policy import policy_inputs

    text = (repo / "docs" / "policy.md").read_text()
    facts = policy_inputs(standin("img@sha256:1", conformance("taskrun-basic", "v2alpha4")))["facts"]
    for trust in ("platform", "build"):
        table = text[text.index(f"### `facts.{trust}`"):]
        table = table[:table.index("\n\n", table.index("| Fact"))]
        named = {name for row in re.findall(r"^\| (`[^|]+) \|", table, re.M)
                 for name in re.findall(r"`(\w+)`", row)}
        assert named and named <= set(facts[trust]), (trust, named - set(facts[trust]))
        assert set(facts[trust]) <= named, (trust, set(facts[trust]) - named)
