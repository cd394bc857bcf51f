"""AVTS network components: MCx video subnet, VGG audio subnet, the two-stream model."""

from .audio import AudioNet
from .avts import AVTSModel, ModelSpec, SyncHead, build_avts
from .video import VideoNet, video_net

__all__ = ["AudioNet", "AVTSModel", "ModelSpec", "SyncHead", "VideoNet", "build_avts", "video_net"]
