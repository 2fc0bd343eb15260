"""``cleanup-operator``: flags → Kopf settings → run."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

# The operator never uses the `kubernetes` client, but Kopf imports it (when installed) to recognise
# its model classes, and that import costs more memory than Kopf itself. Keep it out of the process.
sys.modules.setdefault("kubernetes", None)  # type: ignore[arg-type]
# Likewise httpx's command-line client, which httpx imports whenever click, rich and pygments are
# installed (as in a development virtualenv): 55 modules of rich and pygments the operator never runs.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]

import kopf  # noqa: E402

from .api.common import parse_duration  # noqa: E402
from .handlers import register  # noqa: E402
from .namespaces import NO_NAMESPACE  # noqa: E402
from .settings import OperatorOptions  # noqa: E402


def _duration(text: str) -> float:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return seconds


def parse_args(argv: list[str] | None = None) -> OperatorOptions:
    parser = argparse.ArgumentParser(
        prog="cleanup-operator", description="Artifact cleanup across vendors, as custom resources."
    )
    scope = parser.add_mutually_exclusive_group()
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        default=[],
        help="namespace to watch (repeatable; globs allowed)",
    )
    scope.add_argument(
        "-A", "--all-namespaces", action="store_true", help="watch every namespace (cluster-wide)"
    )
    scope.add_argument(
        "--namespace-selector",
        metavar="SELECTOR",
        help="watch the namespaces whose labels match this label selector, e.g."
        " cleanup.artifacts.dev/shard=team-a (followed as labels change; needs list and watch on"
        " namespaces)",
    )
    parser.add_argument(
        "--liveness", metavar="URL", help="liveness endpoint, e.g. http://0.0.0.0:8080/healthz"
    )
    parser.add_argument("--log-format", choices=["json", "text"], default="text")
    parser.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port")
    election = parser.add_argument_group(
        "leader election", "one active replica, the others on standby, on a coordination.k8s.io Lease"
    )
    election.add_argument(
        "--leader-elect",
        action="store_true",
        help="compete for a Lease; only its holder reconciles or calls a vendor (run 2+ replicas)",
    )
    election.add_argument(
        "--leader-elect-namespace",
        metavar="NS",
        help="the Lease's namespace (default: the pod's own, from POD_NAMESPACE or the service account)",
    )
    election.add_argument("--leader-elect-lease-name", metavar="NAME", default="cleanup-operator")
    election.add_argument(
        "--leader-elect-lease-duration",
        type=float,
        default=15.0,
        metavar="S",
        help="seconds a standby waits after the last renew it saw before it takes over",
    )
    election.add_argument(
        "--leader-elect-renew-deadline",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds the leader goes on without a successful renew before it stops and exits",
    )
    election.add_argument(
        "--leader-elect-retry-period", type=float, default=2.0, metavar="S", help="seconds between renews"
    )
    election.add_argument(
        "--leader-elect-identity", metavar="ID", help="holder identity (default: host name + unique suffix)"
    )
    parser.add_argument(
        "--vendor-concurrency",
        type=int,
        default=10,
        help="vendor requests in flight at once per endpoint (base URL, plus the Harness account)",
    )
    parser.add_argument(
        "--max-reconciles", type=int, default=500, help="reconciles in flight at once (a memory bound)"
    )
    parser.add_argument(
        "--harness-rate",
        type=int,
        default=28,
        help="Harness requests per window per account (Harness allows 30/min)",
    )
    parser.add_argument(
        "--harness-window", type=float, default=60.0, help="Harness rate-limit window in seconds"
    )
    parser.add_argument(
        "--allowed-hosts",
        action="append",
        default=[],
        metavar="GLOB",
        help="vendor hosts the operator may send credentials to (repeatable; globs; host or"
        " host:port, e.g. '*.jfrog.io'); none given refuses every host",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="allow plain-http vendor URLs (credentials travel unencrypted: tests and demos only)",
    )
    parser.add_argument(
        "--allow-insecure-tls",
        action="store_true",
        help="honour insecureSkipVerify in specs (no certificate check: tests and demos only)",
    )
    parser.add_argument(
        "--status-report-interval",
        type=_duration,
        default=3600.0,
        metavar="DURATION",
        help="how stale status.lastSyncedAt may grow while checks find nothing to change, e.g. 1h"
        " (a check that changes nothing patches status only this often)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not args.namespace and not args.all_namespaces and not args.namespace_selector:
        parser.error("give --namespace NS (repeatable), --namespace-selector SELECTOR or --all-namespaces")
    options = OperatorOptions(
        namespaces=tuple(args.namespace),
        all_namespaces=args.all_namespaces,
        namespace_selector=args.namespace_selector,
        liveness=args.liveness,
        log_format=args.log_format,
        metrics_port=args.metrics_port,
        leader_elect=args.leader_elect,
        leader_elect_namespace=args.leader_elect_namespace,
        leader_elect_lease_name=args.leader_elect_lease_name,
        leader_elect_lease_duration=args.leader_elect_lease_duration,
        leader_elect_renew_deadline=args.leader_elect_renew_deadline,
        leader_elect_retry_period=args.leader_elect_retry_period,
        leader_elect_identity=args.leader_elect_identity,
        verbose=args.verbose,
        vendor_concurrency=args.vendor_concurrency,
        max_reconciles=args.max_reconciles,
        harness_rate=args.harness_rate,
        harness_window=args.harness_window,
        allowed_hosts=tuple(h.strip() for arg in args.allowed_hosts for h in arg.split(",") if h.strip()),
        allow_insecure_http=args.allow_insecure_http,
        allow_insecure_tls=args.allow_insecure_tls,
        status_report_interval=args.status_report_interval,
    )
    try:
        options.election()  # the times and the namespace, checked before anything starts
    except ValueError as exc:
        parser.error(str(exc))
    return options


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    kopf.configure(
        verbose=options.verbose,
        log_format=kopf.LogFormat.JSON if options.log_format == "json" else kopf.LogFormat.FULL,
    )
    # Request lines would carry URLs with query strings (tokens, signed download URLs).
    for noisy in ("httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    registry = kopf.OperatorRegistry()
    state = register(registry, options)
    try:
        asyncio.run(
            kopf.operator(
                registry=registry,
                clusterwide=options.all_namespaces,
                # With a selector, Kopf serves no namespace by itself: the selection revises
                # which ones it serves (namespaces.py).
                namespaces=[NO_NAMESPACE] if options.namespace_selector else list(options.namespaces),
                insights=state.insights,
                liveness_endpoint=options.liveness,
                standalone=True,  # no Kopf peering: our own Lease decides who acts (leader.py)
                stop_flag=state.stop_flag,
            )
        )
    except KeyboardInterrupt:
        return 130
    return state.exit_code


if __name__ == "__main__":
    sys.exit(main())
