"""CleanupPolicy: make an Artifactory package cleanup policy match its resource, and keep it so.

Steps, in order: parse and check the spec → resolve the key and our claim on it → read the vendor
policy → create / adopt / correct it (Manage) or report differences (ObserveOnly) → start a run the
requested-at annotation asks for → follow the run. Each step owns the conditions it sets.

Ownership (Crossplane's create-pending guard): a vendor policy is ours only when Artifactory
answered our create with 2xx (``status.ownedPolicy``, origin ``Created``) or an explicit adopt named
it (origin ``Adopted``). Before the create POST, the ``create-pending`` annotation records what is
sent, in the one metadata patch that also puts the finalizer on; a definite refusal removes it; after
a crash, an existing policy counts as ours only when it is exactly what was sent. Nothing that is not
ours is ever updated, enabled, run or deleted.

Duplicate-free runs: before ``PUT …/run`` the request is written to status (``lastRun.state:
Starting``, with the newest run id Artifactory showed before). An operator that dies between that
write and the run id finds ``Starting`` and looks for a newer run in the run summaries instead of
starting another; a server too old to list runs is not asked again.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import re
import time
from typing import Any

from pydantic import ValidationError

from .. import decisions
from ..api.cleanup_policy import CLEANUP_POLICY, CleanupPolicySpec, CreatePending
from ..api.common import ADOPT, APPROVE, CREATE_PENDING, FINALIZER, Connection, parse_duration
from ..credentials import CredentialsError
from ..decisions import Act
from ..kube import KubeError
from ..runtime import Context, Event, Obj, Outcome, Retry
from ..schedule import Cron
from ..vendors import jfrog
from ..vendors.errors import AuthError, ConflictError, NotFoundError, RejectedError, VendorError
from .common import (
    REQUEST_REFUSED,
    InvalidSpec,
    budget_of,
    claim_owner,
    failure_outcome,
    interval_of,
    invalid_spec_outcome,
    jfrog_claim_url,
    jfrog_client,
    new_request,
    note_reconcile_request,
    parse_spec,
    refuse_request,
    request_refusal,
    request_time,
    waiting_for_finalizer,
    was_stalled_with,
)
from .conditions import BACKOFF, SUSPENDED, StatusBuilder, iso, now, parse_time

log = logging.getLogger(__name__)

ALREADY_EXISTS = "AlreadyExists"
IDENTITY_CHANGED = "IdentityChanged"
CONFLICT = "Conflict"
POLICY_RUNNING = "PolicyRunning"
SYNCED_REASON = "Synced"
OBSERVED = "Observed"
UNSUPPORTED = "UnsupportedByServer"
VERSION_TTL = 600.0
RUN_STATES_DONE = {"Succeeded", "Failed", "Stopped", "Refused"}

_QUARTZ_FIELDS = (
    (0, 59),  # seconds
    (0, 59),  # minutes
    (0, 23),  # hours
    (1, 31),  # day of month
    (1, 12),  # month
    (1, 7),  # day of week
)


def derive_key(name: str, explicit: str | None, project: str | None) -> str:
    """spec.policyKey, or metadata.name made a valid key (with the '<projectKey>-' prefix).

    Admission refuses new names that this would rewrite (or that already carry the prefix) when
    spec.policyKey is absent, so for them the key is the name (with the prefix) and no two names share
    a key; the rewriting stays for objects made before that rule. An explicit empty key is used as it
    is (and refused), never silently replaced by the name.
    """
    if explicit is not None:
        return explicit
    key = re.sub(r"[^a-zA-Z0-9_-]", "-", name)
    if project and not key.startswith(f"{project}-"):
        key = f"{project}-{key}"
    return key


def policy_key(obj: Obj, spec: CleanupPolicySpec) -> str:
    return derive_key(obj.name, spec.policy_key, spec.project_key)


def check_quartz(expr: str) -> None:
    """The Quartz rules the CRD checks too (api/validation.py): 6 or 7 fields of Quartz's characters,
    '?' as the whole of exactly one of day-of-month and day-of-week, and the numeric ranges of the
    values before a '/' (names like MON or JAN are left to Artifactory)."""
    fields = expr.split()
    if len(fields) not in (6, 7):
        raise InvalidSpec(f"cronExp {expr!r}: a Quartz expression has 6 or 7 fields, got {len(fields)}")
    if any(not re.fullmatch(r"[0-9*?,/LW#A-Za-z-]+", f) for f in fields):
        raise InvalidSpec(f"cronExp {expr!r}: a Quartz field holds only digits, letters and *?,/-#")
    if sum("?" in f for f in fields) != 1 or (fields[3] == "?") == (fields[5] == "?"):
        raise InvalidSpec(
            f"cronExp {expr!r}: Quartz needs '?' in day-of-month or day-of-week (exactly one of them)"
        )
    for text, (lo, hi) in zip(fields[:6], _QUARTZ_FIELDS, strict=False):
        for number in re.findall(r"[0-9]+", text.split("/")[0]):
            if not lo <= int(number) <= hi:
                raise InvalidSpec(f"cronExp {expr!r}: {number} is outside {lo}-{hi} in field {text!r}")


def desired_policy(spec: CleanupPolicySpec, key: str) -> jfrog.Policy:
    """The vendor payload for a spec (``enabled`` is managed separately through the enablement call)."""
    criteria = spec.search_criteria.model_dump(by_alias=True, exclude_none=True)
    payload: dict[str, Any] = {
        "key": key,
        "description": spec.description,
        "cronExp": spec.cron_exp,
        "durationInMinutes": spec.duration_in_minutes,
        "enabled": spec.enabled,
        "skipTrashcan": spec.skip_trashcan,
        "searchCriteria": criteria,
    }
    if spec.project_key:
        payload["projectKey"] = spec.project_key
    return jfrog.Policy.model_validate({k: v for k, v in payload.items() if v is not None})


def differences(desired: jfrog.Policy, current: jfrog.Policy) -> list[str]:
    """Top-level and searchCriteria fields that differ after normalising server-echoed defaults."""
    want, have = jfrog.normalise_policy(desired), jfrog.normalise_policy(current)
    out: list[str] = []
    for name in sorted(set(want) | set(have)):
        if name in ("enabled", "key", "projectKey"):
            continue
        if name == "searchCriteria":
            w, h = want.get(name) or {}, have.get(name) or {}
            out += [f"searchCriteria.{f}" for f in sorted(set(w) | set(h)) if w.get(f) != h.get(f)]
        elif want.get(name) != have.get(name):
            out.append(name)
    if want.get("enabled") != have.get("enabled"):
        out.append("enabled")
    return out


def policy_digest(policy: jfrog.Policy) -> str:
    """A fingerprint of a policy's body (not ``enabled``), equal for what we sent and its echo."""
    body = {k: v for k, v in jfrog.normalise_policy(policy).items() if k != "enabled"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]


