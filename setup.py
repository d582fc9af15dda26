"""fourds_ros: ament_python package, also installable with pip into a virtual environment."""
from glob import glob

from setuptools import find_packages, setup

PACKAGE = "fourds_ros"

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
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob(f"{PACKAGE}/data/*.xml")),
        # The shipped default model: `model_dir` empty means this one (runtime.selection.default_model_dir).
        (f"share/{PACKAGE}/models/default", [f"models/default/{name}" for name in
                                             ("config.json", "model.safetensors", "metadata.json", "README.md")]),
    ],
    install_requires=["setuptools"],
    zip_safe=True,
    maintainer="fourds_ros developers",
    maintainer_email="fourds-ros@example.org",
    tests_require=["pytest"],
    entry_points={
        "console_scripts": [
            "fourds-ros = fourds_ros.cli:main",
            "perception_node = fourds_ros.ros.perception_node:main",
            "video_publisher = fourds_ros.ros.video_publisher:main",
        ],
    },
)
