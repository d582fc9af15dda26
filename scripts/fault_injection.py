"""Fault injection: kill, corrupt, truncate and flood the real processes, and check that nothing good is lost.

Every case runs the real thing (perception_node processes over ROS 2, the `fourds-ros` CLI, training under
SIGKILL) and records what happened; the run prints one JSON document and writes reports/faults.json.

    .venv/bin/python scripts/fault_injection.py [--quick] [--out reports/faults.json]

Cases:
- kill_during_export: perception_node started on a model with no exported graph, SIGKILLed at a random moment
  while it exports, started again: it must come up, on a graph whose record checks, with no leftovers.
- kill_during_engine_cache_write: a process writing engines into the TensorRT engine cache, SIGKILLed at random:
  every engine the cache then serves matches its checksum (the TensorRT calls themselves cannot run here).
- unwritable_caches: the model's folder and the user cache on a full filesystem (a 64 KiB tmpfs, as root) or
  made unusable (a file where the folder goes): the node starts, naming each directory it could not write.
- corrupt_model_files: config.json and model.safetensors truncated, garbled or missing, into the node and into
  `export`, `predict` and `eval`: each names the file and the problem, prints no traceback, writes nothing.
- training_killed_at_random: tiny MAE pretraining SIGKILLed at a random point and resumed, 10 times: every run
  ends with the loss curve of an uninterrupted run.
- truncated_bags: the sample bag cut at 60% (mcap; sqlite3 with and without metadata.yaml) into `eval` and
  `replay`: the frames before the damage are scored, with a note.
- fuzzed_images: 2,000 broken image messages between 40 good frames into the node: it stays up, every good
  frame gets its outputs, resident memory stays bounded.
- clock_jump: a stream under use_sim_time played twice (/clock going back): one restart, every frame out.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
BIN = Path(sys.executable).parent
SAMPLE_BAG = REPO / "data" / "sample_bag"


def tiny_model(out: Path) -> Path:
    """A small random model (16 frames, 32x32) with every head."""
    import torch
    from fourds_ros.model import ClipConfig, EncoderConfig, FourDS, ModelConfig, ReadoutConfig, save_model_dir
    heads = {h: ReadoutConfig(num_params=32, num_heads=2, max_queries=8, num_frequencies=4)
             for h in ("depth", "pose", "points", "boxes")}
    config = ModelConfig(encoder=EncoderConfig(hidden_size=64, num_layers=4, num_heads=2, mlp_size=128),
                         clip=ClipConfig(16, 32, 32), heads=heads, name="faults")
    model = FourDS(config)
    model.reset_parameters(0)
    with torch.no_grad():
        model.heads["depth"].readout.out.bias += 2.0
    return save_model_dir(model, out)


def node(args: list, domain: int, log_dir: Path, env: dict | None = None):
    from fourds_ros.ros.processes import NodeProcess, default_params_file
    return NodeProcess("perception_node", ["--ros-args", "--params-file", default_params_file(), *args], domain,
                       log_dir, env=env)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.glob(".*")) if directory.is_dir() else []


# Cases ------------------------------------------------------------------------------------------------------
def kill_during_export(work: Path, trials: int, rng: random.Random) -> dict:
    from fourds_ros.runtime.graph_files import read_record
    base = tiny_model(work / "base")
    # How long a start with an export takes here, to pick kill moments inside it.
    timing = work / "timing"
    shutil.copytree(base, timing)
    began = time.monotonic()
    first = node(["-p", f"model_dir:={timing}"], 61, work)
    first.wait_for_log("ready:", timeout=300)
    ready_s = time.monotonic() - began
    first.stop()
    results = []
    for trial in range(trials):
        model_dir = work / f"model{trial}"
        shutil.copytree(base, model_dir)
        victim = node(["-p", f"model_dir:={model_dir}"], 61, work)
        delay = rng.uniform(0.2, ready_s)
        time.sleep(delay)  # the moment of the kill, chosen at random: not a synchronisation
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.wait(30)
        left = leftovers(model_dir / "onnx")
        again = node(["-p", f"model_dir:={model_dir}"], 61, work)
        try:
            again.wait_for_log("ready:", timeout=300)
            graphs = sorted((model_dir / "onnx").glob("*.onnx"))
            checked = all(read_record(g) for g in graphs)
            ok = bool(graphs) and checked and not leftovers(model_dir / "onnx")
        except AssertionError:
            ok = False
        finally:
            again.stop()
        results.append({"killed_after_s": round(delay, 2), "leftovers_after_kill": len(left), "restarted": ok})
    return {"survived": all(r["restarted"] for r in results), "start_with_export_s": round(ready_s, 2),
            "trials": results}


def kill_during_engine_cache_write(work: Path, trials: int, rng: random.Random) -> dict:
    import hashlib
    from fourds_ros.runtime.engine_cache import EngineCache
    writer = ("import os, sys\n"
              "from fourds_ros.runtime.engine_cache import EngineCache\n"
              "cache = EngineCache(sys.argv[1])\n"
              "i = 0\n"
              "while True:\n"
              "    cache.store(f'engine{i % 3}', os.urandom(48 << 20), {'round': i})\n"
              "    i += 1\n")
    results = []
    for trial in range(trials):
        directory = work / f"engines{trial}"
        proc = subprocess.Popen([sys.executable, "-c", writer, str(directory)], cwd=REPO)
        delay = rng.uniform(0.5, 4.0)
        time.sleep(delay)  # the moment of the kill, chosen at random
        proc.kill()
        proc.wait()
        cache = EngineCache(directory)
        served, bad = 0, 0
        for key in ("engine0", "engine1", "engine2"):
            data = cache.load(key)
            if data is None:
                continue
            served += 1
            meta = json.loads(cache.paths(key)[1].read_text())
            bad += hashlib.sha256(data).hexdigest() != meta["engine_sha256"]
        cache.prune()
        results.append({"killed_after_s": round(delay, 2), "engines_served": served, "corrupt_served": bad,
                        "leftovers_after_prune": len(leftovers(directory))})
    return {"survived": all(r["corrupt_served"] == 0 and r["leftovers_after_prune"] == 0 for r in results),
            "trials": results}


def unwritable_caches(work: Path) -> dict:
    model_dir = tiny_model(work / "model")
    cache = work / "user_cache"
    mounted = []
    for target in (model_dir / "onnx", cache):
        target.mkdir(parents=True)
        if os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(target)],
                                                 capture_output=True).returncode == 0:
            mounted.append(target)
    how = "full 64 KiB tmpfs" if len(mounted) == 2 else "a file where the folder goes"
    if not mounted:
        for target in (model_dir / "onnx", cache):
            target.rmdir()
            target.write_text("not a directory")
    try:
        env = dict(os.environ, FOURDS_CACHE_DIR=str(cache))
        started = node(["-p", f"model_dir:={model_dir}"], 62, work, env=env)
        try:
            started.wait_for_log("ready:", timeout=300)
            ok = True
        except AssertionError:
            ok = False
        log = started.log()
        started.stop()
    finally:
        for target in mounted:
            subprocess.run(["umount", str(target)], capture_output=True)
    named = [str(model_dir / "onnx") in log, str(cache / "onnx") in log]
    return {"survived": ok and all(named), "filesystem": how, "node_ready": ok,
            "named_the_model_folder": named[0], "named_the_user_cache": named[1],
            "fell_back_to_a_temporary_directory": "every cache directory failed" in log}


def corrupt_model_files(work: Path) -> dict:
    import numpy as np
    good = tiny_model(work / "good")
    clip = work / "clip.npy"
    np.save(clip, np.zeros((1, 16, 32, 32, 3), np.float32))
    corruptions = {
        "config.json truncated": ("config.json", lambda p: p.write_bytes(p.read_bytes()[:40])),
        "config.json not JSON": ("config.json", lambda p: p.write_text("encoder: [1, 2")),
        "config.json missing": ("config.json", lambda p: p.unlink()),
        "model.safetensors truncated": ("model.safetensors", lambda p: p.write_bytes(p.read_bytes()[:5000])),
        "model.safetensors garbage": ("model.safetensors", lambda p: p.write_bytes(os.urandom(4096))),
        "model.safetensors missing": ("model.safetensors", lambda p: p.unlink()),
    }
    results = []
    for name, (file, corrupt) in corruptions.items():
        model_dir = work / name.replace(" ", "_")
        shutil.copytree(good, model_dir)
        corrupt(model_dir / file)
        outputs = {"export": work / f"{model_dir.name}-onnx", "predict": work / f"{model_dir.name}.npz",
                   "eval": work / f"{model_dir.name}-eval"}
        commands = {"export": ["export", "--model", model_dir, "--out", outputs["export"]],
                    "predict": ["predict", "--model", model_dir, "--clip", clip, "--out", outputs["predict"]],
                    "eval": ["eval", SAMPLE_BAG, "--model", model_dir, "--out", outputs["eval"]]}
        for command, args in commands.items():
            result = subprocess.run([str(BIN / "fourds-ros"), *map(str, args)], capture_output=True, text=True,
                                    timeout=600)
            text = result.stdout + result.stderr
            results.append({"corruption": name, "where": command, "exit_code": result.returncode,
                            "names_the_file": file in text, "traceback": "Traceback" in text,
                            "left_output": outputs[command].exists(), "message": text.strip().splitlines()[-1:]})
        started = node(["-p", f"model_dir:={model_dir}"], 63, work)
        code = started.wait(120)
        text = started.log()
        started.stop()
        results.append({"corruption": name, "where": "perception_node", "exit_code": code,
                        "names_the_file": file in text, "traceback": "Traceback" in text, "left_output": False,
                        "message": [line for line in text.splitlines() if file in line][:1]})
    ok = all(r["exit_code"] != 0 and r["names_the_file"] and not r["traceback"] and not r["left_output"]
             for r in results)
    return {"survived": ok, "checks": results}


def training_killed_at_random(work: Path, trials: int, rng: random.Random) -> dict:
    config = REPO / "config" / "training" / "tiny.yaml"
    overrides = ["steps=12", "checkpoint_every=2", "keep_checkpoints=2"]
    env = dict(os.environ, OMP_NUM_THREADS="1")

    def command(out: Path) -> list[str]:
        return [sys.executable, "-m", "offline_training", "pretrain", "--config", str(config), "--no-progress",
                "--set", f"out_dir={out}", *[a for o in overrides for a in ("--set", o)]]

    def losses(out: Path) -> dict[int, float]:
        log = out / "train_log.jsonl"
        records = [json.loads(line) for line in log.read_text().splitlines()] if log.is_file() else []
        return {r["step"]: r["loss"] for r in records}

    began = time.monotonic()
    reference_out = work / "reference"
    subprocess.run(command(reference_out), cwd=REPO, env=env, check=True, capture_output=True, timeout=900)
    run_s = time.monotonic() - began
    reference = losses(reference_out)
    results = []
    for trial in range(trials):
        out = work / f"killed{trial}"
        proc = subprocess.Popen(command(out), cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                start_new_session=True)
        delay = rng.uniform(1.0, run_s)
        time.sleep(delay)  # the moment of the kill, chosen at random
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        steps_before = max(losses(out), default=0)
        resumed = subprocess.run(command(out), cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
        again = losses(out)
        same = resumed.returncode == 0 and sorted(again) == sorted(reference) and all(
            abs(again[s] - reference[s]) <= 1e-6 * abs(reference[s]) + 1e-7 for s in reference)
        line = [x for x in resumed.stdout.splitlines() if "resuming from" in x]
        results.append({"killed_after_s": round(delay, 2), "steps_logged_before_kill": steps_before,
                        "resumed_from": line[0].split("resuming from", 1)[1].strip() if line else "the start",
                        "loss_curve_equals_uninterrupted": same})
    return {"survived": all(r["loss_curve_equals_uninterrupted"] for r in results),
            "uninterrupted_run_s": round(run_s, 1), "trials": results}


def truncated_bags(work: Path, model_dir: Path) -> dict:
    sys.path.insert(0, str(REPO / "tests"))
    from bag_damage import cut_short, sqlite3_copy
    from fourds_ros.ros.replay import replay
    results = []
    for storage, keep_metadata in (("mcap", True), ("mcap", False), ("sqlite3", True), ("sqlite3", False)):
        name = f"{storage}-{'with' if keep_metadata else 'without'}-metadata"
        bag = work / name
        if storage == "mcap":
            shutil.copytree(SAMPLE_BAG, bag)
        else:
            sqlite3_copy(SAMPLE_BAG, bag)
        cut_short(bag, 0.6, keep_metadata)
        result = subprocess.run([str(BIN / "fourds-ros"), "eval", str(bag), "--model", str(model_dir), "--out",
                                 str(work / f"{name}-eval")], capture_output=True, text=True, timeout=600)
        report = json.loads((work / f"{name}-eval" / "metrics.json").read_text()) if result.returncode == 0 else {}
        entry = {"bag": name, "eval_exit_code": result.returncode, "eval_frames": report.get("frames"),
                 "eval_scored": sorted(report.get("model_metrics", {})),
                 "note": [n for n in report.get("input_notes", []) if "damaged" in n or "truncated" in n][:1]}
        try:
            replayed = replay(bag, model_dir, work / f"{name}-replay", domain=64)
            entry["replay_frames"] = replayed["frames"]
            entry["replay_frames_answered"] = replayed["runtime"]["end_to_end_latency_ms"]["frames"]
        except Exception as exc:  # recorded, and the case fails
            entry["replay_error"] = f"{type(exc).__name__}: {exc}"
        results.append(entry)
    ok = all(r["eval_exit_code"] == 0 and 0 < (r["eval_frames"] or 0) < 48 and r["note"]
             and r.get("replay_frames_answered") == r.get("replay_frames") for r in results)
    return {"survived": ok, "original_frames": 48, "cut_at": 0.6, "bags": results}


def _scripted(plan: list, model_dir: Path, work: Path, domain: int, *params: str) -> dict:
    """Run tests/scripted_publisher.py's plan into a node; what the node and a listener saw."""
    from diagnostic_msgs.msg import DiagnosticArray
    from sensor_msgs.msg import Image
    from fourds_ros.ros.messages import stamp_ns
    from fourds_ros.ros.processes import NodeProcess, TopicRecorder
    started = node(["-p", f"model_dir:={model_dir}", "-p", "input_reliability:=reliable", "-p",
                    "diagnostics_period:=0.2", "-p", "point_tracks:=0", *params], domain, work)
    listener = None
    try:
        started.wait_for_log("ready:", timeout=300)
        # The scripted publisher starts once two subscribers (the node and this listener) have its images.
        listener = TopicRecorder(domain, {"depth/image": Image, "/diagnostics": DiagnosticArray, "image": Image})
        listener.wait_until_matched(60, ["depth/image", "/diagnostics"])
        listener.wait_until(lambda: listener.messages("/diagnostics"), 60, "diagnostics")
        (work / f"plan{domain}.json").write_text(json.dumps(plan))
        rss = lambda: int([x for x in open(f"/proc/{started.proc.pid}/status") if x.startswith("VmRSS")][0].split()[1]) / 1024  # noqa: E731
        before = rss()
        publisher = NodeProcess("python", [REPO / "tests" / "scripted_publisher.py", work / f"plan{domain}.json"],
                                domain, work)
        code = publisher.wait(600)
        sent = sum(step["count"] + (step["count"] // step["good_every"] if step["kind"] == "fuzz" else 0)
                   for step in plan)
        listener.wait_until(lambda: int(listener.last_diagnostics().get("frames_received", 0)) >= sent, 120,
                            "every message at the node")
        diag = listener.wait_for_node_outputs(["depth/image"], 120)
        return {"publisher_exit_code": code, "alive": started.alive(), "diagnostics": diag, "rss_before_mib": before,
                "rss_after_mib": rss(), "depth_stamps": [stamp_ns(m.header) for m in listener.messages("depth/image")],
                "log": started.log()}
    finally:
        if listener is not None:
            listener.close()
        started.stop()


def fuzzed_images(work: Path, model_dir: Path, count: int) -> dict:
    every = max(10, count // 40)  # about 40 good frames whatever the count
    plan = [dict(kind="fuzz", count=count, good_every=every, height=48, width=64, start_ns=10**9, seed=11)]
    seen = _scripted(plan, model_dir, work, 65, "-p", "window_hop:=8", "-p", "input_depth:=1000",
                     "-p", "max_image_pixels:=4000000")
    good = [10**9 + j * 33_333_333 for j in range(count // every)]
    d = seen["diagnostics"]
    result = {"broken_messages": count, "good_frames": len(good), "alive": seen["alive"],
              "rejected": int(d["frames_rejected"]), "accepted": int(d["frames_accepted"]),
              "good_frames_answered": sum(s in set(good) for s in seen["depth_stamps"]),
              "stream_resets": int(d["stream_resets"]), "rss_mib": [seen["rss_before_mib"], seen["rss_after_mib"]],
              "log_lines_for_rejections": seen["log"].count("rejecting an image")}
    result["survived"] = (seen["alive"] and result["rejected"] == count and result["good_frames_answered"] == len(good)
                          and result["stream_resets"] == 0 and seen["rss_after_mib"] - seen["rss_before_mib"] < 100)
    return result


def clock_jump(work: Path, model_dir: Path) -> dict:
    plan = [dict(kind="good", count=24, height=48, width=64, start_ns=100 * 10**9, clock=True),
            dict(kind="good", count=24, height=48, width=64, start_ns=100 * 10**9, clock=True, seed=1)]
    seen = _scripted(plan, model_dir, work, 66, "-p", "use_sim_time:=true", "-p", "window_hop:=8")
    d = seen["diagnostics"]
    result = {"frames_sent": 48, "frames_answered": len(seen["depth_stamps"]), "stream_resets": int(d["stream_resets"]),
              "frames_dropped": int(d["frames_dropped"]), "alive": seen["alive"]}
    result["survived"] = seen["alive"] and result["frames_answered"] == 48 and result["stream_resets"] == 1
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer trials (2 kills, 500 fuzzed messages)")
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "faults.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", nargs="*", help="run only these cases (default: all)")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    kills, training_kills, fuzz = (2, 2, 500) if args.quick else (5, 10, 2000)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    report = {"script": "scripts/fault_injection.py", "seed": args.seed, "quick": args.quick, "cases": {}}
    with tempfile.TemporaryDirectory(prefix="fourds-faults-") as tmp:
        tmp = Path(tmp)
        os.environ["FOURDS_CACHE_DIR"] = str(tmp / "cache")
        model_dir = tiny_model(tmp / "shared_model")
        cases = {
            "kill_during_export": lambda w: kill_during_export(w, kills, rng),
            "kill_during_engine_cache_write": lambda w: kill_during_engine_cache_write(w, 10, rng),
            "unwritable_caches": unwritable_caches,
            "corrupt_model_files": corrupt_model_files,
            "training_killed_at_random": lambda w: training_killed_at_random(w, training_kills, rng),
            "truncated_bags": lambda w: truncated_bags(w, model_dir),
            "fuzzed_images": lambda w: fuzzed_images(w, model_dir, fuzz),
            "clock_jump": lambda w: clock_jump(w, model_dir),
        }
        for name, case in cases.items():
            if args.cases and name not in args.cases:
                continue
            work = tmp / name
            work.mkdir()
            began = time.monotonic()
            print(f"fault_injection: {name} ...", file=sys.stderr, flush=True)
            try:
                result = case(work)
            except Exception as exc:  # a case that crashes is a case that failed: recorded, the others still run
                result = {"survived": False, "error": f"{type(exc).__name__}: {exc}"}
            result["seconds"] = round(time.monotonic() - began, 1)
            report["cases"][name] = result
            print(f"fault_injection: {name}: {'survived' if result['survived'] else 'FAILED'}", file=sys.stderr,
                  flush=True)
        report["all_survived"] = all(c["survived"] for c in report["cases"].values())
        # The messages name the files they are about; the machine's temporary folder is not part of the result.
        text = json.dumps(report, indent=2).replace(str(tmp), "$WORK").replace(tempfile.gettempdir() + "/", "$TMPDIR/")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)
    sys.exit(0 if report["all_survived"] else 1)


if __name__ == "__main__":
    main()
