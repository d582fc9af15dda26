"""Export and backends: ONNX Runtime against the torch reference, and every way a file can be wrong."""
from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import sys

import numpy as np
import onnx
import pytest
import torch
from safetensors.torch import save_file

from conftest import PARITY_RTOL, cli, relative_error, tiny_config
from fourds_ros.model import FourDS, import_official, save_model_dir
from fourds_ros.runtime import BackendError, create_backend, pad_queries
from fourds_ros.model.model_dir import sha256_file
from fourds_ros.runtime import export
from fourds_ros.runtime.engine_cache import BuildSettings, EngineCache, build_settings, device_index, engine_key, \
    io_mismatch
from fourds_ros.runtime.export import export_onnx
from fourds_ros.runtime.graph_files import read_record
from fourds_ros.runtime.graph_lookup import find_or_export
from fourds_ros.runtime.graph import INVALID_LOGIT

HEAD_OUTPUTS = ["depth", "pose", "points", "points_visible_logit", "boxes", "boxes_visible_logit"]


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory):
    model = FourDS(tiny_config(frames=4, size=32))
    model.reset_parameters(3)
    # Non-zero final layers, so the tracking and pose heads produce something to compare.
    with torch.no_grad():
        for head in ("pose", "points", "boxes"):
            model.heads[head].readout.out.weight.normal_(0, 0.05, generator=torch.Generator().manual_seed(4))
    return save_model_dir(model, tmp_path_factory.mktemp("tiny") / "model")


def _window_and_queries(spec, seed=0):
    rng = np.random.default_rng(seed)
    video = rng.integers(0, 256, spec.video_shape, dtype=np.uint8)
    t, h, w = spec.clip
    points = np.stack([rng.integers(0, t, 5), rng.uniform(0, h - 1, 5), rng.uniform(0, w - 1, 5)], -1)
    x0, y0 = rng.uniform(0, w / 2, 3), rng.uniform(0, h / 2, 3)
    boxes = np.stack([rng.integers(0, t, 3), x0, y0, x0 + w / 3, y0 + h / 3], -1)
    return video, pad_queries(spec, points, boxes)


def test_onnxruntime_matches_torch_for_every_head(tiny_model_dir):
    reference = create_backend("torch", tiny_model_dir)
    ort_backend = create_backend("onnxruntime", tiny_model_dir, threads=1)
    assert ort_backend.spec == reference.spec
    video, queries = _window_and_queries(reference.spec)
    expected, got = reference.run(video, queries), ort_backend.run(video, queries)
    assert sorted(got) == sorted(HEAD_OUTPUTS)
    for name in HEAD_OUTPUTS:
        assert relative_error(got[name], expected[name]) <= 1e-4, name


def test_invalid_query_slots_are_masked_and_do_not_leak(tiny_model_dir):
    backend = create_backend("onnxruntime", tiny_model_dir)
    video, queries = _window_and_queries(backend.spec)
    out = backend.run(video, queries)
    assert (out["points"][0, 5:] == 0).all() and (out["points_visible_logit"][0, 5:] == INVALID_LOGIT).all()
    assert (out["boxes"][0, 3:] == 0).all() and (out["boxes_visible_logit"][0, 3:] == INVALID_LOGIT).all()
    queries.points[0, 5:] = 17.0  # garbage in the invalid slots
    again = backend.run(video, queries)
    np.testing.assert_array_equal(again["points"][0, :5], out["points"][0, :5])


def test_exported_fixture_graph_reproduces_the_reference_depth(reference, expected, tmp_path):
    model_dir = import_official(reference / "params.npz", tmp_path / "model")
    backend = create_backend("onnxruntime", model_dir, float_input=True)
    depth = backend.run(np.load(reference / "input.npy"))["depth"]
    error = relative_error(depth, expected["depth"])
    print(f"onnxruntime depth vs JAX reference: {error:.2e} x max|ref|")
    assert error <= PARITY_RTOL