def identity(url: str, key: str) -> dict[str, str]:
    return {"url": url, "key": key}


def owned_policy(status: dict[str, Any]) -> dict[str, Any] | None:
    """The vendor policy this resource owns, from status (``ownedPolicy``).

    Status written before ownership was recorded (``managed: true`` with a successful sync and no
    create in flight) counts as ownership of ``policyKey``, with the URL unknown.
    """
    owned = status.get("ownedPolicy")
    if isinstance(owned, dict) and owned.get("key"):
        return owned
    if (
        status.get("managed")
        and status.get("policyKey")
        and status.get("lastSyncedAt")
        and not status.get("createPending")
    ):
        return {"key": status["policyKey"], "origin": "Created"}
    return None


def pending_create(annotations: Any, status: dict[str, Any]) -> dict[str, Any] | None:
    """The create this resource recorded before sending it (the create-pending annotation, or
    ``status.createPending`` as earlier versions wrote it); it only counts while nothing is owned.
    An annotation that does not parse is no record: an existing policy then stays someone else's."""
    legacy = status.get("createPending")
    if isinstance(legacy, dict):
        return legacy
    raw = annotations.get(CREATE_PENDING)
    if not raw:
        return None
    try:
        return CreatePending.model_validate_json(raw).dump()
    except ValidationError:
        return None


def same_identity(record: dict[str, Any], url: str, key: str) -> bool:
    return record.get("key") == key and record.get("url", url) == url


