"""chainmail: signed, verifiable SLSA provenance for Tekton runs, without a controller.

The five steps, each one module, each reading the previous step's document:

- :mod:`chainmail.snapshot`  -- capture a finished TaskRun/PipelineRun (API or file)
- :mod:`chainmail.formats`   -- build payloads (``slsa/v1``, ``slsa/v2alpha3/4``, ``simplesigning``)
- :mod:`chainmail.signing`   -- sign them (cosign keys, ``x509.pem``, KMS, keyless) into DSSE or raw signatures
- :mod:`chainmail.storage`   -- store them (``tekton`` annotations, ``oci`` ``.sig``/``.att``, ``file``)
- :mod:`chainmail.verify`    -- check what was stored, and what it says (policies)

Nouns live in :mod:`chainmail.models`, chains-config in :mod:`chainmail.config`,
errors and exit codes in :mod:`chainmail.errors`.
"""

__version__ = "0.1.0"
