"""What a step needs from its surroundings, created lazily and shared within a process.

A :class:`Context` holds the chains-config plus factories for the Kubernetes client and
the registry client, so commands that never talk to a cluster or registry never import
``requests`` or read a kubeconfig.

Interactive commands (``verify``, ``report``) call :meth:`Context.make_interactive`: their network
calls give up after :data:`INTERACTIVE_DEADLINE` seconds unless ``chainmail.retry.deadline-seconds``
is set explicitly; ``sweep``/``run``/``store`` keep that key's default (300 s) to outlast outages.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail._internal.http import RetryPolicy
from chainmail.config import Config
from chainmail.errors import ConfigError

if TYPE_CHECKING:
    from chainmail._internal.kube import KubeClient
    from chainmail._internal.registry import RegistryClient

#: Retry deadline (seconds) of interactive commands when chainmail.retry.deadline-seconds is not set.
INTERACTIVE_DEADLINE = 30.0
_DEADLINE_KEY = "chainmail.retry.deadline-seconds"
_BLOB_KEY = "chainmail.registry.max-blob-bytes"


@dataclass
class Context:
    """Config and lazily-built clients for one chainmail invocation."""

    config: Config = field(default_factory=Config)
    kubeconfig: Path | None = None
    #: Directory with ``config.json``, or a ``config.json``/``.dockerconfigjson`` file.
    docker_config: Path | None = None
    #: Where the ``file`` backend writes (defaults to chains-config ``chainmail.storage.file.directory``).
    file_store: Path | None = None
    #: Signing key URI from ``--key`` (None: chains-config and /etc/signing-secrets decide).
    key: str | None = None
    #: Per-process cache for expensive objects (loaded signers, registry tokens), keyed by their source.
    cache: dict[str, Any] = field(default_factory=dict, repr=False)
    _kube: KubeClient | None = field(default=None, repr=False)
    _registry: RegistryClient | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    #: Set by :meth:`make_interactive`: a person is waiting, so give up sooner.
    interactive: bool = False

    @property
    def retry(self) -> RetryPolicy:
        """A fresh retry policy with the configured deadline (30 s for interactive commands by default)."""
        return RetryPolicy(deadline=self.retry_deadline)

    @property
    def retry_deadline(self) -> float:
        """Seconds a network call keeps retrying: the config key if set, else 30 (interactive) or 300."""
        if self.interactive and _DEADLINE_KEY not in self.config.values:
            return INTERACTIVE_DEADLINE
        return float(max(0, self.config.int(_DEADLINE_KEY)))

    def make_interactive(self) -> Context:
        """Use the short interactive retry deadline, also for clients already built; returns ``self``."""
        self.interactive = True
        deadline = self.retry_deadline
        for client in (self._kube, self._registry):
            if client is not None:
                client.retry.deadline = deadline
        return self

    @property
    def kube(self) -> KubeClient:
        """The Kubernetes client (in-cluster config, else kubeconfig), built on first use."""
        with self._lock:
            if self._kube is None:
                from chainmail._internal.kube import KubeClient

                self._kube = KubeClient.from_environment(self.kubeconfig, retry=self.retry)
            return self._kube

    @kube.setter
    def kube(self, client: KubeClient) -> None:
        self._kube = client

    @property
    def registry(self) -> RegistryClient:
        """The registry client with this run's credentials, built on first use."""
        with self._lock:
            if self._registry is None:
                from chainmail._internal.registry import RegistryClient

                max_blob = self.config.int(_BLOB_KEY)
                if max_blob < 1024:
                    raise ConfigError(f"{_BLOB_KEY}: must be at least 1024 (bytes), not {max_blob}")
                self._registry = RegistryClient(
                    docker_config=self.docker_config,
                    insecure=self.config.bool("storage.oci.repository.insecure"),
                    retry=self.retry,
                    max_blob_bytes=max_blob,
                )
            return self._registry

    @registry.setter
    def registry(self, client: RegistryClient) -> None:
        self._registry = client

    @property
    def has_kube(self) -> bool:
        """True when a client was set or built (no cluster is contacted to answer)."""
        return self._kube is not None
