"""Drop-in for the reference's ``misc/indexing.py``: ``from irnet_fast.compat import indexing``.

Same names and signatures; ``propagate_to_edge`` runs the O(N) random walk instead of the dense
``T ** 256``. ``affinity_sparse2dense`` and ``to_transition_matrix`` stay dense, as the reference's,
for code that calls them directly (keep such inputs small).
"""
from ..ops._reference import affinity_sparse2dense, to_transition_matrix
from ..ops.affinity import edge_to_affinity
from ..ops.path_index import PathIndex
from ..ops.random_walk import propagate_to_edge

__all__ = ["PathIndex", "edge_to_affinity", "affinity_sparse2dense", "to_transition_matrix", "propagate_to_edge"]
