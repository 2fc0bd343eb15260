"""`make bench`: the operator against a real kube-apiserver and the vendor simulators, with a floor.

Modules: :mod:`bench.run` (the scenarios, results and targets; ``python -m bench.run``),
:mod:`bench.floor` (the minimal client that makes only the floor's calls), :mod:`bench.sim` (the
simulators in a process of their own, with a timestamped call log), :mod:`bench.kube` (the few API
calls the bench makes).
"""
