"""What a robot gets from the depth (ROS-free): confidence, the trusted depth and its point cloud, output from a
stream's first frame, and only the heads a model was trained to give."""
from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from conftest import tiny_config
from fourds_ros.contract import DEPTH_POINT_DTYPE
from fourds_ros.model import FourDS, save_model_dir, untrained_heads
from fourds_ros.runtime import create_backend
from fourds_ros.streaming import StreamConfig, StreamingPipeline
from fourds_ros.streaming.depth_cloud import depth_points, trusted_depth
from fourds_ros.synthetic.pattern_clip import moving_pattern_clip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    model = FourDS(tiny_config(frames=16, size=32))
    model.reset_parameters(0)
    with torch.no_grad():
        model.heads["depth"].readout.out.bias += 2.0  # positive depth
    return save_model_dir(model, tmp_path_factory.mktemp("depth") / "model")


def test_the_cloud_is_the_trusted_depth_through_the_intrinsics():
    k = np.array([[20.0, 0, 15.5], [0, 25.0, 11.5], [0, 0, 1]])
    depth = np.full((24, 32), 2.0, np.float32)
    depth[0, 0], depth[0, 1] = np.nan, -1.0  # not depths (REP 118)
    confidence = np.full(depth.shape, 0.9, np.float32)
    confidence[5:10] = 0.2
    cloud = depth_points(trusted_depth(depth, confidence, 0.0), confidence, k)
    assert cloud.dtype == DEPTH_POINT_DTYPE and len(cloud) == depth.size - 2
    np.testing.assert_allclose(cloud["z"], 2.0)
    # Pixel (31, 23), the bottom-right corner, sits right of and below the principal point.
    corner = cloud[-1]
    assert corner["x"] == pytest.approx((31 - 15.5) / 20 * 2) and corner["y"] == pytest.approx((23 - 11.5) / 25 * 2)
    trusted = depth_points(trusted_depth(depth, confidence, 0.5), confidence, k)
    assert len(trusted) == depth.size - 2 - 5 * 32 and (trusted["confidence"] >= 0.5).all()
    strided = depth_points(trusted_depth(depth, confidence, 0.0), confidence, k, stride=4)
    assert len(strided) == 6 * 8 - 1 and set(np.round(strided["x"] / 2 * 20 + 15.5).astype(int)) == set(range(0, 32, 4))
    assert len(depth_points(np.full((4, 4), np.nan, np.float32), None, k)) == 0  # no depth: an empty cloud
    image = trusted_depth(depth, confidence, 0.5)
    assert np.isnan(image[5:10]).all() and np.isnan(image[0, :2]).all() and (image[10:] == 2.0).all()
    np.testing.assert_array_equal(trusted_depth(depth, confidence, 0.0)[5:10], 2.0)  # 0: nothing removed


def push_all(pipeline: StreamingPipeline, clip: np.ndarray, first: int = 0) -> None:
    """Push `clip`'s frames from index `first`, each once the pipeline is idle (no window is ever replaced,
    however slow this machine), then run the frames still waiting."""
    for i, frame in enumerate(clip[first:], first):
        pipeline.push("rgb8", *frame.shape[:2], frame.shape[1] * 3, frame.tobytes(), i * 33_000_000, "cam")
        pipeline.wait_idle()
    pipeline.flush()
    pipeline.wait_idle()


def test_depth_and_pose_come_from_the_first_frame_and_say_they_are_partial(model_dir):
    outputs = []
    pipeline = StreamingPipeline(create_backend("onnxruntime", model_dir), StreamConfig(point_tracks=0),
                                 outputs.append)
    clip = moving_pattern_clip(24, 48, 64)
    try:
        pipeline.push("rgb8", 48, 64, 64 * 3, clip[0].tobytes(), 0, "cam")
        pipeline.wait_idle()
        # The first frame alone: one inference, and its output is out.
        assert [o.info.seq for o in outputs] == [0]
        first = outputs[0]
        assert first.window_frames == 1 and first.depth is not None and first.world_from_camera is not None
        push_all(pipeline, clip, first=1)
    finally:
        pipeline.close()
    assert [o.info.seq for o in outputs] == list(range(24))
    frames = [o.window_frames for o in outputs]
    assert frames[:5] == [1, 5, 5, 5, 5] and frames[-1] == 16  # partial until the ring holds a window
    assert pipeline.stats.windows_partial == 4 and pipeline.stats.frames_dropped == 0
    # Fewer distinct frames, less trust in the model's depth.
    assert outputs[0].depth_confidence.max() < np.median(outputs[-1].depth_confidence)


