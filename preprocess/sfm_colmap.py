"""The pycolmap calls of the `sfm` step: SIFT extraction under per-image masks, matching, mapping.

Everything pycolmap-specific lives here and comes back as plain numpy (`ColmapResult`), so the rest of the
step (preprocess/sfm.py) is testable maths. Written against pycolmap 4.x (4.2.1): the camera model is an
`ImageReaderOptions` field, per-image masks are `<mask_path>/<image name>.png` (black = no features), and
`Image.cam_from_world()` is a method returning a Rigid3d. SIFT only: the PyPI wheel has no ONNX, and the
learned extractors (ALIKED, ...) abort the interpreter instead of raising.

Mapping. An object that fills a small part of the frame is seen through a narrow field of view, mostly one
planar face at a time, so its reconstruction has near-ambiguities (a face's tilt, depth against focal length)
and a mapper can settle in a wrong basin that still fits the images well: kinks of 5-50 degrees in the
trajectory at a mean reprojection error only 0.003-0.1 px above the right one's. Neither COLMAP mapper avoids
this reliably on synthetic hand-held objects (11 clips, 384-512 px: median rotation error above 2 degrees on 1
of them with the global mapper, on 4 others with the incremental one), but the better fitting run was the
accurate one every time (the 'auto' choice: median error <= 1.6 degrees on all of them, 13 clips in all).
So the default 'auto' runs both the global mapper (GLOMAP: rotation averaging over all matched pairs, global
positioning, bundle adjustment) and the incremental one (`num_starts` seeds), and keeps the run with the lowest
mean reprojection error among those that register (nearly) the most frames; 'global' or 'incremental' run one
kind only.
"""
from __future__ import annotations

import hold  # noqa: F401  (must come before pycolmap: it loads the system zlib first, see hold/__init__.py)

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from jaxtyping import Bool, Float, Int

MATCHERS = ("exhaustive", "sequential")
MAPPERS = ("auto", "global", "incremental")
CAMERA_MODELS = ("SIMPLE_PINHOLE", "PINHOLE")


@dataclass
class ColmapConfig:
    """SIFT + matching + mapping settings (defaults tuned for small, hand-held objects)."""

    camera_model: str = "SIMPLE_PINHOLE"
    """One shared camera for all frames: SIMPLE_PINHOLE (f, cx, cy) or PINHOLE (fx, fy, cx, cy)."""
    max_features: int = 4096
    """Most SIFT keypoints kept per image (before the mask removes those off the object)."""
    first_octave: int | None = None
    """SIFT's first octave: -1 upsamples the images 2x (finds the small features a small object has), 0 does
    not (about 4x faster); None: -1 (the caller may pick by image size, see preprocess.sfm)."""
    peak_threshold: float = 0.02 / 3
    """SIFT contrast threshold (COLMAP's default 0.0067; lower finds more, weaker keypoints)."""
    matcher: str = "exhaustive"
    """'exhaustive' (all pairs; short clips) or 'sequential' (each frame with its next `overlap` frames)."""
    overlap: int = 10
    """Sequential matching: frames ahead each frame is matched with (plus quadratic jumps 2, 4, 8, ...)."""
    mapper: str = "auto"
    """'auto' (global and incremental runs, the best fitting kept), 'global' (GLOMAP) or 'incremental' (COLMAP's
    classic, HOLD's choice); see the module docstring."""
    min_inliers: int = 15
    """Fewest geometrically verified matches for an image pair to count as matched."""
    init_min_num_inliers: int = 50
    """Incremental mapper: fewest inliers of the two-view model that starts a reconstruction (COLMAP's
    default 100 is for scenes; an object covering a small part of the frame has far fewer features)."""
    init_min_tri_angle_deg: float = 8.0
    """Incremental mapper: smallest median triangulation angle of the initial pair (degrees; default 16)."""
    abs_pose_min_num_inliers: int = 20
    """Incremental mapper: fewest 2D-3D inliers to register a further image (COLMAP's default 30)."""
    num_threads: int = -1
    """CPU threads for extraction, matching and bundle adjustment (-1: all cores)."""
    seed: int = 0
    """Seed of COLMAP's RANSAC and mapper (same inputs, same reconstruction on one thread)."""
    num_starts: int = 3
    """Incremental mapper runs (seeds seed, seed + 1, ...; they differ in RANSAC samples and thus sometimes in
    the basin they settle in). The global mapper runs once (its result does not depend on the seed)."""
    registered_slack: float = 0.05
    """Runs registering at least (1 - this) x the best run's frame count compete on reprojection error."""


