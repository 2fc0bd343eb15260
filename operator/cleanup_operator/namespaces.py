"""``--namespace-selector``: serve the namespaces whose labels match a selector, as they change.

Kopf's own namespace patterns match names only. Kopf keeps the namespaces it serves in its
``Insights`` (``kopf.operator(insights=...)``) and starts or stops a watch per namespace and
resource whenever that set is revised: :class:`NamespaceSelection` is what revises it here, from a
list + watch of the namespaces matching the selector (the API server evaluates the selector; a
namespace that stops matching arrives as DELETED). A namespace that leaves the selection is
dropped at once: its objects are no longer scheduled (``on_dropped``), before Kopf's watch of it
has even stopped, and the wiring ignores what that watch still delivers (:meth:`serves`).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from typing import Any

from kopf._cogs.structs.references import Insights, NamespaceName  # kopf.operator(insights=...)

from .kube import KubeAPI

__all__ = ["NO_NAMESPACE", "SHARD_LABEL", "Insights", "NamespaceSelection"]

log = logging.getLogger(__name__)

#: Kopf's namespace pattern that matches no namespace: Kopf itself serves none, the selection all.
NO_NAMESPACE = re.compile(r"(?!)")

#: The label by which the chart's shards select namespaces (``watch.shard``).
SHARD_LABEL = "cleanup.artifacts.dev/shard"

NAMESPACES = "/api/v1/namespaces"


class NamespaceSelection:
    def __init__(
        self,
        selector: str,
        insights: Insights,
        on_dropped: Callable[[str], None] | None = None,
    ) -> None:
        self.selector = selector
        self.insights = insights
        self.on_dropped = on_dropped
        #: The namespaces served now (none until the first list).
        self.names: set[str] = set()
        #: Set when ``names`` changed since Kopf's insights were last revised.
        self._revised = asyncio.Event()

    def serves(self, namespace: str | None) -> bool:
        return namespace is not None and namespace in self.names

    async def run(self, kube: KubeAPI) -> None:
        """Mirror the selected namespaces into Kopf's insights until cancelled."""
        reviser = asyncio.create_task(self._revise(), name="namespace selection: revise Kopf's insights")
        try:
            await kube.mirror(
                NAMESPACES, self.selector, listed=self._listed, changed=self._changed, lost=self._lost
            )
        finally:
            reviser.cancel()

    def _listed(self, items: list[dict[str, Any]]) -> None:
        names = {str((item.get("metadata") or {}).get("name")) for item in items}
        for gone in sorted(self.names - names):
            self._drop(gone)
        for new in sorted(names - self.names):
            log.info("namespace %s matches %s: serving it", new, self.selector)
        self.names = names
        self._revised.set()

    def _changed(self, kind: str, body: dict[str, Any]) -> None:
        name = str((body.get("metadata") or {}).get("name"))
        if kind == "DELETED":
            if name in self.names:
                self.names.discard(name)
                self._drop(name)
        elif name not in self.names:
            self.names.add(name)
            log.info("namespace %s matches %s: serving it", name, self.selector)
        else:
            return
        self._revised.set()

    def _drop(self, name: str) -> None:
        log.info("namespace %s no longer matches %s (or is gone): no longer serving it", name, self.selector)
        if self.on_dropped is not None:
            self.on_dropped(name)

    def _lost(self, exc: Exception) -> None:
        # The set stays as last seen: serving a namespace a little longer is safer than dropping
        # every namespace (and every object's schedule) whenever the API server is unreachable.
        log.warning("watching namespaces matching %s: %s; listing again", self.selector, exc)

    async def _revise(self) -> None:
        """Hand the current set to Kopf (its orchestrator starts and stops the watches)."""
        while True:
            await self._revised.wait()
            self._revised.clear()
            names = {NamespaceName(name) for name in self.names}
            async with self.insights.revised:
                self.insights.namespaces.intersection_update(names)
                self.insights.namespaces.update(names)
                self.insights.revised.notify_all()
