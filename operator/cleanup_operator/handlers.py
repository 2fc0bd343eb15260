"""Thin Kopf wiring: per kind, a watcher feeding the scheduler (runtime.Scheduler), a delete handler
guarding the vendor object with a finalizer, and an index of vendor claims; the leader election
(leader.py) that gates the scheduler and the delete handlers; the liveness probe.

No vendor logic lives here; the only mapping is ``runtime.Retry`` → ``kopf.TemporaryError``.

With ``--leader-elect``, a standby runs Kopf's watches and indexes and keeps the scheduler's
snapshots, but its scheduler loop and its delete handlers wait until it holds the lease: it
reconciles nothing, opens no vendor connection and writes nothing. A leader that loses the lease
stops every vendor call at once (the guard refuses, in-flight reconciles are cancelled, vendor
connections are closed) and stops the process with exit code 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping
from typing import Any

import kopf

from .api import ALL_KINDS
from .api.common import FINALIZER, FORCE_DELETE, GROUP, VERSION, KindInfo
from .kube import KubeAPI
from .leader import ElectionConfig, LeaderElector
from .namespaces import Insights, NamespaceSelection
from .observability import Metrics, serve_metrics
from .runtime import Context, Event, Obj, Reconciler, Retry, Scheduler
from .settings import OperatorOptions, configure

log = logging.getLogger(__name__)

#: Exit code of a replica that lost its lease (the Deployment restarts it, as a standby).
LOST_LEASE_EXIT = 1
#: Seconds Kopf gets to stop by itself after a lost lease before the process ends regardless.
EXIT_GRACE = 10.0

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
        self.elector: LeaderElector | None = None
        self._elector_task: asyncio.Task[None] | None = None
        self._lease_kube: KubeAPI | None = None
        #: Set to stop Kopf (a lost lease); passed to ``kopf.operator(stop_flag=...)``.
        self.stop_flag = asyncio.Event()
        #: The process's exit code when not 0 (a lost lease).
        self.exit_code = 0
        #: Set once this replica may act: at once without election, else when it acquires the lease.
        self._leading = asyncio.Event()
        if not options.leader_elect:
            self._leading.set()
        #: Kopf's record of the namespaces it serves (``kopf.operator(insights=...)``); with
        #: ``--namespace-selector``, the selection keeps it current.
        self.insights = Insights()
        self.selection: NamespaceSelection | None = None
        self._selection_task: asyncio.Task[None] | None = None
        if options.namespace_selector:
            self.selection = NamespaceSelection(options.namespace_selector, self.insights, self._dropped)

    def serves(self, namespace: str | None) -> bool:
        """Whether this operator serves ``namespace`` now (always, but with a namespace selector)."""
        return self.selection is None or self.selection.serves(namespace)

    def start_selection(self) -> None:
        """Follow the namespaces the selector matches (idempotent: Kopf may log in again)."""
        if self.selection is None or self._selection_task is not None:
            return
        self._selection_task = asyncio.create_task(
            self.selection.run(self.context().kube), name="namespace selection"
        )

    def _dropped(self, namespace: str) -> None:
        if self._scheduler is not None:
            self._scheduler.forget_namespace(namespace)
        if self._ctx is not None:
            self._ctx.credentials.forget(namespace)

    def start_election(self, config: ElectionConfig) -> None:
        """Start competing for the lease, on a Kubernetes client of its own (renews never wait
        behind status patches). Idempotent: Kopf may log in again."""
        if self.elector is not None:
            return
        self._lease_kube = KubeAPI.from_connection_info(self.connection)
        self.metrics.set("cleanup_operator_leader", 0, identity=config.identity)

        def changed(leading: bool) -> None:
            self.metrics.set("cleanup_operator_leader", 1 if leading else 0, identity=config.identity)
            if leading:
                self._leading.set()

        self.elector = LeaderElector(self._lease_kube, config, on_change=changed)
        self._elector_task = asyncio.create_task(self._elect(self.elector), name="leader election")

    async def _elect(self, elector: LeaderElector) -> None:
        try:
            await elector.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("leader election failed")
            elector.reason = "leader election failed"
            elector.lost.set()
        await self.stop_vendor_work()
        log.error(
            "stopped every vendor call after losing %s (%s); exiting with code %d so that this"
            " replica restarts as a standby",
            elector.where,
            elector.reason,
            LOST_LEASE_EXIT,
        )
        self.exit_code = LOST_LEASE_EXIT
        self.stop_flag.set()
        # Kopf stops by itself; should anything hold it up, the process ends regardless.
        timer = threading.Timer(EXIT_GRACE, _hard_exit, (LOST_LEASE_EXIT,))
        timer.daemon = True
        timer.start()

    async def leading(self) -> None:
        """Return once this replica may act (at once without election); a standby waits here."""
        await self._leading.wait()

    async def stop_vendor_work(self) -> None:
        """Cancel every reconcile in flight and close the vendor connections (the guard already
        refuses new calls)."""
        if self._scheduler_task is not None:
            self._scheduler_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._scheduler_task
        if self._scheduler is not None:
            await self._scheduler.aclose()
        if self._ctx is not None:
            await self._ctx.pool.aclose()

    def scheduler_problem(self) -> str | None:
        """Why the scheduler is not running (for the liveness probe), or None."""
        task = self._scheduler_task
        if task is None or not task.done():
            return None
        if task.cancelled():
            return "the scheduler was cancelled"
        exc = task.exception()
        if exc is None:
            return "the scheduler loop ended"
        cause = exc.__cause__
        return f"the scheduler loop ended: {exc}" + (f" ({type(cause).__name__})" if cause else "")

    def liveness(self) -> str:
        """What the liveness probe reports ("leading", "standby", "starting"); raises (the probe
        fails, ``/healthz`` answers 500) when the scheduler has ended."""
        problem = self.scheduler_problem()
        if problem is not None:
            raise kopf.PermanentError(problem)
        if self.elector is None:
            return "starting" if self.options.leader_elect else "leading"
        return "leading" if self.elector.held() else "standby"

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
                leader=self.elector,
            )
            self._ctx.indexes = self.indexes
        return self._ctx

    def scheduler(self) -> Scheduler:
        if self._scheduler is None:
            self._scheduler = Scheduler(self.context(), concurrency=self.options.max_reconciles)
            self.context().credentials.on_change = self._scheduler.secret_changed
            self._scheduler_task = asyncio.create_task(
                self._run_scheduler(self._scheduler), name="cleanup-operator scheduler"
            )
            self._scheduler_task.add_done_callback(self._scheduler_ended)
        return self._scheduler

    async def _run_scheduler(self, scheduler: Scheduler) -> None:
        # A standby keeps the snapshots (observe) but dispatches nothing until it leads.
        await self.leading()
        await scheduler.run()

    def _scheduler_ended(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return  # we stopped it (shutdown, or a lost lease)
        problem = self.scheduler_problem()
        exc = None if task.cancelled() else task.exception()
        log.error("%s; the liveness probe now fails", problem, exc_info=exc)

    def reconciler(self, kind: KindInfo) -> Reconciler:
        rec = self._reconcilers.get(kind.plural)
        if rec is None:
            rec = self._reconcilers[kind.plural] = self.factories[kind.plural](self.context())
        return rec

    def _post_event(self, obj: Obj, event: Event) -> None:
        self.metrics.inc("cleanup_operator_events_total", kind=obj.kind.kind, reason=event.reason)
        kopf.event(obj.body, type=event.type, reason=event.reason, message=event.message)

    async def aclose(self) -> None:
        if self._selection_task is not None:
            self._selection_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._selection_task
        await self.stop_vendor_work()
        if self._ctx is not None:
            await self._ctx.aclose()
        if self._elector_task is not None:
            self._elector_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._elector_task
        if self.elector is not None:
            # Every vendor call has stopped: hand the lease to a standby now rather than at expiry.
            await self.elector.release()
        if self._lease_kube is not None:
            await self._lease_kube.aclose()
        if self._metrics_runner is not None:
            await self._metrics_runner.cleanup()


def _hard_exit(code: int) -> None:
    sys.stderr.flush()
    os._exit(code)


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
        state.start_selection()
        election = options.election()
        if election is not None:
            state.start_election(election)
        return info

    @kopf.on.probe(registry=registry, id="scheduler", retries=1)
    async def scheduler_alive(**_: Any) -> str:
        return state.liveness()

    @kopf.on.cleanup(registry=registry)
    async def cleanup(**_: Any) -> None:
        await state.aclose()
        # Kopf waits for our stop flag in a task of its own that outlives a SIGTERM, and then gives
        # such "hung" tasks 5 s before it exits: the operator is stopping anyway, so end that wait.
        state.stop_flag.set()

    for kind in ALL_KINDS:
        if kind.plural in state.factories:
            _register_kind(registry, state, kind)
    return state


def _register_kind(registry: kopf.OperatorRegistry, state: OperatorState, kind: KindInfo) -> None:
    resource = (GROUP, VERSION, kind.plural)
    index_id = f"{kind.plural}_claims"

    # Async, so Kopf calls it on the loop: a sync handler goes through a thread pool per event.
    async def claims(body: kopf.Body, namespace: str | None, **_: Any) -> dict[str, tuple[str, ...]] | None:
        if not state.serves(namespace):
            return None
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

    async def watch(
        body: kopf.Body, uid: str, type: str | None, namespace: str | None, **kwargs: Any
    ) -> None:
        state.indexes[kind.plural] = kwargs.get(index_id)
        if type == "DELETED" or not state.serves(namespace):
            # Not served: the last events of a namespace that just left the selection.
            state.scheduler().forget(uid)
            return
        state.scheduler().observe(state.reconciler(kind), body)

    kopf.on.event(*resource, id=f"{kind.plural}_watch", registry=registry)(watch)

    async def delete(body: kopf.Body, **_: Any) -> None:
        # A standby waits here (writing nothing: no retry state for Kopf to persist) until it leads.
        await state.leading()
        ctx = state.context()
        meta = body.get("metadata", {})
        if not state.serves(meta.get("namespace")):
            # The namespace just left the selection: the operator that serves it now finalizes it.
            raise kopf.TemporaryError("the namespace is no longer served by this operator", delay=60)
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

    # A reconciler that puts our finalizer on itself (CleanupPolicy: in the patch that also records
    # the create it is about to send, one write instead of Kopf's and then ours) gets a handler that
    # matches only once the finalizer is there: Kopf neither adds it first nor removes it as unneeded.
    when = _finalizer_on if getattr(state.factories[kind.plural], "adds_finalizer", False) else None
    kopf.on.delete(
        *resource, id=f"{kind.plural}_finalize", registry=registry, retries=None, backoff=5, when=when
    )(delete)


def _finalizer_on(meta: kopf.Meta, **_: Any) -> bool:
    return FINALIZER in (meta.get("finalizers") or ())
