"""Volume rendering of several SDF nodes along camera rays, as pure tensor functions.

    t_near, t_far, hit = ray_sphere_intersect(origins, dirs, center, radius)   # per node
    t = sdf_guided_samples(t_near, t_far, sdf_fn, n_coarse, n_importance, beta)
    sigma = LaplaceDensity(...)(sdf)                                             # or NeusDensity
    out = render_merged([NodeSamples(t, sigma, rgb, normal, sdf, label, valid), ...])
    out_hand = render_single(hand_samples)                                       # amodal

Camera frame (OpenCV), metres, unit ray directions; sdf < 0 inside.
"""
from hold.rendering.composite import (
    LABELS,
    N_CLASSES,
    MergedSamples,
    NodeSamples,
    composite,
    interval_deltas,
    merge_samples,
    render_merged,
    render_single,
    weights_from_optical_depth,
)
from hold.rendering.density import (
    LaplaceDensity,
    NeusDensity,
    alpha_to_density,
    laplace_density,
    laplace_interval_density,
    neus_alpha,
)
from hold.rendering.rays import ray_points, ray_sphere_intersect, transform_rays
from hold.rendering.samplers import laplace_guide_weights, sample_pdf, sdf_guided_samples, stratified_samples

__all__ = [
    # rays
    "ray_points", "ray_sphere_intersect", "transform_rays",
    # density
    "laplace_density", "laplace_interval_density", "LaplaceDensity", "neus_alpha", "NeusDensity",
    "alpha_to_density",
    # samplers
    "stratified_samples", "sample_pdf", "laplace_guide_weights", "sdf_guided_samples",
    # compositing
    "LABELS", "N_CLASSES", "NodeSamples", "MergedSamples", "interval_deltas", "weights_from_optical_depth",
    "composite", "merge_samples", "render_merged", "render_single",
]
