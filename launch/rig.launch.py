"""Launch one perception_node for a camera rig: `ros2 launch fourds_ros rig.launch.py rig_file:=my_rig.yaml`.

The rig file lists the cameras and their drivers' topics (config/rig.yaml); each camera's outputs appear under
its name (front/depth/image, front/odometry, ...), and the cameras' windows share one model, batched.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.substitutions import FindPackageShare

from fourds_ros.ros.launch_actions import perception_node
from fourds_ros.ros.rig_file import read_rig, rig_remappings


def rig_node(context):
    cameras = read_rig(LaunchConfiguration("rig_file").perform(context))
    return [perception_node(
        [LaunchConfiguration("params_file"),
         {"cameras": [c.name for c in cameras], "model_dir": LaunchConfiguration("model_dir"),
          "backend": LaunchConfiguration("backend"), "publish_tf": LaunchConfiguration("publish_tf")}],
        rig_remappings(cameras))]


def generate_launch_description():
    share = FindPackageShare("fourds_ros")
    return LaunchDescription([
        DeclareLaunchArgument("rig_file", default_value=PathJoinSubstitution([share, "config", "rig.yaml"]),
                              description="the rig's cameras and their topics (see share/fourds_ros/config/rig.yaml)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of the node and its topics"),
        DeclareLaunchArgument("params_file", default_value=PathJoinSubstitution([share, "config", "perception.yaml"]),
                              description="YAML parameters shared by every camera"),
        DeclareLaunchArgument("model_dir", default_value="",
                              description="model directory (config.json + model.safetensors); empty: the default model"),
        DeclareLaunchArgument("backend", default_value="onnxruntime", description="onnxruntime, tensorrt or torch"),
        DeclareLaunchArgument("publish_tf", default_value="false",
                              description="publish each camera's odometry frame -> camera on /tf"),
        OpaqueFunction(function=rig_node),
    ])
