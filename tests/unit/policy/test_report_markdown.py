"""Markdown reports: structure (golden-ish) and escaping of hostile values."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

from chainmail.policy import evaluate, load_policy
from chainmail.report import build_report

NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
DIGEST = "188ae09dffb4c2cb330a39e3dc0caad338ed549f5a948812524ab33338daa9cb"


def sections(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("#")]


def table(markdown: str, after_heading: str) -> list[list[str]]:
    """The rows of the first table after the heading that starts with ``after_heading``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(after_heading))
    rows, seen = [], False
    for line in lines[start + 1:]:
        if line.startswith("|"):
            seen = True
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if not all(set(c) <= {"-"} for c in cells):
                rows.append(cells)
        elif seen:
            break
    return rows


def test_markdown_for_the_chains_run_fixture(examples: Path, chains_run_verified, standin) -> None:
    signature = standin(chains_run_verified.ref, None, layout="simplesigning",
                        payload_type="application/vnd.dev.cosign.simplesigning.v1+json", payload=b"{}")
    policy = evaluate(load_policy(examples / "step-images-pinned.yaml"), [chains_run_verified])
    md = build_report([chains_run_verified, signature], policy, now=NOW).to_markdown()

    assert sections(md) == [
        "## chainmail provenance report: PASS",
        f"### TaskRun provenance: `{chains_run_verified.ref}`",
        "### Image signatures",
        "### Policy `step-images-pinned`: passed",
    ]
    assert "**1 attestation(s), 1 signature(s) verified; policy step-images-pinned passed (2/2 checks)**" in md
    facts = dict(table(md, "### TaskRun provenance: "))
    assert facts == {
        "Predicate type": "`https://slsa.dev/provenance/v0.2`",
        "Builder": "`https://tekton.dev/chains/v2`",
        "Build type": "`tekton.dev/v1/TaskRun`",
        "Started / finished": "`2026-11-23T08:00:00Z → 2026-11-23T08:00:10Z`",
        "Signed by": "`key SHA256:test-key`",
        "Stored as": "`dsse`",
    }
    assert f"- `127.0.0.1:5000/demo/app@sha256:{DIGEST}`" in md
    assert "**Step images** (1)" in md
    assert "- `oci://docker.io/library/busybox@sha256:2919d0172f7524b2d8df9e50066a682669e6d170ac0f6a49676d54358fe970b5`" in md
    assert f"- `{chains_run_verified.ref}` signed by `key SHA256:test-key`" in md
    rows = table(md, "### Policy")
    assert rows[0] == ["Result", "Rule", "Artifact", "Message"]
    assert [r[:2] for r in rows[1:]] == [["PASS", "`step-images-recorded`"], ["PASS", "`step-images-pinned`"]]
    assert rows[1][2] == "`127.0.0.1:5000/demo/app@sha256:188ae09dffb4…` (TaskRun)"
    assert md.rstrip().endswith("<sub>chainmail report, 2026-11-23T10:00:00Z</sub>")


def test_markdown_for_a_pipelinerun_with_source_and_failures(examples: Path, conformance, standin) -> None:
    statement = conformance("pipelinerun-basic", "v1")
    verified = [standin("test.io/test/image@sha256:827521c857fdcd4374f4da5442fbae2edb01e7fbae285c3ec15673d4c1daecb7",
                        statement)]
    policy = evaluate(load_policy(examples / "slsa-v1-only.yaml"), verified)
    report = build_report(verified, policy, now=NOW)
    md = report.to_markdown()
    assert not report.passed
    assert sections(md)[0] == "## chainmail provenance report: FAIL"
    facts = dict(table(md, "### PipelineRun provenance: `test.io/test/image@"))
    assert facts["Source"] == "`https://git.test.com @ abcd`"
    assert facts["Definition"] == "`https://github.com/test @ 28b123 (pipeline.yaml)`"
    assert facts["Service account"] == "`pipeline`"
    assert "**Subjects** (3)" in md
    assert "**Tasks** (2)" in md
    assert "- `git-clone` (Succeeded)" in md
    assert "- `build` (Succeeded) after `git-clone`" in md
    results = {r[1]: r[0] for r in table(md, "### Policy")[1:]}
    assert results == {"`predicate-types`": "FAIL", "`statement-v1`": "FAIL", "`build-times-recorded`": "PASS"}


def test_identical_statements_are_reported_once(chains_run_verified, standin) -> None:
    other = standin("127.0.0.1:5000/demo/app:latest", chains_run_verified.statement,
                    payload=chains_run_verified.payload)
    report = build_report([chains_run_verified, other, chains_run_verified], None, now=NOW)
    assert len(report.attestations) == 1
    assert report.attestations[0].refs == (chains_run_verified.ref, "127.0.0.1:5000/demo/app:latest")
    assert "no policy checked" in report.to_markdown()


def test_hostile_values_cannot_inject_markdown_or_html(chains_run_verified, write_policy) -> None:
    statement = chains_run_verified.statement
    statement["predicate"]["builder"]["id"] = "evil` | <script>alert(1)</script> |"
    statement["predicate"]["buildConfig"]["steps"][0]["environment"]["image"] = "oci://x``y\n## injected"
    chains_run_verified.payload = json.dumps(statement).encode()
    policy = evaluate(load_policy(write_policy("""
        - name: builder
          expression: builder == 'x'
          message: "must be <b>x</b> | *really* [link](http://x)"
    """)), [chains_run_verified])
    md = build_report([chains_run_verified], policy, now=NOW).to_markdown()
    outside_code = re.sub(r"(`+).*?\1", "", md.replace("<sub>", "").replace("</sub>", ""))
    assert "<" not in outside_code  # raw HTML only ever appears inside code spans
    assert "\n## injected" not in md
    builder_row = next(line for line in md.splitlines() if line.startswith("| Builder |"))
    assert builder_row == "| Builder | ``evil` \\| <script>alert(1)</script> \\|`` |"
    assert "- ```oci://x``y ## injected```" in md
    policy_row = table(md, "### Policy")[1]
    assert len(policy_row) == 4
    assert policy_row[3] == "must be &lt;b&gt;x&lt;/b&gt; \\| \\*really\\* \\[link\\](http://x)"


def test_nothing_verified(standin) -> None:
    report = build_report([], None, now=NOW)
    assert not report.passed
    assert report.verdict == "nothing verified"
    assert "## chainmail provenance report: FAIL" in report.to_markdown()


def test_json_report(chains_run_verified) -> None:
    doc = json.loads(json.dumps(build_report([chains_run_verified], None, now=NOW).to_json()))
    assert doc["passed"] is True
    (att,) = doc["attestations"]
    assert att["subjects"] == [f"127.0.0.1:5000/demo/app@sha256:{DIGEST}"]
    assert att["builder"] == "https://tekton.dev/chains/v2"
