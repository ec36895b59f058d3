"""Bounds shared by the ops' argument checks and the pipeline config (no imports: cheap to load).

MAX_RADIUS: search radii beyond it have paths longer than the uint8 arg-max of the path affinity
can index, and no IRNet setting comes near it (training 10, inference 5).
MAX_EXP_TIMES: ``2**16`` walk steps; the walk has converged long before.
"""
MAX_RADIUS = 64
MAX_EXP_TIMES = 16
