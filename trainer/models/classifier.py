"""Action classifiers on the AVTS subnets (Korbar, Tran & Torresani, NeurIPS 2018, §3.3 and §3.5).

Each subnet gives the features it computes just before its embedding layer, the layer that maps into the
audio-visual space the contrastive loss shapes:

* video: MCx's pooled conv5 features, ``8 × width × time bins`` (512 for mc3-size, global pooling), as a
  video network fine-tuned for action recognition has them once its last FC is replaced (§3.3);
* audio: the VGG subnet's fc6 output, 512 (its fc7 is the embedding).

The head maps them to class logits: one FC layer (C units) for a single modality, and for ``audiovisual``
the two feature vectors concatenated → FC 512 → ReLU → FC C, the two-layer head of §3.5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from .audio import AudioNet
from .avts import AVTSModel, ModelSpec, build_avts
from .video import VideoNet

MODALITIES = ("video", "audio", "audiovisual")
HIDDEN = 512  # §3.5: "two fully connected layers (containing, respectively, 512 and C units)"


@dataclass(frozen=True)
class ClassifierSpec:
    """Everything that decides a classifier's shape; stored in `avts-finetune` checkpoints."""

    backbone: ModelSpec  # the AVTS model whose subnets it uses
    modality: str  # video, audio or audiovisual
    classes: int
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.modality not in MODALITIES:
            raise ValueError(f"modality must be one of {', '.join(MODALITIES)}, got {self.modality!r}")
        if self.classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {self.classes}")

    @property
    def uses_video(self) -> bool:
        """True when the video subnet is part of the classifier."""
        return self.modality in ("video", "audiovisual")

    @property
    def uses_audio(self) -> bool:
        """True when the audio subnet is part of the classifier."""
        return self.modality in ("audio", "audiovisual")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {**asdict(self), "backbone": self.backbone.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClassifierSpec:
        """Rebuild from :meth:`to_dict`."""
        return cls(ModelSpec.from_dict(data["backbone"]), data["modality"], data["classes"], data.get("dropout", 0.0))


class ActionClassifier(nn.Module):
    """Video, audio or both subnets without their embedding layers, and a classification head."""

    def __init__(self, spec: ClassifierSpec, video: VideoNet | None, audio: AudioNet | None) -> None:
        super().__init__()
        if spec.uses_video != (video is not None) or spec.uses_audio != (audio is not None):
            raise ValueError(f"modality {spec.modality!r} needs exactly its subnets")
        self.spec = spec
        self.video = video
        self.audio = audio
        features = 0
        if video is not None:
            features += video.fc.in_features
            video.fc = nn.Identity()  # type: ignore[assignment]  # the subnet now returns its pooled conv5 features
        if audio is not None:
            features += audio.fc7.in_features
            audio.fc7 = nn.Identity()  # type: ignore[assignment]  # the subnet now returns its fc6 output
        if spec.modality == "audiovisual":
            self.head: nn.Module = nn.Sequential(
                nn.Dropout(spec.dropout),
                nn.Linear(features, HIDDEN),
                nn.ReLU(inplace=True),
                nn.Linear(HIDDEN, spec.classes),
            )
        else:
            self.head = nn.Sequential(nn.Dropout(spec.dropout), nn.Linear(features, spec.classes))

    def forward(self, video: torch.Tensor | None, audio: torch.Tensor | None) -> torch.Tensor:
        """Class logits ``(B, C)`` from ``(B, 3, T, H, W)`` clips and/or ``(B, 1, 40, 100)`` audio windows."""
        parts = []
        if self.video is not None:
            if video is None:
                raise ValueError("this classifier needs video clips")
            parts.append(self.video(video).float())
        if self.audio is not None:
            if audio is None:
                raise ValueError("this classifier needs audio windows")
            parts.append(self.audio(audio).float())
        return self.head(torch.cat(parts, dim=1))


def classifier_from(spec: ClassifierSpec, avts: AVTSModel) -> ActionClassifier:
    """A classifier on the subnets of ``avts`` (their weights are taken as they are: the ``--init`` case)."""
    return ActionClassifier(spec, avts.video if spec.uses_video else None, avts.audio if spec.uses_audio else None)


def build_classifier(spec: ClassifierSpec) -> ActionClassifier:
    """A classifier with freshly initialized subnets (the ``--init scratch`` case, or to load a checkpoint)."""
    return classifier_from(spec, build_avts(spec.backbone))
