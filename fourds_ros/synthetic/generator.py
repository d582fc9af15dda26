"""Render a seeded synthetic sequence with 4D ground truth (headless MuJoCo, `MUJOCO_GL=egl` or osmesa).

Per frame: RGB, metric depth along the optical axis (NaN where nothing was
hit), intrinsics, the camera pose in the world (REP 103 optical frame: x right,
y down, z forward), object boxes with stable ids and visibility (from the
segmentation render) and point tracks (surface points followed through every
frame, visible when the depth test passes). Same seed, same sequence.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .assets import AssetLibrary
from .scene import STYLES, build_scene
from .sensor import apply_sensor_effects
from .trajectory import body_motion, camera_path, look_at, mounting, object_path, standing_camera, \
    walk_across_view

# MuJoCo camera axes (x right, y up, -z forward) -> optical axes (x right, y down, z forward).
MUJOCO_TO_OPTICAL = np.diag([1.0, -1.0, -1.0])
MIN_BOX_PIXELS = 12
# "robot": the camera drives, turns and stops (trajectory.camera_path) among wandering objects; "handheld" and
# "walking": the same paths carried by a hand or on a walking person's head (trajectory.body_motion); "standing":
# the camera stands still while people-sized bodies walk across its view (egomotion must be exactly zero).
CAMERA_MOTIONS = ("robot", "handheld", "walking", "standing")


@dataclass
class SyntheticSequence:
    rgb: np.ndarray  # (F, H, W, 3) uint8
    depth: np.ndarray  # (F, H, W) float32 metres, NaN where invalid
    intrinsics: np.ndarray  # (3, 3)
    world_from_camera: np.ndarray  # (F, 4, 4), optical frame
    stamps_ns: np.ndarray  # (F,) int64
    point_tracks: np.ndarray  # (N, F, 2) float32 (x, y) pixels
    point_visible: np.ndarray  # (N, F) bool
    boxes: np.ndarray  # (M, F, 4) float32 (x_min, y_min, x_max, y_max) pixels
    box_visible: np.ndarray  # (M, F) bool
    box_names: list[str]
    point_object: np.ndarray  # (N,) index into box_names of the object a track lies on, -1: floor or walls
    motion: list[str]  # per frame: 'move', 'rotate' or 'static'
    seed: int


def intrinsics_for(height: int, width: int, fovy_deg: float) -> np.ndarray:
    fy = (height / 2) / np.tan(np.radians(fovy_deg) / 2)
    return np.array([[fy, 0, (width - 1) / 2], [0, fy, (height - 1) / 2], [0, 0, 1]])


def render_views(renderer, data, camera: str = "camera") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """RGB, depth (metres along the optical axis) and geom ids (-1: no geom) from `camera`."""
    import mujoco
    renderer.update_scene(data, camera=camera)
    rgb = renderer.render()
    renderer.enable_depth_rendering()
    depth = renderer.render()
    renderer.disable_depth_rendering()
    renderer.enable_segmentation_rendering()
    seg = renderer.render()
    renderer.disable_segmentation_rendering()
    return rgb, depth, np.where(seg[..., 1] == mujoco.mjtObj.mjOBJ_GEOM, seg[..., 0], -1)


def camera_pose(data, camera_id: int = 0) -> np.ndarray:
    """world_from_camera of a MuJoCo camera, in the REP 103 optical frame."""
    pose = np.eye(4)
    pose[:3, :3] = data.cam_xmat[camera_id].reshape(3, 3) @ MUJOCO_TO_OPTICAL
    pose[:3, 3] = data.cam_xpos[camera_id]
    return pose


def generate(seed: int, frames: int, height: int, width: int, fps: float = 30.0, num_points: int = 64,
             fovy_deg: float = 60.0, camera_motion: str = "robot", sensor_effects: bool = False,
             style: str = "procedural", assets: AssetLibrary | None = None) -> SyntheticSequence:
    """`sensor_effects`: exposure, blur, noise and JPEG on the images (sensor.py); the ground truth is the same.
    `style`: the room's look (scene.STYLES); "photo" uses `assets` (default: `AssetLibrary.default()`)."""
    if camera_motion not in CAMERA_MOTIONS:
        raise ValueError(f"camera_motion must be one of {', '.join(CAMERA_MOTIONS)}, got {camera_motion!r}")
    os.environ.setdefault("MUJOCO_GL", "egl")
    import mujoco

    rng = np.random.default_rng(seed)
    standing = camera_motion == "standing"
    if style == "photo" and assets is None:
        assets = AssetLibrary.default()
    xml, objects = build_scene(rng, height, width, fovy_deg=fovy_deg, people=standing, style=style, assets=assets)
    model = mujoco.MjModel.from_xml_string(xml)
    data = mujoco.MjData(model)
    cam_pos, cam_target, kinds = standing_camera(rng, frames) if standing else camera_path(rng, frames, fps)
    if style == "photo" and not standing:  # cameras at every height and pitch; its own generator, as below
        cam_pos, cam_target = mounting(np.random.default_rng([seed, 5]), cam_pos, cam_target)
    if camera_motion in ("handheld", "walking"):  # its own generator: the scene and path stay those of "robot"
        cam_pos, cam_target = body_motion(np.random.default_rng([seed, 3]), cam_pos, cam_target, fps, camera_motion)
        kinds = ["move"] * frames  # a carried camera never holds still
    movers = [o for o in objects if o.moving]
    mover_paths = {}
    for o in movers:
        body = model.body(f"{o.name}_body")
        mover_paths[o.name] = walk_across_view(rng, frames, fps, cam_pos[0], cam_target[0], o.half_size) \
            if standing else object_path(rng, frames, fps, model.body_pos[body.id].copy(), o.half_size)
    k = intrinsics_for(height, width, fovy_deg)
    geom_ids = {o.name: model.geom(o.name).id for o in objects}
    rgb = np.zeros((frames, height, width, 3), np.uint8)
    depth = np.zeros((frames, height, width), np.float32)
    segmentation = np.zeros((frames, height, width), np.int32)
    poses = np.zeros((frames, 4, 4))
    body_poses = np.zeros((frames, model.nbody, 4, 4))
    renderer = mujoco.Renderer(model, height, width)
    try:
        for f in range(frames):
            rig = model.body("camera_rig").mocapid[0]
            data.mocap_pos[rig] = cam_pos[f]
            quat = np.zeros(4)
            mujoco.mju_mat2Quat(quat, look_at(cam_pos[f], cam_target[f]).ravel())
            data.mocap_quat[rig] = quat
            for o in movers:
                data.mocap_pos[model.body(f"{o.name}_body").mocapid[0]] = mover_paths[o.name][f]
            mujoco.mj_forward(model, data)
            rgb[f], depth[f], segmentation[f] = render_views(renderer, data)
            poses[f] = camera_pose(data)
            body_poses[f, :, :3, :3] = data.xmat.reshape(-1, 3, 3)
            body_poses[f, :, :3, 3] = data.xpos
            body_poses[f, :, 3, 3] = 1
    finally:
        renderer.close()
    depth[(depth <= 0) | (depth >= 0.99 * model.vis.map.zfar * model.stat.extent)] = np.nan
    boxes, box_visible = _boxes(segmentation, [geom_ids[o.name] for o in objects])
    geom_body = model.geom_bodyid
    tracks, visible, track_geoms = _point_tracks(rng, depth, segmentation, poses, body_poses, geom_body, k, num_points,
                                                 np.array(list(geom_ids.values())))
    if sensor_effects:
        rgb = apply_sensor_effects(rgb, np.random.default_rng([seed, 7]))
    object_of_geom = {geom_ids[o.name]: i for i, o in enumerate(objects)}
    point_object = np.array([object_of_geom.get(int(g), -1) for g in track_geoms], np.int64)
    return SyntheticSequence(rgb, depth, k, poses, (np.arange(frames) * (1e9 / fps)).astype(np.int64), tracks,
                             visible, boxes, box_visible, [o.name for o in objects], point_object, kinds, seed)


