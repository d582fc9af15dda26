"""Every setting of the streaming core, declared once: name, default, unit, range or choices, and why.

The node's ROS parameters, `config/perception.yaml` and the `eval` / `replay` flags are all made from this table
(`table()`), so whatever the node can be set to can be replayed and scored the same way. A setting's default is
written here and nowhere else. Settings of the stream are top-level names (`window_hop`); the thresholds of the
geometric stage are grouped (`odometry.standing_deg`, `depth_fusion.sigma`, `flow_depth.baseline`).

The geometric stage works on grey frames of at most `geometry_pixels` (320x240 by default). Its thresholds are
angles (degrees) and pixels at that resolution.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

EGOMOTION_MODES = ("geometric", "readout", "fused")
POINT_VISIBILITY = ("readout", "refined", "both")
RESIZE_POLICIES = ("resize", "center_crop")
POINT_SEEDING = ("corners", "grid", "none")


@dataclass(frozen=True)
class Setting:
    """One row of a settings table (also the node's own parameters: `ros/perception_node.py`)."""

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    unit: str = ""

    def check(self, value: Any) -> None:
        """Raise ValueError naming this setting when `value` is out of its range or not one of its choices."""
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{self.name} must be one of {', '.join(self.choices)}, got {value!r}")
        if self.range is not None and not self.range[0] <= value <= self.range[1]:
            raise ValueError(f"{self.name} must be in [{self.range[0]}, {self.range[1]}]"
                             f"{' ' + self.unit if self.unit else ''}, got {value!r}")


def setting(default: Any, unit: str, description: str, range: tuple[float, float] | None = None,
            choices: tuple[str, ...] | None = None):
    """A config field declared with its row of the table."""
    return field(default=default, metadata={"row": (unit, description, range, choices)})


class _Checked:
    """Configs check every field against its row when made (and again with `validate`)."""

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        for row, value in zip(_rows(type(self)), (getattr(self, f.name) for f in _fields(type(self)))):
            row.check(value)


def _fields(cls) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if "row" in f.metadata]


def _rows(cls, prefix: str = "") -> list[Setting]:
    rows = []
    for f in _fields(cls):
        unit, description, limits, choices = f.metadata["row"]
        rows.append(Setting(prefix + f.name, f.default, description, limits, choices, unit))
    return rows