def test_without_partial_windows_the_first_output_waits_for_a_full_window(model_dir):
    outputs = []
    pipeline = StreamingPipeline(create_backend("onnxruntime", model_dir),
                                 StreamConfig(point_tracks=0, partial_windows=False), outputs.append)
    try:
        for i, frame in enumerate(moving_pattern_clip(16, 48, 64)):
            assert not outputs
            pipeline.push("rgb8", 48, 64, 64 * 3, frame.tobytes(), i * 33_000_000, "cam")
            pipeline.wait_idle()
    finally:
        pipeline.close()
    assert len(outputs) == 16 and {o.window_frames for o in outputs} == {16}


def _with_untrained(model_dir, tmp_path, heads):
    """A copy of `model_dir` whose metadata says `heads` were never trained."""
    import shutil
    copy = tmp_path / "model"
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("onnx"))
    (copy / "metadata.json").write_text(json.dumps({"source": "test", "untrained_heads": list(heads)}))
    return copy


def test_only_trained_heads_are_used_and_the_rest_are_named_once(model_dir, tmp_path, caplog):
    untrained = _with_untrained(model_dir, tmp_path, ["points", "boxes"])
    assert untrained_heads(untrained) == ("points", "boxes") and untrained_heads(model_dir) == ()
    backend = create_backend("onnxruntime", untrained)
    assert backend.spec.trained_heads == ("depth", "pose")
    outputs = []
    with caplog.at_level(logging.WARNING):
        pipeline = StreamingPipeline(backend, StreamConfig(point_tracks=8), outputs.append)
    try:
        pipeline.add_box_seed(0, np.array([10.0, 10.0, 30.0, 30.0]))
        push_all(pipeline, moving_pattern_clip(8, 48, 64))
    finally:
        pipeline.close()
    assert len(outputs) == 8 and all(o.points is None and o.boxes is None for o in outputs)
    assert all(o.depth is not None and o.world_from_camera is not None for o in outputs)
    said = [r.message for r in caplog.records if "never trained" in r.message]
    assert said == ["the model's points, boxes heads were never trained: not used or published"]


@pytest.mark.parametrize("untrained, settings, message", [
    (["pose"], {"egomotion": "readout"}, "egomotion readout needs the 4DS pose head, which this model never trained"),
    (["depth", "pose", "points", "boxes"], {}, "the model has no trained head"),
])
def test_a_model_with_untrained_heads_refuses_to_pretend(model_dir, tmp_path, untrained, settings, message):
    backend = create_backend("onnxruntime", _with_untrained(model_dir, tmp_path, untrained))
    with pytest.raises(ValueError, match=message):
        StreamingPipeline(backend, StreamConfig.from_values(settings), lambda o: None)
    backend.close()


def test_training_and_import_record_which_heads_they_trained(tmp_path):
    """Old model directories without the record: an import's added heads, and a pretrained encoder's heads."""
    from fourds_ros.model.model_dir import METADATA_FILE
    model = FourDS(tiny_config(frames=4, size=32))
    for metadata, expected in (({"added_heads": ["pose"]}, ("pose",)),
                               ({"source": "offline_training pretrain"}, ("depth", "pose", "points", "boxes")),
                               ({"source": "offline_training readouts"}, ())):
        out = save_model_dir(model, tmp_path / str(len(list(tmp_path.iterdir()))), metadata)
        assert untrained_heads(out) == expected, metadata
    (out / METADATA_FILE).write_text("{not json")
    with pytest.raises(Exception, match="not valid JSON"):
        untrained_heads(out)
