"""Destructive decisions as pure functions: (spec, status, what the vendor shows) → what to do, and why.

No I/O and no clock of its own (``now`` is passed in): the reconcilers gather the facts, call these,
and carry out what they return. Every ambiguity resolves to "do nothing and say why". Each branch
is bound by a unit test (tests/unit/test_decisions.py), and mutation testing (``make mutation``)
checks that no guard can be removed or inverted without a test failing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

REQUESTED_AT = "cleanup.artifacts.dev/requested-at"


class Act(StrEnum):
    NOTHING = "Nothing"  # touch nothing; the reason says why
    WAIT = "Wait"  # nothing yet; try again soon
    CREATE = "Create"
    CONFIRM = "Confirm"  # a create whose answer was lost made this policy: it is ours
    ADOPT = "Adopt"
    MANAGE = "Manage"  # ours: make it match the spec
    UPDATE = "Update"
    ENABLE = "Enable"
    DISABLE = "Disable"
    DELETE = "Delete"
    STOP = "Stop"
    RUN = "Run"
    START = "Start"  # a prune
    FOLLOW = "Follow"  # someone else's prune runs: follow it, start nothing


@dataclass(frozen=True)
class Decision:
    act: Act
    reason: str
    message: str = ""

    @property
    def acts(self) -> bool:
        return self.act not in (Act.NOTHING, Act.WAIT)


def _same(record: dict[str, Any] | None, url: str, key: str) -> bool:
    """Whether an ownership record names this policy (records from before URLs were kept match any)."""
    return record is not None and record.get("key") == key and record.get("url", url) == url


def policy_ownership(
    *,
    url: str,
    key: str,
    owned: dict[str, Any] | None,
    pending: dict[str, Any] | None,
    exists: bool,
    digest: str | None,
    adopt: str | None,
    adopted_before: bool,
    guarded: bool,
) -> Decision:
    """May this resource write to the Artifactory policy ``key`` on ``url``, and how?

    ``owned``/``pending``: the status records (``ownedPolicy``, ``createPending``); ``exists`` and
    ``digest``: whether Artifactory has the policy and the fingerprint of its body; ``adopt``: the
    adopt annotation's value; ``adopted_before``: this resource has used an adopt already;
    ``guarded``: our finalizer is on the object.
    """
    if owned is not None and not _same(owned, url, key):
        return Decision(
            Act.NOTHING,
            "IdentityChanged",
            f"this resource owns policy {owned.get('key')} on {owned.get('url', 'its Artifactory')}, but the"
            f" spec now names policy {key} on {url}: the policy's identity cannot change. Revert"
            " spec.policyKey, spec.projectKey and spec.connection.url, or create a new resource for the new"
            " policy (deleting this one removes the old policy as its deletionPolicy says)",
        )
    if owned is not None:
        if exists:
            return Decision(
                Act.MANAGE, "Owned", f"policy {key} is this resource's: it is kept as the spec says"
            )
        return Decision(Act.CREATE, "Recreate", f"policy {key} was deleted in Artifactory; recreating it")
    if pending is not None and _same(pending, url, key) and exists:
        if digest is not None and digest == pending.get("digest"):
            return Decision(Act.CONFIRM, "CreateConfirmed", f"created cleanup policy {key} in Artifactory")
        return Decision(
            Act.NOTHING,
            "AlreadyExists",
            f"a cleanup policy with key {key} exists in Artifactory but is not the one this resource asked to"
            f' create: it is left untouched. Annotate the resource with cleanup.artifacts.dev/adopt: "{key}"'
            " to adopt it",
        )
    if not exists:
        if not guarded:
            return Decision(
                Act.WAIT, "WaitingForFinalizer", "waiting for the finalizer before creating the policy"
            )
        return Decision(Act.CREATE, "Create", f"creating cleanup policy {key} in Artifactory")
    if adopt in (key, "true") and not adopted_before:
        return Decision(Act.ADOPT, "Adopted", f"adopted existing cleanup policy {key}")
    return Decision(
        Act.NOTHING,
        "AlreadyExists",
        f"a cleanup policy with key {key} already exists in Artifactory and is not this resource's: it is"
        f' left untouched. Annotate the resource with cleanup.artifacts.dev/adopt: "{key}" to adopt it',
    )


def policy_deletion(
    *,
    deletion_policy: str,
    observe_only: bool,
    owned: bool,
    pending: bool,
    exists: bool,
    digest_matches: bool,
) -> Decision:
    """Deleting the resource: delete the Artifactory policy only if it is ours and still there."""
    if deletion_policy != "Delete":
        return Decision(Act.NOTHING, "Orphan", "deletionPolicy is Orphan: the policy is kept")
    if observe_only:
        return Decision(Act.NOTHING, "ObserveOnly", "ObserveOnly never writes: the policy is kept")
    if not exists:
        return Decision(Act.NOTHING, "AlreadyGone", "the policy is gone from Artifactory")
    if owned or (pending and digest_matches):
        return Decision(Act.DELETE, "Owned", "disable the policy, stop its runs, delete it")
    return Decision(Act.NOTHING, "NotOurs", "the policy is not this resource's: it is left untouched")


def prune_stop_on_delete(*, stop_on_delete: bool, phase: str | None, started_by_us: Any) -> Decision:
    """Deleting a StoragePrune: stop only a running prune that Artifactory confirmed we started."""
    if not stop_on_delete:
        return Decision(Act.NOTHING, "StopOnDeleteOff", "spec.stopOnDelete is false: the prune goes on")
    if phase != "Running":
        return Decision(Act.NOTHING, "NotRunning", "no prune of this resource is running")
    if started_by_us is not True:
        return Decision(Act.NOTHING, "NotOurs", "the running prune was not started by this resource")
    return Decision(Act.STOP, "Owned", "stopping the prune this resource started")


@dataclass(frozen=True)
class Budget:
    """``spec.safety``: the most one real run (or prune) may delete, and who lets it start."""

    max_packages: int | None = None
    max_versions: int | None = None
    max_bytes: int | None = None
    manual: bool = False
    #: Seconds a dry run stays good for an approval.
    approval_max_age: float = 86400.0


@dataclass(frozen=True)
class DryRun:
    """What a finished dry run said it would delete."""

    id: str
    succeeded: bool
    finished_at: float | None  # epoch seconds
    packages: int = 0
    versions: int = 0
    bytes: int = 0


def over_budget(budget: Budget, dry: DryRun) -> list[str]:
    """The figures of ``dry`` above their limit, as "what N > limit M" texts."""
    over = []
    for what, value, limit in (
        ("packages", dry.packages, budget.max_packages),
        ("versions", dry.versions, budget.max_versions),
        ("bytes", dry.bytes, budget.max_bytes),
    ):
        if limit is not None and value > limit:
            over.append(f"{what} {value} > limit {limit}")
    return over


def real_run(budget: Budget, dry: DryRun, *, approval: str | None, used: str | None, now: float) -> Decision:
    """After the dry run of a request: start the real run, or hold it and say why.

    ``approval``: the approve annotation's value; ``used``: the dry run id an approval already
    started a run for (one approval allows one run).
    """
    if not dry.succeeded:
        return Decision(Act.NOTHING, "DryRunFailed", f"dry run {dry.id} did not succeed: no real run starts")
    if approval is not None and approval == dry.id and approval != used:
        if dry.finished_at is None or now - dry.finished_at > budget.approval_max_age:
            return Decision(
                Act.NOTHING,
                "ApprovalExpired",
                f"dry run {dry.id} is older than the approval age of {budget.approval_max_age:.0f}s:"
                " ask for a new run to get a fresh dry run",
            )
        return Decision(Act.RUN, "Approved", f"dry run {dry.id} was approved")
    over = over_budget(budget, dry)
    if over:
        return Decision(
            Act.NOTHING,
            "BudgetExceeded",
            f"dry run {dry.id} would delete more than the budget allows ({', '.join(over)}): approve it with"
            f" cleanup.artifacts.dev/approve={dry.id} to run it anyway",
        )
    if budget.manual:
        return Decision(
            Act.NOTHING,
            "ApprovalRequired",
            f"dry run {dry.id} would delete {dry.packages} packages, {dry.versions} versions, {dry.bytes}"
            f" bytes: approve it with cleanup.artifacts.dev/approve={dry.id}",
        )
    return Decision(Act.RUN, "WithinBudget", f"dry run {dry.id} is within the budget")


def approval_refusal(approval: str | None, pending: str | None, used: str | None) -> str | None:
    """Why an approve annotation does not approve the dry run awaiting approval (None: it does, or
    there is nothing to say)."""
    if approval is None or approval == "" or approval == used:
        return None
    if pending is None:
        return f"cleanup.artifacts.dev/approve={approval}: no dry run is waiting for an approval"
    if approval != pending:
        return (
            f"cleanup.artifacts.dev/approve={approval} names another dry run: the one waiting for an approval is"
            f" {pending}"
        )
    return None


def exceeded_dry_run(dry: DryRun, packages: int, versions: int, nbytes: int) -> list[str]:
    """What a real run deleted beyond what its dry run said."""
    out = []
    for what, real, said in (
        ("packages", packages, dry.packages),
        ("versions", versions, dry.versions),
        ("bytes", nbytes, dry.bytes),
    ):
        if real > said:
            out.append(f"{what} {real} > {said} in dry run {dry.id}")
    return out


def _time(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        t = dt.datetime.fromisoformat(text)  # Python 3.11 reads a trailing Z as UTC
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def request_time(value: str) -> dt.datetime | None:
    """The moment a requested-at value names: Unix seconds (``date +%s``) or RFC 3339; else None."""
    text = value.strip()
    if text.isdigit():
        try:
            return dt.datetime.fromtimestamp(int(text), dt.UTC)
        except (OverflowError, OSError, ValueError):
            return None
    return _time(text)


def request_refusal(value: str, *, created: str, suspended: bool) -> str | None:
    """Why a new requested-at value must not start anything, or None when it may.

    Acting only on a time no older than the object means a manifest re-applied from Git or a
    resource restored from a backup (status gone, annotation kept) does not run again.
    """
    if suspended:
        return f"{REQUESTED_AT}={value!r} arrived while spec.suspend is true: refused, and not acted on later"
    when = request_time(value)
    if when is None:
        return (
            f"{REQUESTED_AT}={value!r} is not a time: set it to the current time, as Unix seconds"
            " (date +%s) or RFC 3339, to ask for a run"
        )
    born = _time(created)
    if born is not None and when < born.replace(microsecond=0):
        return (
            f"{REQUESTED_AT}={value!r} is older than this resource (created {created}): a request"
            " copied from Git or restored from a backup is not acted on again; set a new time to run"
        )
    return None


def policy_writes(diffs: list[str], *, enable: bool) -> list[Act]:
    """What to write to a policy that is ours, from the fields that differ from the spec."""
    acts = []
    if any(d != "enabled" for d in diffs):
        acts.append(Act.UPDATE)
    if "enabled" in diffs:
        acts.append(Act.ENABLE if enable else Act.DISABLE)
    return acts


def run_start(*, enabled: bool) -> Decision:
    """A request that may run (see :func:`request_refusal`): start it unless Artifactory cannot."""
    if not enabled:
        return Decision(
            Act.NOTHING,
            "RunRefused",
            "the policy is disabled in Artifactory: a disabled policy cannot run; set spec.enabled to true",
        )
    return Decision(Act.RUN, "Requested", "starting the run that was asked for")


def prune_start(*, guarded: bool, other_runner: bool, vendor_running: bool) -> Decision:
    """A prune asked for: start it, follow one already running, or wait."""
    if not guarded:
        return Decision(Act.WAIT, "WaitingForFinalizer", "waiting for the finalizer before starting a prune")
    if other_runner:
        return Decision(
            Act.WAIT,
            "WaitingForOtherPrune",
            "another StoragePrune is running a prune on this Artifactory; starting after it",
        )
    if vendor_running:
        return Decision(
            Act.FOLLOW,
            "AlreadyRunning",
            "a prune started outside this resource is already running on this Artifactory: following it",
        )
    return Decision(Act.START, "Requested", "starting the prune that was asked for")