@dataclass
class EgomotionConfig(_Checked):
    """The local-map odometry's settings (`egomotion.py`): ROS parameters `odometry.<name>`."""

    features: int = setting(300, "tracks", "tracks kept alive, fresh corners spread over the image at each "
                            "keyframe", (15, 10000))
    standing_deg: float = setting(
        0.25, "deg", "a camera whose features moved less than this from the keyframe stands still (vibration, "
        "tracking noise); a motion that continues is measured once it is larger", (0.0, 10.0))
    keyframe_deg: float = setting(2.0, "deg", "rotation-compensated parallax that starts a new keyframe",
                                  (0.01, 45.0))
    moving_factor: float = setting(
        4.0, "x standing_deg", "while the camera stands, a track displaced by more than this is on an object "
        "moving by itself and is dropped", (1.0, 1000.0))
    leave_standing_s: float = setting(
        0.1, "s", "a standing camera moves only once its view stays displaced this long (a standing robot "
        "vibrates and its view swings back) ...", (0.0, 3600.0))
    leave_standing_factor: float = setting(
        2.0, "x standing_deg", "... or at once beyond this many times the standing threshold", (1.0, 1000.0))
    settled_s: float = setting(
        0.2, "s", "how long a track stood still (the camera standing) before it speaks for the standing scene",
        (0.0, 3600.0))
    min_settled: int = setting(5, "tracks", "settled tracks enough to speak for the scene (a body close by may "
                               "hide the rest)", (1, 10000))
    hidden_standing_s: float = setting(
        0.5, "s", "a standing camera whose settled tracks were all hidden (a body in front of the lens) is "
        "taken to stand this long", (0.0, 3600.0))
    max_gap_s: float = setting(0.5, "s", "a longer gap between two tracked frames restarts the tracking (the "
                               "pose readout bridges it)", (0.0, 3600.0))
    min_inliers: int = setting(15, "tracks", "fewer tracks or inliers than this: the pose readout answers",
                               (5, 10000))
    noise_px: float = setting(0.5, "px", "tracking noise (one sigma) of a feature on the geometry frames "
                              "(the bundle adjustment's residuals on real footage: 0.26-0.32 px robust sigma; "
                              "Lucas-Kanade kept within forward_backward_px); outliers lie beyond the chi-square "
                              "95% bound, 2.45 sigma", (0.01, 100.0))
    forward_backward_px: float = setting(1.0, "px", "Lucas-Kanade forward-backward check of the odometry's tracks",
                                         (0.01, 100.0))
    window_keyframes: int = setting(6, "keyframes", "recent keyframes bundle-adjusted together (the oldest "
                                    "holds the gauge)", (2, 100))
    depth_prior_sigma: float = setting(
        0.3, "log depth", "the 4DS depth's error within a frame, as a prior on each map point (AbsRel 0.2-0.3 "
        "after median alignment, measured on real footage)", (0.001, 10.0))
    depth_scale_sigma: float = setting(
        0.1, "log depth", "how much the 4DS depth's scale may differ from one keyframe to the next (the window's "
        "scale is their mean)", (0.001, 10.0))
    metric_scale_sigma: float = setting(
        0.8, "log depth", "how far the 4DS depth's metric scale may be from the truth on a scene no one tried (one "
        "sigma): the translation's share of the published covariance (benchmarks/metric_scale.py: 0.79 for the "
        "default model on rooms and cameras it never saw)", (0.0, 10.0))
    timing_error_s: float = setting(
        0.02, "s", "how far a frame's pose may be from its stamp's instant (rolling-shutter readout, exposure, "
        "time-stamp jitter; one sigma): a step's share of the published covariance that grows with its speed (0: "
        "a global-shutter camera with hardware time stamps)", (0.0, 1.0))
    adjustment_iterations: int = setting(10, "iterations", "Levenberg-Marquardt iterations of a bundle "
                                         "adjustment", (1, 1000))
    on_arrival: bool = setting(True, "", "publish each frame's pose as soon as the frame arrives (tracked against "
                               "the local map; the model's depth joins the map when the window comes back); false: "
                               "with its window, the pose readout answering where the geometry fails (egomotion "
                               "fused always runs with the window)")


@dataclass
class DepthFusionConfig(_Checked):
    """The correction of the model's depth by measured depth (`depth_fusion.py`): `depth_fusion.<name>`."""

    sigma: float = setting(0.12, "x image width", "width of the wide correction kernel", (0.001, 10.0))
    detail_sigma: float = setting(0.02, "x image width", "width of the narrow kernel (0: off)", (0.0, 10.0))
    model_sigma: float = setting(0.2, "log depth", "the model depth's assumed error: its weight against the "
                                 "measurements'", (0.001, 10.0))
    precision_ratio: float = setting(
        0.5, "x model_sigma", "measurements noisier than this are left out (many noisy ones averaged are precise "
        "in theory and biased in practice)", (0.001, 100.0))
    min_samples: int = setting(12, "pixels", "fewer measured pixels than this correct nothing", (1, 10**7))
    max_moving_s: float = setting(
        0.3, "s", "how long a moving camera reuses a correction without measurements in view (the view moves on; "
        "a standing camera keeps it)", (0.0, 3600.0))
    horizon_s: float = setting(
        30.0, "s", "a measurement older than this corrects nothing, even on a standing camera (the scene changes: "
        "people, doors, parked cars)", (0.0, 10**6))
    outlier_mads: float = setting(3.0, "MADs", "log ratios this far from the median are dropped (movers, bad "
                                  "matches)", (0.1, 1000.0))
    confidence_tolerance: float = setting(
        0.1, "log depth", "depth/confidence is the chance, under the fusion's error model, that a pixel's depth is "
        "within this of the truth (0.1: about 10%)", (0.001, 10.0))


