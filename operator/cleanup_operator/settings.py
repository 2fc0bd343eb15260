"""Kopf settings in one place, each with its reason."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import kopf

from .api.common import FINALIZER, GROUP


@dataclass(frozen=True)
class OperatorOptions:
    """What the command line decides."""

    namespaces: tuple[str, ...] = ()
    all_namespaces: bool = False
    liveness: str | None = None
    log_format: str = "text"
    metrics_port: int | None = None
    peering: str | None = None
    verbose: bool = False
    #: Vendor calls in flight at once across all objects (a 2-core pod must not open thousands).
    vendor_concurrency: int = 50
    #: Objects whose watch events are processed at once (memory stays flat through bursts).
    worker_limit: int | None = 50
    #: Harness GraphQL requests per window per account, shared by every resource of the operator.
    harness_rate: int = 28  # Harness documents 30 per minute; keep a margin for network delay
    harness_window: float = 60.0


def configure(settings: kopf.OperatorSettings, options: OperatorOptions) -> None:
    # Our own finalizer and annotation prefix, so Kopf's bookkeeping is visibly ours.
    settings.persistence.finalizer = FINALIZER
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=GROUP, key="last-handled-configuration"
    )
    # Log lines become events only for warnings and errors: transitions are posted explicitly.
    settings.posting.level = logging.WARNING
    # Kopf has no leader election; peering gives active/standby when asked for, else one replica.
    if options.peering:
        settings.peering.name = options.peering
        settings.peering.mandatory = True
        settings.peering.standalone = False
    else:
        settings.peering.standalone = True
    # Reconnect watches that go quiet (an API-server restart can leave a half-open stream).
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    settings.networking.request_timeout = 60
    # Bound the per-object workers: Kopf's API session has no connection limit, so a burst of a
    # thousand objects would otherwise open hundreds of TLS connections at once (memory that the
    # process keeps). A worker that has nothing to do gives its slot back quickly.
    settings.queueing.worker_limit = options.worker_limit
    settings.queueing.idle_timeout = 0.5
    settings.execution.max_workers = 4
