"""Report figures (matplotlib, headless) and the optional side-by-side video (OpenCV)."""
from __future__ import annotations

import copy
from pathlib import Path

import cv2
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def _sample_frames(count: int, n: int = 3) -> list[int]:
    return sorted(set(np.linspace(0, count - 1, n).astype(int).tolist()))


def _resize(depth: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return cv2.resize(depth, (shape[1], shape[0]), interpolation=cv2.INTER_NEAREST)


def depth_figure(path: Path, frames, gt: np.ndarray | None, pred: np.ndarray) -> str:
    rows = _sample_frames(len(frames))
    cols = 4 if gt is not None else 2
    fig, axes = plt.subplots(len(rows), cols, figsize=(3 * cols, 2.6 * len(rows)), squeeze=False)
    for r, f in enumerate(rows):
        p = _resize(pred[f], (frames[f].height, frames[f].width))
        panels = [("image", frames[f].rgb(), None)]
        if gt is not None:
            valid = np.isfinite(gt[f]) & np.isfinite(p) & (p > 0)
            aligned = p * (np.median(gt[f][valid]) / np.median(p[valid])) if valid.any() else p
            error = np.where(valid, np.abs(aligned - gt[f]) / gt[f], np.nan)
            vmax = np.nanpercentile(gt[f], 98)
            panels += [("ground truth (m)", gt[f], (0, vmax)), ("prediction, median-aligned", aligned, (0, vmax)),
                       ("AbsRel error", error, (0, 0.5))]
        else:
            panels.append(("prediction (m)", p, None))
        for c, (title, image, limits) in enumerate(panels):
            ax = axes[r, c]
            shown = ax.imshow(image, cmap=None if image.ndim == 3 else ("magma" if "error" in title else "viridis"),
                              vmin=limits[0] if limits else None, vmax=limits[1] if limits else None)
            if image.ndim == 2:
                fig.colorbar(shown, ax=ax, fraction=0.046)
            ax.set_title(f"{title}, frame {f}", fontsize=8)
            ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def _aligned_positions(gt: np.ndarray, est: np.ndarray) -> np.ndarray:
    from evo.core.geometry import GeometryException
    from evo.core.trajectory import PoseTrajectory3D
    stamps = np.arange(len(gt), dtype=float)
    ok = np.isfinite(est).all(axis=(1, 2))
    ref = PoseTrajectory3D(poses_se3=list(gt[ok]), timestamps=stamps[ok])
    traj = PoseTrajectory3D(poses_se3=list(est[ok]), timestamps=stamps[ok])
    traj = copy.deepcopy(traj)
    try:
        traj.align(ref, correct_scale=True)
    except GeometryException:  # a trajectory that does not move: its best alignment is the centroid
        return np.repeat(ref.positions_xyz.mean(axis=0, keepdims=True), len(ref.positions_xyz), axis=0)
    return traj.positions_xyz


def trajectory_figure(path: Path, gt: np.ndarray, pred: np.ndarray, baseline: np.ndarray | None) -> str:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(gt[:, 0, 3], gt[:, 1, 3], "k-", label="ground truth", linewidth=2)
    model = _aligned_positions(gt, pred)
    ax.plot(model[:, 0], model[:, 1], "r-", label="fourds (Sim3-aligned)")
    if baseline is not None:
        vo = _aligned_positions(gt, baseline)
        ax.plot(vo[:, 0], vo[:, 1], "b--", label="ORB VO (Sim3-aligned)")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.set_aspect("equal", adjustable="datalim")
    ax.legend(fontsize=8)
    ax.set_title("camera trajectory, top view")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def track_figure(path: Path, frames, truth, pred, point_query, lucas_kanade=None) -> str:
    _, first, index = point_query
    rows = _sample_frames(len(frames))
    fig, axes = plt.subplots(1, len(rows), figsize=(4 * len(rows), 3.4), squeeze=False)
    for c, f in enumerate(rows):
        ax = axes[0, c]
        ax.imshow(frames[f].rgb())
        gt_vis = truth.point_visible[index, f]
        ax.scatter(*truth.point_tracks[index, f][gt_vis].T, s=14, facecolors="none", edgecolors="lime",
                   label="ground truth")
        vis = pred.point_visible[:, f]
        ax.scatter(*pred.point_tracks[:, f][vis].T, s=6, c="red", label="fourds")
        if lucas_kanade is not None:
            lk_tracks, lk_vis = lucas_kanade
            ax.scatter(*lk_tracks[:, f][lk_vis[:, f]].T, s=6, c="cyan", marker="x", label="Lucas-Kanade")
        ax.set_title(f"frame {f}", fontsize=9)
        ax.axis("off")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def write_video(path: Path, frames, depth: np.ndarray, confidence: np.ndarray | None = None,
                fps: float = 10.0) -> str:
    """Camera image | predicted depth (colour-mapped) | its confidence (grey, white = trusted), side by side,
    mp4v."""
    h, w = frames[0].height, frames[0].width
    panels = 2 if confidence is None else 3
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (panels * w, h))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    finite = depth[np.isfinite(depth)]
    vmax = float(np.percentile(finite, 98)) if finite.size else 1.0
    try:
        for i, (frame, d) in enumerate(zip(frames, depth)):
            d = _resize(np.nan_to_num(d, nan=0.0), (h, w))
            row = [frame.rgb()[..., ::-1],
                   cv2.applyColorMap(np.clip(d / vmax * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_VIRIDIS)]
            if confidence is not None:
                c = _resize(np.nan_to_num(confidence[i], nan=0.0), (h, w))
                row.append(np.repeat(np.clip(c * 255, 0, 255).astype(np.uint8)[..., None], 3, 2))
            writer.write(np.hstack(row))
    finally:
        writer.release()
    return path.name
