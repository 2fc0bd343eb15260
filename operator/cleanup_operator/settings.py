"""Kopf settings in one place, each with its reason."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import kopf

from .api.common import FINALIZER, GROUP
from .endpoints import EndpointPolicy
from .leader import ElectionConfig, default_identity

#: Where a pod finds its own namespace (the service account's mount).
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass(frozen=True)
class OperatorOptions:
    """What the command line decides."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    #: A label selector: serve the namespaces it matches, as their labels change (namespaces.py).
    namespace_selector: str | None = None
    liveness: str | None = None
    log_format: str = "text"
    metrics_port: int | None = None
    #: Leader election on a Lease (leader.py): off runs a single active replica.
    leader_elect: bool = False
    #: The Lease's namespace; None: the pod's own (POD_NAMESPACE, or the service account's).
    leader_elect_namespace: str | None = None
    leader_elect_lease_name: str = "cleanup-operator"
    #: client-go's defaults.
    leader_elect_lease_duration: float = 15.0
    leader_elect_renew_deadline: float = 10.0
    leader_elect_retry_period: float = 2.0
    #: This replica's holder identity; None: the host name (the pod's) and a unique suffix.
    leader_elect_identity: str | None = None
    verbose: bool = False
    #: Vendor requests in flight at once per vendor endpoint (base URL, plus the Harness account).
    vendor_concurrency: int = 10
    #: Reconciles in flight at once (a memory bound: each mostly waits on I/O, and one whose
    #: vendor is not answering is refused fast by its endpoint's gate instead of waiting).
    max_reconciles: int = 500
    #: Objects whose watch events Kopf processes at once. None (no limit), as Kopf's docs require
    #: with an index: at start-up every object's worker waits until all objects are indexed, so a
    #: limit below the number of objects deadlocks the operator (nolar/kopf#1243).
    worker_limit: int | None = None
    #: Harness GraphQL requests per window per account, shared by every resource of the operator.
    harness_rate: int = 28  # Harness documents 30 per minute; keep a margin for network delay
    harness_window: float = 60.0
    #: Where Secrets may be sent (globs of hosts, optionally host:port); empty refuses every host.
    allowed_hosts: tuple[str, ...] = ()
    allow_insecure_http: bool = False
    allow_insecure_tls: bool = False
    #: Seconds a check that changes nothing may leave status untouched (lastSyncedAt is refreshed
    #: after that): the kubelet's nodeStatusReportFrequency, for the same reason (write load).
    status_report_interval: float = 3600.0

    def endpoints(self) -> EndpointPolicy:
        return EndpointPolicy(self.allowed_hosts, self.allow_insecure_http, self.allow_insecure_tls)

    def election(self) -> ElectionConfig | None:
        """The election's configuration, or None without ``--leader-elect``; ValueError when the
        namespace cannot be found or the times do not fit together."""
        if not self.leader_elect:
            return None
        namespace = self.leader_elect_namespace or own_namespace()
        if not namespace:
            raise ValueError("--leader-elect needs --leader-elect-namespace outside a pod (or POD_NAMESPACE)")
        return ElectionConfig(
            namespace=namespace,
            name=self.leader_elect_lease_name,
            identity=self.leader_elect_identity or default_identity(),
            lease_duration=self.leader_elect_lease_duration,
            renew_deadline=self.leader_elect_renew_deadline,
            retry_period=self.leader_elect_retry_period,
        )


def own_namespace() -> str | None:
    """The pod's namespace: POD_NAMESPACE (the downward API), else the service account's mount."""
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or None
    except OSError:
        return None


class NoDiffBase(kopf.DiffBaseStorage):
    """Kopf's change detection keeps nothing: it would patch a ``last-handled-configuration``
    annotation onto every object (a write and one more watch event each) for handlers we do not
    have. Ours are ``on.event`` (the scheduler decides what changed), an index and ``on.delete``,
    which Kopf runs on the deletion timestamp and its finalizer, never on a stored diff base."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


def configure(settings: kopf.OperatorSettings, options: OperatorOptions) -> None:
    # Our own finalizer and annotation prefix, so Kopf's bookkeeping is visibly ours.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = NoDiffBase()
    # Log lines become events only for warnings and errors: transitions are posted explicitly.
    settings.posting.level = logging.WARNING
    # Kopf's peering pauses Kopf's handlers, never our scheduler: it is off. Replicas coordinate
    # through our own Lease (leader.py, --leader-elect).
    settings.peering.standalone = True
    # Exact namespaces only (the chart's namespaced mode, whose Roles grant nothing cluster-wide):
    # no namespace or CRD scan, which would be refused (403, retried and logged) and is not needed;
    # the CRDs are read once at start-up. Globs (Kopf's ``*?!,``) still need the namespace list.
    # A namespace selector is followed by our own watch of the matching namespaces (namespaces.py).
    if not options.all_namespaces and not any(set("*?!,") & set(ns) for ns in options.namespaces):
        settings.scanning.disabled = True
    # Reconnect watches that go quiet (an API-server restart can leave a half-open stream).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # No bound on Kopf's per-object workers by default: with the claims index, a bound below the
    # number of objects deadlocks the start-up indexing (nolar/kopf#1243). An idle worker exits
    # quickly, so the burst of workers at start-up does not stay.
    settings.queueing.worker_limit = options.worker_limit
    settings.queueing.idle_timeout = 0.5
    settings.execution.max_workers = 4
