"""The HTML report: self-contained, escaped, and really rendered by headless Chromium.

Chromium comes from Debian's ``chromium`` package (``make test`` installs it); the rendering
tests skip with a reason when it is absent. The page is checked twice: a screenshot (decoded
here with zlib, so a blank or unstyled page fails) and ``--dump-dom`` (the DOM Chromium built,
which must contain the subject digest and the SVG graph).
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from chainmail.policy import evaluate, parse_policy
from chainmail.report import build_report
from tooling import require_tool

PR_IMAGE = "127.0.0.1:5000/release/app@sha256:56feae6147b3b1f06631b6b2f40cdc1966b624fef0e1b8c9a9936d40d4c68754"
PR_DIGEST = PR_IMAGE.rpartition(":")[2]
NOW = dt.datetime(2026, 11, 23, 10, 0, tzinfo=dt.UTC)
POLICY = """
apiVersion: chainmail.dev/v1alpha1
kind: Policy
metadata: {name: release}
spec:
  rules:
    - {name: builder, expression: "builder == 'https://tekton.dev/chains/v2'", message: built by Chains}
    - {name: pinned, expression: "stepImages.all(i, i.matches('@sha256:[0-9a-f]{64}$'))", message: pinned images}
    - {name: slsa-v1, expression: "predicateType == 'https://slsa.dev/provenance/v1'", message: "SLSA <v1.0> only"}
"""


@dataclass
class StandIn:
    """The fields of chainmail.verify.Verified that the report reads."""

    ref: str
    statement: dict[str, Any] | None
    payload: bytes
    layout: str = "dsse"
    payload_type: str = "application/vnd.in-toto+json"
    key_id: str = "SHA256:fixture-key"
    cert: str = ""


def chromium() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    require_tool("chromium", "headless Chromium not installed (Debian: apt-get install chromium)")


def annotation_payload(obj: dict[str, Any], kind: str) -> bytes:
    uid = obj["metadata"]["uid"]
    return base64.b64decode(obj["metadata"]["annotations"][f"chains.tekton.dev/payload-{kind}-{uid}"])


@pytest.fixture(scope="module")
def pipeline_report_html(shared: Path) -> str:
    """A report for the real Chains-signed PipelineRun: its attestation, the build TaskRun's, the image signature."""
    base = shared / "fixtures" / "chains-pipelinerun"
    pr = json.loads((base / "pipelinerun-after-chains.json").read_text())
    children = [json.loads((base / f"taskrun-{n}-after-chains.json").read_text()) for n in ("clone", "build", "scan")]
    pr_raw = annotation_payload(pr, "pipelinerun")
    build_raw = annotation_payload(children[1], "taskrun")
    verified = [
        StandIn(PR_IMAGE, json.loads(pr_raw), pr_raw),
        StandIn(PR_IMAGE, json.loads(build_raw), build_raw),
        StandIn(PR_IMAGE, None, b"{}", layout="simplesigning",
                payload_type="application/vnd.dev.cosign.simplesigning.v1+json"),
    ]
    result = evaluate(parse_policy(POLICY), verified)
    report = build_report(verified, result, {"run": pr, "taskRuns": children}, now=NOW)
    assert report.passed, result.to_text()
    return report.to_html()


def chains_run_failing_html(shared: Path) -> str:
    run = json.loads((shared / "fixtures" / "chains-run" / "taskrun-after-chains.json").read_text())
    raw = annotation_payload(run, "taskrun")
    verified = [StandIn("127.0.0.1:5000/demo/app@sha256:188ae09dffb4c2cb330a39e3dc0caad338ed549f5a948812524ab33338daa9cb",
                        json.loads(raw), raw)]
    report = build_report(verified, evaluate(parse_policy(POLICY), verified), {"run": run}, now=NOW)
    assert not report.passed
    return report.to_html()


# --------------------------------------------------------------------------- static checks


def test_page_is_self_contained(pipeline_report_html: str) -> None:
    page = pipeline_report_html
    assert page.startswith("<!DOCTYPE html>")
    lowered = page.lower()
    for forbidden in ("<script", "<link", "<iframe", "<img", " src=", "href=", "@import", "url(http", "xlink:"):
        assert forbidden not in lowered, forbidden
    assert lowered.count("<style>") == 1
    assert "content-security-policy" in lowered and "default-src 'none'" in lowered
    assert page.count("<svg") == 2  # one graph per distinct statement
    assert page.count('id="g0-arrow"') == 1 and page.count('id="g1-arrow"') == 1


def test_graph_shows_tasks_and_artifacts(pipeline_report_html: str) -> None:
    first_svg = re.search(r"<svg.*?</svg>", pipeline_report_html, re.S)
    assert first_svg is not None
    svg = first_svg.group(0)
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert labels == ["PipelineRun release-run", "clone", "build", "scan", "release/app@sha256:56feae61…"]
    assert f"<title>{PR_IMAGE}</title>" in svg  # full reference in the tooltip


