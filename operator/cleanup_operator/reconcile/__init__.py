"""One reconciler per kind: given the object and vendor clients, decide the calls and compute the next status."""
