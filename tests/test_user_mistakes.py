"""The mistakes people make on their first day, each with the message it gives: the command stops before doing
any work, says what is wrong and what to do instead, and prints no traceback."""
from __future__ import annotations

import argparse
import shutil

import cv2
import numpy as np
import pytest

from conftest import REPO, cli, tiny_config
from fourds_ros.bags.reader import read_bag

SAMPLE_BAG = REPO / "data" / "sample_bag"


def stopped_with(result, *phrases: str) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    for phrase in phrases:
        assert phrase in result.stderr, (phrase, result.stderr)
    return result.stderr


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from fourds_ros.model import FourDS, save_model_dir
    model = FourDS(tiny_config(frames=16, size=32))
    model.reset_parameters(0)
    return save_model_dir(model, tmp_path_factory.mktemp("mistakes") / "model")


def test_a_rosbag2_folder_named_dot_bag_is_read_as_rosbag2(tmp_path):
    """rosbags takes anything ending in .bag for a ROS 1 file; the folder's frames all come through."""
    named = tmp_path / "seq.bag"
    shutil.copytree(SAMPLE_BAG, named)
    topic, frames, gt = read_bag(named)
    _, reference, _ = read_bag(SAMPLE_BAG)
    assert topic == "/camera/image_raw" and [f.stamp_ns for f in frames] == [f.stamp_ns for f in reference]
    assert len(gt.poses) == len(reference) and not gt.notes
    # The bag given by its storage file, as a file browser offers it, reads the same.
    _, by_file, _ = read_bag(named / "sample_bag.mcap")
    assert [f.data for f in by_file] == [f.data for f in reference]
    # The same folder cut short (a killed recorder) is salvaged, not mistaken for a ROS 1 file either.
    from bag_damage import cut_short
    cut_short(named, 0.6, keep_metadata=True)
    _, salvaged, gt = read_bag(named)
    assert 16 <= len(salvaged) < len(reference) and any("damaged" in n for n in gt.notes)


def test_a_folder_that_is_no_bag_is_named(tmp_path, tiny_model):
    (tmp_path / "empty.bag").mkdir()
    stopped_with(cli("eval", tmp_path / "empty.bag", "--model", tiny_model, "--out", tmp_path / "r", check=False),
                 "empty.bag is a folder but not a rosbag2 (no metadata.yaml, .mcap or .db3 in it)")


def test_a_video_without_a_focal_length_says_how_to_find_one(tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 15.0, (64, 48))
    for _ in range(3):
        writer.write(np.full((48, 64, 3), 128, np.uint8))
    writer.release()
    stopped_with(cli("convert", video, "--out", tmp_path / "bag", check=False),
                 "(64x48) says nothing of its camera", "--fx", "--K", "55 px for 60 degrees")
    assert not (tmp_path / "bag").exists()


def test_ground_truth_that_does_not_overlap_the_bag_names_both_time_spans(tmp_path, tiny_model):
    _, frames, gt = read_bag(SAMPLE_BAG)
    first = frames[0].stamp_ns / 1e9
    tum = tmp_path / "groundtruth.txt"  # stamped by another clock than the camera's
    tum.write_text("".join(f"{first + 1000 + i * 0.1:.3f} 0 0 {i * 0.01:.2f} 0 0 0 1\n" for i in range(len(frames))))
    stderr = stopped_with(cli("eval", SAMPLE_BAG, "--model", tiny_model, "--gt", tum, "--out", tmp_path / "r",
                              check=False),
                          "does not overlap the bag's frames", f"0 of {len(frames)} frames",
                          f"the file covers {first + 1000:.3f} s to", f"the frames {first:.3f} s to")
    assert "needs the bag's clock" in stderr and not (tmp_path / "r" / "metrics.json").exists()


def test_a_model_directory_and_a_checkpoint_given_for_each_other(tmp_path, tiny_model, reference):
    stopped_with(cli("import-official", tiny_model, "--out", tmp_path / "m", check=False),
                 "is a fourds_ros model directory (already imported: give it as --model)",
                 "import-official takes a released 4DS checkpoint file (.npz)")
    stopped_with(cli("eval", SAMPLE_BAG, "--model", reference / "params.npz", "--out", tmp_path / "r", check=False),
                 "params.npz is a file (an official 4DS checkpoint?)", "fourds-ros import-official")


def test_a_training_run_folder_given_as_a_model_points_to_its_model(tmp_path):
    from fourds_ros.model.model_dir import ModelDirError, load_model_dir
    run = tmp_path / "runs" / "tiny"
    (run / "checkpoints" / "step_00000004").mkdir(parents=True)
    for given in (run, run / "checkpoints" / "step_00000004"):
        with pytest.raises(ModelDirError, match=f"is a training run's folder.*writes its model to {run / 'model'}"):
            load_model_dir(given)


@pytest.mark.parametrize("override, message", [
    ("optim.lrr=1e-3", "--set optim.lrr: no such setting (did you mean optim.lr?)"),
    ("lr=1e-3", "--set lr: no such setting (did you mean optim.lr?)"),
    ("stepz=10", "--set stepz: no such setting (did you mean steps?)"),
    ("steps", "--set 'steps': expected KEY=VALUE, e.g. --set optim.lr=1e-3"),
])
def test_a_training_setting_that_does_not_exist_lists_the_close_ones(override, message):
    from offline_training.config import TrainConfigError, load_train_config
    with pytest.raises(TrainConfigError) as err:
        load_train_config(REPO / "config" / "training" / "tiny.yaml", [override])
    assert str(err.value) == message


def test_a_typo_in_a_config_file_lists_the_close_keys(tmp_path):
    from offline_training.config import TrainConfigError, load_train_config
    config = tmp_path / "mine.yaml"
    config.write_text((REPO / "config" / "training" / "tiny.yaml").read_text().replace("warmup_steps", "warmup_step"))
    with pytest.raises(TrainConfigError, match=r"mine.yaml.optim has unknown keys: \['warmup_step'\] "
                                               r"\(did you mean warmup_steps\?\)"):
        load_train_config(config)


def test_a_node_parameter_that_does_not_exist_is_named_with_the_close_ones():
    """A typo in a params file would leave the default running without a word: the node says so at start."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from fourds_ros.ros.parameters import declare_all, unknown_parameters
    from fourds_ros.ros.perception_node import PARAMETERS
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = Node("mistakes", context=context, parameter_overrides=[
            Parameter("odometry.standing_degs", value=0.3), Parameter("window_hop", value=2)])
        values = declare_all(node, PARAMETERS)
        assert values["window_hop"] == 2
        assert unknown_parameters(node, [p.name for p in PARAMETERS]) == [
            "parameter 'odometry.standing_degs' is not one of mistakes's and is ignored "
            "(did you mean odometry.standing_deg?)"]
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)


def test_the_training_cli_reports_a_bad_setting_without_a_traceback():
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "offline_training", "pretrain", "--config",
                             str(REPO / "config" / "training" / "tiny.yaml"), "--set", "optim.lrr=1"],
                            capture_output=True, text=True, timeout=300, cwd=REPO)
    stopped_with(result, "offline_training pretrain: error: --set optim.lrr: no such setting")



def test_every_command_explains_itself_with_help():
    """`--help` is the first thing a new user types: every command's help prints (a `%` in a setting's description
    once made `eval --help` and `replay --help` crash)."""
    from fourds_ros.cli import build_parser
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, command in commands.items():
        text = command.format_help()
        assert command.prog.endswith(name) and "usage:" in text, name
    assert "95% bound" in commands["eval"].format_help()
