"""Thin Kopf wiring: per kind, a watcher feeding the scheduler (runtime.Scheduler), a delete handler
guarding the vendor object with a finalizer, and an index of vendor claims.

No vendor logic lives here; the only mapping is ``runtime.Retry`` → ``kopf.TemporaryError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from .api import ALL_KINDS
from .api.common import FORCE_DELETE, GROUP, VERSION, KindInfo
from .kube import KubeAPI
from .observability import Metrics, serve_metrics
from .runtime import Context, Event, Obj, Reconciler, Retry, Scheduler
from .settings import OperatorOptions, configure

log = logging.getLogger(__name__)

ReconcilerFactory = Callable[[Context], Reconciler]


def default_factories() -> dict[str, ReconcilerFactory]:
    from .reconcile.artifact_stream_sync import ArtifactStreamSyncReconciler
    from .reconcile.cleanup_policy import CleanupPolicyReconciler
    from .reconcile.storage_prune import StoragePruneReconciler

    return {
        "cleanuppolicies": CleanupPolicyReconciler,
        "storageprunes": StoragePruneReconciler,
        "artifactstreamsyncs": ArtifactStreamSyncReconciler,
    }


class OperatorState:
    def __init__(self, options: OperatorOptions, factories: Mapping[str, ReconcilerFactory]) -> None:
        self.options = options
        self.factories = factories
        self.connection: Any = None
        self.metrics = Metrics()
        self._scheduler: Scheduler | None = None
        self._scheduler_task: asyncio.Task[None] | None = None
        self.indexes: dict[str, Any] = {}
        self._ctx: Context | None = None
        self._reconcilers: dict[str, Reconciler] = {}
        self._metrics_runner: Any = None

    def context(self) -> Context:
        if self._ctx is None:
            if self.connection is None:
                raise RuntimeError("not logged in to the Kubernetes API yet")
            self._ctx = Context(
                KubeAPI.from_connection_info(self.connection),
                events=self._post_event,
                vendor_concurrency=self.options.vendor_concurrency,
                harness_limit=(self.options.harness_rate, self.options.harness_window),
                metrics=self.metrics,
                endpoints=self.options.endpoints(),
                status_report_interval=self.options.status_report_interval,
            )
            self._ctx.indexes = self.indexes
        return self._ctx

    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            self._scheduler = Scheduler(self.context(), concurrency=self.options.max_reconciles)
            self.context().credentials.on_change = self._scheduler.secret_changed
            self._scheduler_task = asyncio.create_task(
                self._scheduler.run(), name="cleanup-operator scheduler"
            )
        return self._scheduler

    def reconciler(self, kind: KindInfo) -> Reconciler:
        rec = self._reconcilers.get(kind.plural)
        if rec is None:
            rec = self._reconcilers[kind.plural] = self.factories[kind.plural](self.context())
        return rec

    def _post_event(self, obj: Obj, event: Event) -> None:
        self.metrics.inc("cleanup_operator_events_total", kind=obj.kind.kind, reason=event.reason)
        kopf.event(obj.body, type=event.type, reason=event.reason, message=event.message)

    async def aclose(self) -> None:
        if self._scheduler_task is not None:
            self._scheduler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler_task
        if self._scheduler is not None:
            await self._scheduler.aclose()
        if self._ctx is not None:
            await self._ctx.aclose()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()


def register(
    registry: kopf.OperatorRegistry,
    options: OperatorOptions,
    factories: Mapping[str, ReconcilerFactory] | None = None,
) -> OperatorState:
    state = OperatorState(options, factories or default_factories())

    @kopf.on.startup(registry=registry)
    async def startup(settings: kopf.OperatorSettings, **_: Any) -> None:
        configure(settings, options)
        if options.metrics_port:
            state._metrics_runner = await serve_metrics(state.metrics, options.metrics_port)

    @kopf.on.login(registry=registry)
    async def login(**kwargs: Any) -> Any:
        info = kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)
        state.connection = info
        return info

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await state.aclose()

    for kind in ALL_KINDS:
        if kind.plural in state.factories:
            _register_kind(registry, state, kind)
    return state


def _register_kind(registry: kopf.OperatorRegistry, state: OperatorState, kind: KindInfo) -> None:
    resource = (GROUP, VERSION, kind.plural)
    index_id = f"{kind.plural}_claims"

    def claims(body: kopf.Body, **_: Any) -> dict[str, tuple[str, ...]] | None:
        factory = state.factories[kind.plural]
        claim_key = getattr(factory, "claim_key", None)
        key = claim_key(body) if claim_key else None
        if key is None:
            return None
        meta = body.get("metadata", {})
        claim_value = getattr(factory, "claim_value", None)
        extra: tuple[str, ...] = claim_value(body) if claim_value else ()
        return {
            key: (
                meta.get("creationTimestamp", ""),
                f"{meta.get('namespace')}/{meta.get('name')}",
                meta.get("uid", ""),
                *extra,
            )
        }

    claims.__name__ = index_id
    kopf.index(*resource, id=index_id, registry=registry)(claims)

    async def watch(body: kopf.Body, uid: str, type: str | None, **kwargs: Any) -> None:
        state.indexes[kind.plural] = kwargs.get(index_id)
        if type == "DELETED":
            state.scheduler().forget(uid)
            return
        state.scheduler().observe(state.reconciler(kind), body)

    kopf.on.event(*resource, id=f"{kind.plural}_watch", registry=registry)(watch)

    async def delete(body: kopf.Body, **_: Any) -> None:
        ctx = state.context()
        meta = body.get("metadata", {})
        await state.scheduler().hold(meta.get("uid", ""))
        # Read the object again after the wait: the reconcile that was in flight may just have
        # created the vendor object or started a run, and the body Kopf handed us predates that.
        fresh = await ctx.kube.get_object(kind.plural, meta.get("namespace", ""), meta.get("name", ""))
        if fresh is None or (fresh.get("metadata") or {}).get("uid") != meta.get("uid"):
            return
        obj = Obj.from_body(kind, fresh)
        if obj.annotations.get(FORCE_DELETE) == "true":
            log.warning(
                "%s %s: %s is set; releasing the finalizer without vendor clean-up",
                kind.kind,
                obj.ref,
                FORCE_DELETE,
            )
            return
        try:
            outcome = await state.reconciler(kind).finalize(obj)
        except Retry as exc:
            if exc.status is not None:
                await ctx.write_status(obj, exc.status)
            raise kopf.TemporaryError(str(exc), delay=exc.delay) from exc
        if outcome is not None:
            await ctx.write_status(obj, outcome.status)
            for ev in outcome.events:
                ctx.emit(obj, ev)

    kopf.on.delete(*resource, id=f"{kind.plural}_finalize", registry=registry, retries=None, backoff=5)(
        delete
    )