@dataclass
class FlowDepthConfig(_Checked):
    """Depth triangulated from dense optical flow and the egomotion (`flow_depth.py`): `flow_depth.<name>`."""

    min_angle_deg: float = setting(1.0, "deg", "rays meeting at a narrower angle leave the depth to the flow's "
                                   "noise", (0.0, 90.0))
    sigma_floor: float = setting(0.03, "log depth", "noise a perfect agreement of two references still leaves",
                                 (0.0, 10.0))
    max_pixel_deg: float = setting(
        0.5, "deg", "frames whose pixels subtend more are not measured (flow on 128-pixel-wide frames measured "
        "worse than the model)", (0.001, 90.0))
    flow_noise_px: float = setting(0.5, "px", "the flow's error: how much a pixel of parallax is worth",
                                   (0.001, 100.0))
    max_error_px: float = setting(1.0, "px", "reprojection error beyond which two rays do not meet",
                                  (0.01, 100.0))
    max_grey_difference: float = setting(16.0, "grey levels", "median difference (of 255) matched pixels may "
                                         "show before a pair is taken not to look alike", (0.0, 255.0))
    baseline: float = setting(0.05, "x scene depth", "wanted baseline of a reference (about 3 degrees)",
                              (0.001, 10.0))
    min_consistent: float = setting(
        0.2, "fraction", "a motion under which fewer pixels than this have rays that meet does not explain the "
        "flow (a wrong pose, a moving scene): nothing measured", (0.0, 1.0))
    fit_matches: int = setting(300, "matches", "flow matches the two-view fit uses", (8, 10**7))
    fit_iterations: int = setting(100, "iterations", "RANSAC iterations of the two-view fit", (1, 10**6))
    memory: int = setting(48, "frames", "earlier frames kept as references (a slow camera needs more than one "
                          "window to move)", (2, 10**5))
    candidates: int = setting(4, "frames", "references tried (one flow each) for the two that measure", (1, 1000))


# Grouped configs of StreamConfig: its field, and the parameter prefix of their settings, `<field>.`.
GROUPS = {"odometry": EgomotionConfig, "depth_fusion": DepthFusionConfig, "flow_depth": FlowDepthConfig}


