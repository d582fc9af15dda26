"""Everything perception_node publishes, from one `FrameOutput` of the streaming pipeline.

Called on the pipeline's worker thread, once per camera frame, with that frame's stamp and frame id.
Conventions: depth is 32FC1 metres along the optical axis with NaN where invalid (REP 118); poses are
the camera's optical frame in `odom_frame` (REP 103/105); tracks are in camera pixels.
"""
from __future__ import annotations

from collections import deque

import numpy as np
from geometry_msgs.msg import Point, Pose, PoseStamped, TransformStamped
from nav_msgs.msg import Odometry, Path as PathMsg
from rclpy.node import Node
from rclpy.qos import QoSProfile
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from ..contract import node_topic, pack_boxes, pack_points
from ..streaming import FrameOutput
from ..streaming.camera import depth_at
from ..streaming.depth_cloud import depth_points, trusted_depth
from ..streaming.geometry import ray_points
from . import messages

try:  # optional message packages of a full ROS 2 install
    from tf2_msgs.msg import TFMessage
except ImportError:
    TFMessage = None
try:
    from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose
except ImportError:
    Detection2DArray = None


class NodeOutputs:
    def __init__(self, node: Node, qos: QoSProfile, odom_frame: str, child_frame_id: str, path_length: int,
                 path_every: int, publish_tf: bool, min_confidence: float = 0.0, publish_points: bool = True,
                 points_stride: int = 1, topic=node_topic, log=None):
        """`topic` names each output (a rig camera's: under its name); `log` says which camera speaks."""
        self.odom_frame, self.child_frame_id, self.path_every = odom_frame, child_frame_id, path_every
        self.min_confidence, self.points_stride = min_confidence, points_stride
        self.log = log or node.get_logger()
        self.depth = node.create_publisher(Image, topic("depth/image"), qos)
        self.depth_info = node.create_publisher(CameraInfo, topic("depth/camera_info"), qos)
        self.depth_confidence = node.create_publisher(Image, topic("depth/confidence"), qos)
        self.depth_points = node.create_publisher(PointCloud2, topic("depth/points"), qos) \
            if publish_points else None
        self._said_no_points = False
        self.odom = node.create_publisher(Odometry, topic("odometry"), qos)
        self.pose = node.create_publisher(PoseStamped, topic("pose"), qos)
        self.path_pub = node.create_publisher(PathMsg, topic("path"), qos)
        self.points = node.create_publisher(PointCloud2, topic("tracks/points"), qos)
        self.boxes = node.create_publisher(PointCloud2, topic("tracks/boxes"), qos)
        self.markers = node.create_publisher(MarkerArray, topic("tracks/markers"), qos)
        self.tf = node.create_publisher(TFMessage, topic("tf"), 100) if publish_tf and TFMessage else None
        if publish_tf and TFMessage is None:
            self.log.warning("publish_tf is set but tf2_msgs is not installed: /tf is not published")
        self.detections = (node.create_publisher(Detection2DArray, topic("tracks/detections"), qos)
                           if Detection2DArray else None)
        self.path = PathMsg()
        self.path_poses: deque = deque(maxlen=path_length)
        self.poses_published = 0
        self.camera_info: CameraInfo | None = None  # the source camera's, set by the node

    def publish(self, out: FrameOutput) -> None:
        """A frame's depth and tracks, once its window is back (its pose goes through `publish_motion`). A message
        no one subscribes to is not made (as image_pipeline's nodes do): building the clouds, markers and images
        takes the interpreter from the frame's tracking, for nothing where nothing reads them."""
        header = _header(out)
        k_model = None
        if out.depth is not None:
            image, cloud = _listened(self.depth), self.depth_points is not None and _listened(self.depth_points)
            trusted = trusted_depth(out.depth, out.depth_confidence, self.min_confidence) if image or cloud else None
            if image:
                self.depth.publish(float_image(trusted, header))
            if out.depth_confidence is not None and _listened(self.depth_confidence):
                self.depth_confidence.publish(float_image(out.depth_confidence, header))
            if self.camera_info is not None:
                info = scaled_camera_info(self.camera_info, out, header)
                if _listened(self.depth_info):
                    self.depth_info.publish(info)
                k_model = np.asarray(info.k).reshape(3, 3) if any(info.k) else None
            if cloud:
                self._publish_points(trusted, out.depth_confidence, k_model, header)
        points_uv = boxes = None
        if out.points is not None:
            t = out.points
            if _listened(self.points):
                self.points.publish(messages.track_cloud(pack_points(t.ids, t.source_values, t.visible,
                                                                     t.confidence), header))
            points_uv = t.values[t.visible.astype(bool)]
        if out.boxes is not None:
            t = out.boxes
            if _listened(self.boxes):
                self.boxes.publish(messages.track_cloud(pack_boxes(t.ids, t.source_values, t.visible, t.confidence),
                                                        header))
            boxes = t.values[t.visible.astype(bool)]
            if self.detections is not None and _listened(self.detections):
                self.detections.publish(detections(header, t.ids, t.source_values, t.visible, t.confidence))
        if (out.points is not None or out.boxes is not None) and _listened(self.markers):
            self.markers.publish(track_markers(header, out.depth, k_model, points_uv, boxes))

    def _publish_points(self, trusted: np.ndarray, confidence: np.ndarray | None, k: np.ndarray | None,
                        header: Header) -> None:
        if self.depth_points is None:
            return
        if k is None:  # without intrinsics a pixel has no ray
            if not self._said_no_points:
                self._said_no_points = True
                self.log.warning("depth/points needs the camera's intrinsics (camera_info with a focal length): "
                                 "not published until they arrive")
            return
        records = depth_points(trusted, confidence, k, self.points_stride)
        self.depth_points.publish(messages.track_cloud(records, header))

    def publish_motion(self, out: FrameOutput) -> None:
        """A frame's odometry, pose, path and transform (by default as soon as the frame arrived); the path keeps
        every pose whether or not anyone reads it yet."""
        header = _header(out)
        world_from_camera = out.world_from_camera
        odom_header = Header(stamp=header.stamp, frame_id=self.odom_frame)
        child = self.child_frame_id or header.frame_id
        pose = PoseStamped(header=odom_header, pose=messages.pose_of(world_from_camera))
        if _listened(self.odom):
            self.odom.publish(odometry(pose.pose, odom_header, child, out.pose_covariance, out.twist,
                                       out.twist_covariance))
        if _listened(self.pose):
            self.pose.publish(pose)
        insert_by_stamp(self.path_poses, pose)
        self.poses_published += 1
        if self.poses_published % self.path_every == 0 and _listened(self.path_pub):  # for display: once per hop
            self.path.header = odom_header
            self.path.poses = list(self.path_poses)
            self.path_pub.publish(self.path)
        if self.tf is not None and _listened(self.tf):
            self.tf.publish(TFMessage(transforms=[transform(pose.pose, odom_header, child)]))


