"""Kubernetes operator for artifact cleanup across vendors."""
