"""Pydantic models of our custom resources: the single source of the CRD schemas (see crdgen)."""

from __future__ import annotations

from .artifact_stream_sync import ARTIFACT_STREAM_SYNC
from .cleanup_policy import CLEANUP_POLICY
from .common import GROUP, VERSION, KindInfo
from .storage_prune import STORAGE_PRUNE

ALL_KINDS: tuple[KindInfo, ...] = (CLEANUP_POLICY, STORAGE_PRUNE, ARTIFACT_STREAM_SYNC)

__all__ = [
    "ALL_KINDS",
    "ARTIFACT_STREAM_SYNC",
    "CLEANUP_POLICY",
    "GROUP",
    "STORAGE_PRUNE",
    "VERSION",
    "KindInfo",
]
