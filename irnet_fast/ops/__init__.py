"""Fast IRNet ops: geometry, affinities, transition, random walk and instances (see README for backends)."""
from . import _compiled  # noqa: F401  (fake kernels and autograd of the compiled ops)
from .affinity import (PathAffinity, affinity_labels, edge_to_affinity, path_affinity, path_affinity_labels,
                       to_pair_displacement)
from .chebyshev import chebyshev_coefficients, chebyshev_walk
from .feature_affinity import FeatureAffinity, feature_affinity, feature_affinity_labels, region_mask
from .instances import cluster_centroids, detect_instance, find_centroids_with_refinement, separate_score_by_mask
from .path_index import PathIndex
from .random_walk import RandomWalk, propagate_to_edge, random_walk, transition_matrix, transition_stencil

__all__ = ["PathIndex", "edge_to_affinity", "path_affinity", "PathAffinity", "affinity_labels",
           "path_affinity_labels", "to_pair_displacement", "transition_stencil", "transition_matrix",
           "random_walk", "RandomWalk", "propagate_to_edge", "chebyshev_coefficients", "chebyshev_walk",
           "feature_affinity", "FeatureAffinity", "feature_affinity_labels", "region_mask",
           "find_centroids_with_refinement", "cluster_centroids", "detect_instance", "separate_score_by_mask"]
