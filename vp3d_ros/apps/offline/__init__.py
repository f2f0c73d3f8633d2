"""Offline path: a video file or a camera bag -> a LandmarkRecord bag, every frame.

Why it exists: live, pose2d drops the frames it cannot keep up with and the lifter never
sees more future than its window. Offline, MediaPipe runs on every frame (video mode,
timestamps from the stamps) and each (camera, person) track is lifted whole with
:class:`~vp3d_ros.core.lifter.SequenceLifter`, with full past and future context.

Gap rules are the live ones because the live engine is reused
(:class:`~vp3d_ros.core.engine.LiftingEngine`): every track is a
:class:`~vp3d_ros.core.windowing.TrackWindow` driving a
:class:`~vp3d_ros.core.lifter.SegmentLifter` (the streaming interface, but lifting each
segment in one pass when the window ends it).
So bridging, weak joints, splits and stamps are the live lifter's, and its symmetric output
is reproduced to float precision. The 2D keypoints are lifted as float32, exactly as the
lifter node reads them from the ``keypoints_2d`` cloud.

Output is what the live recorder stores: ``/<cam>/keypoints_2d`` (every frame, an empty
cloud when nobody is seen) and ``/<cam>/skeleton_3d`` (one cloud per frame with a pose),
sensor_msgs/PointCloud2 in the ``cloud_schema`` layout, header = the source frame's stamp
and frame_id, bag time = header stamp, ``bag_io.recording_metadata``. Messages are
serialised with rosbags (byte-identical to rclpy's), so this package imports without rclpy;
``ros_conversions`` is imported only to decode bag images. The bag is written under a
hidden sibling directory and renamed into place when complete; on failure it is removed.

The layers, in the order a run goes: :mod:`.sources` (video files, bag image topics),
:mod:`.stages` (2D, lifting, the world of one camera), :mod:`.fuse` (several cameras),
:mod:`.bag_out` (the bag), :mod:`.process` (the whole run, as ``vp3d-offline`` calls it);
:mod:`.frames` holds what flows between them.
"""
from .bag_out import write_bag
from .frames import CameraResult, CameraSource, Frame2D, OfflineError
from .fuse import fuse_in_world
from .process import PRODUCER, OfflineSummary, process
from .progress import Progress
from .sources import VIDEO_FRAME_ID, bag_sources, camera_name_from_file, video_source
from .stages import detect_2d, lift_camera, lift_frames, place_in_world, run_pose, subject_ground

__all__ = ['CameraResult', 'CameraSource', 'Frame2D', 'OfflineError', 'OfflineSummary',
           'PRODUCER', 'Progress', 'VIDEO_FRAME_ID', 'bag_sources', 'camera_name_from_file',
           'detect_2d', 'fuse_in_world', 'lift_camera', 'lift_frames', 'place_in_world',
           'process', 'run_pose', 'subject_ground', 'video_source', 'write_bag']