def test_export_cli_writes_a_checked_graph_and_record(tiny_model_dir, tmp_path):
    result = cli("export", "--model", tiny_model_dir, "--out", tmp_path, "--heads", "depth,points")
    path = tmp_path / "fourds-4x32x32-depth+points-b1.onnx"
    assert str(path) in result.stdout
    onnx.checker.check_model(str(path), full_check=True)
    record = read_record(path)
    assert record["opset"] >= 17
    assert record["inputs"]["video"] == {"dtype": "uint8", "shape": [1, 4, 32, 32, 3]}
    assert record["inputs"]["point_queries"]["shape"] == [1, 8, 3] and "box_queries" not in record["inputs"]
    assert list(record["outputs"]) == ["depth", "points", "points_visible_logit"]


def test_int8_graph_is_quantised_close_to_fp32_and_says_what_it_is(tiny_model_dir, tmp_path):
    result = cli("export", "--model", tiny_model_dir, "--out", tmp_path, "--precision", "int8")
    path = tmp_path / "fourds-4x32x32-depth+pose+points+boxes-b1-int8.onnx"
    assert str(path) in result.stdout
    record = read_record(path)
    assert record["spec"]["precision"] == "int8" and record["quantization"]["weights"] == "int8, per output channel"
    graph = onnx.load(str(path)).graph
    weights = {init.name for init in graph.initializer}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= {node.op_type for node in graph.node}
    # Every matmul with a weight is integer now; float ones left multiply two activations (attention).
    assert not [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and set(n.input) & weights]
    fp32 = create_backend("onnxruntime", tiny_model_dir, threads=1)
    int8 = create_backend("onnxruntime", onnx_path=path, threads=1, precision="int8")
    assert "int8" in int8.description and int8.spec == fp32.spec
    video, queries = _window_and_queries(fp32.spec)
    expected, got = fp32.run(video, queries), int8.run(video, queries)
    errors = {name: relative_error(got[name], expected[name]) for name in HEAD_OUTPUTS}
    print("int8 vs fp32, max|diff|/max|fp32|:", errors)
    assert 0 < max(errors.values()) < 0.05, errors
    with pytest.raises(BackendError, match=r"-int8.onnx is an int8 graph but precision 'fp32' was asked for"):
        create_backend("onnxruntime", onnx_path=path, precision="fp32")
    with pytest.raises(BackendError, match=r"'fp8' is not a precision of the onnxruntime backend \(fp32, int8\)"):
        create_backend("onnxruntime", tiny_model_dir, precision="fp8")
    assert find_or_export(tiny_model_dir, precision="int8").name == path.name


def test_find_or_export_reuses_a_matching_graph_and_replaces_a_stale_one(tmp_path):
    model = FourDS(tiny_config(heads=("depth",)))
    model_dir = save_model_dir(model, tmp_path / "model")
    first = find_or_export(model_dir)
    stamp = first.stat().st_mtime_ns
    assert find_or_export(model_dir) == first and first.stat().st_mtime_ns == stamp
    old_sha = read_record(first)["source_weights_sha256"]
    model.reset_parameters(9)
    # New weights in place (the onnx/ folder stays): the old graph is now stale.
    save_file(dict(model.state_dict()), str(model_dir / "model.safetensors"))
    assert (model_dir / "onnx" / first.name).is_file()
    fresh = read_record(find_or_export(model_dir))["source_weights_sha256"]
    assert fresh == sha256_file(model_dir / "model.safetensors") != old_sha