class CleanupPolicyReconciler:
    kind = CLEANUP_POLICY
    #: It puts our finalizer on before its first vendor write (``_guard``); Kopf does not.
    adds_finalizer = True

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._failures: dict[str, int] = {}
        self._versions: dict[str, tuple[float, jfrog.ArtifactoryVersion]] = {}

    @staticmethod
    def claim_key(body: Any) -> str | None:
        spec = body.get("spec") or {}
        url = jfrog_claim_url(spec)
        if not url:
            return None
        meta = body.get("metadata") or {}
        key = derive_key(meta.get("name", ""), spec.get("policyKey"), spec.get("projectKey"))
        return f"{url}|{key}"

    def _checked(self, b: StatusBuilder) -> None:
        """A check found Artifactory matching the spec: ``lastSyncedAt`` says so, refreshed at most
        once per ``--status-report-interval`` (kubelet's nodeStatusReportFrequency), so an unchanged
        policy costs no status patch per interval and its status is never older than that."""
        last = parse_time(b.get("lastSyncedAt"))
        if last is None or (now() - last).total_seconds() >= self.ctx.status_report_interval:
            b["lastSyncedAt"] = iso()

    async def reconcile(self, obj: Obj) -> Outcome:
        try:
            spec = parse_spec(CleanupPolicySpec, obj)
            if spec.cron_exp:
                check_quartz(spec.cron_exp)
        except InvalidSpec as exc:
            return invalid_spec_outcome(obj, exc)
        b = obj.builder()
        key = policy_key(obj, spec)
        b["policyKey"] = key
        note_reconcile_request(obj, b)
        if spec.suspend:
            events: list[Event] = []
            requested = new_request(obj, b)
            if requested:
                message = request_refusal(obj, requested, suspended=True) or ""
                self._refuse_run(b, events, requested, spec.on_demand_run.dry_run, message)
            if spec.schedule:
                b["lastScheduleTime"] = iso()  # ticks while suspended never fire later
            b.suspended()
            b.observe()
            return Outcome(b.result(), None, events)

        claim = self.claim_key(obj.claim_body())
        owner = claim_owner(self.ctx, self.kind.plural, claim) if claim else None
        if owner is not None and owner[2] != obj.uid:
            # The message names no object (it may be in another namespace); the log does.
            log.info("CleanupPolicy %s: policy %s is claimed by CleanupPolicy %s", obj.ref, key, owner[1])
            b.stalled(
                CONFLICT,
                f"policy {key} on {spec.connection.url} is claimed by another resource, which was created"
                " first: only it manages the policy",
            )
            b.observe()
            return Outcome(b.result(), interval_of(spec.interval))

        events = []
        attempt = self._failures.get(obj.uid, 0)
        try:
            requeue = await self._sync(obj, spec, key, b, events)
        except (VendorError, CredentialsError) as exc:
            self._failures[obj.uid] = attempt + 1
            if isinstance(exc, ConflictError):
                reason = POLICY_RUNNING if isinstance(exc, jfrog.PolicyRunning) else exc.reason
                b.progressing(
                    reason, f"Artifactory refused the change for now, retrying: {exc}", synced=False
                )
                b.observe()
                return Outcome(b.result(), BACKOFF.delay(attempt), events)
            failure, retry = failure_outcome(
                b, exc, attempt, secret=f"{obj.namespace}/{spec.connection.secret_ref.name}"
            )
            b.observe()
            if failure.stalled and not was_stalled_with(obj, failure.reason):
                events.append(Event("Warning", failure.reason, failure.message))
            return Outcome(b.result(), retry if retry is not None else interval_of(spec.interval), events)
        self._failures.pop(obj.uid, None)
        b.observe()
        return Outcome(b.result(), requeue, events, wake_on_finalizer=waiting_for_finalizer(b))

    async def _sync(
        self, obj: Obj, spec: CleanupPolicySpec, key: str, b: StatusBuilder, events: list[Event]
    ) -> float | None:
        client = await jfrog_client(self.ctx, obj.namespace, spec.connection)
        desired = desired_policy(spec, key)
        try:
            current: jfrog.Policy | None = await client.get_policy(key)
        except NotFoundError:
            current = None

        if spec.management_policy == "ObserveOnly":
            return self._observe(spec, key, b, current)

        criteria = desired.search_criteria
        if criteria.uses_days or criteria.uses_properties:
            problems = jfrog.unsupported_features(desired, await self._version(spec.connection.url, client))
            if problems:
                b.stalled(UNSUPPORTED, "; ".join(problems))
                return interval_of(spec.interval)

        url = jfrog_claim_url(obj.spec) or spec.connection.url
        owned = owned_policy(b.data)
        pending = pending_create(obj.annotations, b.data)

        def ownership(guarded: bool) -> decisions.Decision:
            return decisions.policy_ownership(
                url=url,
                key=key,
                owned=owned,
                pending=pending,
                exists=current is not None,
                digest=policy_digest(current) if current is not None else None,
                adopt=obj.annotations.get(ADOPT),
                adopted_before=bool(b.get("adoptedPolicy")),
                guarded=guarded,
            )

        decision = ownership(obj.guarded)
        if decision.act == Act.WAIT and not obj.deleting:
            decision = ownership(True)  # the create's metadata patch puts the finalizer on first
        wrote = False
        if decision.act == Act.NOTHING:
            if decision.reason != IDENTITY_CHANGED and pending is not None:
                # A pending create that found someone else's policy is over (and must not stand in
                # the way of an adopt).
                b["createPending"] = None
                await self._forget_create(obj, CREATE_PENDING in obj.annotations)
            b["managed"] = None
            b.stalled(decision.reason, decision.message)
            return interval_of(spec.interval)
        if decision.act == Act.WAIT:
            # The finalizer's arrival wakes the object (Outcome.wake_on_finalizer); the delay is a fallback.
            b.progressing(decision.reason, decision.message)
            return 5.0
        if decision.act == Act.CONFIRM:
            # Crashed (or lost the answer) after asking Artifactory to create it: exactly what we sent.
            b["createPending"] = None
            owned = {**identity(url, key), "origin": "Created"}
            b["ownedPolicy"] = owned
            events.append(Event("Normal", "Created", decision.message))
        sent = desired.model_copy(update={"enabled": False})
        record = {**identity(url, key), "digest": policy_digest(sent)} if decision.act == Act.CREATE else None
        if (record is not None or not obj.guarded) and not await self._guard(obj, record):
            b.progressing("WaitingForFinalizer", "waiting for the finalizer before writing to the policy")
            return 5.0
        if decision.act == Act.CREATE:
            if not await self._create(obj, spec, key, url, b, client, sent):
                return interval_of(spec.interval)
            if owned is not None and obj.status.get("lastSyncedAt"):
                self._count_drift(b, events, f"policy {key} was deleted in Artifactory; recreated it")
            else:
                events.append(Event("Normal", "Created", f"created cleanup policy {key} in Artifactory"))
            owned = b["ownedPolicy"]
            wrote = True
        else:
            assert current is not None
            if decision.act == Act.ADOPT:
                owned = {**identity(url, key), "origin": "Adopted"}
                b["ownedPolicy"] = owned
                b["adoptedPolicy"] = identity(url, key)
                events.append(Event("Normal", "Adopted", decision.message))
            assert owned is not None
            diffs = differences(desired, current)
            for act in decisions.policy_writes(diffs, enable=spec.enabled):
                if act == Act.UPDATE:
                    await client.update_policy(desired.model_copy(update={"enabled": current.enabled}))
                else:
                    await client.set_enabled(key, act == Act.ENABLE)
                wrote = True
            if wrote:
                spec_changed = obj.status.get("observedGeneration") != obj.generation or (
                    owned.get("origin") == "Adopted" and not obj.status.get("ownedPolicy")
                )
                if spec_changed:
                    events.append(Event("Normal", "Updated", f"updated policy {key}: {', '.join(diffs)}"))
                else:
                    self._count_drift(b, events, f"corrected drift in policy {key}: {', '.join(diffs)}")
        if "url" not in owned:  # status from before ownership was recorded
            b["ownedPolicy"] = {**identity(url, key), "origin": owned.get("origin", "Created")}
        if decision.act == Act.CREATE:
            # Artifactory answered 2xx to the create and to the enablement: that is what it holds
            # (the next check reads it back), so no confirming GET (the floor's three calls).
            current = desired.model_copy(update={"enabled": spec.enabled})
            b["lastSyncedAt"] = iso()
        elif wrote or current is None:
            current = await client.get_policy(key)
            b["lastSyncedAt"] = iso()
        else:
            self._checked(b)
        b["enabled"] = current.enabled
        b["differences"] = None
        b["managed"] = True

        poll = await self._runs(obj, spec, key, b, events, client, current)
        b.ready(SYNCED_REASON, f"policy {key} matches the spec")
        held = b.get("pendingApproval")
        if isinstance(held, dict) and held.get("reason"):
            # The policy is in sync; the real run waits for a human (Argo CD: Degraded).
            decision = decisions.Decision(Act.NOTHING, str(held["reason"]), str(held.get("message", "")))
            b.set_condition("Ready", False, decision.reason, decision.message)
            b.set_condition("Stalled", True, decision.reason, decision.message)
        if poll is not None:
            b.set_condition(
                "Reconciling", True, "RunInProgress", f"run {b['lastRun'].get('runId')} in progress"
            )
            return poll
        tick = self.next_tick_delay(obj, spec, b)
        return min(interval_of(spec.interval), tick) if tick is not None else interval_of(spec.interval)

    async def _guard(self, obj: Obj, record: dict[str, Any] | None) -> bool:
        """Put our finalizer on (Kopf's string; Kopf adds it to a CleanupPolicy only once it is on,
        see handlers.py) and, before a create, the create-pending record of what is about to be
        sent: one metadata patch, on the version we saw. True once the API server holds both; False
        when the object is being deleted or gone: then nothing is created, adopted or changed."""
        if obj.deleting or not obj.resource_version:
            return False
        finalizers, version = obj.finalizers, obj.resource_version
        value = (
            json.dumps({**record, "since": iso()}, separators=(",", ":"), sort_keys=True) if record else None
        )
        kube = self.ctx.kube
        try:
            for _ in range(3):
                if value is None and FINALIZER in finalizers:
                    return True
                self.ctx.ensure_leader("finalizer patch")  # a write, like a status patch
                wanted = finalizers if FINALIZER in finalizers else (*finalizers, FINALIZER)
                if await kube.patch_metadata(
                    self.kind.plural,
                    obj.namespace,
                    obj.name,
                    version,
                    finalizers=wanted,
                    annotations={CREATE_PENDING: value} if value else None,
                ):
                    return True
                # Changed since we saw it (Kopf may just have added the same finalizer): read it again.
                fresh = await kube.get_object(self.kind.plural, obj.namespace, obj.name)
                meta = (fresh or {}).get("metadata") or {}
                if meta.get("uid") != obj.uid or meta.get("deletionTimestamp"):
                    return False
                finalizers, version = tuple(meta.get("finalizers") or ()), str(meta.get("resourceVersion"))
        except KubeError as exc:
            log.info("CleanupPolicy %s: could not add the finalizer (%s); not writing yet", obj.ref, exc)
        return False

    async def _forget_create(self, obj: Obj, recorded: bool) -> None:
        """Remove the create-pending record (``recorded``: this reconcile wrote it, or the object had
        it) after a definite refusal: nothing was created. Should that fail, the next reconcile finds
        the record again with no policy of that body, and tries again."""
        if not recorded:
            return
        self.ctx.ensure_leader("create-pending patch")
        try:
            await self.ctx.kube.patch_metadata(
                self.kind.plural, obj.namespace, obj.name, None, annotations={CREATE_PENDING: None}
            )
        except KubeError as exc:
            log.info("CleanupPolicy %s: could not remove the create-pending record (%s)", obj.ref, exc)

    async def _create(
        self,
        obj: Obj,
        spec: CleanupPolicySpec,
        key: str,
        url: str,
        b: StatusBuilder,
        client: jfrog.JFrogClient,
        sent: jfrog.Policy,
    ) -> bool:
        """Send the create recorded by ``_guard``; True when Artifactory confirmed it."""
        try:
            await client.create_policy(sent)
        except jfrog.PolicyExists:
            # Someone else created it first: a definite refusal, and not ours.
            await self._forget_create(obj, True)
            b["createPending"] = None
            b["managed"] = None
            b.stalled(
                ALREADY_EXISTS,
                f"Artifactory refused to create policy {key}: a policy with that key already exists and is"
                f' not this resource\'s. It is left untouched. Annotate the resource with {ADOPT}: "{key}"'
                " to adopt it",
            )
            return False
        except (RejectedError, AuthError, NotFoundError):
            await self._forget_create(obj, True)  # a definite refusal: nothing was created
            b["createPending"] = None
            raise
        # Confirmed (2xx): from here on the policy is ours. Recorded with the rest of this reconcile's
        # status: should the operator die first, the pending record confirms it (same body).
        b["createPending"] = None
        b["ownedPolicy"] = {**identity(url, key), "origin": "Created"}
        b["managed"] = True
        if spec.enabled:
            await client.set_enabled(key, True)
        return True

    @staticmethod
    def _refuse_run(
        b: StatusBuilder,
        events: list[Event],
        requested: str | None,
        dry: bool,
        message: str,
        reason: str = REQUEST_REFUSED,
    ) -> None:
        """Record a run that will not start, and why (a requested-at value is answered by it)."""
        refused = {"requestedAt": requested, "dryRun": dry, "state": "Refused", "message": message}
        b["lastRun"] = {k: v for k, v in refused.items() if v is not None}
        if requested:
            refuse_request(b, events, requested, message, reason=reason)
        else:
            events.append(Event("Warning", reason, message))

    @staticmethod
    def _due_tick(obj: Obj, spec: CleanupPolicySpec, b: StatusBuilder) -> str | None:
        """The latest spec.schedule tick not acted on yet (missed ticks collapse; ticks missed while
        suspended never fire)."""
        if not spec.schedule:
            return None
        since = parse_time(b.get("lastScheduleTime")) or parse_time(obj.created) or now()
        if (b.condition("Reconciling") or {}).get("reason") == SUSPENDED:
            since = max(since, now())  # just resumed: what was missed while suspended never fires
            b["lastScheduleTime"] = iso(since)
        tick = Cron.parse(spec.schedule).last_due(since, now())
        return iso(tick) if tick is not None else None

    @staticmethod
    def next_tick_delay(obj: Obj, spec: CleanupPolicySpec, b: StatusBuilder) -> float | None:
        if not spec.schedule:
            return None
        since = parse_time(b.get("lastScheduleTime")) or parse_time(obj.created) or now()
        tick = Cron.parse(spec.schedule).next_after(max(since, now() - dt.timedelta(minutes=1)))
        return max(1.0, (tick - now()).total_seconds() + 0.5)

    @staticmethod
    async def _listed_runs(client: jfrog.JFrogClient, key: str) -> list[jfrog.RunSummary] | None:
        """The policy's runs, or None when this Artifactory cannot list them (before 7.117: 404)."""
        try:
            return await client.run_summaries(key)
        except NotFoundError:
            return None

    async def _version(self, url: str, client: jfrog.JFrogClient) -> jfrog.ArtifactoryVersion:
        """The server's version, read at most every VERSION_TTL seconds per URL (it gates features)."""
        cached = self._versions.get(url)
        if cached is not None and time.monotonic() - cached[0] < VERSION_TTL:
            return cached[1]
        version = await client.version()
        self._versions[url] = (time.monotonic(), version)
        return version

    def _observe(
        self, spec: CleanupPolicySpec, key: str, b: StatusBuilder, current: jfrog.Policy | None
    ) -> float:
        b["managed"] = None
        if current is None:
            b["enabled"] = None
            b["differences"] = None
            b.stalled("NotFound", f"ObserveOnly: no cleanup policy with key {key} in Artifactory")
            return interval_of(spec.interval)
        diffs = differences(desired_policy(spec, key), current)
        b["enabled"] = current.enabled
        b["differences"] = diffs or None
        if b.condition("Ready") is None:
            b["lastSyncedAt"] = iso()
        self._checked(b)
        message = "matches the spec" if not diffs else f"differs from the spec in {', '.join(diffs)}"
        b.ready(OBSERVED, f"ObserveOnly: policy {key} {message}")
        return interval_of(spec.interval)

    @staticmethod
    def _count_drift(b: StatusBuilder, events: list[Event], message: str) -> None:
        b["driftCorrections"] = int(b.get("driftCorrections") or 0) + 1
        events.append(Event("Warning", "DriftCorrected", message))

    async def _runs(
        self,
        obj: Obj,
        spec: CleanupPolicySpec,
        key: str,
        b: StatusBuilder,
        events: list[Event],
        client: jfrog.JFrogClient,
        current: jfrog.Policy,
    ) -> float | None:
        """Start the run the annotation asks for, once; follow a run in progress. Returns a poll delay.

        With ``spec.safety``, a real run starts as a dry run (``gate``); when it ends, the budget
        decides whether the real run follows at once or waits for an approval of that dry run.
        """
        poll = parse_duration(spec.on_demand_run.poll_interval)
        last: dict[str, Any] | None = dict(b.get("lastRun") or {})
        assert last is not None
        gated = spec.safety is not None and not spec.on_demand_run.dry_run
        requested = new_request(obj, b)
        tick = self._due_tick(obj, spec, b)
        if tick is not None and not requested and last.get("state") not in ("Starting", "Running"):
            # A tick of spec.schedule asks for a run as requested-at does, through the same path.
            b["lastScheduleTime"] = tick
            b["pendingApproval"] = None
            template: dict[str, Any] = {"scheduledFor": tick, "dryRun": spec.on_demand_run.dry_run or gated}
            if gated:
                template["gate"] = True
            last = await self._start(
                obj, key, b, events, client, current, template, await self._listed_runs(client, key)
            )
            if last is None:
                return None
        if requested and not (last.get("state") == "Starting" and last.get("requestedAt") == requested):
            dry = spec.on_demand_run.dry_run or gated
            refusal = request_refusal(obj, requested, suspended=False)
            if refusal is not None:
                self._refuse_run(b, events, requested, dry, refusal)
                return None
            b["pendingApproval"] = None  # a new request replaces a real run held for approval
            previous = await self._listed_runs(client, key)
            found = None
            if previous is not None and not obj.status.get("lastHandledRequestedAt") and not gated:
                # Status may have been lost: a run started since the request answers it already.
                found = _run_since(previous, requested, dry)
            if found is not None:
                last = {"requestedAt": requested, "dryRun": dry, **found}
                b["lastRun"] = last
                b["lastHandledRequestedAt"] = requested
                events.append(
                    Event("Normal", "RunFound", f"run {found['runId']} of policy {key} already answers it")
                )
            else:
                template = {"requestedAt": requested, "dryRun": dry}
                if gated:
                    template["gate"] = True
                last = await self._start(obj, key, b, events, client, current, template, previous)
                if last is None:
                    return None

        if last.get("state") == "Starting":
            # Crashed (or lost the answer, or was refused for now) between recording the start and
            # recording the run id: look for the run before starting it, so one request makes one run.
            last = await self._resume(obj, key, b, events, client, last)
            if last is None:
                return None

        approved = await self._approval(obj, spec, key, b, events, client, current)
        if approved is not None:
            last = approved

        if last.get("state") in ("Running", "Starting") and last.get("runId") is not None:
            summary = await self._summary(client, key, int(last["runId"]))
            if summary is None:
                return poll
            last.update(summary)
            b["lastRun"] = last
            if last.get("state") not in RUN_STATES_DONE:
                return poll
            events.append(_run_event(key, last))
            if last.get("gate"):
                return await self._after_gate(obj, spec, key, b, events, client, current, last, poll)
            if last.get("allowedBy") and b.get("lastDryRun"):
                self._compare_with_dry_run(b, events, key, last)
        return None

    async def _start(
        self,
        obj: Obj,
        key: str,
        b: StatusBuilder,
        events: list[Event],
        client: jfrog.JFrogClient,
        current: jfrog.Policy,
        template: dict[str, Any],
        previous: list[jfrog.RunSummary] | None,
    ) -> dict[str, Any] | None:
        """Record the start (with the newest run id Artifactory lists), then start the run."""
        requested = template.get("requestedAt")
        decision = decisions.run_start(enabled=current.enabled)
        if decision.act != Act.RUN:
            message = f"policy {key}: {decision.message}"
            self._refuse_run(b, events, requested, bool(template["dryRun"]), message, reason=decision.reason)
            return None

        last = {**template, "state": "Starting", "startedAt": iso()}
        if previous is not None:
            last["previousRunId"] = max((r.run_id for r in previous), default=0)
        b["lastRun"] = last
        if requested:
            b["lastHandledRequestedAt"] = requested
        await self.ctx.write_status(obj, b.result())
        return await self._launch(obj, key, b, events, client, last, summaries=previous is not None)

    async def _launch(
        self,
        obj: Obj,
        key: str,
        b: StatusBuilder,
        events: list[Event],
        client: jfrog.JFrogClient,
        last: dict[str, Any],
        *,
        summaries: bool,
    ) -> dict[str, Any] | None:
        dry = bool(last.get("dryRun"))
        try:
            run_id = await client.run_policy(key, dry_run=dry)
        except (RejectedError, AuthError, NotFoundError) as exc:
            # A definite refusal: the run did not start, and this request is answered.
            message = f"Artifactory refused the run: {exc}"
            self._refuse_run(b, events, last.get("requestedAt"), dry, message, reason="RunRefused")
            if isinstance(exc, AuthError):
                raise
            return None
        last = {**last, "runId": run_id, "state": "Running"}
        last.pop("previousRunId", None)
        if not summaries:
            last.update(
                state="Started",
                message="this Artifactory cannot report run results (run summaries need 7.117):"
                " the run was started, and its results are only shown in Artifactory",
            )
        kind = "dry run" if dry else "run"
        events.append(Event("Normal", "RunStarted", f"started {kind} {run_id} of policy {key}"))
        b["lastRun"] = last
        # Written at once: the run id must survive a crash before the end of this reconcile.
        await self.ctx.write_status(obj, b.result())
        return last

    async def _resume(
        self,
        obj: Obj,
        key: str,
        b: StatusBuilder,
        events: list[Event],
        client: jfrog.JFrogClient,
        last: dict[str, Any],
    ) -> dict[str, Any] | None:
        if last.get("requestedAt"):
            b["lastHandledRequestedAt"] = last["requestedAt"]
        previous = await self._listed_runs(client, key)
        if previous is None:
            last = {
                **last,
                "state": "Unknown",
                "message": "the operator restarted while starting this run, and this Artifactory cannot list"
                " runs (run summaries need 7.117): check Artifactory; set a new requested-at to run again",
            }
            last.pop("previousRunId", None)
            b["lastRun"] = last
            events.append(Event("Warning", "RunUnknown", last["message"]))
            return None
        found = _find_started_run(previous, last)
        if found is None:
            return await self._launch(obj, key, b, events, client, last, summaries=True)
        last = {**last, **found}
        last.pop("previousRunId", None)
        b["lastRun"] = last
        events.append(Event("Normal", "RunFound", f"found run {found['runId']} of policy {key}"))
        await self.ctx.write_status(obj, b.result())
        return last

    async def _after_gate(
        self,
        obj: Obj,
        spec: CleanupPolicySpec,
        key: str,
        b: StatusBuilder,
        events: list[Event],
        client: jfrog.JFrogClient,
        current: jfrog.Policy,
        last: dict[str, Any],
        poll: float,
    ) -> float | None:
        """A gating dry run ended: start the real run within the budget, or hold it for approval."""
        b["lastDryRun"] = {k: v for k, v in last.items() if k != "gate"}
        dry = _dry_run_of(last, since=iso())
        decision = decisions.real_run(
            budget_of(spec.safety), dry, approval=None, used=b.get("lastApprovedDryRun"), now=time.time()
        )
        if decision.act == Act.RUN:
            events.append(Event("Normal", "RealRunAllowed", decision.message))
            started = await self._start_real(obj, key, b, events, client, current, last, dry.id)
            return poll if started else None
        b["pendingApproval"] = {
            "dryRunId": dry.id,
            "reason": decision.reason,
            "message": decision.message,
            "since": iso(),
        }
        events.append(Event("Warning", decision.reason, decision.message))
        return None

    async def _start_real(
        self,
        obj: Obj,
        key: str,
        b: StatusBuilder,
        events: list[Event],
        client: jfrog.JFrogClient,
        current: jfrog.Policy,
        gate: dict[str, Any],
        dry_id: str,
    ) -> dict[str, Any] | None:
        """Start the real run a gating dry run allowed (by its figures or an approval)."""
        template: dict[str, Any] = {"dryRun": False, "allowedBy": dry_id}
        for field in ("requestedAt", "scheduledFor"):  # what the dry run answered, the real run answers
            if gate.get(field):
                template[field] = gate[field]
        return await self._start(
            obj, key, b, events, client, current, template, await self._listed_runs(client, key)
        )

    async def _approval(
        self,
        obj: Obj,
        spec: CleanupPolicySpec,
        key: str,
        b: StatusBuilder,
        events: list[Event],
        client: jfrog.JFrogClient,
        current: jfrog.Policy,
    ) -> dict[str, Any] | None:
        """An approve annotation: start the held real run it names (once), or say why not."""
        value = obj.annotations.get(APPROVE)
        if not value or value == b.get("lastHandledApproval"):
            return None
        b["lastHandledApproval"] = value
        pending = b.get("pendingApproval") or {}
        used = b.get("lastApprovedDryRun")
        refusal = decisions.approval_refusal(value, pending.get("dryRunId"), used)
        if refusal is None and pending and b.get("lastDryRun"):
            dry = _dry_run_of(b["lastDryRun"], since=pending.get("since"))
            decision = decisions.real_run(
                budget_of(spec.safety), dry, approval=value, used=used, now=time.time()
            )
            if decision.act == Act.RUN:
                b["pendingApproval"] = None
                b["lastApprovedDryRun"] = dry.id
                events.append(Event("Normal", "RunApproved", decision.message))
                return await self._start_real(obj, key, b, events, client, current, b["lastDryRun"], dry.id)
            refusal = decision.message
        if refusal is not None:
            b["lastRefusal"] = refusal
            events.append(Event("Warning", "ApprovalRefused", refusal))
        return None

    @staticmethod
    def _compare_with_dry_run(b: StatusBuilder, events: list[Event], key: str, last: dict[str, Any]) -> None:
        """A real run that deleted more than the dry run that allowed it said: flag it."""
        dry = _dry_run_of(b["lastDryRun"], since=None)
        if str(last.get("allowedBy")) != dry.id:
            return
        beyond = decisions.exceeded_dry_run(
            dry,
            int(last.get("packagesDeleted") or 0),
            int(last.get("versionsDeleted") or 0),
            int(last.get("bytesDeleted") or 0),
        )
        if beyond:
            message = f"run {last.get('runId')} of policy {key} deleted more than its dry run said: {'; '.join(beyond)}"
            last["message"] = message
            b["lastRun"] = last
            events.append(Event("Warning", "RunExceededDryRun", message))

    async def _summary(self, client: jfrog.JFrogClient, key: str, run_id: int) -> dict[str, Any] | None:
        for summary in await client.run_summaries(key):
            if summary.run_id == run_id:
                return _last_run_fields(summary)
        return None

    async def finalize(self, obj: Obj) -> Outcome | None:
        """Delete the policy this resource owns: disable it, stop its runs (ours or its cron's), delete.

        A policy that is not ours (never confirmed created, nor adopted) is never touched.
        """
        try:
            spec = parse_spec(CleanupPolicySpec, obj)
        except InvalidSpec:
            return None
        observe_only = spec.management_policy == "ObserveOnly"
        owned = owned_policy(obj.status)
        pending = pending_create(obj.annotations, obj.status)
        if owned is None and pending is None:
            return None  # nothing of ours to look at (not even a create in flight)
        if spec.deletion_policy != "Delete" or observe_only:
            return None
        record = owned if owned is not None else pending
        assert isinstance(record, dict)
        key = str(record["key"])
        # The connection the policy was made through (identity fields are immutable at admission).
        conn = spec.connection
        if record.get("url") and record["url"] != (jfrog_claim_url(obj.spec) or conn.url):
            conn = Connection.model_validate({**conn.dump(), "url": record["url"]})
        b = obj.builder()
        try:
            client = await jfrog_client(self.ctx, obj.namespace, conn)
            try:
                current: jfrog.Policy | None = await client.get_policy(key)
            except NotFoundError:
                current = None
            decision = decisions.policy_deletion(
                deletion_policy=spec.deletion_policy,
                observe_only=observe_only,
                owned=owned is not None,
                pending=pending is not None,
                exists=current is not None,
                digest_matches=current is not None and policy_digest(current) == record.get("digest"),
            )
            if decision.act != Act.DELETE or current is None:
                return None
            if current.enabled:
                await client.set_enabled(key, False)  # no new cron run may start meanwhile
            stopping = await self._stop_runs(client, key, obj.status.get("lastRun") or {})
            try:
                await client.delete_policy(key)
            except jfrog.PolicyRunning as exc:
                message = f"waiting for run(s) {', '.join(map(str, stopping)) or '?'} of policy {key} to stop"
                b.set_condition("Ready", False, "Deleting", message)
                raise Retry(message, 2.0, status=b.result()) from exc
        except NotFoundError:
            return None
        except (VendorError, CredentialsError) as exc:
            attempt = self._failures.get(obj.uid, 0)
            self._failures[obj.uid] = attempt + 1
            failure, retry = failure_outcome(
                b, exc, attempt, secret=f"{obj.namespace}/{spec.connection.secret_ref.name}"
            )
            b.set_condition(
                "Ready",
                False,
                "DeletionBlocked",
                f"cannot delete policy {key} in Artifactory: {failure.message}. To release the resource without"
                f' deleting the policy, annotate it with cleanup.artifacts.dev/force-delete: "true"',
            )
            raise Retry(failure.message, retry or BACKOFF.delay(attempt), status=b.result()) from exc
        self._failures.pop(obj.uid, None)
        return None

    @staticmethod
    async def _stop_runs(client: jfrog.JFrogClient, key: str, last: dict[str, Any]) -> list[int]:
        """Stop every run of ``key`` in progress (the one we started and any its cron started)."""
        running: set[int] = set()
        if last.get("state") in ("Running", "Started") and last.get("runId") is not None:
            running.add(int(last["runId"]))
        with contextlib.suppress(NotFoundError):  # older servers cannot list runs
            running |= {r.run_id for r in await client.run_summaries(key) if r.state == "Running"}
        for run_id in sorted(running):
            with contextlib.suppress(NotFoundError, ConflictError):
                await client.stop_run(run_id)
        return sorted(running)


