"""3D positions of detected objects from a depth image registered to the colour image (pure numpy)."""
from perception.spatial.camera import CameraIntrinsics
from perception.spatial.depth import DEPTH_ENCODINGS, depth_in_metres, depth_in_millimetres
from perception.spatial.estimate import Object3D, estimate_object_3d
from perception.spatial.smoothing import TrackSmoother

__all__ = [
    "DEPTH_ENCODINGS",
    "CameraIntrinsics",
    "Object3D",
    "TrackSmoother",
    "depth_in_metres",
    "depth_in_millimetres",
    "estimate_object_3d",
]
