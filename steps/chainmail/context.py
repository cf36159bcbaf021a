"""What a step needs from its surroundings, created lazily and shared within a process.

A :class:`Context` holds the chains-config plus factories for the Kubernetes client and
the registry client, so commands that never talk to a cluster or registry never import
``requests`` or read a kubeconfig.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from chainmail._internal.http import RetryPolicy
from chainmail.config import Config

if TYPE_CHECKING:
    from chainmail._internal.kube import KubeClient
    from chainmail._internal.registry import RegistryClient


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

    @property
    def retry(self) -> RetryPolicy:
        """A fresh retry policy with the configured deadline."""
        return RetryPolicy(deadline=float(self.config.int("chainmail.retry.deadline-seconds")))

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

                self._registry = RegistryClient(
                    docker_config=self.docker_config,
                    insecure=self.config.bool("storage.oci.repository.insecure"),
                    retry=self.retry,
                )
            return self._registry

    @registry.setter
    def registry(self, client: RegistryClient) -> None:
        self._registry = client

    @property
    def has_kube(self) -> bool:
        """True when a client was set or built (no cluster is contacted to answer)."""
        return self._kube is not None
