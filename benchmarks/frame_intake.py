"""What one camera frame costs before the model sees it, by camera resolution and encoding.

Per frame, as `StreamingPipeline.push` (and, for jpeg, the node's compressed-image callback) does it: decode
(`image_view`, converting YUV / Bayer / 16-bit layouts; `cv2.imdecode` for jpeg), the shrink on arrival (integer
area average to what the model and the geometry need), the model's input (crop/resize to the model clip), and the
grey frame of the geometric stage (at most `geometry_pixels`). Resolutions 640x480,
1920x1080 and 4000x3000; the default model's clip. Prints JSON and writes
benchmarks/results/frame_intake-<cpu>.json.

    .venv/bin/python benchmarks/frame_intake.py [--repeats 30]
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from fourds_ros.images import converted_encoding, decode_compressed, image_view  # noqa: E402
from fourds_ros.streaming.frames import FramePreprocessor, GeometryFrames, geometry_size, shrink, shrink_factor  # noqa: E402,E501
from fourds_ros.streaming.settings import StreamConfig  # noqa: E402
from result_file import cpu_name, write_result  # noqa: E402

RESOLUTIONS = ((640, 480), (1920, 1080), (4000, 3000))
ENCODINGS = ("rgb8", "bgr8", "mono8", "yuv422_yuy2", "bayer_rggb8", "mono16", "jpeg")


def camera_bytes(encoding: str, rgb: np.ndarray) -> tuple[bytes, int]:
    """The message payload and step a camera sending `encoding` would produce for this RGB image."""
    h, w = rgb.shape[:2]
    if encoding == "rgb8":
        return rgb.tobytes(), 3 * w
    if encoding == "bgr8":
        return rgb[..., ::-1].tobytes(), 3 * w
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if encoding == "mono8":
        return grey.tobytes(), w
    if encoding == "mono16":
        return (grey.astype("<u2") << 8).tobytes(), 2 * w
    if encoding == "yuv422_yuy2":
        yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)
        packed = np.empty((h, w, 2), np.uint8)
        packed[..., 0] = yuv[..., 0]
        packed[:, 0::2, 1] = yuv[:, 0::2, 1]
        packed[:, 1::2, 1] = yuv[:, 0::2, 2]
        return packed.tobytes(), 2 * w
    if encoding == "bayer_rggb8":
        mosaic = np.empty((h, w), np.uint8)
        mosaic[0::2, 0::2], mosaic[0::2, 1::2] = rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1]
        mosaic[1::2, 0::2], mosaic[1::2, 1::2] = rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]
        return mosaic.tobytes(), w
    if encoding == "jpeg":
        return cv2.imencode(".jpg", rgb[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes(), 0
    raise ValueError(encoding)


def intake_ms(encoding: str, payload: bytes, step: int, size: tuple[int, int], clip: tuple[int, int],
              geometry_pixels: int, repeats: int) -> dict:
    w, h = size
    preprocess = FramePreprocessor(*clip)
    geometry = GeometryFrames(16, geometry_pixels)
    slot = np.empty((*clip, 3), np.uint8)
    factor = shrink_factor(h, w, 2 * clip[0], max(2 * clip[1], geometry_size(h, w, geometry_pixels)[1]))
    parts = {"decode": [], "shrink": [], "model_input": [], "geometry_frame": []}
    for seq in range(repeats + 3):
        t0 = time.perf_counter()
        if encoding == "jpeg":
            view, layout = decode_compressed(payload)
        else:
            view, layout = image_view(encoding, h, w, step, payload), converted_encoding(encoding)
        t1 = time.perf_counter()
        view = shrink(view, factor)
        t2 = time.perf_counter()
        preprocess(view, layout, slot)
        t3 = time.perf_counter()
        geometry.write(view, layout, seq)
        t4 = time.perf_counter()
        if seq >= 3:  # warm-up: first allocations
            for name, took in zip(parts, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                parts[name].append(took)
    out = {"shrink_factor": factor, **{k: round(float(np.median(v)) * 1e3, 3) for k, v in parts.items()}}
    out["total"] = round(float(np.median(np.sum([parts[k] for k in parts], axis=0))) * 1e3, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    cv2.setNumThreads(0)  # as in the node: one frame at a time on the subscription thread
    config = StreamConfig()
    model_clip = json.loads((REPO / "models" / "default" / "config.json").read_text())["clip"]
    clip = (model_clip["height"], model_clip["width"])
    rng = np.random.default_rng(0)
    results = {}
    for w, h in RESOLUTIONS:
        # A smooth image with detail (a jpeg of noise would be unrealistically large).
        base = cv2.resize(rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8), (w, h),
                          interpolation=cv2.INTER_CUBIC)
        row = {}
        for encoding in ENCODINGS:
            payload, step = camera_bytes(encoding, base)
            row[encoding] = intake_ms(encoding, payload, step, (w, h), clip, config.geometry_pixels, args.repeats)
        results[f"{w}x{h}"] = row
        print(f"{w}x{h}: " + ", ".join(f"{e} {r['total']:.2f} ms" for e, r in row.items()), file=sys.stderr)
    report = {"benchmark": "frame_intake", "device": cpu_name(), "opencv": cv2.__version__,
              "model_clip": list(clip), "geometry_pixels": config.geometry_pixels, "repeats": args.repeats,
              "unit": "ms per frame, median", "ms_per_frame": results}
    write_result(report, "frame_intake", cpu_name(), args.out)


if __name__ == "__main__":
    main()