def _boxes(segmentation: np.ndarray, geoms: list[int]) -> tuple[np.ndarray, np.ndarray]:
    frames = segmentation.shape[0]
    boxes = np.zeros((len(geoms), frames, 4), np.float32)
    visible = np.zeros((len(geoms), frames), bool)
    for i, geom in enumerate(geoms):
        for f in range(frames):
            ys, xs = np.nonzero(segmentation[f] == geom)
            if len(xs) >= MIN_BOX_PIXELS:
                boxes[i, f] = (xs.min(), ys.min(), xs.max(), ys.max())
                visible[i, f] = True
    return boxes, visible


def project(points_camera: np.ndarray, k: np.ndarray) -> np.ndarray:
    z = points_camera[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.stack([k[0, 0] * points_camera[..., 0] / z + k[0, 2], k[1, 1] * points_camera[..., 1] / z + k[1, 2]], -1)


def _point_tracks(rng, depth, segmentation, poses, body_poses, geom_body, k, num_points, object_geoms):
    """Surface points picked at a few frames (half on objects when any are in view), carried by their body."""
    frames, height, width = depth.shape
    start_frames = np.linspace(0, frames - 1, 4).astype(int)[:3]
    anchors = []  # (body id, point in body frame, geom)
    for n, f in enumerate(np.repeat(start_frames, int(np.ceil(num_points / len(start_frames))))[:num_points]):
        on_object = np.argwhere(np.isin(segmentation[f, 2:-2, 2:-2], object_geoms)) + 2
        for _ in range(50):
            if n % 2 == 0 and len(on_object):
                y, x = on_object[int(rng.integers(len(on_object)))]
            else:
                x, y = int(rng.integers(2, width - 2)), int(rng.integers(2, height - 2))
            z, geom = depth[f, y, x], segmentation[f, y, x]
            if np.isfinite(z) and geom >= 0:
                break
        ray = np.array([(x - k[0, 2]) / k[0, 0] * z, (y - k[1, 2]) / k[1, 1] * z, z, 1.0])
        world = poses[f] @ ray
        body = geom_body[geom]
        anchors.append((body, np.linalg.inv(body_poses[f, body]) @ world, geom))
    tracks = np.zeros((len(anchors), frames, 2), np.float32)
    visible = np.zeros((len(anchors), frames), bool)
    for n, (body, local, geom) in enumerate(anchors):
        world = body_poses[:, body] @ local  # (F, 4)
        camera = np.einsum("fij,fj->fi", np.linalg.inv(poses), world)[:, :3]
        uv = project(camera, k)
        tracks[n] = np.nan_to_num(uv, nan=-1.0)
        u, v = np.round(uv[:, 0]), np.round(uv[:, 1])
        inside = (camera[:, 2] > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
        for f in np.flatnonzero(inside):
            observed = depth[f, int(v[f]), int(u[f])]
            visible[n, f] = bool(np.isfinite(observed) and abs(observed - camera[f, 2]) < 0.03 * camera[f, 2] + 0.02
                                 and segmentation[f, int(v[f]), int(u[f])] == geom)
    return tracks, visible, [geom for _, _, geom in anchors]