def _listened(publisher) -> bool:
    """Whether anything subscribes to `publisher` (the middleware's count of matched subscriptions, a lookup)."""
    return publisher.get_subscription_count() > 0


def insert_by_stamp(poses: deque, pose: PoseStamped) -> None:
    """A pose published late (its frame was left to its window) goes where its stamp puts it, so the path is drawn
    in the order the camera moved; the oldest pose makes room."""
    stamp, at = messages.stamp_ns(pose.header), len(poses)
    while at > 0 and messages.stamp_ns(poses[at - 1].header) > stamp:
        at -= 1
    if len(poses) == poses.maxlen:
        if at == 0:
            return  # older than the whole path kept
        poses.popleft()
        at -= 1
    poses.insert(at, pose)


def _header(out: FrameOutput) -> Header:
    return Header(stamp=Time(nanoseconds=out.info.stamp_ns).to_msg(), frame_id=out.info.frame_id)


def float_image(values: np.ndarray, header: Header) -> Image:
    """32FC1: depth in metres along the optical axis (REP 118: `trusted_depth` makes anything else NaN), or the
    depth's confidence."""
    h, w = values.shape
    return Image(header=header, height=h, width=w, encoding="32FC1", is_bigendian=0, step=w * 4,
                 data=np.ascontiguousarray(values, dtype="<f4").tobytes())


def scaled_camera_info(source: CameraInfo, out: FrameOutput, header: Header) -> CameraInfo:
    """The source camera seen at the depth image's resolution (crop and scale applied to K and P).

    An uncalibrated camera (all-zero K or P) stays uncalibrated. When the pipeline rectified the images,
    the depth image is distortion-free.
    """
    height, width = out.depth.shape
    k = np.asarray(source.k, np.float64).reshape(3, 3)
    p = np.asarray(source.p, np.float64).reshape(3, 4).copy()
    pixel_map = out.pixel_map
    if k.any():
        k = pixel_map.intrinsics_to_model(k)
    if p.any():
        p[:, :3] = pixel_map.intrinsics_to_model(p[:, :3])
        p[0, 3] /= pixel_map.scale_x
        p[1, 3] /= pixel_map.scale_y
    return CameraInfo(header=header, height=height, width=width, distortion_model=source.distortion_model,
                      d=list(source.d), k=k.ravel().tolist(), r=list(source.r), p=p.ravel().tolist())


