"""fourds_ros: ament_python package, also installable with pip into a virtual environment.

Dependencies are grouped so a robot that only runs the node installs no training stack:
- the core (`pip install .`): the perception node on ONNX Runtime (CPU) with the shipped default model;
- `[eval]`: rosbag replay, `eval`, `convert`, reports and plots;
- `[export]`: exporting ONNX graphs and the PyTorch reference backend (torch);
- `[train]`: offline training and the synthetic data generator;
- `[tensorrt]`: the TensorRT backend on NVIDIA GPUs (on a Jetson, JetPack's TensorRT instead: see docs/gpu.md);
- `[test]`: the test suite.
`requirements.lock` pins one tested set of all of them: the README's commands and CI install from it.

ROS 2 comes from the `ros-jazzy-*` wheels on PyPI in a plain virtual environment. Under a sourced ROS 2
install (`ROS_DISTRO` set, e.g. a colcon workspace) the distribution provides rclpy and the messages, so they
are not declared again.
"""
import os
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fourds_ros"

ROS = [] if os.environ.get("ROS_DISTRO") else [
    "ros-jazzy-rclpy[fastrtps]>=7.1,<8",
    *(f"ros-jazzy-{name}-msgs>=5.3,<6" for name in ("std", "sensor", "geometry", "nav", "visualization",
                                                     "diagnostic")),
]
CORE = ["numpy>=1.24,<3", "opencv-python-headless>=4.8", "onnxruntime>=1.17", "scipy>=1.10", "PyYAML>=6", "gtsam>=4.3"]
TORCH = ["torch>=2.6", "safetensors>=0.4", "onnx>=1.16", "onnxscript>=0.2"]
EXTRAS = {
    "eval": ["rosbags>=0.10", "evo>=1.28", "matplotlib>=3.7", "tqdm>=4.60"],
    "export": TORCH,
    "train": [*TORCH, "mujoco>=3.1", "pybullet>=3.2", "tqdm>=4.60"],  # pybullet: meshes, textures
    "tensorrt": ["tensorrt>=10.0,<11", "cuda-python>=12"],
    "test": ["pytest>=8"],
}
EXTRAS["all"] = sorted({r for name, reqs in EXTRAS.items() if name != "tensorrt" for r in reqs})

setup(
    name=PACKAGE,
    version="0.1.0",
    description="4D perception (depth, egomotion, point and box tracks) for ROS 2 from one 4DS video model",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*", "offline_training", "offline_training.*"]),
    package_data={PACKAGE: ["data/*.xml"]},
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.launch.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.rviz") + glob(f"{PACKAGE}/data/*.xml")),
        # The shipped default model: `model_dir` empty means this one (runtime.selection.default_model_dir).
        (f"share/{PACKAGE}/models/default", [f"models/default/{name}" for name in
                                             ("config.json", "model.safetensors", "metadata.json", "README.md")]),
        # ... with its exported fp32 graph: the onnxruntime node runs it without torch.
        (f"share/{PACKAGE}/models/default/onnx", glob("models/default/onnx/fourds-*-b1.onnx") +
         glob("models/default/onnx/fourds-*-b1.json")),
    ],
    install_requires=[*CORE, *ROS],
    extras_require=EXTRAS,
    zip_safe=True,
    maintainer="fourds_ros developers",
    maintainer_email="fourds-ros@example.org",
    entry_points={
        "console_scripts": [
            "fourds-ros = fourds_ros.cli:main",
            "perception_node = fourds_ros.ros.perception_node:main",
            "video_publisher = fourds_ros.ros.video_publisher:main",
        ],
    },
)
