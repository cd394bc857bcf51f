"""AVTS network components: MCx video subnet, VGG audio subnet, two-stream model."""

from .audio import AudioNet
from .avts import AVTSNet, SyncHead, build_avts
from .video import VideoNet, video_net

__all__ = ["AudioNet", "AVTSNet", "SyncHead", "VideoNet", "build_avts", "video_net"]