def test_every_value_is_escaped(shared: Path) -> None:
    page = chains_run_failing_html(shared)
    assert "SLSA &lt;v1.0&gt; only" in page and "SLSA <v1.0>" not in page
    run = json.loads((shared / "fixtures" / "chains-run" / "taskrun-after-chains.json").read_text())
    raw = annotation_payload(run, "taskrun")
    statement = json.loads(raw)
    statement["predicate"]["invocation"]["parameters"]["IMAGE"] = '"><script>alert(1)</script>'
    statement["subject"][0]["name"] = "<img src=x onerror=alert(1)>"
    page = build_report([StandIn("ref<b>", statement, json.dumps(statement).encode())], None, now=NOW).to_html()
    assert "<script>" not in page and "<img" not in page and "<b>" not in page
    assert "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt;" in page


# --------------------------------------------------------------------------- rendered by Chromium


def render(page: str, tmp_path: Path, name: str) -> tuple[bytes, str]:
    """Screenshot (PNG bytes) and DOM dump of ``page`` from headless Chromium."""
    exe = chromium()
    html_file = tmp_path / f"{name}.html"
    html_file.write_text(page, encoding="utf-8")
    png = tmp_path / f"{name}.png"
    common = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--hide-scrollbars"]
    url = html_file.as_uri()
    subprocess.run([*common, f"--user-data-dir={tmp_path / 'profile-shot'}", f"--screenshot={png}",
                    "--window-size=1200,900", url], capture_output=True, timeout=120, check=False)
    assert png.exists(), "chromium wrote no screenshot"
    dom = subprocess.run([*common, f"--user-data-dir={tmp_path / 'profile-dom'}", "--dump-dom", url],
                         capture_output=True, timeout=120, check=False, text=True)
    assert dom.stdout, dom.stderr[-2000:]
    return png.read_bytes(), dom.stdout


def decode_png(data: bytes) -> tuple[int, int, list[bytes]]:
    """(width, height, rows of RGB(A) bytes) of an 8-bit, non-interlaced truecolour PNG, with the stdlib only."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, header = 8, b"", b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour in (2, 6) and interlace == 0, (depth, colour, interlace)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(idat)
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        filt = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = prev[i]
            up_left = prev[i - bpp] if i >= bpp else 0
            if filt == 1:
                line[i] = (line[i] + left) & 0xFF
            elif filt == 2:
                line[i] = (line[i] + up) & 0xFF
            elif filt == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif filt == 4:
                p = left + up - up_left
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - up_left)
                pred = left if pa <= pb and pa <= pc else (up if pb <= pc else up_left)
                line[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, height, [bytes(r) if bpp == 3 else bytes(b for j, b in enumerate(r) if j % 4 != 3) for r in rows]


def colours(rows: list[bytes]) -> set[tuple[int, int, int]]:
    found: set[tuple[int, int, int]] = set()
    for row in rows:
        for i in range(0, len(row), 3):
            found.add((row[i], row[i + 1], row[i + 2]))
    return found


def near(colour: tuple[int, int, int], target: tuple[int, int, int], tolerance: int = 6) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(colour, target, strict=True))


def test_passing_report_renders(pipeline_report_html: str, tmp_path: Path) -> None:
    png, dom = render(pipeline_report_html, tmp_path, "pass")
    assert len(png) > 10_000
    width, height, rows = decode_png(png)
    assert (width, height) == (1200, 900)
    palette = colours(rows)
    assert len(palette) > 50, "the screenshot is (nearly) a single colour"
    assert near(tuple(rows[10][30:33]), (0x24, 0x29, 0x2F)), "the header's inline CSS was not applied"
    assert any(near(c, (0x1A, 0x7F, 0x37)) for c in palette), "no green PASS marker on screen"
    assert PR_DIGEST in dom
    assert "<svg" in dom and ">build</text>" in dom
    assert "<script" not in dom.lower()


def test_failing_report_renders(shared: Path, tmp_path: Path) -> None:
    png, dom = render(chains_run_failing_html(shared), tmp_path, "fail")
    _, _, rows = decode_png(png)
    palette = colours(rows)
    assert len(palette) > 50
    assert any(near(c, (0xCF, 0x22, 0x2E)) for c in palette), "no red FAIL marker on screen"
    assert "188ae09dffb4c2cb330a39e3dc0caad338ed549f5a948812524ab33338daa9cb" in dom
    assert "FAIL" in dom and "TaskRun demo/build-app" in dom


def test_cli_html_report_of_a_verified_pipelinerun(shared: Path, tmp_path: Path) -> None:
    """``chainmail report run --from-file … --format html`` with real verification, rendered by Chromium."""
    from chainmail._cli import main

    base = shared / "fixtures" / "chains-pipelinerun"
    bundle = {"pipelineRun": json.loads((base / "pipelinerun-after-chains.json").read_text()),
              "taskRuns": [json.loads((base / f"taskrun-{n}-after-chains.json").read_text())
                           for n in ("clone", "build", "scan")]}
    run_file = tmp_path / "run.json"
    run_file.write_text(json.dumps(bundle))
    out = tmp_path / "report.html"
    with pytest.raises(SystemExit) as info:
        main(["report", "run", "--insecure-ignore-tlog", "--from-file", str(run_file), "--key", str(base / "cosign.pub"),
              "--format", "html", "--out", str(out)])
    assert info.value.code == 0
    png, dom = render(out.read_text(), tmp_path, "cli")
    assert len(colours(decode_png(png)[2])) > 50
    assert dom.count("<svg") == 4  # the PipelineRun and its three TaskRuns
    assert PR_DIGEST in dom
    assert "PipelineRun release-run" in dom and "TaskRun release-run-build" in dom
