"""The release bundle: every resource catalog.yaml lists, packed the way `chainmail catalog bundle
push` (like `tkn bundle push`) packs it, passes the bundles resolver's checks offline."""

from __future__ import annotations

import gzip
import io
import json
import tarfile

import pytest
import yaml
from catalog_support import REPO, catalog

bundle = pytest.importorskip("chainmail.bundle", reason="the chainmail package builds bundles")

ENTRIES = catalog()["resources"]


def _build():
    return bundle.build_bundle([(e["path"], (REPO / e["path"]).read_text()) for e in ENTRIES],
                               created="1970-01-01T00:00:00Z")


def test_bundle_holds_every_resource_once() -> None:
    built = _build()
    assert len(built.layers) == len(ENTRIES) <= 20
    seen = {(layer.annotations["dev.tekton.image.kind"], layer.annotations["dev.tekton.image.name"])
            for layer in built.layers}
    assert seen == {(e["kind"].lower(), e["name"]) for e in ENTRIES}
    for layer in built.layers:
        assert layer.annotations["dev.tekton.image.apiVersion"] in ("v1", "v1beta1")


def test_each_layer_is_one_json_object_named_after_it() -> None:
    by_key = {(e["kind"].lower(), e["name"]): yaml.safe_load((REPO / e["path"]).read_text()) for e in ENTRIES}
    for layer in _build().layers:
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.blob))) as tar:
            (member,) = tar.getmembers()
            assert member.name == layer.annotations["dev.tekton.image.name"] and member.mode == 0o600
            doc = json.loads(tar.extractfile(member).read())
        key = (layer.annotations["dev.tekton.image.kind"], layer.annotations["dev.tekton.image.name"])
        assert doc == by_key[key]


def test_bundle_is_reproducible() -> None:
    assert _build().digest == _build().digest
