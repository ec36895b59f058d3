"""Fast IRNet ops: geometry, affinities, transition and random walk (see README for backends)."""
from .affinity import (PathAffinity, affinity_labels, edge_to_affinity, path_affinity, path_affinity_labels,
                       to_pair_displacement)
from .path_index import PathIndex
from .random_walk import RandomWalk, propagate_to_edge, random_walk, transition_matrix, transition_stencil

__all__ = ["PathIndex", "edge_to_affinity", "path_affinity", "PathAffinity", "affinity_labels",
           "path_affinity_labels", "to_pair_displacement", "transition_stencil", "transition_matrix",
           "random_walk", "RandomWalk", "propagate_to_edge"]
