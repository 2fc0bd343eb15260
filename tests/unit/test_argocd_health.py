"""The Argo CD health checks in deploy/argocd/, run in Lua 5.1 (Argo CD's gopher-lua dialect) with lupa.

Each case is an object as the API server would hand it to Argo CD; statuses are built with the
operator's own ``StatusBuilder`` so the conditions are the combinations the reconcilers write.
The script under test is the one inside the shipped ``argocd-cm-patch.yaml``, per kind.
"""

from __future__ import annotations

import ast
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from lupa import lua51

import cleanup_operator
from cleanup_operator import argocd
from cleanup_operator.api import ALL_KINDS, GROUP, VERSION
from cleanup_operator.reconcile.conditions import StatusBuilder, classify
from cleanup_operator.vendors.errors import RateLimitedError, TransientError

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
    b.progressing("WaitingForFinalizer", "waiting for the finalizer before creating the policy")
    return b.result()


def st_stalled() -> dict[str, Any]:
    b = builder()
    b.stalled("AuthenticationFailed", "Secret team-a/jfrog: HTTP 401 from Artifactory")
    return b.result()


def st_retrying() -> dict[str, Any]:
    b = builder()
    b.failed(classify(TransientError("HTTP 503 from Artifactory")))
    return b.result()


def st_retrying_after_ready() -> dict[str, Any]:
    """A transient failure after success keeps Ready=True (keep_ready): the resource is still usable."""
    b = builder()
    b.ready("Synced", "in sync")
    b.failed(classify(RateLimitedError("HTTP 429")), keep_ready=True)
    return b.result()


def st_not_ready() -> dict[str, Any]:
    b = builder()
    b.set_condition("Ready", False, "PruneFailed", "prune failed: I/O error reading the filestore")
    b.set_condition("Reconciling", False, "PruneFailed", "")
    b.set_condition("Stalled", False, "PruneFailed", "")
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
    # The operator never writes Ready=Unknown; another writer (or a future reason) may.
    b.set_condition("Ready", "Unknown", "Starting", "first reconcile")
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
    Case("reconciling", {}, st_progressing, "Progressing", "waiting for the finalizer"),
    Case("retrying", {}, st_retrying, "Progressing", "retrying: HTTP 503"),
    Case("not-ready", {}, st_not_ready, "Degraded", "PruneFailed: prune failed"),
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
        lambda: prune_status(
            "Waiting", lambda b: b.progressing("WaitingForOtherPrune", "another StoragePrune is running")
        ),
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
    """The patch has a health check for every kind the CRDs serve, and no other."""
    crd_kinds = {
        yaml.safe_load(p.read_text())["spec"]["names"]["kind"] for p in (ROOT / "crds").glob("*.yaml")
    }
    patched = {key.rsplit("_", 1)[1] for key in yaml.safe_load(PATCH.read_text())["data"]}
    assert crd_kinds == patched == {"CleanupPolicy", "StoragePrune", "ArtifactStreamSync"}


def test_health_key_format():
    assert argocd.health_key(KINDS["StoragePrune"]) == (
        "resource.customizations.health.cleanup.artifacts.dev_StoragePrune"
    )


# Every reason the operator writes, collected from its code: a new reason is tested without anyone
# remembering to add it here.

PACKAGE = Path(cleanup_operator.__file__).resolve().parent
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "testing" not in p.relative_to(PACKAGE).parts)
#: StatusBuilder methods that set conditions, and where their reason argument is.
BUILDERS = {"ready": 0, "progressing": 0, "stalled": 0, "set_condition": 2}
#: Reasons that are attributes of an error or a decision; their values are collected from the error
#: classes (``reason = ...``) and from the ``Decision(...)`` calls instead.
INDIRECT = {"failure.reason", "exc.reason", "decision.reason"}
KIND_OF_MODULE = {
    "cleanup_policy.py": ["CleanupPolicy"],
    "storage_prune.py": ["StoragePrune"],
    "artifact_stream_sync.py": ["ArtifactStreamSync"],
}


@dataclass(frozen=True)
class Written:
    """Condition calls in one run of statements, with one reason: one status as the code writes it."""

    reason: str
    where: str
    calls: tuple[tuple[str, tuple[Any, ...]], ...]

    @property
    def kinds(self) -> list[str]:
        return KIND_OF_MODULE.get(self.where.split(":")[0], list(KINDS))


def _trees() -> Iterator[tuple[Path, ast.Module]]:
    for path in SOURCES:
        yield path, ast.parse(path.read_text(), str(path))


