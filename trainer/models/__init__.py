"""AVTS network components: MCx video subnet, VGG audio subnet, the two-stream model, action classifiers."""

from .audio import AudioNet
from .avts import AVTSModel, ModelSpec, SyncHead, build_avts
from .classifier import MODALITIES, ActionClassifier, ClassifierSpec, build_classifier, classifier_from
from .video import VideoNet, video_net

__all__ = [
    "MODALITIES",
    "AVTSModel",
    "ActionClassifier",
    "AudioNet",
    "ClassifierSpec",
    "ModelSpec",
    "SyncHead",
    "VideoNet",
    "build_avts",
    "build_classifier",
    "classifier_from",
    "video_net",
]
