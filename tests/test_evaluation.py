"""`eval` and `replay` end to end on the sample bag, and the errors of bags that cannot be scored."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from conftest import REPO, cli, tiny_config
from fourds_ros.bags.reader import BagError, read_bag
from fourds_ros.evaluation.offline import evaluate
from fourds_ros.model import FourDS, save_model_dir

SAMPLE_BAG = REPO / "data" / "sample_bag"


@pytest.fixture(scope="module")
def eval_model(tmp_path_factory):
    model = FourDS(tiny_config(frames=16, size=32))
    model.reset_parameters(0)
    with torch.no_grad():
        model.heads["points"].readout.out.bias[2::3] = 3.0
        model.heads["boxes"].readout.out.bias[4::5] = 3.0
        model.heads["depth"].readout.out.bias += 2.0  # positive depth, so every depth metric is defined
        model.heads["pose"].readout.out.weight.normal_(0, 0.02, generator=torch.Generator().manual_seed(0))
    return save_model_dir(model, tmp_path_factory.mktemp("eval") / "model")


@pytest.fixture(scope="module")
def eval_report(eval_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return evaluate(SAMPLE_BAG, eval_model, out, progress=False), out


def test_eval_scores_every_part_next_to_the_baselines(eval_report):
    report, out = eval_report
    m = report["model_metrics"]
    assert set(m) == {"depth", "egomotion", "point_tracks", "box_tracks"}, report["notes"]
    assert 0 <= m["depth"]["median_per_frame"]["abs_rel"] and 0 <= m["depth"]["median_per_frame"]["delta_1.25"] <= 1
    assert set(m["depth"]) == {"median_per_frame", "median_per_sequence", "scale_shift_per_frame", "raw_metric",
                               "per_frame_scale", "coverage", "by_confidence"}
    by_confidence = m["depth"]["by_confidence"]
    assert set(by_confidence) == {"0.25", "0.5", "0.75"}
    coverages = [by_confidence[t]["coverage"] for t in ("0.25", "0.5", "0.75")]
    assert coverages == sorted(coverages, reverse=True) and 0 < coverages[0] <= 1  # a higher bar keeps fewer pixels
    assert m["egomotion"]["ate_rmse_m"] >= 0 and m["egomotion"]["frames"] == report["frames"]
    assert 0 <= m["point_tracks"]["average_jaccard"] <= 1 and 0 <= m["box_tracks"]["mean_iou"] <= 1
    assert set(report["baselines"]) == {"constant_depth", "orb_essential_vo", "lucas_kanade"}
    assert report["runtime"]["windows_dropped"] == 0 and report["runtime"]["frames_emitted"] == report["frames"]
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["model_metrics"] == json.loads(json.dumps(m))
    for name in ("depth.png", "trajectory.png", "tracks.png"):
        assert (out / name).stat().st_size > 10_000, name


def test_lucas_kanade_beats_chance_on_the_sample_bag(eval_report):
    """The baselines are real: LK tracks most points on this textured scene."""
    lk = eval_report[0]["baselines"]["lucas_kanade"]["point_tracks"]
    assert lk["pts_within_8"] > 0.5


def test_eval_cli_writes_the_report_and_video(eval_model, tmp_path):
    result = cli("eval", SAMPLE_BAG, "--model", eval_model, "--out", tmp_path / "r", "--video")
    assert "depth AbsRel" in result.stdout and "Lucas-Kanade" in result.stdout
    assert "by confidence: >=0.25:" in result.stdout
    video = tmp_path / "r" / "side_by_side.mp4"
    assert video.stat().st_size > 10_000
    import cv2
    capture = cv2.VideoCapture(str(video))
    width = capture.get(cv2.CAP_PROP_FRAME_WIDTH)
    capture.release()
    assert width == 3 * read_bag(SAMPLE_BAG)[1][0].width  # camera | depth | confidence


@pytest.mark.slow
def test_replay_through_the_node_matches_eval(eval_model, eval_report, tmp_path):
    from fourds_ros.ros.replay import replay
    from ros_helpers import next_domain
    # Played slowly enough that this machine, however fast or loaded, keeps up with every window: a third of the
    # real-time rate that the offline run's own time per frame allows (never faster than real time).
    offline_report = eval_report[0]
    per_frame_s = offline_report["wall_time_s"] / offline_report["frames"]
    rate = min(1.0, (1 / 30) / (3 * per_frame_s))
    report = replay(SAMPLE_BAG, eval_model, tmp_path / "replay", domain=next_domain(), rate=rate)
    diag = report["runtime"]["node_diagnostics"]
    assert int(diag["windows_dropped"]) == 0 and int(diag["frames_dropped"]) == 0, diag
    assert report["runtime"]["end_to_end_latency_ms"]["frames"] == report["frames"]
    assert (tmp_path / "replay" / "outputs_bag" / "metadata.yaml").is_file()
    # With no drops the node runs the same windows as eval: the same scores, to float rounding.
    offline, live = eval_report[0]["model_metrics"], report["model_metrics"]
    assert live["depth"]["median_per_frame"]["abs_rel"] == pytest.approx(offline["depth"]["median_per_frame"]["abs_rel"], rel=1e-3)
    assert live["egomotion"]["ate_rmse_m"] == pytest.approx(offline["egomotion"]["ate_rmse_m"], rel=1e-3, abs=1e-4)
    # The node leaves a frame to its window when its tracking runs behind the frames' stamps (a loaded core can, even
    # played slowly): that frame's pose is interpolated, which moves the tracks derived from the geometry a little.
    left = report["frames"] - sum(int(v) for k, v in diag.items() if k.startswith("egomotion_frames_"))
    tolerance = 1e-3 if left == 0 else 0.02
    assert live["point_tracks"]["average_jaccard"] == pytest.approx(offline["point_tracks"]["average_jaccard"],
                                                                    abs=tolerance), diag
    assert live["box_tracks"]["mean_iou"] == pytest.approx(offline["box_tracks"]["mean_iou"], abs=tolerance), diag


def test_bags_that_cannot_be_scored_say_why(tmp_path, eval_model):
    with pytest.raises(BagError, match="has no topic '/nope'"):
        read_bag(SAMPLE_BAG, "/nope")
    with pytest.raises(BagError, match="is not an image topic"):
        read_bag(SAMPLE_BAG, "/ground_truth/pose")
    with pytest.raises(BagError, match="does not exist"):
        read_bag(tmp_path / "missing")
    # A bag with no image topic at all.
    from rosbags.rosbag2 import StoragePlugin, Writer

    from fourds_ros.bags.messages import BagMessages
    from fourds_ros.bags.topics import typestore
    store = typestore()
    with Writer(tmp_path / "poses_only", version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection("/ground_truth/pose", "geometry_msgs/msg/PoseStamped", typestore=store)
        msg = BagMessages(store).pose_stamped(np.eye(4), 0, "world")
        writer.write(conn, 0, store.serialize_cdr(msg, "geometry_msgs/msg/PoseStamped"))
    with pytest.raises(BagError, match="has no image topic"):
        read_bag(tmp_path / "poses_only")
    # A recording cut short is read up to the damage (test_real_inputs.py scores some); one cut before its
    # first message has nothing to read.
    truncated = tmp_path / "truncated"
    shutil.copytree(SAMPLE_BAG, truncated)
    mcap = next(truncated.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[:200])
    with pytest.raises(BagError, match="cannot open"):
        read_bag(truncated)
    result = cli("eval", truncated, "--model", eval_model, "--out", tmp_path / "r", check=False)
    assert result.returncode == 2 and "Traceback" not in result.stderr and str(truncated) in result.stderr


def test_a_bag_without_ground_truth_is_run_and_metrics_are_skipped(tmp_path, eval_model):
    from rosbags.rosbag2 import Reader, StoragePlugin, Writer
    with Reader(SAMPLE_BAG) as reader, Writer(tmp_path / "camera_only", version=9,
                                              storage_plugin=StoragePlugin.MCAP) as writer:
        conns = [c for c in reader.connections if c.topic == "/camera/image_raw"]
        from fourds_ros.bags.topics import typestore
        out = writer.add_connection("/camera/image_raw", conns[0].msgtype, typestore=typestore())
        for _, stamp, raw in reader.messages(connections=conns):
            writer.write(out, stamp, raw)
    report = evaluate(tmp_path / "camera_only", eval_model, tmp_path / "r", progress=False)
    assert report["model_metrics"] == {} and report["baselines"] == {}
    assert any("depth skipped" in n for n in report["notes"])
