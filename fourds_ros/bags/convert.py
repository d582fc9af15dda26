"""`fourds-ros convert`: real footage in the layouts robotics people hold it -> a ground-truth rosbag2 (mcap).

Layouts (detected, or named with `layout`):
- `tum`: TUM RGB-D (`rgb.txt`, `depth.txt`, `groundtruth.txt`; depth PNG in 1/5000 m), depth and poses
  associated to each colour frame by nearest timestamp within 20 ms, as the benchmark's `associate.py` does.
- `euroc`: EuRoC ASL (`mav0/cam0/data.csv`, `mav0/cam0/data/*.png`, `mav0/cam0/sensor.yaml`; ground truth from
  `mav0/state_groundtruth_estimate0/data.csv`, or a file given with `gt`); also the flattened copy
  `cam0/`, `cam0_data.csv`, `cam0_sensor.yaml`. Camera pose = T_WB * T_BS (body-to-camera extrinsic applied).
- `kitti`: KITTI odometry (`image_0/` or `image_2/`, `calib.txt`, `times.txt`; poses from `../../poses/XX.txt`
  or `gt`). Poses of `image_2` are shifted by the colour camera's offset in `calib.txt`.
- `kitti_raw`: KITTI raw (a date folder with the calibration files and one `*_sync` drive, or the drive folder;
  `image_02/` by default, or `image_00/`..`image_03/`); poses from the OXTS records (`kitti_raw.py`), or `gt`.
- `folder`: `images/` (+ optional `depth/` 16-bit PNG in mm, `K.txt`, `poses.txt` with one camera-to-world 4x4
  per line), stamped at `fps`.
- `video`: an mp4/avi file with `fx` or a `K` file, no ground truth.

Distorted cameras (EuRoC radial-tangential, `equidistant`) are undistorted to a pinhole by default (OpenCV, the
new camera matrix keeps only valid pixels); `undistort=False` keeps the images raw and writes the distortion into
camera_info instead. With depth and poses, derived point tracks are written too (`derived_tracks`).
A corrupt image or depth file in the middle is skipped with a warning and counted in `conversion.json` beside
the bag; every other problem stops with the file and line.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import yaml

from . import kitti_raw
from .trajectory_files import PoseTable, TrajectoryFileError, associate, read_euroc_csv, read_matrix_rows, \
    read_trajectory, read_tum
from .writer import GroundTruthBagWriter

log = logging.getLogger("fourds_ros.convert")
LAYOUTS = ("tum", "euroc", "kitti", "kitti_raw", "folder", "video")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Intrinsics of the TUM RGB-D cameras (the benchmark's published calibration of the colour camera).
TUM_CAMERAS = {"freiburg1": (517.3, 516.5, 318.6, 255.3), "freiburg2": (520.9, 521.0, 325.1, 249.7),
               "freiburg3": (535.4, 539.2, 320.1, 247.6)}


class ConvertError(ValueError):
    """The source cannot be converted: the message names the file (and line) and the problem."""


@dataclass
class Source:
    layout: str
    stamps_ns: np.ndarray  # (F,)
    k: np.ndarray  # 3x3 of the images as stored
    images: list[Path] | None = None  # one per frame; None for a video
    video: Path | None = None
    distortion: tuple[str, np.ndarray] | None = None  # (camera_info distortion_model, coefficients)
    depth: list[Path | None] | None = None
    depth_units_per_m: float = 1000.0  # depth PNG units in one metre (mm: 1000, TUM: 5000)
    poses: np.ndarray | None = None  # (F, 4, 4) camera-to-world, NaN where unknown
    notes: list[str] = field(default_factory=list)


# Layout detection and reading ------------------------------------------------------
def detect_layout(path: Path) -> str:
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() in VIDEO_SUFFIXES:
            return "video"
        raise ConvertError(f"{path}: a file can only be a video ({', '.join(VIDEO_SUFFIXES)})")
    if not path.is_dir():
        raise ConvertError(f"source {path} does not exist")
    if (path / "rgb.txt").is_file():
        return "tum"
    if (path / "mav0" / "cam0").is_dir() or (path / "cam0_data.csv").is_file():
        return "euroc"
    if (path / "calib.txt").is_file() and (path / "times.txt").is_file():
        return "kitti"
    if kitti_raw.is_kitti_raw(path):
        return "kitti_raw"
    if (path / "images").is_dir():
        return "folder"
    raise ConvertError(f"{path}: unknown layout (expected one of: TUM rgb.txt, EuRoC mav0/cam0 or cam0_data.csv, "
                       f"KITTI calib.txt + times.txt, KITTI raw calib_cam_to_cam.txt + *_sync/oxts, a folder with images/, or a video file)")


def _need(path: Path) -> Path:
    if not path.exists():
        raise ConvertError(f"missing {path}")
    return path


def _read_k(path: Path) -> np.ndarray:
    try:
        k = np.loadtxt(_need(path)).reshape(3, 3)
    except ValueError as exc:
        raise ConvertError(f"{path}: not a 3x3 camera matrix ({exc})") from None
    if k[0, 0] <= 0 or k[1, 1] <= 0:
        raise ConvertError(f"{path}: focal lengths must be positive")
    return k


def _k_from(fx: float | None, fy: float | None, cx: float | None, cy: float | None, size: tuple[int, int]) -> np.ndarray:
    h, w = size
    fx = float(fx)
    return np.array([[fx, 0, (w - 1) / 2 if cx is None else cx], [0, fy or fx, (h - 1) / 2 if cy is None else cy],
                     [0, 0, 1]])


def _stamped_list(path: Path) -> list[tuple[int, int, str]]:
    """(line, stamp ns, file) rows of a TUM `rgb.txt`/`depth.txt` or an EuRoC `data.csv`; order checked."""
    rows = []
    for number, line in enumerate(_need(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace(",", " ").split()
        if len(parts) != 2:
            raise ConvertError(f"{path}:{number}: expected 'timestamp filename', got {line[:80]!r}")
        try:
            stamp = int(parts[0]) if path.suffix == ".csv" else int(round(float(parts[0]) * 1e9))
        except ValueError:
            raise ConvertError(f"{path}:{number}: bad timestamp {parts[0]!r}") from None
        if rows and stamp <= rows[-1][1]:
            raise ConvertError(f"{path}:{number}: timestamp {'duplicated' if stamp == rows[-1][1] else 'out of order'}")
        rows.append((number, stamp, parts[1]))
    if not rows:
        raise ConvertError(f"{path} lists no frames")
    return rows


def _files(rows, root: Path, listing: Path) -> list[Path]:
    out = []
    for number, _, name in rows:
        file = root / name
        if not file.is_file():
            raise ConvertError(f"{listing}:{number}: {file} does not exist")
        out.append(file)
    return out


def _poses(table_or_path, stamps: np.ndarray, reader=read_trajectory) -> np.ndarray:
    try:
        table = table_or_path if isinstance(table_or_path, PoseTable) else reader(table_or_path)
        return associate(stamps, table)
    except TrajectoryFileError as exc:
        raise ConvertError(str(exc)) from None


def read_tum_layout(root: Path, gt: Path | None, k: np.ndarray | None, fx: float | None) -> Source:
    rgb = _stamped_list(root / "rgb.txt")
    stamps = np.array([s for _, s, _ in rgb], np.int64)
    images = _files(rgb, root, root / "rgb.txt")
    k = _camera_matrix(k, root / "K.txt", fx, images[0], lambda: _tum_k(root))
    source = Source("tum", stamps, k, images=images, depth_units_per_m=5000.0)
    if (root / "depth.txt").is_file():
        depth = _stamped_list(root / "depth.txt")
        depth_files = _files(depth, root, root / "depth.txt")
        depth_stamps = np.array([s for _, s, _ in depth], np.int64)
        source.depth = []
        for stamp in stamps:
            j = int(np.argmin(np.abs(depth_stamps - stamp)))
            source.depth.append(depth_files[j] if abs(int(depth_stamps[j]) - int(stamp)) <= 0.02e9 else None)
    gt_file = gt or (root / "groundtruth.txt" if (root / "groundtruth.txt").is_file() else None)
    if gt_file is not None:
        source.poses = _poses(gt_file, stamps, read_tum if gt is None else read_trajectory)
    return source


def _tum_k(root: Path) -> np.ndarray:
    for name, (fx, fy, cx, cy) in TUM_CAMERAS.items():
        if name in root.name:
            return np.array([[fx, 0, cx], [0, fy, cy], [0, 0, 1]])
    raise ConvertError(f"{root}: cannot tell which TUM camera this is; give the intrinsics (--fx/--fy/--cx/--cy or --K)")


def _euroc_yaml(path: Path) -> dict:
    text = _need(path).read_text()
    text = "\n".join(line for line in text.splitlines() if not line.startswith("%YAML"))
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConvertError(f"{path}: not valid YAML: {exc}") from None


def read_euroc_layout(root: Path, gt: Path | None) -> Source:
    if (root / "mav0" / "cam0").is_dir():
        cam = root / "mav0" / "cam0"
        listing, image_dir, sensor = cam / "data.csv", cam / "data", cam / "sensor.yaml"
        default_gt = root / "mav0" / "state_groundtruth_estimate0" / "data.csv"
    else:
        listing, image_dir, sensor = root / "cam0_data.csv", root / "cam0", root / "cam0_sensor.yaml"
        default_gt = root / "state_groundtruth_estimate0.csv"
    rows = _stamped_list(listing)
    stamps = np.array([s for _, s, _ in rows], np.int64)
    s = _euroc_yaml(sensor)
    try:
        fu, fv, cu, cv = (float(v) for v in s["intrinsics"])
        coefficients = np.asarray(s.get("distortion_coefficients", []), np.float64)
        body_from_camera = np.asarray(s["T_BS"]["data"], np.float64).reshape(4, 4)
        model = s.get("distortion_model", "radial-tangential")
    except (KeyError, TypeError, ValueError) as exc:
        raise ConvertError(f"{sensor}: missing or malformed camera fields ({exc})") from None
    k = np.array([[fu, 0, cu], [0, fv, cv], [0, 0, 1]])
    ros_model = {"radial-tangential": "plumb_bob", "equidistant": "equidistant"}.get(model)
    if ros_model is None:
        raise ConvertError(f"{sensor}: distortion model {model!r} is not supported (radial-tangential, equidistant)")
    if ros_model == "plumb_bob":
        coefficients = np.concatenate([coefficients, np.zeros(max(0, 5 - len(coefficients)))])[:5]
    source = Source("euroc", stamps, k, images=_files(rows, image_dir, listing),
                    distortion=(ros_model, coefficients) if np.any(coefficients) else None)
    gt_file = gt or (default_gt if default_gt.is_file() else None)
    if gt_file is not None:
        world_from_body = _poses(gt_file, stamps, read_trajectory if gt else read_euroc_csv)
        source.poses = world_from_body @ body_from_camera
    else:
        source.notes.append("no ground truth found: give it with --gt")
    return source


def read_kitti_layout(root: Path, gt: Path | None, camera: str | None) -> Source:
    camera = camera or ("image_2" if (root / "image_2").is_dir() else "image_0")
    image_dir = _need(root / camera)
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    times = _need(root / "times.txt")
    try:
        seconds = np.loadtxt(times, ndmin=1)
    except ValueError as exc:
        raise ConvertError(f"{times}: not one time per line ({exc})") from None
    if len(seconds) != len(images):
        raise ConvertError(f"{times} has {len(seconds)} times for {len(images)} images in {image_dir}")
    stamps = np.round(seconds * 1e9).astype(np.int64)
    bad = np.flatnonzero(np.diff(stamps) <= 0)
    if len(bad):
        raise ConvertError(f"{times}:{bad[0] + 2}: timestamp out of order or duplicated")
    projections = {}
    for number, line in enumerate(_need(root / "calib.txt").read_text().splitlines(), 1):
        if ":" in line:
            name, values = line.split(":", 1)
            try:
                projections[name.strip()] = np.array([float(v) for v in values.split()]).reshape(3, 4)
            except ValueError:
                raise ConvertError(f"{root / 'calib.txt'}:{number}: expected 12 numbers") from None
    key = "P" + camera[-1]
    if key not in projections:
        raise ConvertError(f"{root / 'calib.txt'} has no {key} for {camera}")
    p = projections[key]
    source = Source("kitti", stamps, p[:, :3].copy(), images=images)
    gt_file = gt or root.parent.parent / "poses" / f"{root.name}.txt"
    if gt_file.is_file():
        poses = _poses(gt_file, stamps, read_matrix_rows)
        offset = np.eye(4)
        offset[:3, 3] = -np.linalg.solve(p[:, :3], p[:, 3])  # camera centre of this camera in camera 0
        source.poses = poses @ offset
    else:
        source.notes.append(f"no ground truth ({gt_file} not found)")
    return source


def read_kitti_raw_layout(root: Path, gt: Path | None, camera: str | None) -> Source:
    try:
        drive, calibration = kitti_raw.find_drive(root)
        camera = camera or next((c for c in ("image_02", "image_00", "image_03", "image_01")
                                 if (drive / c / "data").is_dir()), "image_02")
        if not (camera.startswith("image_0") and camera[-1] in "0123"):
            raise ConvertError(f"KITTI raw camera must be image_00 .. image_03, got {camera!r}")
        image_dir = _need(drive / camera / "data")
        images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise ConvertError(f"{image_dir} holds no images")
        frames = kitti_raw.frame_numbers(images)
        stamps = kitti_raw.read_timestamps(drive / camera / "timestamps.txt")
        if frames[-1] >= len(stamps):
            raise ConvertError(f"{drive / camera / 'timestamps.txt'} has {len(stamps)} times; image {images[-1].name} "
                               f"needs {frames[-1] + 1}")
        stamps = stamps[frames]
        bad = np.flatnonzero(np.diff(stamps) <= 0)
        if len(bad):
            raise ConvertError(f"{drive / camera / 'timestamps.txt'}:{bad[0] + 2}: timestamp out of order or duplicated")
        source = Source("kitti_raw", stamps, kitti_raw.camera_matrix(calibration, int(camera[-1])), images=images)
        if gt is not None:
            source.poses = _poses(gt, stamps, read_matrix_rows)
        else:
            source.poses = kitti_raw.camera_poses(drive, calibration, int(camera[-1]), frames)
    except kitti_raw.KittiRawError as exc:
        raise ConvertError(str(exc)) from None
    return source


def read_folder_layout(root: Path, gt: Path | None, k: np.ndarray | None, fx: float | None, fps: float) -> Source:
    images = sorted(p for p in (root / "images").iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ConvertError(f"{root / 'images'} holds no images")
    stamps = (np.arange(len(images)) * 1e9 / fps).astype(np.int64)
    source = Source("folder", stamps, _camera_matrix(k, root / "K.txt", fx, images[0]), images=images)
    if (root / "depth").is_dir():
        source.depth = [root / "depth" / p.name if (root / "depth" / p.name).is_file() else None for p in images]
        missing = sum(d is None for d in source.depth)
        if missing:
            source.notes.append(f"{missing} images have no depth file of the same name")
    pose_file = gt or (root / "poses.txt" if (root / "poses.txt").is_file() else None)
    if pose_file is not None:
        source.poses = _poses(pose_file, stamps)
    return source


def read_video(path: Path, k: np.ndarray | None, fx: float | None, fps: float | None) -> Source:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ConvertError(f"cannot open video {path}")
    rate = fps or capture.get(cv2.CAP_PROP_FPS) or 30.0
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    size = (int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)))
    capture.release()
    if count <= 0 or min(size) <= 0:
        raise ConvertError(f"video {path} has no readable frames")
    if k is None:
        if fx is None:
            h, w = size
            examples = ", ".join(f"{w / 2 / np.tan(np.radians(fov) / 2):.0f} px for {fov} degrees" for fov in (60, 90))
            raise ConvertError(f"video {path} ({w}x{h}) says nothing of its camera: give the focal length in pixels "
                               f"(--fx) or a K file (--K). From the horizontal field of view, fx = width / 2 / "
                               f"tan(fov / 2): {examples}")
        k = _k_from(fx, None, None, None, size)
    return Source("video", (np.arange(count) * 1e9 / rate).astype(np.int64), k, video=path,
                  notes=["a video has no ground truth"])


def read_source(path: Path, layout: str | None = None, gt: Path | None = None, k: np.ndarray | None = None,
                fx: float | None = None, fps: float | None = None, camera: str | None = None) -> Source:
    path = Path(path)
    layout = layout or detect_layout(path)
    if layout not in LAYOUTS:
        raise ConvertError(f"unknown layout {layout!r}; choose from {', '.join(LAYOUTS)}")
    if gt is not None and not Path(gt).is_file():
        raise ConvertError(f"ground-truth file {gt} does not exist")
    if layout == "video":
        return read_video(path, k, fx, fps)
    if layout == "tum":
        source = read_tum_layout(path, gt, k, fx)
    elif layout == "euroc":
        source = read_euroc_layout(path, gt)
    elif layout == "kitti":
        source = read_kitti_layout(path, gt, camera)
    elif layout == "kitti_raw":
        source = read_kitti_raw_layout(path, gt, camera)
    else:
        source = read_folder_layout(path, gt, k, fx, fps or 10.0)
    return source


def _camera_matrix(k: np.ndarray | None, k_file: Path, fx: float | None, first_image: Path, fallback=None) -> np.ndarray:
    """K given, else `k_file`, else a pinhole of focal `fx` centred on the first image, else `fallback()`."""
    if k is not None:
        return k
    if k_file.is_file():
        return _read_k(k_file)
    if fx is not None:
        image = cv2.imread(str(first_image), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise ConvertError(f"{first_image} cannot be decoded")
        return _k_from(fx, None, None, None, image.shape[:2])
    if fallback is not None:
        return fallback()
    raise ConvertError(f"no intrinsics: give {k_file.name}, --K or --fx")


# Frames ----------------------------------------------------------------------------
def _to_8bit(image: np.ndarray) -> np.ndarray:
    if image.dtype == np.uint16:
        return (image >> 8).astype(np.uint8)
    return image


def decode_image(image: np.ndarray) -> tuple[np.ndarray, str]:
    """An OpenCV image (grey, BGR or BGRA) as (array, ROS encoding): mono8 or rgb8."""
    image = _to_8bit(image)
    if image.ndim == 2:
        return image, "mono8"
    code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
    return cv2.cvtColor(image, code), "rgb8"


class Undistorter:
    """Maps built once: raw distorted image -> pinhole image with camera matrix `k`."""

    def __init__(self, k: np.ndarray, distortion: tuple[str, np.ndarray], size: tuple[int, int]):
        h, w = size
        model, d = distortion
        if model == "equidistant":
            self.k = cv2.fisheye.estimateNewCameraMatrixForUndistortRectify(k, d[:4], (w, h), np.eye(3), balance=0.0)
            self.maps = cv2.fisheye.initUndistortRectifyMap(k, d[:4], np.eye(3), self.k, (w, h), cv2.CV_16SC2)
        else:
            self.k, _ = cv2.getOptimalNewCameraMatrix(k, d, (w, h), 0.0)
            self.maps = cv2.initUndistortRectifyMap(k, d, None, self.k, (w, h), cv2.CV_16SC2)

    def __call__(self, image: np.ndarray, interpolation=cv2.INTER_LINEAR) -> np.ndarray:
        return cv2.remap(image, *self.maps, interpolation)


def _frames(source: Source) -> Iterator[tuple[int, np.ndarray | None, str]]:
    """(index, BGR/grey image or None if unreadable, name) for every frame."""
    if source.video is not None:
        capture = cv2.VideoCapture(str(source.video))
        try:
            for i in range(len(source.stamps_ns)):
                ok, image = capture.read()
                yield i, image if ok else None, f"{source.video} frame {i}"
        finally:
            capture.release()
        return
    for i, path in enumerate(source.images):
        yield i, cv2.imread(str(path), cv2.IMREAD_UNCHANGED), str(path)


def _depth(source: Source, i: int) -> tuple[np.ndarray | None, bool]:
    """(metres with NaN invalid, or None; whether a listed file was unreadable)."""
    if source.depth is None or source.depth[i] is None:
        return None, False
    raw = cv2.imread(str(source.depth[i]), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.ndim != 2:
        return None, True
    depth = raw.astype(np.float32) / np.float32(source.depth_units_per_m)
    depth[raw == 0] = np.nan
    return depth, False


def convert(path: Path, out: Path, layout: str | None = None, gt: Path | None = None, k: np.ndarray | None = None,
            fx: float | None = None, fps: float | None = None, camera: str | None = None, undistort: bool = True,
            image_format: str = "raw", point_tracks: int = 64, overwrite: bool = False) -> dict:
    """Write the source as a ground-truth bag at `out`; returns the conversion summary (also `conversion.json`)."""
    if image_format not in ("raw", "png", "jpeg"):
        raise ConvertError(f"unknown image format {image_format!r} (raw, png, jpeg)")
    source = read_source(path, layout, gt, k, fx, fps, camera)
    skipped: list[str] = []
    good: list[int] = []
    undistorter = None
    # Pass 1 finds the frames that decode (a long sequence is never held in memory whole).
    for i, image, name in _frames(source):
        if image is None:
            log.warning(f"skipping frame {i}: {name} cannot be decoded")
            skipped.append(f"{name}: image cannot be decoded")
            continue
        if undistort and source.distortion is not None and undistorter is None:
            undistorter = Undistorter(source.k, source.distortion, image.shape[:2])
        good.append(i)
    if not good:
        raise ConvertError(f"{path}: no frame could be decoded")
    k_out = undistorter.k if undistorter is not None else source.k
    distortion = None if undistorter is not None or source.distortion is None else source.distortion

    def depth_of(i: int) -> np.ndarray | None:
        depth, corrupt = _depth(source, i)
        if corrupt:
            log.warning(f"frame {i}: depth {source.depth[i]} cannot be decoded; the frame is kept without depth")
            skipped.append(f"{source.depth[i]}: depth cannot be decoded")
        return undistorter(depth, cv2.INTER_NEAREST) if depth is not None and undistorter is not None else depth

    posed = source.poses is not None and bool(np.isfinite(source.poses[good]).all())
    tracks = None
    decoded_depth: dict[int, np.ndarray | None] = {}  # read once for the tracks, written from here
    if posed and point_tracks > 0 and source.images is not None and source.depth is not None:
        depths = [depth_of(i) for i in good]
        decoded_depth = dict(zip(good, depths))
        if all(d is not None for d in depths):
            def load(f: int):
                grey = _to_8bit(cv2.imread(str(source.images[good[f]]), cv2.IMREAD_GRAYSCALE))
                return (grey if undistorter is None else undistorter(grey)), depths[f]

            from .derived_tracks import derive_point_tracks
            tracks = derive_point_tracks(len(good), load, k_out, source.poses[good], point_tracks)
        del depths
    keep = set(good)
    depth_frames = 0
    with GroundTruthBagWriter(out, overwrite) as bag:
        bag.static_transform(int(source.stamps_ns[good[0]]))
        f = 0
        for i, image, _ in _frames(source):
            if i not in keep:
                continue
            if undistorter is not None:
                image = undistorter(image)
            array, encoding = decode_image(image)
            stamp = int(source.stamps_ns[i])
            pose = source.poses[i] if source.poses is not None and np.isfinite(source.poses[i]).all() else None
            depth = decoded_depth.pop(i) if i in decoded_depth else depth_of(i)
            depth_frames += depth is not None
            frame = dict(k=k_out, size=array.shape[:2], distortion=distortion, depth=depth, pose=pose,
                         points=(tracks[0][:, f], tracks[1][:, f]) if tracks is not None else None)
            if image_format == "raw":
                bag.frame(stamp, image=array, encoding=encoding, **frame)
            else:
                ok, data = cv2.imencode(".png" if image_format == "png" else ".jpg", _to_8bit(image))
                bag.frame(stamp, compressed=(data.tobytes(), image_format), **frame)
            f += 1
    summary = {"source": str(path), "layout": source.layout, "frames": len(good), "frames_skipped": len(skipped),
               "skipped": skipped, "undistorted": undistorter is not None, "depth_frames": depth_frames,
               "poses": bool(posed), "derived_point_tracks": 0 if tracks is None else int(len(tracks[0])),
               "notes": source.notes}
    if tracks is not None:
        from .derived_tracks import DEPTH_TOLERANCE_M, DEPTH_TOLERANCE_REL
        summary["notes"].append(
            f"point tracks are derived from ground-truth depth and poses assuming a static scene (visible where "
            f"the depth test agrees within max({DEPTH_TOLERANCE_M} m, {DEPTH_TOLERANCE_REL:.0%}))")
    (Path(out) / "conversion.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def read_conversion(bag: Path) -> dict | None:
    """The summary `convert` left beside a bag (None for bags it did not write)."""
    path = Path(bag) / "conversion.json"
    return json.loads(path.read_text()) if path.is_file() else None
