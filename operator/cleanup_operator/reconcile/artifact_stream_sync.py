"""ArtifactStreamSync: Harness artifact stream clean-up, or a SourceCraft CI run's artifact inventory.

A sync runs when the spec changed, when the requested-at annotation has a new value, or when the
interval (or schedule tick) is due since ``lastSyncedAt`` — so an operator restart does not repeat
a Harness clean-up that just ran. Unsupported and not-found Harness streams are permanent: they
are not tried again until the spec changes.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from ..api.artifact_stream_sync import (
    ARTIFACT_STREAM_SYNC,
    ArtifactStreamSyncSpec,
    HarnessSource,
    SourceCraftSource,
)
from ..api.common import RECONCILE_AT, parse_duration
from ..credentials import CredentialsError
from ..runtime import Context, Event, Obj, Outcome, jittered
from ..schedule import Cron
from ..vendors import harness, sourcecraft
from ..vendors.errors import AuthError, RateLimitedError, VendorError
from .common import (
    InvalidSpec,
    failure_outcome,
    interval_of,
    invalid_spec_outcome,
    new_request,
    note_reconcile_request,
    parse_spec,
    refuse_request,
    request_refusal,
    was_stalled_with,
)
from .conditions import BACKOFF, StatusBuilder, iso, now, parse_time

log = logging.getLogger(__name__)

MAX_ARTIFACTS = 100
PERMANENT = ("Unsupported", "NotFound")
ARTIFACTS_MISSING = "ArtifactsMissing"


class ArtifactStreamSyncReconciler:
    kind = ARTIFACT_STREAM_SYNC

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._failures: dict[str, int] = {}

    def _due(self, obj: Obj, spec: ArtifactStreamSyncSpec, b: StatusBuilder) -> tuple[bool, float]:
        """Whether a sync is due now, and otherwise the seconds until it is."""
        if obj.status.get("observedGeneration") != obj.generation:
            return True, 0.0
        if new_request(obj, b):
            return True, 0.0
        retry = obj.annotations.get(RECONCILE_AT)
        # A harmless re-sync: SourceCraft is only read; a Harness clean-up is made again only when
        # the last one did not complete (never ahead of its interval otherwise).
        if (
            retry
            and retry != b.get("lastHandledReconcileAt")
            and (spec.source_craft is not None or not b.is_true("Ready"))
        ):
            return True, 0.0
        times = [t for t in (parse_time(b.get("lastSyncedAt")), parse_time(b.get("lastAttemptAt"))) if t]
        last = max(times) if times else None
        if last is None:
            return True, 0.0
        if spec.schedule:
            tick = Cron.parse(spec.schedule).next_after(last)
            wait = (tick - now()).total_seconds()
        else:
            wait = (last + dt.timedelta(seconds=parse_duration(spec.interval)) - now()).total_seconds()
        return wait <= 0, max(1.0, jittered(wait, 0.05))

    @staticmethod
    def _after_sync(spec: ArtifactStreamSyncSpec) -> float:
        """Seconds from a sync just made to the next one: the next tick, or the interval with jitter."""
        if spec.schedule:
            return max(1.0, (Cron.parse(spec.schedule).next_after(now()) - now()).total_seconds())
        return interval_of(spec.interval)

    async def reconcile(self, obj: Obj) -> Outcome:
        try:
            spec = parse_spec(ArtifactStreamSyncSpec, obj)
            if spec.schedule:
                Cron.parse(spec.schedule)
        except (InvalidSpec, ValueError) as exc:
            return invalid_spec_outcome(obj, InvalidSpec(str(exc)))
        b = obj.builder()
        b["source"] = "harness" if spec.harness else "sourceCraft"
        events: list[Event] = []
        requested = new_request(obj, b)
        refusal = request_refusal(obj, requested, suspended=spec.suspend) if requested else None
        if requested and refusal:
            refuse_request(b, events, requested, refusal)
            b["lastRefusal"] = refusal
        if spec.suspend:
            note_reconcile_request(obj, b)
            b.suspended()
            if refusal:
                b.set_condition("Reconciling", False, "Suspended", f"spec.suspend is true: {refusal}")
            b.observe()
            return Outcome(b.result(), None, events)
        due, wait = self._due(obj, spec, b)
        note_reconcile_request(obj, b)
        if not due and b.get("inventory", {}).get("runStatus") not in ("created", "prepared", "processing"):
            return Outcome(b.result(), wait, events)
        if requested and not refusal:
            b["lastHandledRequestedAt"] = requested
            b["lastRefusal"] = None
        attempt = self._failures.get(obj.uid, 0)
        secret_name = (
            spec.harness.api_key_secret_ref.name if spec.harness else spec.source_craft.token_secret_ref.name  # type: ignore[union-attr]
        )
        # Computed before any vendor call: nothing after a clean-up may fail before its result is
        # recorded (a failure there would repeat the clean-up on every retry).
        after = self._after_sync(spec)
        try:
            if spec.harness:
                requeue = await self._harness(obj, spec, spec.harness, b, events, after)
            else:
                assert spec.source_craft is not None
                requeue = await self._sourcecraft(obj, spec, spec.source_craft, b, events, after)
        except (VendorError, CredentialsError) as exc:
            self._failures[obj.uid] = attempt + 1
            failure, retry = failure_outcome(b, exc, attempt, secret=f"{obj.namespace}/{secret_name}")
            b["lastAttemptAt"] = iso() if failure.stalled else b.get("lastAttemptAt")
            if failure.stalled and not was_stalled_with(obj, failure.reason):
                events.append(Event("Warning", failure.reason, failure.message))
            b.observe()
            return Outcome(b.result(), retry if retry is not None else interval_of(spec.interval), events)
        self._failures.pop(obj.uid, None)
        b.observe()
        return Outcome(b.result(), requeue, events)

    # Harness.

    async def _harness(
        self,
        obj: Obj,
        spec: ArtifactStreamSyncSpec,
        src: HarnessSource,
        b: StatusBuilder,
        events: list[Event],
        after: float,
    ) -> float:
        opts = await self.ctx.credentials.keyed_options(
            obj.namespace, src.url, src.api_key_secret_ref, src.ca_secret_ref, ("x-api-key", "{}")
        )
        limiter = self.ctx.harness_limiters.get(f"{src.url.rstrip('/')}|{src.account_id}")
        client = harness.HarnessClient(self.ctx.client_for(opts), src.account_id, limiter=limiter)

        spec_changed = obj.status.get("observedGeneration") != obj.generation
        previous = {s["id"]: s for s in (b.get("streams") or []) if isinstance(s, dict)}
        results: list[dict[str, Any]] = []
        retry_in: float | None = None
        for stream_id in dict.fromkeys(src.artifact_stream_ids):  # each once, whatever the spec says
            prev = previous.get(stream_id)
            if prev and prev.get("state") in PERMANENT and not spec_changed:
                results.append(prev)
                continue
            if retry_in is not None:  # rate limited: leave the rest for the next attempt
                results.append(
                    prev or {"id": stream_id, "state": "Failed", "message": "not tried yet: rate limited"}
                )
                continue
            try:
                result = await client.artifact_cleanup(stream_id)
            except RateLimitedError as exc:
                retry_in = max(BACKOFF.delay(self._failures.get(obj.uid, 0)), exc.retry_after or 0.0)
                results.append(
                    prev or {"id": stream_id, "state": "Failed", "message": f"rate limited: {exc}"}
                )
                continue
            except AuthError:
                raise
            except VendorError as exc:
                if not exc.retryable:
                    raise
                retry_in = BACKOFF.delay(self._failures.get(obj.uid, 0))
                results.append(
                    {
                        "id": stream_id,
                        "state": "Failed",
                        "message": str(exc),
                        "lastSyncedAt": (prev or {}).get("lastSyncedAt"),
                    }
                )
                continue
            entry: dict[str, Any] = {"id": stream_id, "state": str(result.outcome), "message": result.message}
            entry["lastSyncedAt"] = (
                iso() if result.outcome == "Succeeded" else (prev or {}).get("lastSyncedAt")
            )
            results.append({k: v for k, v in entry.items() if v is not None})
        for entry in results:
            if entry.get("lastSyncedAt") is None:
                entry.pop("lastSyncedAt", None)

        counts = {
            state: sum(1 for r in results if r["state"] == state)
            for state in ("Succeeded", "Unsupported", "NotFound", "Failed")
        }
        total = len(results)
        b["streams"] = results
        b["synced"] = f"{counts['Succeeded']}/{total}"
        if retry_in is None and counts["Succeeded"]:
            b["lastSyncedAt"] = iso()
            b["lastAttemptAt"] = None
        elif retry_in is None:  # every stream refused (unsupported or not found): checked, not synced
            b["lastAttemptAt"] = iso()
        if counts["Succeeded"] == total:
            b.ready("Succeeded", f"{total} artifact stream(s) cleaned up")
        else:
            message = (
                f"{counts['Succeeded']} of {total} streams succeeded; {counts['Unsupported']} unsupported,"
                f" {counts['NotFound']} not found, {counts['Failed']} failed"
            )
            if retry_in is not None:
                b.progressing("PartialFailure", message + "; retrying", synced=False)
            else:
                b.set_condition("Ready", False, "PartialFailure", message)
                b.set_condition("Synced", True, "PartialFailure", message)
                b.set_condition("Reconciling", False, "PartialFailure", "")
                b.set_condition(
                    "Stalled",
                    counts["Failed"] == 0,
                    "PartialFailure",
                    message if counts["Failed"] == 0 else "",
                )
            previous_synced = obj.status.get("synced")
            if previous_synced != b["synced"] or not obj.status.get("streams"):
                events.append(Event("Warning", "PartialFailure", message))
        if retry_in is not None:
            return retry_in
        return after

    # SourceCraft.

    async def _sourcecraft(
        self,
        obj: Obj,
        spec: ArtifactStreamSyncSpec,
        src: SourceCraftSource,
        b: StatusBuilder,
        events: list[Event],
        after: float,
    ) -> float:
        opts = await self.ctx.credentials.keyed_options(
            obj.namespace, src.url, src.token_secret_ref, src.ca_secret_ref, ("Authorization", "Bearer {}")
        )
        client = sourcecraft.SourceCraftClient(self.ctx.client_for(opts))
        if src.run:
            run = await client.get_run(src.org, src.repo, src.run)
        else:
            latest = await client.latest_run(src.org, src.repo)
            if latest is None:
                b.progressing("NoRuns", f"repository {src.org}/{src.repo} has no CI runs yet")
                return interval_of(spec.interval)
            run = latest
        inventory: dict[str, Any] = dict(b.get("inventory") or {})
        if inventory.get("run") != run.ref:
            # A new latest run: nothing of the previous run's inventory may show under its id.
            inventory = {}
            b["synced"] = None
            b.set_condition(ARTIFACTS_MISSING, "Unknown", "NewRun", f"run {run.ref}: not inventoried yet")
        inventory["run"] = run.ref
        inventory["runStatus"] = run.status
        if run.is_active:
            b["inventory"] = inventory
            b.progressing("RunInProgress", f"run {run.ref} is {run.status}: waiting for it to end")
            return min(parse_duration(spec.interval), 10.0)
        artifacts = await client.get_artifacts(src.org, src.repo, run.ref, src.workflow, src.task, src.cube)
        totals = {s: 0 for s in ("registered", "success", "failed", "missing")}
        for art in artifacts:
            totals[str(art.status)] = totals.get(str(art.status), 0) + 1
        listed = [
            {
                "id": a.id,
                "localPath": a.local_path,
                "status": str(a.status),
                **({"dates": {k: v for k, v in _dates(a).items() if v}} if _dates(a) else {}),
            }
            for a in artifacts[:MAX_ARTIFACTS]
        ]
        inventory.update({"totals": totals, "artifacts": listed, "truncated": len(artifacts) > MAX_ARTIFACTS})
        b["inventory"] = inventory
        b["synced"] = f"{totals['success']}/{len(artifacts)}"
        b["lastSyncedAt"] = iso()
        b["lastRequestId"] = None
        bad = totals["missing"] + totals["failed"]
        shown = obj.status.get("inventory") or {}
        before = (shown.get("totals") or {}) if shown.get("run") == run.ref else {}
        bad_before = int(before.get("missing", 0)) + int(before.get("failed", 0))
        if bad:
            message = f"run {run.ref}: {totals['missing']} missing and {totals['failed']} failed of {len(artifacts)} artifacts"
            b.set_condition(ARTIFACTS_MISSING, True, ARTIFACTS_MISSING, message)
            if bad != bad_before or not before:
                events.append(Event("Warning", ARTIFACTS_MISSING, message))
        else:
            b.set_condition(ARTIFACTS_MISSING, False, "AllPresent", "")
            if bad_before:
                events.append(
                    Event("Normal", "ArtifactsPresent", f"run {run.ref}: no missing or failed artifacts")
                )
        b.ready(
            "Succeeded",
            f"run {run.ref} ({run.status}): {len(artifacts)} artifacts, {totals['success']} obtained",
        )
        return after

    async def finalize(self, obj: Obj) -> Outcome | None:
        """Nothing to undo at the vendors: a clean-up cannot be taken back, and SourceCraft has no delete API."""
        return None


def _dates(artifact: Any) -> dict[str, Any]:
    dates = getattr(artifact, "dates", None)
    if dates is None:
        return {}
    out = {}
    for name in ("registered_at", "obtained_at", "updated_at"):
        value = getattr(dates, name, None)
        if value is not None:
            camel = "".join(w.capitalize() if i else w for i, w in enumerate(name.split("_")))
            out[camel] = value if isinstance(value, str) else iso(value)
    return out