@dataclass
class ColmapResult:
    """The largest reconstruction (world = the object's SfM frame) and what the database saw."""

    registered: Bool[np.ndarray, " T"]
    """Whether image i (in the order of the names given to COLMAP) is in the largest reconstruction."""
    cam_from_world: Float[np.ndarray, "T 4 4"]
    """Rigid camera-from-world transform of each registered image (identity where not registered)."""
    K: Float[np.ndarray, "3 3"]
    """Intrinsics of the shared camera, in the pixels of the images given to COLMAP."""
    points: Float[np.ndarray, "N 3"]
    """3D points of the reconstruction (world frame, SfM units)."""
    point_errors: Float[np.ndarray, " N"]
    """Mean reprojection error of each point over its track (pixels)."""
    track_lengths: Int[np.ndarray, " N"]
    """Number of images observing each point."""
    keypoints: Int[np.ndarray, " T"]
    """SIFT keypoints kept per image (inside the masks)."""
    matched_pairs: int
    """Image pairs with at least `min_inliers` verified matches."""
    mean_reprojection_error: float
    """Mean reprojection error over all observations of the reconstruction (pixels); NaN without one."""
    model_sizes: list[int] = field(default_factory=list)
    """Registered images of every model of the kept mapping run, largest first."""
    mapper: str = ""
    """The mapper of the kept run ('global' or 'incremental')."""
    run_summaries: list[dict] = field(default_factory=list)
    """Per mapping run: mapper, seed, registered images, mean reprojection error (px), focal length (px) of its
    largest model, and whether it was kept."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per phase: extract, match, map."""


def import_pycolmap():
    """pycolmap >= 4, or one clear message saying how to get it (it is the optional `sfm` extra)."""
    try:
        import pycolmap
    except ImportError as e:
        raise ValueError(f"hold preprocess sfm needs pycolmap 4.x, which cannot be imported ({e}). "
                         "Fix: pip install 'pycolmap==4.2.1' (the `sfm` extra: pip install -e '.[sfm]')") from None
    major = int(str(pycolmap.__version__).split(".")[0])
    if major < 4:
        raise ValueError(f"hold preprocess sfm needs pycolmap 4.x (camera model and masks in ImageReaderOptions, "
                         f"global mapping), found {pycolmap.__version__}. Fix: pip install 'pycolmap==4.2.1'")
    return pycolmap