@dataclass
class StreamConfig(_Checked):
    """The streaming core's settings (`pipeline.py`): the node's parameters of the same names."""

    window_len: int = setting(16, "frames", "frames per window; must equal the model's clip length", (2, 256))
    window_hop: int = setting(4, "frames", "new frames between inferences: lower = less latency, more compute",
                              (1, 256))
    frame_stride: int = setting(1, "frames", "use every k-th camera frame", (1, 1000))
    resize_policy: str = setting("resize", "", "how frames become model input", choices=RESIZE_POLICIES)
    partial_windows: bool = setting(
        True, "", "output from a stream's first frame: until the ring holds a window, windows repeat their first "
        "frame in front (as 4DS reads a single image); their frames are marked partial, their depth less trusted")
    depth_affine: bool = setting(False, "", "stitch depth with scale and shift (for affine-invariant depth "
                                 "models)")
    depth_scale_horizon_s: float = setting(
        10.0, "s", "the window-to-window depth scale returns to the model's own over this time: continuous from one "
        "window to the next, never chained over a whole run (0: chained)", (0.0, 10**6))
    point_tracks: int = setting(32, "tracks", "point tracks kept alive (0: off)", (0, 4096))
    point_seeding: str = setting("corners", "", "how new point tracks are seeded (none: only from "
                                 "tracks/point_seeds)", choices=POINT_SEEDING)
    max_invisible_frames: int = setting(8, "frames", "drop a track after this many invisible frames", (0, 10**9))
    flush_after_s: float = setting(0.5, "s", "after this long without frames, publish the frames still waiting "
                                   "(0: never)", (0.0, 3600.0))
    egomotion: str = setting(
        "geometric", "", "how camera motion is estimated: geometric (feature tracks, a local map scaled by the "
        "4DS depth, bundle adjustment; the pose readout as fallback), readout (the 4DS pose head alone), fused (both, by covariance)",
        choices=EGOMOTION_MODES)
    refine_points: bool = setting(True, "", "refine point tracks at camera resolution (Lucas-Kanade from the last "
                                  "position, the 4DS estimate as the second guess, appearance checked)")
    point_visibility: str = setting(
        "refined", "", "occlusion signal of point tracks: readout (4DS visibility), refined (the refinement's "
        "check) or both", choices=POINT_VISIBILITY)
    fuse_depth: bool = setting(
        True, "", "correct the 4DS depth with depth triangulated from dense optical flow and the geometric "
        "egomotion (needs egomotion geometric or fused; once a window, 40-50 ms on 2 cores)")
    rectify: bool = setting(True, "", "undistort frames whose camera_info has a distortion model (plumb_bob, "
                            "rational_polynomial, equidistant), as image_proc would; off for cameras already "
                            "rectified")
    geometry_pixels: int = setting(
        76_800, "pixels", "size of the grey frames the geometric stage tracks on (at most the camera's; 320x240 "
        "for a 4:3 camera, 503x152 for KITTI's 1241x376): tracking costs what the pixels cost", (1024, 10**8))
    max_image_pixels: int = setting(50_000_000, "pixels", "images with more pixels are rejected (a log line) "
                                    "before anything is allocated for them", (1, 2_000_000_000))
    odometry: EgomotionConfig = field(default_factory=EgomotionConfig)
    depth_fusion: DepthFusionConfig = field(default_factory=DepthFusionConfig)
    flow_depth: FlowDepthConfig = field(default_factory=FlowDepthConfig)

    def validate(self) -> None:
        super().validate()
        if self.window_hop > self.window_len:
            raise ValueError(f"window_hop must be in [1, window_len={self.window_len}], got {self.window_hop}")

    def values(self) -> dict[str, Any]:
        """Every setting's value by its table name."""
        out = {f.name: getattr(self, f.name) for f in _fields(StreamConfig)}
        for name, group_type in GROUPS.items():
            group = getattr(self, name)
            out.update({f"{name}.{f.name}": getattr(group, f.name) for f in _fields(group_type)})
        return out

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> "StreamConfig":
        """A config from table names (any subset; the rest keep their defaults). An unknown name is a ValueError
        that lists the closest known ones."""
        known = {row.name for row in table()}
        for name in values:
            if name not in known:
                raise ValueError(unknown_setting(name))
        top = {k: v for k, v in values.items() if "." not in k}
        groups = {name: group_type(**{k[len(name) + 1:]: v for k, v in values.items() if k.startswith(name + ".")})
                  for name, group_type in GROUPS.items()}
        return cls(**top, **groups)


# Settings scoring fixes, whatever the node is set to (`eval`; `replay` all but the flush, since it runs in real
# time): the model's own clip and query count, the ground truth's tracks as the only seeds, kept however long
# unseen, and every window processed (no flush on a timer).
SCORING_FIXED = ("window_len", "point_tracks", "point_seeding", "max_invisible_frames", "flush_after_s")


def unknown_setting(name: str) -> str:
    import difflib
    close = difflib.get_close_matches(name, [row.name for row in table()], n=3, cutoff=0.6)
    return f"no setting named {name!r}" + (f" (did you mean {', '.join(close)}?)" if close else "")


def table() -> list[Setting]:
    """Every setting, in the order of `config/perception.yaml`."""
    rows = _rows(StreamConfig)
    for name, group_type in GROUPS.items():
        rows += _rows(group_type, name + ".")
    return rows
