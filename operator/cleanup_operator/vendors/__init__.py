"""Kubernetes-free vendor clients on httpx.

Each vendor has one module; none imports Kopf, Kubernetes or another vendor's module. They return
typed results (pydantic models) and raise the typed errors of :mod:`cleanup_operator.vendors.errors`.
"""