def _constants() -> dict[str, str]:
    """Module-level ``NAME = "text"`` of every module (reason constants, condition types)."""
    out: dict[str, str] = {}
    for _, tree in _trees():
        for node in tree.body:
            if (
                isinstance(node, ast.Assign)
                and len(node.targets) == 1
                and isinstance(node.targets[0], ast.Name)
                and isinstance(node.value, ast.Constant)
                and isinstance(node.value.value, str)
            ):
                out[node.targets[0].id] = node.value.value
    return out


class _Unresolved(Exception):
    pass


def _values(expr: ast.expr, consts: dict[str, str], local: dict[str, list[ast.expr]]) -> list[Any] | None:
    """The values ``expr`` can have; None for a pass-through (a parameter, or an indirect reason)."""
    if isinstance(expr, ast.Constant):
        return [expr.value]
    if isinstance(expr, ast.IfExp):
        values = [_values(e, consts, local) for e in (expr.body, expr.orelse)]
        return [v for vs in values for v in vs or []]
    if isinstance(expr, ast.Name):
        if expr.id in local:
            return [v for e in local[expr.id] for v in _values(e, consts, local) or []]
        if expr.id in consts:
            return [consts[expr.id]]
        return None  # a parameter: its callers are scanned
    if ast.unparse(expr) in INDIRECT:
        return None
    raise _Unresolved(ast.unparse(expr))


def _builder_call(stmt: ast.stmt) -> tuple[str, ast.Call] | None:
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Call):
        func = stmt.value.func
        if isinstance(func, ast.Attribute) and func.attr in BUILDERS:
            return func.attr, stmt.value
    return None


def collect_written() -> tuple[list[Written], list[str]]:
    """Each run of condition calls in the code with its reason(s); and what could not be resolved."""
    consts = _constants()
    found: dict[tuple[str, str, int], list[tuple[str, tuple[Any, ...]]]] = {}
    unresolved: list[str] = []
    for path, tree in _trees():
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            local: dict[str, list[ast.expr]] = {}
            for node in ast.walk(func):
                if isinstance(node, ast.Assign):
                    for target in node.targets:
                        if isinstance(target, ast.Name):
                            local.setdefault(target.id, []).append(node.value)
            for block in ast.walk(func):
                for field in ("body", "orelse", "finalbody"):
                    stmts = getattr(block, field, None)
                    if not isinstance(stmts, list):
                        continue
                    run = 0
                    for i, stmt in enumerate(stmts):
                        call = _builder_call(stmt)
                        if call is None:
                            run = i + 1
                            continue
                        name, node = call
                        where = f"{path.name}:{node.lineno}"
                        at = BUILDERS[name]
                        if len(node.args) <= at:
                            continue
                        try:
                            reasons = _values(node.args[at], consts, local)
                        except _Unresolved as exc:
                            unresolved.append(f"{where}: reason {exc}")
                            continue
                        if reasons is None:
                            continue
                        args: list[list[Any] | None] = []
                        for j, a in enumerate(node.args[:at]):  # set_condition's type and status
                            try:
                                args.append(_values(a, consts, local))
                            except _Unresolved:
                                args.append(None if j == 0 else ["dynamic"])
                        for reason in reasons:
                            key = (f"{path.name}:{stmts[run].lineno}", str(reason), id(stmts))
                            rest = (*((a or ["dynamic"])[0] for a in args), reason)
                            found.setdefault(key, []).append((name, rest))
    written = [Written(reason, where, tuple(calls)) for (where, reason, _), calls in found.items()]
    return written, unresolved


def decision_reasons() -> list[tuple[str, str]]:
    """(act, reason) of every ``Decision(Act.X, "Reason", ...)`` in the code."""
    out = []
    for _, tree in _trees():
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "Decision"
                and len(node.args) >= 2
                and isinstance(node.args[0], ast.Attribute)
                and isinstance(node.args[1], ast.Constant)
            ):
                out.append((node.args[0].attr, str(node.args[1].value)))
    return out


def error_classes() -> list[type[Exception]]:
    """Every exception class of the package that carries a condition ``reason = "..."``."""
    out = []
    for path, tree in _trees():
        module = ".".join(("cleanup_operator", *path.relative_to(PACKAGE).with_suffix("").parts))
        for node in tree.body:
            if isinstance(node, ast.ClassDef) and any(
                isinstance(s, ast.Assign)
                and isinstance(s.value, ast.Constant)
                and any(isinstance(t, ast.Name) and t.id == "reason" for t in s.targets)
                for s in node.body
            ):
                cls = getattr(importlib.import_module(module), node.name)
                if isinstance(cls, type) and issubclass(cls, Exception):
                    out.append(cls)
    return out


