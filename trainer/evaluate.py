"""AVTS accuracy on validation shards (§3.2): threshold the embedding distance, τ chosen on validation.

Each validation clip is paired with audio twice per negative mix, from two independently seeded draws:
τ is chosen on the first draw and the accuracy reported on the second, so the figure is not the
best-case accuracy of the very pairs τ was fitted to. Two mixes are reported: easy negatives only (as in
the paper's Kinetics test set) and 75% easy / 25% hard.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from trainer.data import Batch
from trainer.step import InputSettings, autocast_for, make_pairs, make_video
from trainer.loss import accuracy_at_threshold, best_threshold, pair_distance
from trainer.models import AVTSModel
from trainer.sampler import NegativeMix

EVAL_MIXES = {"easy": NegativeMix(easy=1.0, hard=0.0), "mixed": NegativeMix(easy=0.75, hard=0.25)}
_CHOOSE, _MEASURE = 0, 1


@torch.no_grad()
def evaluate(model: AVTSModel, batches: Iterable[Batch], settings: InputSettings, device: torch.device,
             seed: int = 1234) -> dict[str, float | None]:
    """``val_acc_<mix>`` and ``val_tau_<mix>`` for each mix (``None`` when there was nothing to evaluate)."""
    model.eval()
    generators = {(mix, draw): torch.Generator(device).manual_seed(seed + 10 * i + draw)
                  for i, mix in enumerate(EVAL_MIXES) for draw in (_CHOOSE, _MEASURE)}
    scores: dict[tuple[str, int], list[torch.Tensor]] = {key: [] for key in generators}
    labels: dict[tuple[str, int], list[torch.Tensor]] = {key: [] for key in generators}
    for batch in batches:
        if len(batch.keys) < 2 or batch.video_id.unique().numel() < 2:
            continue  # easy negatives need another video in the batch
        on_device = batch.to(device)
        with autocast_for(device):
            video_emb = model.embed_video(make_video(on_device, settings, train=False, generator=None)).float()
            for (mix, draw), generator in generators.items():
                pairs, audio = make_pairs(on_device, settings, EVAL_MIXES[mix], generator)
                audio_emb = model.embed_audio(audio).float()
                if model.head is None:
                    score = pair_distance(video_emb, audio_emb)
                else:  # in-sync probability, negated so that "small means in sync" as for distances
                    score = -model.head(video_emb, audio_emb).float().softmax(dim=1)[:, 1]
                scores[(mix, draw)].append(score.float().cpu())
                labels[(mix, draw)].append(pairs.label.cpu())
    results: dict[str, float | None] = {}
    for mix in EVAL_MIXES:
        if not scores[(mix, _CHOOSE)]:
            results[f"val_acc_{mix}"] = results[f"val_tau_{mix}"] = None
            continue
        tau, _ = best_threshold(torch.cat(scores[(mix, _CHOOSE)]), torch.cat(labels[(mix, _CHOOSE)]))
        accuracy = accuracy_at_threshold(torch.cat(scores[(mix, _MEASURE)]), torch.cat(labels[(mix, _MEASURE)]), tau)
        results[f"val_acc_{mix}"] = float(accuracy)
        results[f"val_tau_{mix}"] = float(tau)
        results[f"val_pairs_{mix}"] = float(torch.cat(labels[(mix, _MEASURE)]).numel())
    return results