def _find_started_run(runs: list[jfrog.RunSummary], last: dict[str, Any]) -> dict[str, Any] | None:
    """After a crash between starting a run and recording it: a run newer than the newest one
    Artifactory listed before we asked (its own ids, so no clock is compared)."""
    if "previousRunId" in last:
        baseline = int(last["previousRunId"])
        candidates = [s for s in runs if s.run_id > baseline]
    else:  # a Starting record written before baselines were kept
        since = str(last.get("startedAt") or "")
        candidates = [s for s in runs if (s.started_at or "") >= since[:19]]
    candidates = [s for s in candidates if s.dry_run is None or s.dry_run == bool(last.get("dryRun"))]
    if not candidates:
        return None
    oldest = min(candidates, key=lambda s: s.run_id)
    return {"runId": oldest.run_id, **_last_run_fields(oldest)}


def _run_since(runs: list[jfrog.RunSummary], requested: str, dry: bool) -> dict[str, Any] | None:
    """A run of the same kind that started at or after the requested time, if Artifactory lists one."""
    when = request_time(requested)
    if when is None:
        return None
    for run in runs:
        started = parse_time(run.started_at)
        if started is not None and started >= when and (run.dry_run is None or run.dry_run == dry):
            return {"runId": run.run_id, **_last_run_fields(run)}
    return None