def run_colmap(
    image_dir: Path,
    mask_dir: Path,
    image_names: Sequence[str],
    work_dir: Path,
    camera_params: Sequence[float],
    cfg: ColmapConfig,
    say: Callable[[str], None] = lambda s: None,
) -> ColmapResult:
    """SIFT on `image_dir/<name>` under `mask_dir/<name>.png`, match, map; keep the largest model.

    `camera_params` is the initial shared camera (f, cx, cy for SIMPLE_PINHOLE; fx, fy, cx, cy for PINHOLE,
    in the pixels of these images); the focal length is refined by bundle adjustment, the principal point
    is kept. `work_dir` must be empty or absent: an existing database would silently reuse old features.
    """
    pycolmap = import_pycolmap()
    if cfg.matcher not in MATCHERS:
        raise ValueError(f"ColmapConfig.matcher is {cfg.matcher!r}, expected one of {MATCHERS}")
    if cfg.mapper not in MAPPERS:
        raise ValueError(f"ColmapConfig.mapper is {cfg.mapper!r}, expected one of {MAPPERS}")
    if cfg.camera_model not in CAMERA_MODELS:
        raise ValueError(f"ColmapConfig.camera_model is {cfg.camera_model!r}, expected one of {CAMERA_MODELS}")
    pycolmap.logging.minloglevel = 3  # glog lines (even "failed to create a model") would drown our own report
    pycolmap.set_random_seed(cfg.seed)
    work_dir.mkdir(parents=True, exist_ok=True)
    db_path = work_dir / "database.db"
    if db_path.exists():
        raise ValueError(f"{db_path}: a database from an earlier run exists; the sfm step clears {work_dir} first")
    device = pycolmap.Device.cpu  # the PyPI wheel has no CUDA; say so instead of letting 'auto' probe
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    say(f"extracting SIFT features of {len(image_names)} images")
    reader = pycolmap.ImageReaderOptions(
        camera_model=cfg.camera_model, mask_path=str(mask_dir),
        camera_params=",".join(f"{p:.10g}" for p in camera_params))
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = cfg.num_threads
    extraction.sift.max_num_features = cfg.max_features
    extraction.sift.first_octave = -1 if cfg.first_octave is None else cfg.first_octave
    extraction.sift.peak_threshold = cfg.peak_threshold
    pycolmap.extract_features(db_path, image_dir, image_names=list(image_names),
                              camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=extraction, device=device)
    t1 = time.perf_counter()
    timings["extract"] = t1 - t0

    say(f"matching ({cfg.matcher})")
    matching = pycolmap.FeatureMatchingOptions()
    matching.num_threads = cfg.num_threads
    verification = pycolmap.TwoViewGeometryOptions()
    verification.min_num_inliers = cfg.min_inliers
    verification.ransac.random_seed = cfg.seed
    if cfg.matcher == "exhaustive":
        pycolmap.match_exhaustive(db_path, matching_options=matching, verification_options=verification,
                                  device=device)
    else:
        pairing = pycolmap.SequentialPairingOptions()
        pairing.overlap = cfg.overlap
        pairing.quadratic_overlap = True
        pairing.loop_detection = False  # needs a vocabulary tree, which would be a download
        pycolmap.match_sequential(db_path, matching_options=matching, pairing_options=pairing,
                                  verification_options=verification, device=device)
    t2 = time.perf_counter()
    timings["match"] = t2 - t1

    with pycolmap.Database.open(db_path) as db:
        id_of = {im.name: im.image_id for im in db.read_all_images()}
        keypoints = np.array([db.num_keypoints_for_image(id_of[n]) if n in id_of else 0 for n in image_names],
                             dtype=np.int64)
        _, inliers = db.read_two_view_geometry_num_inliers()
        matched_pairs = int(np.sum(np.asarray(inliers) >= cfg.min_inliers))

    plan = [] if cfg.mapper == "incremental" else [("global", cfg.seed)]
    if cfg.mapper != "global":
        plan += [("incremental", cfg.seed + k) for k in range(max(1, cfg.num_starts))]
    runs = []  # (mapper, seed, largest model of the run, sizes of all its models)
    for k, (mapper, seed) in enumerate(plan):
        say(f"{mapper} mapping, run {k + 1} of {len(plan)} ({matched_pairs} matched pairs)")
        out_dir = work_dir / "sparse" / f"{k}_{mapper}"
        mapping = _map_global if mapper == "global" else _map_incremental
        models = mapping(pycolmap, db_path, image_dir, out_dir, cfg, seed)
        ranked = sorted(models.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()), reverse=True)
        if ranked:
            runs.append((mapper, seed, ranked[0], [int(r.num_reg_images()) for r in ranked]))
    t3 = time.perf_counter()
    timings["map"] = t3 - t2

    T = len(image_names)
    index = {n: i for i, n in enumerate(image_names)}
    registered = np.zeros(T, dtype=bool)
    cam_from_world = np.tile(np.eye(4), (T, 1, 1))
    if not runs:
        return ColmapResult(
            registered=registered, cam_from_world=cam_from_world,
            K=np.full((3, 3), np.nan), points=np.zeros((0, 3)), point_errors=np.zeros(0),
            track_lengths=np.zeros(0, dtype=np.int64), keypoints=keypoints, matched_pairs=matched_pairs,
            mean_reprojection_error=float("nan"), model_sizes=[], run_summaries=[], timings=timings)
    best = max(run[2].num_reg_images() for run in runs)
    rivals = [run for run in runs if run[2].num_reg_images() >= (1.0 - cfg.registered_slack) * best]
    kept = min(rivals, key=lambda run: run[2].compute_mean_reprojection_error())
    _, _, rec, model_sizes = kept
    for image in rec.images.values():
        if image.has_pose and image.name in index:
            i = index[image.name]
            registered[i] = True
            cam_from_world[i, :3, :] = image.cam_from_world().matrix()
    camera = next(iter(rec.cameras.values()))  # CameraMode.SINGLE: exactly one
    pts = list(rec.points3D.values())
    return ColmapResult(
        registered=registered,
        cam_from_world=cam_from_world,
        K=np.asarray(camera.calibration_matrix(), dtype=np.float64),
        points=np.array([p.xyz for p in pts], dtype=np.float64).reshape(-1, 3),
        point_errors=np.array([p.error for p in pts], dtype=np.float64),
        track_lengths=np.array([p.track.length() for p in pts], dtype=np.int64),
        keypoints=keypoints,
        matched_pairs=matched_pairs,
        mean_reprojection_error=float(rec.compute_mean_reprojection_error()),
        model_sizes=model_sizes,
        mapper=kept[0],
        run_summaries=[{"mapper": m, "seed": sd, "registered": int(r.num_reg_images()),
                        "reprojection_error_px": float(r.compute_mean_reprojection_error()),
                        "focal_px": float(next(iter(r.cameras.values())).mean_focal_length()),
                        "kept": r is rec} for m, sd, r, _ in runs],
        timings=timings,
    )


