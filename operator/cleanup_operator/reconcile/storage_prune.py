"""StoragePrune: start JFrog's prune of unreferenced data once per request and follow it to the end.

Requests: the object's creation (without a schedule), each schedule tick, and each new value of the
requested-at annotation. A request is served by exactly one start, made safe across crashes this way:

1. Under an in-process lock per Artifactory, the vendor's status is read. A prune that is running
   is not restarted: when another StoragePrune of ours started it, this one waits; otherwise it is
   followed and reported (reason ``AlreadyRunning``), never stopped by us.
2. ``phase: Pending`` with the request and the vendor's own start time of the prune it showed
   before (``pendingBaseline``) is written to status *before* ``POST …/start``.
3. Only a 202 answer makes the prune ours (``startedByUs``): only then does deleting the resource
   stop it. An operator that restarts (or lost the answer) and finds ``Pending`` compares the
   vendor's prune with the baseline — the vendor's clock against itself, never against ours: the
   same prune means the start never happened and it is made now; a newer one is followed to its
   end, as unconfirmed (it may be another admin's), and not stopped on delete. Either way, one start
   per request.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

from .. import decisions
from ..api.common import APPROVE, CREATION_SERVED, parse_duration
from ..api.storage_prune import STORAGE_PRUNE, StoragePruneSpec
from ..credentials import CredentialsError
from ..decisions import Act
from ..runtime import Context, Event, Obj, Outcome, Retry
from ..schedule import Cron
from ..vendors import jfrog
from ..vendors.errors import AuthError, NotFoundError, RejectedError, VendorError
from .common import (
    InvalidSpec,
    budget_of,
    failure_outcome,
    invalid_spec_outcome,
    jfrog_claim_url,
    jfrog_client,
    new_request,
    note_reconcile_request,
    parse_spec,
    refuse_request,
    request_refusal,
    waiting_for_finalizer,
    was_stalled_with,
)
from .conditions import BACKOFF, SUSPENDED, StatusBuilder, iso, now, parse_time

log = logging.getLogger(__name__)

DIRECTORIES = 256
ACTIVE = ("Pending", "Running")
ALREADY_RUNNING = "AlreadyRunning"
UNCONFIRMED = "UnconfirmedPrune"
TERMINAL = {"finished": "Succeeded", "stopped": "Stopped", "error": "Failed"}


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def progress_fields(status: jfrog.PruneStatus, start_directory: str | None = None) -> dict[str, Any]:
    """Vendor status → our status fields (progress, percentage, report, timing).

    ``progress`` is "the number of directories that have been processed thus far" (of 256): a
    prune from ``start_directory`` has ``256 - start`` to process, which is its 100 %. A finished
    prune is at 100 %.
    """
    done = status.directories_done
    report = status.report
    cleaned = report.total_bytes_cleaned if report else 0
    started = status.timing.started_at_millis if status.timing else None
    todo = DIRECTORIES - (int(start_directory, 16) if start_directory else 0)
    percent = 100 if status.status == "finished" else min(100, done * 100 // max(1, todo))
    return {
        "progress": status.progress or f"{done} of {DIRECTORIES}",
        "percent": percent,
        "report": {
            "binariesProcessed": report.total_binaries_processed if report else 0,
            "binariesCleaned": report.total_binaries_cleaned if report else 0,
            "bytesCleaned": cleaned,
            "reclaimed": human_bytes(cleaned),
        },
        "lastHandledDirectory": status.last_handled_directory.name if status.last_handled_directory else None,
        "startedAt": iso(dt.datetime.fromtimestamp(started / 1000, dt.UTC)) if started else None,
        "duration": status.timing.duration if status.timing else None,
        "dryRun": status.dry_run,
        "error": status.error if status.status == "error" else None,
    }


def _dry_run_of(record: dict[str, Any], *, succeeded: bool) -> decisions.DryRun:
    seen = parse_time(record.get("finishedAt"))
    return decisions.DryRun(
        id=str(record.get("id")),
        succeeded=succeeded,
        finished_at=seen.timestamp() if seen else None,
        packages=int(record.get("binariesCleaned") or 0),
        bytes=int(record.get("bytesCleaned") or 0),
    )


class StoragePruneReconciler:
    kind = STORAGE_PRUNE

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._failures: dict[str, int] = {}
        #: Artifactory URL → uid of the StoragePrune of ours whose prune runs there (fresh starts;
        #: the claims index carries the same from status across restarts).
        self._running: dict[str, str] = {}

    @staticmethod
    def claim_key(body: Any) -> str | None:
        return jfrog_claim_url(body.get("spec") or {})

    @staticmethod
    def claim_value(body: Any) -> tuple[str, ...]:
        status = body.get("status") or {}
        return (str(status.get("phase") or ""), str(bool(status.get("startedByUs"))))

    def _other_runner(self, obj: Obj, url: str) -> str | None:
        """The namespace/name of another StoragePrune of ours running a prune on ``url``."""
        uid = self._running.get(url)
        if uid and uid != obj.uid:
            return self._ref_of(url, uid) or "another StoragePrune"
        index = self.ctx.indexes.get(self.kind.plural)
        if index is not None and url in index:
            for value in index[url]:
                if value[2] != obj.uid and len(value) > 4 and value[3] in ACTIVE and value[4] == "True":
                    return str(value[1])
        return None

    def _ref_of(self, url: str, uid: str) -> str | None:
        index = self.ctx.indexes.get(self.kind.plural)
        if index is not None and url in index:
            for value in index[url]:
                if value[2] == uid:
                    return str(value[1])
        return None

    def pending_request(
        self, obj: Obj, spec: StoragePruneSpec, b: StatusBuilder
    ) -> tuple[str, dict[str, Any]] | None:
        """(request id, status fields recording it as handled), or None when nothing asks for a run.

        Never called while suspended: a request that arrives then is refused, and ticks missed while
        suspended are skipped.
        """
        real = b.get("realPending")
        if isinstance(real, dict) and real.get("allowedBy"):
            return f"real:{real['allowedBy']}", {}
        requested = new_request(obj, b)
        if requested:
            return f"requested-at:{requested}", {"lastHandledRequestedAt": requested}
        if spec.schedule:
            cron = Cron.parse(spec.schedule)
            since = parse_time(b.get("lastScheduleTime")) or parse_time(obj.created) or now()
            resumed = (b.condition("Reconciling") or {}).get("reason") == SUSPENDED
            if resumed:
                since = max(since, now())  # ticks missed while suspended never fire later
                b["lastScheduleTime"] = iso(since)
            tick = cron.last_due(since, now())
            if tick is not None:
                return f"schedule:{iso(tick)}", {"lastScheduleTime": iso(tick)}
            return None
        if not b.get("runStartedFor") and not b.get("history") and CREATION_SERVED not in obj.annotations:
            return "created", {}
        return None

    def next_tick_delay(self, obj: Obj, spec: StoragePruneSpec, b: StatusBuilder) -> float | None:
        if not spec.schedule or spec.suspend:
            return None
        since = parse_time(b.get("lastScheduleTime")) or parse_time(obj.created) or now()
        tick = Cron.parse(spec.schedule).next_after(max(since, now() - dt.timedelta(minutes=1)))
        return max(1.0, (tick - now()).total_seconds() + 0.5)

    async def reconcile(self, obj: Obj) -> Outcome:
        try:
            spec = parse_spec(StoragePruneSpec, obj)
            if spec.schedule:
                Cron.parse(spec.schedule)
        except (InvalidSpec, ValueError) as exc:
            return invalid_spec_outcome(obj, InvalidSpec(str(exc)))
        b = obj.builder()
        note_reconcile_request(obj, b)
        events: list[Event] = []
        poll = parse_duration(spec.poll_interval)
        attempt = self._failures.get(obj.uid, 0)
        try:
            requeue = await self._step(obj, spec, b, events, poll)
        except (VendorError, CredentialsError) as exc:
            self._failures[obj.uid] = attempt + 1
            failure, retry = failure_outcome(
                b, exc, attempt, secret=f"{obj.namespace}/{spec.connection.secret_ref.name}", keep_ready=True
            )
            if failure.stalled and not was_stalled_with(obj, failure.reason):
                events.append(Event("Warning", failure.reason, failure.message))
            b.observe()
            return Outcome(b.result(), retry if retry is not None else poll, events)
        self._failures.pop(obj.uid, None)
        b.observe()
        return Outcome(b.result(), requeue, events, wake_on_finalizer=waiting_for_finalizer(b))

    async def _step(
        self, obj: Obj, spec: StoragePruneSpec, b: StatusBuilder, events: list[Event], poll: float
    ) -> float | None:
        url = jfrog_claim_url(obj.spec) or spec.connection.url
        phase = b.get("phase")
        started = phase == "Running" or (phase == "Pending" and b.get("pendingSince"))
        requested = new_request(obj, b)
        refusal = request_refusal(obj, requested, suspended=spec.suspend) if requested else None
        if requested and refusal:
            refuse_request(b, events, requested, refusal)
            b["lastRefusal"] = refusal
        if spec.suspend and not started:
            # Nothing starts while suspended (a prune already started is still followed).
            b.suspended()
            if refusal:
                b.set_condition("Reconciling", False, SUSPENDED, f"spec.suspend is true: {refusal}")
            return None
        client = await jfrog_client(self.ctx, obj.namespace, spec.connection)

        if phase in ACTIVE:
            vendor = await client.prune_status()
            return await self._follow(obj, spec, b, events, poll, vendor, url, client)

        self._approval(obj, spec, b, events)
        request = None if refusal else self.pending_request(obj, spec, b)
        if request is None:
            held = b.get("pendingApproval")
            if isinstance(held, dict) and held.get("reason"):
                decision = decisions.Decision(Act.NOTHING, str(held["reason"]), str(held.get("message", "")))
                b.stalled(decision.reason, decision.message)
                return self.next_tick_delay(obj, spec, b)
            if phase is None and spec.schedule:
                # Waiting for the first tick is a healthy state (Argo CD: Healthy), not work in progress.
                b["phase"] = "Scheduled"
                b.ready("Scheduled", f"waiting for the schedule {spec.schedule!r}")
            elif refusal and not b.condition("Ready"):
                b.stalled("RequestRefused", refusal)
            return self.next_tick_delay(obj, spec, b)

        if not obj.guarded:  # before any vendor call: nothing starts without the finalizer
            decision = decisions.prune_start(guarded=False, other_runner=False, vendor_running=False)
            b.progressing(decision.reason, decision.message)
            return 5.0  # the finalizer's arrival wakes it sooner
        async with self.ctx.lock(f"prune:{url}"):
            vendor = await client.prune_status()
            other = self._other_runner(obj, url)
            decision = decisions.prune_start(
                guarded=True,
                other_runner=other is not None,
                vendor_running=vendor is not None and vendor.status == "running",
            )
            token, handled = request
            if decision.act == Act.WAIT:
                # The message names no object (it may be in another namespace); the log does.
                log.info("StoragePrune %s waits for StoragePrune %s on %s", obj.ref, other, url)
                b["phase"] = "Waiting"
                b.progressing(decision.reason, decision.message)
                return poll
            if decision.act == Act.FOLLOW:
                assert vendor is not None
                return self._adopt_foreign(b, events, vendor, token, handled, poll)
            real = token.startswith("real:")
            gated = spec.safety is not None and not spec.dry_run and not real
            dry = spec.dry_run or gated
            # Step 2 of the module docstring: the request goes to status before the start.
            baseline = vendor.timing.started_at_millis if vendor is not None and vendor.timing else None
            b.update(
                {
                    "phase": "Pending",
                    "runStartedFor": token,
                    "startedByUs": None,
                    "pendingSince": iso(),
                    "pendingBaseline": {"startedAtMillis": baseline} if baseline else {"none": True},
                    "lastRefusal": None,
                    "gate": True if gated else None,
                    "allowedBy": token.split(":", 1)[1] if real else None,
                    **handled,
                }
            )
            if not real:
                b["pendingApproval"] = None  # a new request replaces a real prune held for approval
            for key in (
                "error",
                "progress",
                "percent",
                "report",
                "lastHandledDirectory",
                "duration",
                "startedAt",
            ):
                b[key] = None
            b["dryRun"] = dry
            b.progressing("Starting", f"starting a {'dry-run ' if dry else ''}prune ({token})")
            await self.ctx.write_status(obj, b.result())
            self._running[url] = obj.uid
            try:
                await client.prune_start(
                    dry_run=dry,
                    start_from_directory=spec.start_from_directory,
                    start_from_binary=spec.start_from_binary,
                    binary_older_than_days=spec.binary_older_than_days,
                )
            except jfrog.PruneAlreadyRunning:
                self._running.pop(url, None)
                vendor = await client.prune_status()
                if vendor is None:
                    raise
                return self._adopt_foreign(b, events, vendor, token, handled, poll)
            except (RejectedError, AuthError, NotFoundError) as exc:
                # A definite refusal: nothing started, and this request is answered.
                self._running.pop(url, None)
                b.update({"phase": "Failed", "pendingSince": None, "pendingBaseline": None})
                b["error"] = f"Artifactory refused to start the prune: {exc}"
                raise
            except BaseException:
                self._running.pop(url, None)
                raise
            events.append(
                Event(
                    "Normal",
                    "PruneStarted",
                    f"started a {'dry-run ' if dry else ''}prune of unreferenced data ({token})",
                )
            )
            # Confirmed (202): from here on the prune is ours, and deleting the resource stops it.
            b.update({"phase": "Running", "startedByUs": True, "pendingSince": None, "pendingBaseline": None})
            b["realPending"] = None
            b.progressing("Running", "prune started")
            if token == "created":
                # Kept by a backup of the object (status is not): its restored copy does not prune again.
                await self.ctx.write_status(obj, b.result())
                await self.ctx.kube.annotate(
                    obj.kind.plural, obj.namespace, obj.name, {CREATION_SERVED: iso()}
                )
            return min(poll, 2.0)

    def _after_gate(
        self,
        spec: StoragePruneSpec,
        b: StatusBuilder,
        events: list[Event],
        vendor: jfrog.PruneStatus,
        poll: float,
    ) -> float | None:
        """The gating dry-run prune ended: the real prune follows within the budget, or waits."""
        started = vendor.timing.started_at_millis if vendor.timing else None
        report = b.get("report") or {}
        record = {
            "id": str(started or int(time.time() * 1000)),
            "phase": b.get("phase"),
            "startedAt": b.get("startedAt"),
            "finishedAt": iso(),
            "binariesCleaned": int(report.get("binariesCleaned") or 0),
            "bytesCleaned": int(report.get("bytesCleaned") or 0),
            "reclaimed": report.get("reclaimed"),
        }
        b["lastDryRun"] = record
        dry = _dry_run_of(record, succeeded=b.get("phase") == "Succeeded" and vendor.dry_run)
        decision = decisions.real_run(
            budget_of(spec.safety), dry, approval=None, used=b.get("lastApprovedDryRun"), now=time.time()
        )
        if decision.act == Act.RUN:
            b["realPending"] = {"allowedBy": dry.id}
            events.append(Event("Normal", "RealPruneAllowed", decision.message))
            b.progressing("Starting", f"starting the real prune {decision.message}")
            return 0.5
        b["pendingApproval"] = {
            "dryRunId": dry.id,
            "reason": decision.reason,
            "message": decision.message,
            "since": record["finishedAt"],
        }
        b.stalled(decision.reason, decision.message)
        events.append(Event("Warning", decision.reason, decision.message))
        return None

    def _approval(self, obj: Obj, spec: StoragePruneSpec, b: StatusBuilder, events: list[Event]) -> None:
        """An approve annotation: allow the held real prune it names (once), or say why not."""
        value = obj.annotations.get(APPROVE)
        if not value or value == b.get("lastHandledApproval"):
            return
        b["lastHandledApproval"] = value
        pending = b.get("pendingApproval") or {}
        used = b.get("lastApprovedDryRun")
        refusal = decisions.approval_refusal(value, pending.get("dryRunId"), used)
        if refusal is None and pending and b.get("lastDryRun"):
            record = b["lastDryRun"]
            dry = _dry_run_of(
                {**record, "finishedAt": pending.get("since")}, succeeded=record.get("phase") == "Succeeded"
            )
            decision = decisions.real_run(
                budget_of(spec.safety), dry, approval=value, used=used, now=time.time()
            )
            if decision.act == Act.RUN:
                b["pendingApproval"] = None
                b["lastApprovedDryRun"] = dry.id
                b["realPending"] = {"allowedBy": dry.id}
                events.append(Event("Normal", "PruneApproved", decision.message))
                return
            refusal = decision.message
        if refusal is not None:
            b["lastRefusal"] = refusal
            events.append(Event("Warning", "ApprovalRefused", refusal))

    @staticmethod
    def _compare_with_dry_run(b: StatusBuilder, events: list[Event], allowed: str) -> None:
        record = b["lastDryRun"]
        if str(record.get("id")) != allowed:
            return
        report = b.get("report") or {}
        beyond = decisions.exceeded_dry_run(
            _dry_run_of(record, succeeded=True),
            int(report.get("binariesCleaned") or 0),
            0,
            int(report.get("bytesCleaned") or 0),
        )
        if beyond:
            message = f"the prune reclaimed more than its dry run said: {'; '.join(beyond)}"
            events.append(Event("Warning", "PruneExceededDryRun", message))
            history = list(b.get("history") or [])
            if history:
                history[0] = {**history[0], "error": message}
                b["history"] = history

    def _adopt_foreign(
        self,
        b: StatusBuilder,
        events: list[Event],
        vendor: jfrog.PruneStatus,
        token: str,
        handled: dict[str, Any],
        poll: float,
    ) -> float:
        """Someone else's prune runs: follow it, do not start another (the request is served by it)."""
        b.update(
            {
                "phase": "Running",
                "runStartedFor": token,
                "startedByUs": False,
                "pendingSince": None,
                "pendingBaseline": None,
                **handled,
            }
        )
        b.update(progress_fields(vendor))
        message = "a prune started outside this resource is already running on this Artifactory: following it"
        b.progressing(ALREADY_RUNNING, message)
        events.append(Event("Normal", ALREADY_RUNNING, message))
        return poll

    async def _follow(
        self,
        obj: Obj,
        spec: StoragePruneSpec,
        b: StatusBuilder,
        events: list[Event],
        poll: float,
        vendor: jfrog.PruneStatus | None,
        url: str,
        client: jfrog.JFrogClient,
    ) -> float | None:
        if b.get("phase") == "Pending":
            baseline = b.get("pendingBaseline")
            started = vendor.timing.started_at_millis if vendor is not None and vendor.timing else None
            if not b.get("pendingSince"):
                newer = False  # waiting for a schedule tick: nothing was asked for yet
            elif isinstance(baseline, dict):
                before = baseline.get("startedAtMillis")
                newer = started is not None and started != before
            else:  # a Pending record from before baselines: any prune may be the one we started
                newer = vendor is not None
            if not newer:
                # The start never happened (the vendor shows the same prune as before): make it now.
                b["phase"] = None
                b["pendingBaseline"] = None
                token = b.get("runStartedFor")
                b["runStartedFor"] = None
                if token and str(token).startswith("requested-at:"):
                    b["lastHandledRequestedAt"] = None
                if token and str(token).startswith("schedule:"):
                    b["lastScheduleTime"] = None
                return await self._step(obj, spec, b, events, poll)
            # A prune began after we recorded ours: our start may have made it (an answer lost in
            # a crash) or another admin's may have. Follow it so the request is served once, but
            # never claim it: it is not stopped on delete.
            b.update(
                {"phase": "Running", "pendingSince": None, "pendingBaseline": None, "startedByUs": False}
            )
            message = (
                "a prune began while this resource was starting one, and Artifactory never confirmed"
                " ours: following it without claiming it (it is not stopped if this resource is deleted)"
            )
            events.append(Event("Warning", UNCONFIRMED, message))
            b["unconfirmed"] = True
        if vendor is None:
            b.progressing("Running", "waiting for Artifactory to report the prune")
            return poll
        if b.get("startedByUs"):
            self._running[url] = obj.uid
        b.update(progress_fields(vendor, spec.start_from_directory if b.get("startedByUs") else None))
        b.set_condition("Synced", True, "Polled", "")
        if vendor.status == "running":
            reason = (
                "Running"
                if b.get("startedByUs")
                else UNCONFIRMED
                if b.get("unconfirmed")
                else ALREADY_RUNNING
            )
            b.progressing(
                reason,
                f"pruning: {b['progress']} directories ({b['percent']}%), {b['report']['reclaimed']} reclaimed",
            )
            return poll
        ours, gate, allowed = b.get("startedByUs") is True, b.get("gate"), b.get("allowedBy")
        delay = self._finish(obj, spec, b, events, vendor, url)
        b["gate"] = None
        if ours and gate:
            return self._after_gate(spec, b, events, vendor, poll) or delay
        if ours and allowed and b.get("lastDryRun"):
            self._compare_with_dry_run(b, events, str(allowed))
        return delay

    def _finish(
        self,
        obj: Obj,
        spec: StoragePruneSpec,
        b: StatusBuilder,
        events: list[Event],
        vendor: jfrog.PruneStatus,
        url: str,
    ) -> float | None:
        if self._running.get(url) == obj.uid:
            self._running.pop(url, None)
        phase = TERMINAL.get(vendor.status, "Failed")
        report = b["report"] or {}
        what = "would reclaim" if vendor.dry_run else "reclaimed"
        summary = (
            f"{'dry-run ' if vendor.dry_run else ''}prune {phase.lower()}: {report.get('binariesCleaned', 0)} binaries,"
            f" {report.get('reclaimed', '0 B')} {what} over {b['progress']} directories"
        )
        b["phase"] = phase
        b["startedByUs"] = None
        b["unconfirmed"] = None
        if phase == "Succeeded":
            b.ready("PruneSucceeded", summary)
            events.append(Event("Normal", "PruneSucceeded", summary))
        elif phase == "Stopped":
            b.set_condition("Ready", False, "PruneStopped", summary)
            b.set_condition("Reconciling", False, "PruneStopped", "")
            b.set_condition("Stalled", False, "PruneStopped", "")
            events.append(Event("Warning", "PruneStopped", summary))
        else:
            message = f"prune failed: {vendor.error or 'no error text from Artifactory'}"
            b.set_condition("Ready", False, "PruneFailed", message)
            b.set_condition("Reconciling", False, "PruneFailed", "")
            b.set_condition("Stalled", False, "PruneFailed", "")
            events.append(Event("Warning", "PruneFailed", message))
        entry = {
            "phase": phase,
            "dryRun": vendor.dry_run,
            "startedAt": b["startedAt"],
            "finishedAt": iso(),
            "duration": b["duration"],
            "binariesCleaned": report.get("binariesCleaned", 0),
            "bytesCleaned": report.get("bytesCleaned", 0),
            **({"error": vendor.error} if vendor.error and phase == "Failed" else {}),
        }
        history = [entry, *(b.get("history") or [])][: spec.history_limit]
        b["history"] = history
        return self.next_tick_delay(obj, spec, b)

    async def finalize(self, obj: Obj) -> Outcome | None:
        try:
            spec = parse_spec(StoragePruneSpec, obj)
        except InvalidSpec:
            return None
        url = jfrog_claim_url(obj.spec) or spec.connection.url
        if self._running.get(url) == obj.uid:
            self._running.pop(url, None)
        decision = decisions.prune_stop_on_delete(
            stop_on_delete=spec.stop_on_delete,
            phase=obj.status.get("phase"),
            started_by_us=obj.status.get("startedByUs"),
        )
        if decision.act != Act.STOP:
            return None  # only a prune Artifactory confirmed we started is ever stopped
        try:
            client = await jfrog_client(self.ctx, obj.namespace, spec.connection)
            await client.prune_stop()  # False (412 "No running Prune task found") is fine
        except (VendorError, CredentialsError) as exc:
            attempt = self._failures.get(obj.uid, 0)
            self._failures[obj.uid] = attempt + 1
            b = obj.builder()
            failure, retry = failure_outcome(
                b, exc, attempt, secret=f"{obj.namespace}/{spec.connection.secret_ref.name}"
            )
            b.set_condition(
                "Ready",
                False,
                "DeletionBlocked",
                f"cannot stop the prune: {failure.message}. To release the resource without stopping it, annotate"
                ' it with cleanup.artifacts.dev/force-delete: "true"',
            )
            raise Retry(failure.message, retry or BACKOFF.delay(attempt), status=b.result()) from exc
        return None
