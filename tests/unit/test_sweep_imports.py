"""The sweep path imports what a key-file sweep to tekton and oci needs, and no other backend or signer."""

from __future__ import annotations

import subprocess
import sys

UNWANTED = ("chainmail.signing._awskms", "chainmail.signing._azurekms", "chainmail.signing._gcpkms",
            "chainmail.signing._hashivault", "chainmail.signing._fulcio", "chainmail.transparency",
            "chainmail.storage.gcs", "chainmail.storage.grafeas", "chainmail.storage.docdb",
            "chainmail.storage.archivista", "chainmail._cli.verify", "chainmail._cli.tlog")


def test_sweep_path_imports_only_the_backends_and_signer_it_uses() -> None:
    code = (
        "import sys\n"
        "import chainmail._cli.sweep, chainmail.sweep, chainmail.job, chainmail.storage.oci\n"
        "from chainmail.signing import SIGNER_FOR_URI_SCHEME\n"
        "from chainmail.storage import _backends\n"
        "assert set(_backends(['tekton', 'oci'])) == {'tekton', 'oci'}\n"
        "assert SIGNER_FOR_URI_SCHEME['file'].SCHEME == 'file' and 'fulcio' in SIGNER_FOR_URI_SCHEME\n"
        f"print(','.join(m for m in {UNWANTED!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_every_backend_and_signer_still_resolves() -> None:
    from chainmail.signing import SIGNER_FOR_URI_SCHEME, Signer
    from chainmail.storage import BACKENDS, Backend, _backends

    classes = _backends()
    assert set(classes) == set(BACKENDS) and all(issubclass(c, Backend) and c.NAME == n for n, c in classes.items())
    assert all(issubclass(cls, Signer) and cls.SCHEME == scheme for scheme, cls in SIGNER_FOR_URI_SCHEME.items())
    assert "nope" not in SIGNER_FOR_URI_SCHEME and SIGNER_FOR_URI_SCHEME.get("nope") is None
