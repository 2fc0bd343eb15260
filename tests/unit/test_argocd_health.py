"""The Argo CD health checks in deploy/argocd/, run in Lua 5.1 (Argo CD's gopher-lua dialect) with lupa.

Each case is an object as the API server would hand it to Argo CD; statuses are built with the
operator's own ``StatusBuilder`` so the conditions are the combinations the reconcilers write.
The script under test is the one inside the shipped ``argocd-cm-patch.yaml``, per kind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

from cleanup_operator import argocd
from cleanup_operator.api import ALL_KINDS, GROUP, VERSION
from cleanup_operator.reconcile.conditions import Failure, StatusBuilder

ROOT = Path(__file__).resolve().parents[2]
ARGOCD = ROOT / "deploy" / "argocd"
LUA = ARGOCD / "health.lua"
PATCH = ARGOCD / "argocd-cm-patch.yaml"
KINDS = {info.kind: info for info in ALL_KINDS}
GENERATION = 3


# The generated patch.


def test_patch_is_up_to_date():
    assert PATCH.exists(), f"{PATCH} missing: run `python -m cleanup_operator.argocd`"
    assert PATCH.read_text() == argocd.render_patch(LUA.read_text()), (
        f"{PATCH} is out of date: run `python -m cleanup_operator.argocd`"
    )


def test_check_mode_reports_drift(tmp_path, capsys):
    out = tmp_path / "argocd-cm-patch.yaml"
    assert argocd.main(["--lua", str(LUA), "--out", str(out), "--check"]) == 1
    assert argocd.main(["--lua", str(LUA), "--out", str(out)]) == 0
    assert argocd.main(["--lua", str(LUA), "--out", str(out), "--check"]) == 0
    out.write_text(out.read_text().replace('"Degraded"', '"Healthy"', 1))
    capsys.readouterr()
    assert argocd.main(["--lua", str(LUA), "--out", str(out), "--check"]) == 1
    assert str(out) in capsys.readouterr().err


def test_patch_has_one_key_per_kind_holding_the_script():
    patch = yaml.safe_load(PATCH.read_text())
    assert patch["kind"] == "ConfigMap"
    assert patch["metadata"]["name"] == "argocd-cm"
    assert set(patch["data"]) == {
        "resource.customizations.health.cleanup.artifacts.dev_CleanupPolicy",
        "resource.customizations.health.cleanup.artifacts.dev_StoragePrune",
        "resource.customizations.health.cleanup.artifacts.dev_ArtifactStreamSync",
    }
    for script in patch["data"].values():
        assert script == LUA.read_text()
    # Literal blocks, not an escaped one-line string: readable in `kubectl edit cm argocd-cm`.
    assert "dev_CleanupPolicy: |\n" in PATCH.read_text()


def test_trailing_whitespace_is_refused():
    with pytest.raises(ValueError, match="trailing whitespace"):
        argocd.render_patch("local hs = {} \nreturn hs\n")


# Running the script.


def shipped_script(kind: str) -> str:
    data = yaml.safe_load(PATCH.read_text())["data"]
    return str(data[argocd.health_key(KINDS[kind])])


def run_health(script: str, obj: dict[str, Any]) -> dict[str, str]:
    """Evaluate a health script as Argo CD does: ``obj`` a global, the chunk returns ``hs``."""
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    g = lua.globals()
    assert str(lua.eval("_VERSION")) == "Lua 5.1"
    # Argo CD opens no os/io/loading libraries for health scripts: neither may the test.
    for name in ("os", "io", "require", "dofile", "loadfile", "load", "loadstring", "package", "debug"):
        g[name] = None
    g.obj = lua.table_from(obj, recursive=True)
    hs = lua.execute(script)
    assert hs is not None, "the script returned nothing"
    result = {str(k): v for k, v in hs.items()}
    assert set(result) == {"status", "message"}, result
    assert isinstance(result["status"], str)
    assert isinstance(result["message"], str) and result["message"], result
    return result


def resource(
    kind: str, *, spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": "demo", "namespace": "team-a", "generation": GENERATION, "uid": "u-1"},
        "spec": spec or {},
    }
    if status is not None:
        obj["status"] = status
    return obj


def builder(generation: int = GENERATION, **fields: Any) -> StatusBuilder:
    b = StatusBuilder({}, generation)
    b.update(fields)
    b.observe()
    return b


# Status shapes written by the reconcilers (reconcile/conditions.py).


def st_ready() -> dict[str, Any]:
    b = builder()
    b.ready("Synced", "policy docker-stale matches the spec")
    return b.result()


def st_progressing() -> dict[str, Any]:
    b = builder()
    b.progressing("Creating", "creating the policy in Artifactory")
    return b.result()


def st_stalled() -> dict[str, Any]:
    b = builder()
    b.stalled("AuthenticationFailed", "Secret team-a/jfrog: HTTP 401 from Artifactory")
    return b.result()


def st_retrying() -> dict[str, Any]:
    b = builder()
    b.failed(Failure("ServerError", "HTTP 503 from Artifactory", stalled=False, retry_after=4.0))
    return b.result()


def st_retrying_after_ready() -> dict[str, Any]:
    """A transient failure after success keeps Ready=True (keep_ready): the resource is still usable."""
    b = builder()
    b.ready("Synced", "in sync")
    b.failed(Failure("RateLimited", "HTTP 429", stalled=False, retry_after=30.0), keep_ready=True)
    return b.result()


def st_not_ready() -> dict[str, Any]:
    b = builder()
    b.set_condition("Ready", False, "PolicyDisabled", "the vendor reports the policy as broken")
    b.set_condition("Reconciling", False, "PolicyDisabled", "")
    b.set_condition("Stalled", False, "PolicyDisabled", "")
    return b.result()


def st_stale_generation() -> dict[str, Any]:
    b = builder(generation=GENERATION - 1)
    b.ready("Synced", "in sync with the previous spec")
    return b.result()


def st_no_observed_generation() -> dict[str, Any]:
    b = StatusBuilder({}, GENERATION)
    b.ready("Synced", "in sync")
    return b.result()


def st_no_conditions() -> dict[str, Any]:
    return builder().result()


def st_ready_unknown() -> dict[str, Any]:
    b = builder()
    b.set_condition("Ready", "Unknown", "Initialising", "first reconcile")
    return b.result()


@dataclass(frozen=True)
class Case:
    name: str
    spec: dict[str, Any]
    status: Callable[[], dict[str, Any]] | None
    expected: str
    message_has: str


COMMON_CASES = [
    Case("suspended", {"suspend": True}, st_ready, "Suspended", "spec.suspend"),
    Case("suspended-while-stalled", {"suspend": True}, st_stalled, "Suspended", "spec.suspend"),
    Case("no-status", {}, None, "Progressing", "status"),
    Case("empty-status", {}, dict, "Progressing", "generation 3"),
    Case("stale-generation", {}, st_stale_generation, "Progressing", "generation 3"),
    Case("no-observed-generation", {}, st_no_observed_generation, "Progressing", "generation 3"),
    Case("stalled", {}, st_stalled, "Degraded", "AuthenticationFailed: Secret team-a/jfrog"),
    Case("ready", {}, st_ready, "Healthy", "policy docker-stale matches the spec"),
    Case("ready-not-suspended", {"suspend": False}, st_ready, "Healthy", "Synced"),
    Case("ready-while-retrying", {}, st_retrying_after_ready, "Healthy", "in sync"),
    Case("reconciling", {}, st_progressing, "Progressing", "creating the policy"),
    Case("retrying", {}, st_retrying, "Progressing", "retrying: HTTP 503"),
    Case("not-ready", {}, st_not_ready, "Degraded", "PolicyDisabled"),
    Case("no-conditions", {}, st_no_conditions, "Progressing", "Ready condition"),
    Case("ready-unknown", {}, st_ready_unknown, "Progressing", "Ready condition"),
]


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("case", COMMON_CASES, ids=lambda c: c.name)
def test_common_health(kind, case):
    status = case.status() if case.status is not None else None
    result = run_health(shipped_script(kind), resource(kind, spec=case.spec, status=status))
    assert result["status"] == case.expected, result
    assert case.message_has in result["message"], result


# StoragePrune's phase.


def prune_status(phase: str, how: Callable[[StatusBuilder], None], **fields: Any) -> dict[str, Any]:
    b = builder(phase=phase, **fields)
    how(b)
    return b.result()


PRUNE_CASES = [
    Case(
        "running",
        {},
        lambda: prune_status(
            "Running", lambda b: b.progressing("Running", "pruning: 12 of 256 (4%)"), progress="12 of 256"
        ),
        "Progressing",
        "Prune Running (12 of 256 directories): Running: pruning",
    ),
    Case(
        "pending",
        {},
        lambda: prune_status("Pending", lambda b: b.progressing("Starting", "starting a dry-run prune")),
        "Progressing",
        "Prune Pending",
    ),
    Case(
        "waiting",
        {},
        lambda: prune_status("Waiting", lambda b: b.progressing("Waiting", "StoragePrune x is running")),
        "Progressing",
        "Prune Waiting",
    ),
    Case(
        # Phase wins over conditions that have not caught up (Ready=False without Reconciling).
        "running-ready-false",
        {},
        lambda: prune_status("Running", lambda b: b.set_condition("Ready", False, "Running", "")),
        "Progressing",
        "Prune Running",
    ),
    Case(
        "failed",
        {},
        lambda: prune_status(
            "Failed",
            lambda b: b.set_condition("Ready", False, "PruneFailed", "prune failed: disk full"),
            error="disk full",
        ),
        "Degraded",
        "prune failed: disk full",
    ),
    Case(
        "failed-no-conditions",
        {},
        lambda: prune_status("Failed", lambda b: None, error="filestore unreachable"),
        "Degraded",
        "prune failed: filestore unreachable",
    ),
    Case(
        "succeeded",
        {},
        lambda: prune_status("Succeeded", lambda b: b.ready("PruneSucceeded", "prune succeeded: 7 binaries")),
        "Healthy",
        "7 binaries",
    ),
    Case(
        "stopped",
        {},
        lambda: prune_status(
            "Stopped", lambda b: b.set_condition("Ready", False, "PruneStopped", "prune stopped: 2 binaries")
        ),
        "Degraded",
        "PruneStopped",
    ),
    Case(
        "stalled-while-running",
        {},
        lambda: prune_status("Running", lambda b: b.stalled("AuthenticationFailed", "HTTP 403")),
        "Degraded",
        "HTTP 403",
    ),
    Case(
        "suspended-while-running",
        {"suspend": True},
        lambda: prune_status("Running", lambda b: b.progressing("Running", "pruning")),
        "Suspended",
        "spec.suspend",
    ),
    Case(
        "running-stale-generation",
        {},
        lambda: {**prune_status("Running", lambda b: None), "observedGeneration": GENERATION - 1},
        "Progressing",
        "generation 3",
    ),
]


@pytest.mark.parametrize("case", PRUNE_CASES, ids=lambda c: c.name)
def test_storage_prune_phase(case):
    assert case.status is not None
    result = run_health(
        shipped_script("StoragePrune"), resource("StoragePrune", spec=case.spec, status=case.status())
    )
    assert result["status"] == case.expected, result
    assert case.message_has in result["message"], result


@pytest.mark.parametrize("kind", ["CleanupPolicy", "ArtifactStreamSync"])
def test_phase_is_only_read_for_storage_prune(kind):
    """A ``phase`` field on another kind (e.g. a future one) does not change its health."""
    status = prune_status("Running", lambda b: b.ready("Synced", "in sync"))
    assert run_health(shipped_script(kind), resource(kind, status=status))["status"] == "Healthy"
    failed = prune_status("Failed", lambda b: None)
    assert run_health(shipped_script(kind), resource(kind, status=failed))["status"] == "Progressing"


def test_every_kind_is_covered():
    assert (
        {info.kind for info in ALL_KINDS}
        == set(KINDS)
        == {"CleanupPolicy", "StoragePrune", "ArtifactStreamSync"}
    )


def test_health_key_format():
    assert argocd.health_key(KINDS["StoragePrune"]) == (
        "resource.customizations.health.cleanup.artifacts.dev_StoragePrune"
    )