def odometry(pose: Pose, header: Header, child_frame_id: str, covariance: np.ndarray | None = None,
             velocity: np.ndarray | None = None, velocity_covariance: np.ndarray | None = None) -> Odometry:
    """Pose (odometry frame) and twist (child frame: the velocity since the last frame, `streaming/twist.py`), each
    with its 6x6 covariance (x, y, z, rot x, rot y, rot z; -1 in [0] where unknown: the first frame's twist)."""
    msg = Odometry(header=header, child_frame_id=child_frame_id)
    msg.pose.pose = pose
    if covariance is not None:
        msg.pose.covariance = [float(v) for v in np.asarray(covariance, np.float64).ravel()]
    else:
        msg.pose.covariance[0] = -1.0
    if velocity is not None and velocity_covariance is not None:
        v = [float(x) for x in velocity]
        msg.twist.twist.linear.x, msg.twist.twist.linear.y, msg.twist.twist.linear.z = v[:3]
        msg.twist.twist.angular.x, msg.twist.twist.angular.y, msg.twist.twist.angular.z = v[3:]
        msg.twist.covariance = [float(x) for x in np.asarray(velocity_covariance, np.float64).ravel()]
    else:
        msg.twist.covariance[0] = -1.0
    return msg


def transform(pose: Pose, header: Header, child_frame_id: str) -> TransformStamped:
    msg = TransformStamped(header=header, child_frame_id=child_frame_id)
    msg.transform.translation.x, msg.transform.translation.y, msg.transform.translation.z = (
        pose.position.x, pose.position.y, pose.position.z)
    msg.transform.rotation = pose.orientation
    return msg


def track_markers(header: Header, depth: np.ndarray | None, k: np.ndarray | None,
                  points_uv: np.ndarray | None, boxes: np.ndarray | None) -> MarkerArray:
    """RViz markers for visible tracks, placed in 3D with the depth image (model pixels, model intrinsics)."""
    out = MarkerArray(markers=[Marker(header=header, action=Marker.DELETEALL)])
    if depth is None or k is None:
        return out
    if points_uv is not None and len(points_uv):
        m = Marker(header=header, ns="points", id=0, type=Marker.SPHERE_LIST, action=Marker.ADD)
        m.scale.x = m.scale.y = m.scale.z = 0.03
        m.color.g, m.color.a = 1.0, 1.0
        m.pose.orientation.w = 1.0
        u, v = points_uv[:, 0], points_uv[:, 1]
        xyz = ray_points(u, v, depth_at(depth, u, v), k)
        m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in xyz if np.isfinite(z)]
        out.markers.append(m)
    if boxes is not None and len(boxes):
        m = Marker(header=header, ns="boxes", id=1, type=Marker.LINE_LIST, action=Marker.ADD)
        m.scale.x = 0.01
        m.color.r, m.color.a = 1.0, 1.0
        m.pose.orientation.w = 1.0
        centre_z = depth_at(depth, (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2)
        for (x0, y0, x1, y1), z in zip(boxes, centre_z):
            if not np.isfinite(z):
                continue
            corners = ray_points(np.array([x0, x1, x1, x0]), np.array([y0, y0, y1, y1]), np.full(4, z), k)
            for a, b in zip(corners, np.roll(corners, -1, axis=0)):
                m.points += [Point(x=float(a[0]), y=float(a[1]), z=float(a[2])),
                             Point(x=float(b[0]), y=float(b[1]), z=float(b[2]))]
        out.markers.append(m)
    return out


def detections(header: Header, ids, boxes, visible, confidence):
    """vision_msgs/Detection2DArray of the visible box tracks, the track id in `Detection2D.id`."""
    out = Detection2DArray(header=header)
    for track_id, (x0, y0, x1, y1), vis, conf in zip(ids, boxes, visible, confidence):
        if not vis:
            continue
        det = Detection2D(header=header, id=str(int(track_id)))
        det.bbox = BoundingBox2D()
        det.bbox.center.position.x, det.bbox.center.position.y = float(x0 + x1) / 2, float(y0 + y1) / 2
        det.bbox.size_x, det.bbox.size_y = float(x1 - x0), float(y1 - y0)
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = "track", float(conf)
        det.results = [hypothesis]
        out.detections.append(det)
    return out