def _dry_run_of(run: dict[str, Any], since: str | None) -> decisions.DryRun:
    """A gating dry run's figures; ``since``: when we saw it end (our clock, for the approval age)."""
    seen = parse_time(since)
    return decisions.DryRun(
        id=str(run.get("runId")),
        succeeded=run.get("state") == "Succeeded",
        finished_at=seen.timestamp() if seen else None,
        packages=int(run.get("packagesDeleted") or 0),
        versions=int(run.get("versionsDeleted") or 0),
        bytes=int(run.get("bytesDeleted") or 0),
    )


def _run_event(key: str, last: dict[str, Any]) -> Event:
    what = "Dry run" if last.get("dryRun") else "Run"
    return Event(
        "Normal" if last["state"] == "Succeeded" else "Warning",
        f"Run{last['state']}",
        f"{what} {last['runId']} of policy {key} {last['state'].lower()}:"
        f" {last.get('packagesDeleted', 0)} packages, {last.get('versionsDeleted', 0)}"
        f" versions, {last.get('bytesDeleted', 0)} bytes"
        + (" would be deleted" if last.get("dryRun") else " deleted"),
    )


def _last_run_fields(summary: jfrog.RunSummary) -> dict[str, Any]:
    out = {
        "state": summary.state,
        "startedAt": summary.started_at,
        "finishedAt": summary.finished_at,
        "packagesDeleted": summary.packages_deleted,
        "versionsDeleted": summary.versions_deleted,
        "bytesDeleted": summary.bytes_deleted,
    }
    return {k: v for k, v in out.items() if v is not None}
