"""Test aids shipped with the operator: a real control plane and stateful vendor simulators."""