def test_unwritable_graph_caches_fall_back_and_name_the_directory(tmp_path, monkeypatch, caplog):
    model_dir = save_model_dir(FourDS(tiny_config(heads=("depth",))), tmp_path / "model")
    (model_dir / "onnx").write_text("a file where the graph folder would go")  # the model's folder takes no graph
    monkeypatch.setenv("FOURDS_CACHE_DIR", str(tmp_path / "cache"))
    with caplog.at_level(logging.ERROR, logger="fourds_ros.runtime.graph_files"):
        cached = find_or_export(model_dir)
    assert f"cannot write the ONNX graph to {model_dir.resolve() / 'onnx'}" in caplog.text
    assert cached.is_relative_to(tmp_path / "cache" / "onnx")
    stamp = cached.stat().st_mtime_ns
    assert find_or_export(model_dir) == cached and cached.stat().st_mtime_ns == stamp  # found, not exported again
    int8 = find_or_export(model_dir, precision="int8")  # quantised from the cached fp32 graph
    assert int8.parent == cached.parent and read_record(int8)["spec"]["precision"] == "int8"
    assert cached.stat().st_mtime_ns == stamp
    caplog.clear()
    monkeypatch.setenv("FOURDS_CACHE_DIR", str(model_dir / "onnx" / "cache"))  # below a file: unusable too
    with caplog.at_level(logging.ERROR, logger="fourds_ros.runtime.graph_files"):
        backend = create_backend("onnxruntime", model_dir)
    assert "every cache directory failed; writing the ONNX graph to the temporary directory" in caplog.text
    assert backend.run(np.zeros(backend.spec.video_shape, np.uint8))["depth"].shape[1:4] == backend.spec.clip


