"""Detections type, region proposals and car detectors.

Importing this package never imports OpenCV, TensorFlow or scikit-image: `load_yolo_fastest`,
`load_proposer` and `build_centernet`/`load_centernet` import what they need when called.
"""

from carspot.detector.centernet import (
    CENTERNET_INTEGRITY,
    CENTERNET_PACKAGE,
    CENTERNET_VERSION,
    COCO80_NAMES,
    CenterNetDetector,
    build_centernet,
    load_centernet,
    registry_integrity,
    release_centernet,
)
from carspot.detector.detections import CarDetector, Detections
from carspot.detector.errors import (
    DetectorError,
    InvalidImageError,
    ModelFormatError,
    ModelIntegrityError,
    ModelLoadError,
    ModelNotFoundError,
)
from carspot.detector.nms import box_inside, box_iou, non_max_suppression, suppress, suppress_contained
from carspot.detector.proposals import BACKENDS, ProposalFilters, Proposals, Proposer, load_proposer, propose
from carspot.detector.yolo_fastest import YOLO_FASTESTV2_SHA256, YoloFastestV2Detector, load_yolo_fastest

__all__ = [
    "BACKENDS",
    "CENTERNET_INTEGRITY",
    "CENTERNET_PACKAGE",
    "CENTERNET_VERSION",
    "COCO80_NAMES",
    "YOLO_FASTESTV2_SHA256",
    "CarDetector",
    "CenterNetDetector",
    "Detections",
    "DetectorError",
    "InvalidImageError",
    "ModelFormatError",
    "ModelIntegrityError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ProposalFilters",
    "Proposals",
    "Proposer",
    "YoloFastestV2Detector",
    "box_inside",
    "box_iou",
    "build_centernet",
    "load_centernet",
    "load_proposer",
    "load_yolo_fastest",
    "non_max_suppression",
    "propose",
    "registry_integrity",
    "release_centernet",
    "suppress",
    "suppress_contained",
]