WRITTEN, UNRESOLVED = collect_written()


def expected_health(conditions: dict[str, Any]) -> str:
    """What a user should see: a stall or a failure is Degraded, work or a retry Progressing, done Healthy."""
    if conditions.get("Stalled") is True:
        return "Degraded"
    if conditions.get("Ready") is True:
        return "Healthy"
    if conditions.get("Reconciling") is True:
        return "Progressing"
    return "Degraded" if conditions.get("Ready") is False else "Progressing"


def test_every_reason_expression_is_understood():
    """A reason the collector cannot read (a new kind of expression) fails here, not silently."""
    assert not UNRESOLVED, UNRESOLVED
    reasons = {w.reason for w in WRITTEN}
    # What the reconcilers are known to write is among what was collected (the collector works).
    assert {
        "Synced",
        "Conflict",
        "PruneSucceeded",
        "PruneFailed",
        "RunInProgress",
        "InternalError",
    } <= reasons
    assert {"Creating", "ServerError", "PolicyDisabled", "Initialising"}.isdisjoint(reasons)


def test_cases_above_use_only_reasons_the_operator_writes():
    written = (
        {w.reason for w in WRITTEN} | {c.reason for c in error_classes()} | {r for _, r in decision_reasons()}
    )
    for case in COMMON_CASES + PRUNE_CASES:
        status = case.status() if case.status is not None else None
        used = {c["reason"] for c in (status or {}).get("conditions", [])}
        assert used <= written, (case.name, used - written)


@pytest.mark.parametrize("written", WRITTEN, ids=lambda w: f"{w.reason}@{w.where}")
def test_each_reason_the_code_writes_has_the_health_a_user_expects(written):
    """The condition calls as the code makes them (dynamic values tried both ways), run through the script."""
    variants: list[list[tuple[str, tuple[Any, ...]]]] = [[]]
    for name, args in written.calls:
        options = [args]
        if "dynamic" in args:
            options = [tuple(v if a == "dynamic" else a for a in args) for v in (True, False)]
        variants = [[*v, (name, o)] for v in variants for o in options]
    decisive = {"Ready", "Reconciling", "Stalled"}
    sets_health = any(n != "set_condition" or a[0] in decisive for n, a in written.calls)
    for calls in variants:
        b = builder()
        if not sets_health:
            b.ready("Synced", "in sync")  # other condition types must leave this health alone
        for name, args in calls:
            message = "message from the code"
            if name == "set_condition":
                b.set_condition(args[0], args[1], written.reason, message)
            else:
                getattr(b, name)(written.reason, message)
        status = b.result()
        conditions = {
            c["type"]: {"True": True, "False": False}.get(c["status"]) for c in status["conditions"]
        }
        for kind in written.kinds:
            result = run_health(shipped_script(kind), resource(kind, status=status))
            assert result["status"] == expected_health(conditions), (kind, calls, result)
            if conditions.get("Stalled") is True or any(n in ("ready", "stalled") for n, _ in calls):
                assert written.reason in result["message"], result


@pytest.mark.parametrize("error", error_classes(), ids=lambda c: c.__name__)
@pytest.mark.parametrize("kind", list(KINDS))
def test_each_error_reason_is_degraded_or_retried(kind, error):
    """Every error class's reason, through the one error → condition mapping (classify, failed)."""
    failure = classify(error("what the vendor said"))
    b = builder()
    b.failed(failure)
    result = run_health(shipped_script(kind), resource(kind, status=b.result()))
    assert result["status"] == ("Degraded" if failure.stalled else "Progressing"), (failure, result)
    assert failure.reason == error.reason and error.reason in result["message"], result


@pytest.mark.parametrize(
    ("act", "reason"),
    # Decisions to act are not written as conditions; to touch nothing or to wait, they are.
    [(a, r) for a, r in decision_reasons() if a in ("NOTHING", "WAIT")],
    ids=lambda x: str(x),
)
def test_each_decision_reason_has_its_health(act, reason):
    """A decision to touch nothing is shown as a stall (a human must act); one to wait, as progress."""
    b = builder()
    (b.stalled if act == "NOTHING" else b.progressing)(reason, "decided")
    result = run_health(shipped_script("CleanupPolicy"), resource("CleanupPolicy", status=b.result()))
    assert result["status"] == ("Degraded" if act == "NOTHING" else "Progressing"), result
    assert reason in result["message"], result