def test_leftovers_of_killed_writers_are_removed_and_live_ones_kept(tmp_path):
    from fourds_ros.runtime.graph_files import remove_leftovers
    finished = subprocess.Popen(["true"])
    finished.wait()
    dead, alive = finished.pid, os.getpid()
    for pid in (dead, alive):
        (tmp_path / f".graph.onnx.tmp-{pid}").write_bytes(b"half a graph")
        (tmp_path / f".export-{pid}-x1y2").mkdir()
    (tmp_path / "graph.onnx").write_bytes(b"a graph")
    removed = remove_leftovers(tmp_path)
    assert sorted(p.name for p in removed) == sorted([f".graph.onnx.tmp-{dead}", f".export-{dead}-x1y2"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["graph.onnx", f".graph.onnx.tmp-{alive}",
                                                                  f".export-{alive}-x1y2"])


def test_the_default_model_runs_on_onnxruntime_without_importing_torch():
    """A robot that only runs the node installs no torch: the shipped graph is found and run without it."""
    code = ("import sys, numpy as np\n"
            "from fourds_ros.runtime import create_backend, default_model_dir\n"
            "backend = create_backend('onnxruntime', default_model_dir(), threads=1)\n"
            "out = backend.run(np.zeros(backend.spec.video_shape, np.uint8))\n"
            "assert np.isfinite(out['depth']).all()\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'safetensors')))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", result.stdout


def test_bad_files_and_names_fail_clearly(tiny_model_dir, tmp_path):
    with pytest.raises(BackendError, match="unknown backend 'tensorflow'; choose from torch, onnxruntime, tensorrt"):
        create_backend("tensorflow", tiny_model_dir)
    with pytest.raises(BackendError, match=r"ONNX file .*missing.onnx does not exist"):
        create_backend("onnxruntime", onnx_path=tmp_path / "missing.onnx")
    good = export_onnx(tiny_model_dir, tmp_path / "graphs", heads=("depth",))
    data = bytearray(good.read_bytes())
    corrupt = tmp_path / "graphs" / "corrupt.onnx"
    corrupt.write_bytes(bytes(data[: len(data) // 3]))
    with pytest.raises(BackendError, match="has no record corrupt.json"):
        create_backend("onnxruntime", onnx_path=corrupt)
    record = json.loads(good.with_suffix(".json").read_text())
    corrupt.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(BackendError, match="does not match its record corrupt.json"):
        create_backend("onnxruntime", onnx_path=corrupt)
    record["onnx_sha256"] = sha256_file(corrupt)  # a record that agrees with a truncated graph
    corrupt.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(BackendError, match=r"onnxruntime cannot load .*corrupt.onnx"):
        create_backend("onnxruntime", onnx_path=corrupt)
    backend = create_backend("onnxruntime", onnx_path=good)
    with pytest.raises(BackendError, match=r"expected a uint8 window shaped \(1, 4, 32, 32, 3\), got uint8 \(1, 4, 48, 32, 3\)"):
        backend.run(np.zeros((1, 4, 48, 32, 3), np.uint8))
    with pytest.raises(BackendError, match="got float32"):
        backend.run(np.zeros((1, 4, 32, 32, 3), np.float32))
    spec = create_backend("torch", tiny_model_dir).spec
    with pytest.raises(BackendError, match="9 points queries exceed the graph's maximum of 8"):
        pad_queries(spec, np.zeros((9, 3)))


def test_a_graph_over_the_protobuf_limit_keeps_its_weights_beside_it(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "EXTERNAL_DATA_ABOVE_BYTES", 1000)  # a tiny model stands in for a 2 GB one
    path = export_onnx(tiny_model_dir, tmp_path / "graphs", heads=("depth",))
    data = path.with_name(path.name + ".data")
    assert sorted(p.name for p in path.parent.iterdir()) == sorted([path.name, data.name, path.with_suffix(".json").name])
    assert path.stat().st_size < 100_000 < data.stat().st_size  # the graph holds the structure, the file the weights
    assert read_record(path)["external_data"]["file"] == data.name
    reference = create_backend("torch", tiny_model_dir, heads=("depth",))
    backend = create_backend("onnxruntime", onnx_path=path)
    video, _ = _window_and_queries(backend.spec)
    assert relative_error(backend.run(video)["depth"], reference.run(video)["depth"]) < 1e-5
    data.write_bytes(data.read_bytes()[:-16])
    with pytest.raises(BackendError, match=r"\.onnx\.data does not match the record"):
        create_backend("onnxruntime", onnx_path=path)
    data.unlink()
    with pytest.raises(BackendError, match=r"keeps its weights in .*\.onnx\.data, which is missing"):
        create_backend("onnxruntime", onnx_path=path)


def test_tensorrt_build_settings_follow_the_installed_version():
    """What the backend asks of TensorRT, per version (NVIDIA's TensorRT 10/11 API and migration guide)."""
    assert build_settings("10.3.0", "fp32") == BuildSettings(False, (), ("TF32",))
    fp16 = build_settings("10.3.0", "fp16")
    assert fp16.set_flags == ("FP16",) and not fp16.strongly_typed and not fp16.note
    assert "deprecated from 10.12" in build_settings("10.13.2.6", "fp16").note
    assert build_settings("11.1.0", "fp32") == BuildSettings(True, (), ("TF32",))
    with pytest.raises(BackendError, match="TensorRT 11.1.0 builds strongly typed networks only"):
        build_settings("11.1.0", "fp16")
    with pytest.raises(BackendError, match="TensorRT 8.6.1 is not supported"):
        build_settings("8.6.1", "fp32")
    with pytest.raises(BackendError, match="unknown TensorRT precision 'int8'"):
        build_settings("10.3.0", "int8")
    assert [device_index(d) for d in ("cuda", "cuda:0", "cuda:2", "GPU:1", "3")] == [0, 0, 2, 1, 3]
    with pytest.raises(BackendError, match="device 'cpu' is not a CUDA device"):
        device_index("cpu")
    assert engine_key("ab" * 32, "10.3.0", "NVIDIA Jetson AGX Orin", "fp16") == \
        "abababababababab-trt10.3.0-NVIDIA-Jetson-AGX-Orin-fp16"
    record = {"inputs": {"video": {"shape": [1, 4, 32, 32, 3]}}, "outputs": {"depth": {"shape": [1, 4, 32, 32, 1]}}}
    assert io_mismatch({"video": (1, 4, 32, 32, 3), "depth": (1, 4, 32, 32, 1)}, record) == ""
    assert io_mismatch({"video": (1, 4, 64, 64, 3), "pose": (1, 4, 4, 4)}, record) == (
        "engine I/O differs from the ONNX record: depth missing, unexpected pose, "
        "video (1, 4, 64, 64, 3) instead of (1, 4, 32, 32, 3)")


def test_engine_cache_checks_what_it_loads_and_prunes_the_least_recently_used(tmp_path, caplog):
    cache = EngineCache(tmp_path / "engines")
    path = cache.store("a", b"engine a", {"precision": "fp16"})
    assert cache.load("a") == b"engine a" and cache.load("missing") is None
    path.write_bytes(b"engine b")  # changed behind the record's back
    with caplog.at_level(logging.WARNING, logger="fourds_ros.runtime.tensorrt"):
        assert cache.load("a") is None
    assert "stale or corrupt (its checksum differs from its record)" in caplog.text
    cache.store("a", b"engine a", {})
    path.with_suffix(".json").unlink()  # killed between the engine and its record
    assert cache.load("a") is None
    path.unlink()
    now = time.time()
    for key, age_days in (("old", 200), ("in_use", 3), ("mid", 2), ("new", 1)):
        engine = cache.store(key, bytes(100), {})
        os.utime(engine, (now - age_days * 86400,) * 2)
    # Unused for 90 days goes; then the least recently used past 150 bytes, never the engine in use.
    removed = cache.prune(max_bytes=150, max_age_days=90, keep="in_use")
    assert sorted(p.stem for p in removed) == ["mid", "old"]
    assert sorted(p.name for p in cache.directory.iterdir()) == ["in_use.engine", "in_use.json", "new.engine",
                                                                 "new.json"]


def test_tensorrt_backend_says_what_is_missing(tiny_model_dir):
    try:
        import tensorrt  # noqa: F401
        have_trt = torch.cuda.is_available()
    except (ImportError, OSError):
        have_trt = False
    if have_trt:
        pytest.skip("TensorRT and a GPU are present; test_tensorrt_engine_cache covers this machine")
    with pytest.raises(BackendError, match="tensorrt|CUDA"):
        create_backend("tensorrt", tiny_model_dir)


@pytest.mark.gpu
def test_tensorrt_engine_cache(tiny_model_dir, tmp_path, caplog):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed")
    pytest.importorskip("cuda", reason="cuda-python (NVIDIA's CUDA bindings) is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    reference = create_backend("torch", tiny_model_dir)
    video, queries = _window_and_queries(reference.spec)
    expected = reference.run(video, queries)
    engine = create_backend("tensorrt", tiny_model_dir, precision="fp32", cache_dir=tmp_path)
    got = engine.run(video, queries)
    for name in HEAD_OUTPUTS:
        assert relative_error(got[name], expected[name]) <= 1e-3, name
    stamp = engine.engine_path.stat().st_mtime_ns
    again = create_backend("tensorrt", tiny_model_dir, precision="fp32", cache_dir=tmp_path)
    assert again.engine_path == engine.engine_path and engine.engine_path.stat().st_mtime_ns == stamp
    engine.engine_path.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING, logger="fourds_ros.runtime.tensorrt"):
        rebuilt = create_backend("tensorrt", tiny_model_dir, precision="fp32", cache_dir=tmp_path)
    assert "stale or corrupt" in caplog.text
    np.testing.assert_allclose(rebuilt.run(video, queries)["depth"], got["depth"], rtol=1e-3, atol=1e-4)


@pytest.mark.gpu
def test_torch_backend_on_cuda_matches_cpu(tiny_model_dir):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    cpu = create_backend("torch", tiny_model_dir)
    gpu = create_backend("torch", tiny_model_dir, device="cuda")
    video, queries = _window_and_queries(cpu.spec)
    for name, value in gpu.run(video, queries).items():
        assert relative_error(value, cpu.run(video, queries)[name]) <= 1e-4, name


def test_analytic_flops_match_torch_flop_counter():
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from fourds_ros.runtime.flops import window_flops
    from fourds_ros.runtime.graph import InferenceGraph
    config = tiny_config(frames=4, size=32)
    config.encoder.num_layers = 4  # readout index 3: two blocks run
    graph = InferenceGraph(FourDS(config))
    # The math attention backend decomposes into matmuls the counter sees; the fused CPU kernel is invisible to it.
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        graph(*graph.example_inputs())
    analytic, measured = window_flops(config)["total"], counter.get_total_flops()
    assert abs(analytic - measured) / measured < 0.01, (analytic, measured)
