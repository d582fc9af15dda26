"""`fourds-ros`: the project's one command-line entry point."""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

from .runtime.selection import ALL_PRECISIONS, BACKENDS
from .streaming import settings
from .synthetic.generator import CAMERA_MOTIONS
from .synthetic.scene import STYLES

USER_ERRORS: tuple[type[Exception], ...] = (ValueError, RuntimeError, FileNotFoundError, FileExistsError)


def _triple(text: str) -> tuple[int, int, int]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive integers T,H,W, got {text!r}")
    return values  # type: ignore[return-value]


def _heads(text: str) -> tuple[str, ...]:
    from .model.config import HEAD_NAMES
    names = tuple(h for h in text.split(",") if h)
    unknown = [h for h in names if h not in HEAD_NAMES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown heads {unknown}; known: {','.join(HEAD_NAMES)}")
    return names


# Commands -----------------------------------------------------------------
def cmd_import_official(args: argparse.Namespace) -> None:
    from .model import ClipConfig, ReadoutConfig, import_official
    clip = ClipConfig(*args.clip) if args.clip else None
    readout = ReadoutConfig(num_params=args.readout_params, num_heads=args.readout_heads)
    out = import_official(args.checkpoint, args.out, clip=clip, add_heads=args.add_heads, readout=readout,
                          seed=args.seed, overwrite=args.overwrite)
    print(f"wrote {out}")


def cmd_init_model(args: argparse.Namespace) -> None:
    from .model import ClipConfig, EncoderConfig, FourDS, ModelConfig, ReadoutConfig, save_model_dir
    config = ModelConfig(encoder=EncoderConfig.from_size(args.size), clip=ClipConfig(*args.clip),
                         heads={h: ReadoutConfig(num_params=args.readout_params, num_heads=args.readout_heads)
                                for h in args.heads}, name=f"random-{args.size}")
    model = FourDS(config)
    model.reset_parameters(args.seed)
    out = save_model_dir(model, args.out, {"source": "random init", "seed": args.seed,
                                           "untrained_heads": sorted(config.heads)}, overwrite=args.overwrite)
    print(f"wrote {out} (random weights, seed {args.seed}: train its readouts before it publishes anything)")


def load_clip(path: Path) -> np.ndarray:
    try:
        clip = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise FileNotFoundError(f"clip {path} does not exist") from None
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{path} is not a readable .npy array: {exc}") from None
    if clip.ndim != 5 or clip.shape[-1] != 3:
        raise ValueError(f"{path}: expected a clip shaped (B, T, H, W, 3), got {clip.shape}")
    if not np.issubdtype(clip.dtype, np.floating):
        raise ValueError(f"{path}: expected float values in [0, 1], got dtype {clip.dtype}")
    if not np.isfinite(clip).all() or clip.min() < 0 or clip.max() > 1:
        raise ValueError(f"{path}: values must be finite and in [0, 1] "
                         f"(found {np.nanmin(clip):.3g}..{np.nanmax(clip):.3g})")
    return clip.astype(np.float32, copy=False)


def cmd_predict(args: argparse.Namespace) -> None:
    from .model.model_dir import load_model_config, untrained_heads
    from .model.queries import centre_box_query, grid_point_queries
    from .runtime import backend_options, create_backend, pad_queries
    config = load_model_config(args.model)
    clip = load_clip(args.clip)
    if args.features:
        arrays = _predict_with_features(args.model, clip, config, args.point_grid)
    else:
        backend = create_backend(args.backend, args.model, float_input=True,
                                 **backend_options(args.backend, threads=args.threads))
        points = grid_point_queries(config, args.point_grid)[0]
        boxes = centre_box_query(config)[0]
        queries = pad_queries(backend.spec, points, boxes)
        results = [backend.run(clip[i:i + 1], queries) for i in range(clip.shape[0])]
        arrays = {k: np.concatenate([r[k] for r in results]) for k in results[0]}
        for key, n in (("points", len(points)), ("boxes", len(boxes))):
            if key in arrays:
                arrays[key] = arrays[key][:, :n]
                arrays[f"{key}_visible_logit"] = arrays[f"{key}_visible_logit"][:, :n]
        if "points" in config.heads:
            arrays["point_queries"] = np.repeat(points[None], clip.shape[0], 0)
        if "boxes" in config.heads:
            arrays["box_queries"] = np.repeat(boxes[None], clip.shape[0], 0)
    untrained = untrained_heads(args.model)
    if untrained:  # an untrained head's output is noise that looks like an answer
        head_of = {"point_queries": "points", "box_queries": "boxes"}
        arrays = {k: v for k, v in arrays.items() if head_of.get(k, k.split("_")[0]) not in untrained}
        print(f"left out the {', '.join(untrained)} head{'s' if len(untrained) > 1 else ''} (never trained)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.out, **arrays)
    print(f"wrote {args.out}: " + ", ".join(f"{k} {v.shape}" for k, v in arrays.items() if not k.startswith("features_")))


def _predict_with_features(model_dir: Path, clip: np.ndarray, config, point_grid: int) -> dict[str, np.ndarray]:
    """The reference path: every head plus the intermediate features, from the PyTorch model."""
    import torch

    from .model import load_model_dir
    from .model.queries import centre_box_query, grid_point_queries
    model = load_model_dir(model_dir)
    batch = clip.shape[0]
    queries = {"point_queries": np.repeat(grid_point_queries(config, point_grid), batch, 0),
               "box_queries": np.repeat(centre_box_query(config), batch, 0)}
    with torch.inference_mode():
        out = model.forward_with_features(torch.from_numpy(clip), **{k: torch.from_numpy(v) for k, v in queries.items()})
    arrays = {k: v.numpy() for k, v in out.items()}
    for head, key in (("points", "point_queries"), ("boxes", "box_queries")):
        if head in config.heads:
            arrays[key] = queries[key]
    return arrays


def cmd_export(args: argparse.Namespace) -> None:
    from .runtime.export import export_onnx
    from .runtime.graph_files import read_record
    options = {"opset": args.opset} if args.opset else {}
    path = export_onnx(args.model, args.out, clip=args.clip, heads=args.heads, batch=args.batch,
                       dynamo=args.dynamo, float_input=args.float_input, precision=args.precision, **options)
    record = read_record(path)
    print(f"wrote {path} (opset {record['opset']}, sha256 {record['onnx_sha256'][:12]}) and {path.with_suffix('.json').name}")
    for kind in ("inputs", "outputs"):
        print(f"  {kind}: " + ", ".join(f"{n} {v['dtype']}{v['shape']}" for n, v in record[kind].items()))


REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO_ROOT / "models" / "default"
SAMPLE_BAG = REPO_ROOT / "data" / "sample_bag"


def cmd_demo(args: argparse.Namespace) -> None:
    """The sample bag replayed through the real node with the default model, recorded, scored, summarised."""
    from .evaluation.report import summary
    from .ros.replay import replay
    for what, path in (("model", args.model), ("bag", args.bag)):
        if not Path(path).exists():
            raise FileNotFoundError(f"demo {what} {path} does not exist")
    print(f"replaying {args.bag} into perception_node ({args.backend}, model {args.model}) ...", flush=True)
    report = replay(args.bag, args.model, args.out, backend=args.backend, domain=args.domain, video=True)
    print(summary(report, args.out))
    latency = report["runtime"]["end_to_end_latency_ms"]
    diag = report["runtime"]["node_diagnostics"]
    if latency:
        print(f"  node: end-to-end latency p50 {latency['p50']} ms, p99 {latency['p99']} ms, window latency mean "
              f"{diag.get('window_latency_mean_ms')} ms; dropped windows {diag.get('windows_dropped')}")
    print(f"  recorded node outputs: {args.out / report['outputs_bag']}")
    if "video" in report["files"]:
        print(f"  side-by-side video: {args.out / report['files']['video']}")


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW, e.g. 96x128, got {text!r}") from None
    if h <= 0 or w <= 0:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return h, w


def cmd_synth(args: argparse.Namespace) -> None:
    from .synthetic.generator import generate
    from .synthetic.writers import write_bag, write_shard
    if args.out is None and args.shard is None:
        raise ValueError("nothing to write: give --out (a bag) and/or --shard (a training shard)")
    seq = generate(args.seed, args.frames, *args.size, fps=args.fps, num_points=args.points, fovy_deg=args.fov,
                   camera_motion=args.camera_motion, sensor_effects=args.sensor_effects, style=args.style)
    if args.out is not None:
        write_bag(seq, args.out, overwrite=args.overwrite)
        print(f"wrote {args.out}: {args.frames} frames {args.size[0]}x{args.size[1]}, {len(seq.point_tracks)} point "
              f"tracks, {len(seq.boxes)} objects, seed {args.seed}")
    if args.shard:
        print(f"wrote {write_shard(seq, args.shard)}")


def _seeds(text: str) -> list[int]:
    """'0-47' or '0,3,9' or '5'."""
    try:
        if "-" in text:
            first, last = (int(v) for v in text.split("-"))
            return list(range(first, last + 1))
        return [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seeds like 0-47 or 1,2,5, got {text!r}") from None


def cmd_shards(args: argparse.Namespace) -> None:
    from .synthetic.shards import write_shards
    paths = write_shards(args.seeds, args.out, args.frames, args.width, style=args.style, vary=args.vary_camera,
                         workers=args.workers, progress=not args.no_progress)
    print(f"{len(paths)} shards in {args.out}")


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluation.offline import evaluate
    from .evaluation.report import summary
    report = evaluate(args.bag, args.model, args.out, backend=args.backend, image_topic=args.image_topic,
                      settings=setting_values(args), video=args.video, threads=args.threads,
                      precision=args.precision, gt=args.gt)
    print(summary(report, args.out))


def cmd_replay(args: argparse.Namespace) -> None:
    from .evaluation.report import summary
    from .ros.replay import replay
    report = replay(args.bag, args.model, args.out, backend=args.backend, image_topic=args.image_topic,
                    rate=args.rate, settings=setting_values(args), domain=args.domain, video=args.video,
                    precision=args.precision, gt=args.gt)
    print(summary(report, args.out))
    latency = report["runtime"]["end_to_end_latency_ms"]
    if latency:
        diag = report["runtime"]["node_diagnostics"]
        print(f"  end-to-end latency p50 {latency['p50']} ms, p99 {latency['p99']} ms; "
              f"dropped windows {diag.get('windows_dropped')}, dropped frames {diag.get('frames_dropped')}")


def _matrix_file(text: str) -> np.ndarray:
    try:
        return np.loadtxt(text).reshape(3, 3)
    except (OSError, ValueError) as exc:
        raise argparse.ArgumentTypeError(f"{text}: not a readable 3x3 camera matrix ({exc})") from None


def cmd_convert(args: argparse.Namespace) -> None:
    from .bags.convert import convert
    summary = convert(args.source, args.out, layout=args.format, gt=args.gt, k=args.K, fx=args.fx, fps=args.fps,
                      camera=args.camera, undistort=not args.keep_distortion, image_format=args.images,
                      point_tracks=args.point_tracks, overwrite=args.overwrite)
    print(f"wrote {args.out}: {summary['frames']} frames ({summary['layout']}), depth on {summary['depth_frames']}, "
          f"poses {'yes' if summary['poses'] else 'no'}, {summary['derived_point_tracks']} derived point tracks"
          + (f"; skipped {summary['frames_skipped']}: see {args.out / 'conversion.json'}" if summary['skipped'] else ""))
    for note in summary["notes"]:
        print(f"  note: {note}")


def cmd_summarize(args: argparse.Namespace) -> None:
    import json

    from .evaluation.report import summarize_reports
    paths = [p / "metrics.json" if p.is_dir() else p for p in args.reports]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"no metrics.json at {', '.join(missing)}")
    summary = summarize_reports(paths)
    text = json.dumps(summary, indent=2) + "\n"
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(json.dumps({"mean": summary["mean"], "per_report": summary["per_report"]}, indent=2))


# Parser ---------------------------------------------------------------------
def _bag_arguments(p: argparse.ArgumentParser) -> None:
    """What `eval` and `replay` both take."""
    p.add_argument("bag", type=Path)
    p.add_argument("--model", type=Path, help="model directory (default: the shipped default model)")
    p.add_argument("--out", type=Path, required=True, help="report directory")
    p.add_argument("--gt", type=Path, help="ground-truth trajectory file (TUM, KITTI, EuRoC csv) instead of the bag's")
    p.add_argument("--backend", default="onnxruntime", choices=BACKENDS)
    p.add_argument("--image-topic", help="camera topic (default: /camera/image_raw or the bag's only image topic)")
    p.add_argument("--precision", choices=ALL_PRECISIONS,
                   help="the backend's precision (default: its own; int8 is an onnxruntime graph)")
    p.add_argument("--video", action="store_true", help="also write a side-by-side MP4")
    _setting_arguments(p)


def _setting_arguments(p: argparse.ArgumentParser) -> None:
    """One flag per setting of the streaming core's table, so a node setting can be replayed and scored:
    `--window-hop 2`, `--no-fuse-depth`, `--odometry.standing-deg 0.3`."""
    groups = {}
    for row in settings.table():
        if row.name in settings.SCORING_FIXED:
            continue
        prefix = row.name.rpartition(".")[0]
        if prefix not in groups:
            title = f"{prefix} settings" if prefix else "stream settings"
            groups[prefix] = p.add_argument_group(title, "the node's parameters of the same names")
        unit = f" ({row.unit})" if row.unit else ""
        options = dict(dest=f"setting:{row.name}", default=row.default, help=f"{row.description}{unit}".replace("%", "%%"))  # argparse formats help
        if isinstance(row.default, bool):
            options.update(action=argparse.BooleanOptionalAction)
        else:
            options.update(type=type(row.default), choices=row.choices, metavar=row.unit.upper().replace(" ", "_")
                           if row.unit and not row.choices else None)
        groups[prefix].add_argument(f"--{row.name.replace('_', '-')}", **options)


def setting_values(args: argparse.Namespace) -> dict[str, object]:
    """The settings given on the command line (every one of the table's, defaults included) by table name."""
    return {key.removeprefix("setting:"): value for key, value in vars(args).items() if key.startswith("setting:")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fourds-ros", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("import-official", help="convert a released 4DS .npz checkpoint into a model directory")
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--clip", type=_triple, help="T,H,W to resample the learned tables to (default: the checkpoint's)")
    p.add_argument("--add-heads", type=_heads, default=(), help="fresh heads to add, e.g. pose,points,boxes")
    p.add_argument("--readout-params", type=int, default=1024, help="width of added heads")
    p.add_argument("--readout-heads", type=int, default=16, help="attention heads of added heads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_import_official)

    p = sub.add_parser("init-model", help="write a randomly initialised model directory")
    p.add_argument("--size", default="Ti", help="ViT size: mu, Ti, S, M, B, L, H, g, G, e")
    p.add_argument("--clip", type=_triple, default=(16, 64, 64), help="T,H,W")
    p.add_argument("--heads", type=_heads, default=("depth", "pose", "points", "boxes"))
    p.add_argument("--readout-params", type=int, default=64)
    p.add_argument("--readout-heads", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_init_model)

    p = sub.add_parser("predict", help="run a model on a float32 clip (1, T, H, W, 3) in [0, 1]")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--clip", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--features", action="store_true", help="also write encoder_to_readout and features_<i>")
    p.add_argument("--point-grid", type=int, default=4, help="point queries: an NxN grid on frame 0")
    p.add_argument("--backend", default="torch", choices=BACKENDS,
                   help="torch is the reference; --features always uses it")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: the backend's default)")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("demo", help="replay the sample bag through the node with the default model and score it")
    p.add_argument("--model", type=Path, default=DEFAULT_MODEL)
    p.add_argument("--bag", type=Path, default=SAMPLE_BAG)
    p.add_argument("--backend", default="onnxruntime", choices=BACKENDS)
    p.add_argument("--domain", type=int, default=42, help="ROS_DOMAIN_ID of the demo graph")
    p.add_argument("--out", type=Path, default=Path("out/demo"))
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("synth", help="render a synthetic sequence with 4D ground truth into a rosbag2 (mcap)")
    p.add_argument("--out", type=Path, help="bag directory to write")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--size", type=_size, default=(96, 128), help="HxW")
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument("--points", type=int, default=64, help="ground-truth point tracks")
    p.add_argument("--camera-motion", choices=CAMERA_MOTIONS, default="robot",
                   help="robot: drives, turns and stops; handheld, walking: the same carried by a hand or a walking "
                        "person's head; standing: still, while people walk across the view")
    p.add_argument("--fov", type=float, default=60.0, help="vertical field of view in degrees (square pixels)")
    p.add_argument("--sensor-effects", action="store_true",
                   help="exposure, motion blur, noise and JPEG on the images (the ground truth stays exact)")
    p.add_argument("--style", choices=STYLES, default="procedural",
                   help="procedural: checker textures; photo: photographs, meshes, furniture, random lights")
    p.add_argument("--shard", type=Path, help="also write a training shard (.npz)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser("shards", help="write training shards for a range of seeds in parallel (existing ones kept)")
    p.add_argument("--seeds", type=_seeds, required=True, help="e.g. 0-47")
    p.add_argument("--out", type=Path, required=True, help="shard folder")
    p.add_argument("--frames", type=int, default=96)
    p.add_argument("--width", type=int, default=128, help="image width; the height follows the aspect ratio")
    p.add_argument("--style", choices=STYLES, default="procedural")
    p.add_argument("--vary-camera", action="store_true",
                   help="per seed: aspect ratio, field of view, camera motion and sensor effects")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_shards)

    p = sub.add_parser("eval", help="score the node's pipeline on a bag against its ground truth")
    _bag_arguments(p)
    p.add_argument("--threads", type=int, default=0)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("replay", help="play a bag over ROS 2 into the real node, record its outputs and score them")
    _bag_arguments(p)
    p.add_argument("--rate", type=float, default=1.0, help="playback speed factor")
    p.add_argument("--domain", type=int, default=42, help="ROS_DOMAIN_ID of the replay graph")
    p.set_defaults(func=cmd_replay)

    p = sub.add_parser("convert", help="real footage (TUM, EuRoC, KITTI odometry and raw, image folder, video) -> a ground-truth rosbag2")
    p.add_argument("source", type=Path, help="dataset folder or video file")
    p.add_argument("--out", type=Path, required=True, help="bag directory to write")
    p.add_argument("--format", choices=("tum", "euroc", "kitti", "kitti_raw", "folder", "video"),
                   help="layout (default: detected)")
    p.add_argument("--gt", type=Path, help="ground-truth trajectory file (TUM, KITTI, EuRoC csv, 4x4 rows)")
    p.add_argument("--K", type=_matrix_file, help="a file with the 3x3 camera matrix")
    p.add_argument("--fx", type=float, help="focal length in pixels (principal point at the centre)")
    p.add_argument("--fps", type=float, help="frame rate for sources without timestamps (folder: 10, video: its own)")
    p.add_argument("--camera", choices=("image_0", "image_1", "image_2", "image_3", "image_00", "image_01", "image_02",
                                        "image_03"), help="KITTI camera folder (odometry: image_N, raw: image_0N)")
    p.add_argument("--keep-distortion", action="store_true", help="keep raw images, distortion in camera_info")
    p.add_argument("--images", choices=("raw", "png", "jpeg"), default="raw",
                   help="raw sensor_msgs/Image, or CompressedImage on <topic>/compressed")
    p.add_argument("--point-tracks", type=int, default=64, help="derived point tracks (needs depth and poses)")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("summarize", help="one summary table over several reports (metrics.json or their folders)")
    p.add_argument("reports", type=Path, nargs="+")
    p.add_argument("--out", type=Path, help="write the summary JSON here")
    p.set_defaults(func=cmd_summarize)

    p = sub.add_parser("export", help="export a model directory to an ONNX graph (+ a JSON record)")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument("--clip", type=_triple, help="T,H,W (default: the model's)")
    p.add_argument("--heads", type=_heads, help="comma-separated subset, e.g. depth,pose (default: all)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--opset", type=int, help="ONNX opset (default: fourds_ros.runtime.export.DEFAULT_OPSET)")
    p.add_argument("--dynamo", action="store_true", help="use the torch.export-based exporter")
    p.add_argument("--float-input", action="store_true", help="take float32 [0, 1] clips instead of uint8 windows")
    p.add_argument("--precision", default="fp32", choices=("fp32", "int8"),
                   help="int8: weights int8 per channel, activations quantised per call (onnxruntime on CPU)")
    p.set_defaults(func=cmd_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except USER_ERRORS as exc:
        print(f"fourds-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
