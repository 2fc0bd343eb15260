"""StoragePrune: start JFrog's prune of unreferenced data once per request and follow it to the end.

Requests: the object's creation (without a schedule), each schedule tick, and each new value of the
requested-at annotation. A request is served by exactly one start, made safe across crashes this way:

1. Under an in-process lock per Artifactory, the vendor's status is read. A prune that is running
   is not restarted: when another StoragePrune of ours started it, this one waits; otherwise it is
   followed and reported (reason ``AlreadyRunning``).
2. ``phase: Pending`` with the request and the time is written to status *before* ``POST …/start``.
3. An operator that restarts and finds ``Pending`` compares the vendor's run start time with the
   time written in step 2: a run that started after it is ours and is followed; otherwise the
   start never happened and is made now. Either way, one start per request.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from ..api.common import REQUESTED_AT, parse_duration
from ..api.storage_prune import STORAGE_PRUNE, StoragePruneSpec
from ..credentials import CredentialsError
from ..runtime import Context, Event, Obj, Outcome, Retry
from ..schedule import Cron
from ..vendors import jfrog
from ..vendors.errors import VendorError
from .common import (
    InvalidSpec,
    failure_outcome,
    invalid_spec_outcome,
    jfrog_claim_url,
    jfrog_client,
    parse_spec,
    was_stalled_with,
)
from .conditions import BACKOFF, StatusBuilder, iso, now, parse_time

log = logging.getLogger(__name__)

DIRECTORIES = 256
ACTIVE = ("Pending", "Running")
ALREADY_RUNNING = "AlreadyRunning"
WAITING = "WaitingForOtherPrune"
TERMINAL = {"finished": "Succeeded", "stopped": "Stopped", "error": "Failed"}


def human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def progress_fields(status: jfrog.PruneStatus) -> dict[str, Any]:
    """Vendor status → our status fields (progress, percentage, report, timing)."""
    done = status.directories_done
    report = status.report
    cleaned = report.total_bytes_cleaned if report else 0
    started = status.timing.started_at_millis if status.timing else None
    return {
        "progress": status.progress or f"{done} of {DIRECTORIES}",
        "percent": min(100, done * 100 // DIRECTORIES),
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
        """(request id, status fields recording it as handled), or None when nothing asks for a run."""
        requested = obj.annotations.get(REQUESTED_AT)
        if requested and requested != b.get("lastHandledRequestedAt"):
            return f"requested-at:{requested}", {"lastHandledRequestedAt": requested}
        if spec.suspend:
            return None
        if spec.schedule:
            cron = Cron.parse(spec.schedule)
            since = parse_time(b.get("lastScheduleTime")) or parse_time(obj.created) or now()
            tick = cron.last_due(since, now())
            if tick is not None:
                return f"schedule:{iso(tick)}", {"lastScheduleTime": iso(tick)}
            return None
        if not b.get("runStartedFor") and not b.get("history"):
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
        events: list[Event] = []
        poll = parse_duration(spec.poll_interval)
        attempt = self._failures.get(obj.uid, 0)
        try:
            async with self.ctx.vendor_slots:
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
        return Outcome(b.result(), requeue, events)

    async def _step(
        self, obj: Obj, spec: StoragePruneSpec, b: StatusBuilder, events: list[Event], poll: float
    ) -> float | None:
        url = jfrog_claim_url(obj.spec) or spec.connection.url
        client = await jfrog_client(self.ctx, obj.namespace, spec.connection)
        phase = b.get("phase")

        if phase in ACTIVE:
            vendor = await client.prune_status()
            return await self._follow(obj, spec, b, events, poll, vendor, url, client)

        request = self.pending_request(obj, spec, b)
        if request is None:
            if phase is None:
                b["phase"] = "Pending" if not spec.suspend else None
                if spec.suspend:
                    b.suspended()
                else:
                    b.progressing("Scheduled", f"waiting for the schedule {spec.schedule!r}")
            elif spec.suspend:
                b.suspended()
            return self.next_tick_delay(obj, spec, b)

        async with self.ctx.lock(f"prune:{url}"):
            vendor = await client.prune_status()
            other = self._other_runner(obj, url)
            if other is not None:
                b["phase"] = "Waiting"
                b.progressing(
                    WAITING,
                    f"StoragePrune {other} is running a prune on {spec.connection.url}; starting after it",
                )
                return poll
            token, handled = request
            if vendor is not None and vendor.status == "running":
                return self._adopt_foreign(b, events, vendor, token, handled, poll)
            # Step 2 of the module docstring: the request goes to status before the start.
            b.update(
                {
                    "phase": "Pending",
                    "runStartedFor": token,
                    "startedByUs": True,
                    "pendingSince": iso(),
                    **handled,
                }
            )
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
            b["dryRun"] = spec.dry_run
            b.progressing("Starting", f"starting a {'dry-run ' if spec.dry_run else ''}prune ({token})")
            await self.ctx.write_status(obj, b.result())
            self._running[url] = obj.uid
            try:
                await client.prune_start(
                    dry_run=spec.dry_run,
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
            except BaseException:
                self._running.pop(url, None)
                raise
            events.append(
                Event(
                    "Normal",
                    "PruneStarted",
                    f"started a {'dry-run ' if spec.dry_run else ''}prune of unreferenced data ({token})",
                )
            )
            b["phase"] = "Running"
            b["pendingSince"] = None
            b.progressing("Running", "prune started")
            return min(poll, 2.0)

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
            since = parse_time(b.get("pendingSince"))
            started = vendor.timing.started_at_millis if vendor is not None and vendor.timing else None
            ours = (
                vendor is not None
                and started is not None
                and since is not None
                and started / 1000 >= since.timestamp() - 1
            )
            if not ours:
                # Crashed between writing Pending and starting: the start never happened.
                b["phase"] = None
                token = b.get("runStartedFor")
                b["runStartedFor"] = None
                if token and str(token).startswith("requested-at:"):
                    b["lastHandledRequestedAt"] = None
                if token and str(token).startswith("schedule:"):
                    b["lastScheduleTime"] = None
                return await self._step(obj, spec, b, events, poll)
            b["phase"] = "Running"
            b["pendingSince"] = None
        if vendor is None:
            b.progressing("Running", "waiting for Artifactory to report the prune")
            return poll
        if b.get("startedByUs"):
            self._running[url] = obj.uid
        b.update(progress_fields(vendor))
        b.set_condition("Synced", True, "Polled", "")
        if vendor.status == "running":
            reason = ALREADY_RUNNING if not b.get("startedByUs") else "Running"
            b.progressing(
                reason,
                f"pruning: {b['progress']} directories ({b['percent']}%), {b['report']['reclaimed']} reclaimed",
            )
            return poll
        return self._finish(obj, spec, b, events, vendor, url)

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
        if (
            not spec.stop_on_delete
            or obj.status.get("phase") not in ACTIVE
            or not obj.status.get("startedByUs")
        ):
            return None
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