def _map_global(pycolmap, db_path: Path, image_dir: Path, out_dir: Path, cfg: ColmapConfig, seed: int) -> dict:
    """One global (GLOMAP) mapping run (all its models, by index)."""
    options = pycolmap.GlobalPipelineOptions()
    options.num_threads = cfg.num_threads
    options.random_seed = seed
    options.min_num_matches = cfg.min_inliers
    options.mapper.bundle_adjustment.refine_focal_length = True
    options.mapper.bundle_adjustment.refine_principal_point = False  # see _map_incremental
    options.mapper.bundle_adjustment.refine_extra_params = False
    out_dir.mkdir(parents=True, exist_ok=True)
    return pycolmap.global_mapping(db_path, image_dir, out_dir, options=options)


def _map_incremental(pycolmap, db_path: Path, image_dir: Path, out_dir: Path, cfg: ColmapConfig, seed: int) -> dict:
    """One incremental mapping run (all its models, by index)."""
    options = pycolmap.IncrementalPipelineOptions()
    options.num_threads = cfg.num_threads
    options.random_seed = seed
    options.extract_colors = False  # the frames may be gone (work files) and colours are not used
    options.min_num_matches = cfg.min_inliers
    options.ba_refine_focal_length = True
    options.ba_refine_principal_point = False  # poorly constrained by a small object; keep the image centre
    options.ba_refine_extra_params = False
    options.mapper.init_min_num_inliers = cfg.init_min_num_inliers
    options.mapper.init_min_tri_angle = cfg.init_min_tri_angle_deg
    options.mapper.abs_pose_min_num_inliers = cfg.abs_pose_min_num_inliers
    out_dir.mkdir(parents=True, exist_ok=True)
    return pycolmap.incremental_mapping(db_path, image_dir, out_dir, options=options)
