"""Post-processing: query scores from token probabilities, box and text thresholds, the lower boxes of phrases
that are there (present_phrase_threshold), phrase labels from token spans, boxes in original-image pixels
(xyxy), optional per-phrase non-maximum suppression."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from perception.boxes import box_iou, cxcywh_to_xyxy
from perception.model.tokenizer import PromptChunk, PromptTokenizer
from perception.types import Detections

LABEL_MODES = ("phrase", "tokens")


@dataclass
class PostprocessConfig:
    box_threshold: float = 0.35  # keep a query whose score passes this
    text_threshold: float = 0.25  # a phrase (or token) names the box only if its probability passes this
    # "phrase": score = best probability over the tokens of any phrase, label = that phrase as written.
    # "tokens": the reference's rule: score = best probability over all tokens, label = the words of
    #           every token above text_threshold (what transformers' post-processing returns).
    label_mode: str = "phrase"
    nms_iou: float | None = None  # per-phrase NMS IoU threshold; None keeps every box
    # "phrase" mode: a box scored above this but not above box_threshold is kept too when its phrase is there
    # (a box of the phrase in the same image passes box_threshold) and it overlaps no box of that phrase kept
    # before it (by score) by more than present_phrase_iou. In a crowd of one phrase a detector is sure of some
    # people and unsure of the rest: with it, a model given a crowd stage found 0.81 of the walkers on 100 fresh
    # crowd images instead of 0.69, at precision 0.72 instead of 0.73 (README, "From Python"). Never under
    # text_threshold; None turns it off; a call that lowers box_threshold for a tracker skips it (the tracker
    # starts tracks at box_threshold only).
    present_phrase_threshold: float | None = 0.25
    present_phrase_iou: float = 0.5
    max_detections: int = 300
    # Clip boxes to the image. The reference does not clip; parity checks turn this off.
    clip_to_image: bool = True

    def __post_init__(self) -> None:
        for name in ("box_threshold", "text_threshold"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.present_phrase_threshold is not None and not 0.0 <= self.present_phrase_threshold <= 1.0:
            raise ValueError(f"present_phrase_threshold must be in [0, 1] or None, got {self.present_phrase_threshold}")
        if not 0.0 < self.present_phrase_iou <= 1.0:
            raise ValueError(f"present_phrase_iou must be in (0, 1], got {self.present_phrase_iou}")
        if self.label_mode not in LABEL_MODES:
            raise ValueError(f"label_mode must be one of {LABEL_MODES}, got {self.label_mode!r}")
        if self.nms_iou is not None and not 0.0 < self.nms_iou <= 1.0:
            raise ValueError(f"nms_iou must be in (0, 1] or None, got {self.nms_iou}")
        if self.max_detections < 1:
            raise ValueError(f"max_detections must be >= 1, got {self.max_detections}")


def phrase_token_map(chunk: PromptChunk, num_tokens: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(num_phrases, num_tokens) bool on `device`, True where the token belongs to the phrase."""
    spans = torch.tensor(chunk.phrase_token_spans, dtype=torch.long, device=device).view(-1, 2)
    tokens = torch.arange(num_tokens, device=device)
    return (tokens >= spans[:, :1]) & (tokens < spans[:, 1:])


# Columns of rank_queries' rows: the score, the xyxy box, then the phrase index ("phrase" mode) or one
# column per token ("tokens" mode).
SCORE, BOX, LABEL = 0, slice(1, 5), 5


def rank_queries(logits: torch.Tensor, boxes: torch.Tensor, chunk: PromptChunk, image_sizes: list[tuple[int, int]],
                 config: PostprocessConfig) -> torch.Tensor:
    """The device-side part of post-processing, for a batch: fixed shapes, no host synchronization.

    logits: (B, K, Nt); boxes: (B, K, 4) normalized cxcywh; image_sizes: each image's original (height, width).
    returns: (B, K, 5 + L) float32 on the logits' device, each image's queries by descending score (stable:
    ties keep query order): score, box xyxy in original-image pixels (clipped to the image with
    ``clip_to_image``), then L = 1 column holding the phrase index as a float (exact below 2**24) in "phrase"
    mode, or L = Nt columns in "tokens" mode, 1.0 where the token's probability passes text_threshold.
    """
    probabilities = logits.float().sigmoid()
    if config.label_mode == "phrase":
        token_map = phrase_token_map(chunk, probabilities.shape[-1], probabilities.device)
        # (B, K, phrases): the best token of each phrase
        per_phrase = torch.where(token_map, probabilities[..., None, :], 0.0).amax(-1)
        scores, phrase_index = per_phrase.max(-1)
        label_columns = phrase_index[..., None].float()
    else:
        scores = probabilities.amax(-1)
        label_columns = (probabilities > config.text_threshold).float()
    scale = torch.tensor([[width, height, width, height] for height, width in image_sizes], dtype=torch.float32,
                         device=boxes.device)[:, None]  # (B, 1, 4)
    pixel_boxes = cxcywh_to_xyxy(boxes.float()) * scale
    if config.clip_to_image:
        pixel_boxes = torch.minimum(pixel_boxes.clamp(min=0), scale)
    rows = torch.cat((scores[..., None], pixel_boxes, label_columns), -1)
    order = scores.argsort(dim=-1, descending=True, stable=True)
    return torch.gather(rows, 1, order[..., None].expand(-1, -1, rows.shape[-1]))


def detections_from_ranked(rows: torch.Tensor, chunk: PromptChunk, config: PostprocessConfig,
                           tokenizer: PromptTokenizer, lowered_from: float | None = None) -> Detections:
    """One image's (K, 5 + L) rows of :func:`rank_queries`, on the host: the queries passing box_threshold,
    their labels, then per-phrase NMS and max_detections.

    lowered_from: the configured box threshold when this call's ``config.box_threshold`` was lowered for a
    tracker. In "phrase" mode the boxes scored at or below it, which are there only to continue tracks of
    their phrase, are named by their best phrase whatever text_threshold (otherwise a box between the
    tracker's floor and text_threshold would be labelled "" and could continue nothing)."""
    floor = config.box_threshold if lowered_from is not None else present_phrase_floor(config)
    rows = rows[rows[:, SCORE] > floor]
    if config.label_mode == "phrase":
        named = rows[:, SCORE] > config.text_threshold
        if lowered_from is not None:
            named |= rows[:, SCORE] <= lowered_from
        named = named.tolist()
        phrase_index = rows[:, LABEL].long().tolist()
        labels = [chunk.phrases[index] if is_named else "" for index, is_named in zip(phrase_index, named)]
    else:
        token_ids = chunk.input_ids[0].tolist()
        # The first token ([CLS]) never names anything, as in the reference.
        labels = [tokenizer.decode([token_ids[t] for t in above.nonzero().flatten().tolist() if t != 0])
                  for above in rows[:, LABEL:]]
    detections = Detections(rows[:, BOX].contiguous().numpy(), rows[:, SCORE].contiguous().numpy(), labels)
    if floor < config.box_threshold:
        detections = select(detections, present_phrase_keep(detections, config.box_threshold, floor,
                                                            config.present_phrase_iou))
    if config.nms_iou is not None:
        detections = per_phrase_nms(detections, config.nms_iou)
    return select(detections, list(range(min(len(detections), config.max_detections))))


def present_phrase_score(config: PostprocessConfig) -> float | None:
    """The lowest score of a box the present-phrase rule reports ("phrase" mode): present_phrase_threshold, never
    under text_threshold (such a box has no phrase, labelled "", unless a tracker lowered the call); None where
    the rule is off."""
    if config.label_mode != "phrase" or config.present_phrase_threshold is None:
        return None
    return max(config.present_phrase_threshold, config.text_threshold)


def present_phrase_floor(config: PostprocessConfig) -> float:
    """The lowest score a box may have to be reported under ``config``: present_phrase_score where it applies
    (below box_threshold), else box_threshold."""
    score = present_phrase_score(config)
    return config.box_threshold if score is None else min(config.box_threshold, score)


def present_phrase_keep(detections: Detections, box_threshold: float, floor: float, iou_threshold: float) -> list[int]:
    """Indices, in the detections' order, of those sorted by score (descending) that pass ``box_threshold``,
    and of those above ``floor`` whose label a box above box_threshold has and that overlap no box of their
    label kept before them by more than ``iou_threshold``. Unlabelled boxes ("") need box_threshold."""
    scores, labels = detections.scores, detections.labels
    if len(scores) > 1 and np.any(np.diff(scores) > 0):
        raise ValueError("present_phrase_keep needs detections sorted by score, highest first")
    present = {label for label, score in zip(labels, scores) if score > box_threshold and label}
    boxes = torch.from_numpy(detections.boxes)
    iou = box_iou(boxes, boxes).numpy() if len(scores) else None
    kept: list[int] = []
    for index, (label, score) in enumerate(zip(labels, scores)):
        if score > box_threshold or (
                score > floor and label in present
                and not any(labels[other] == label and iou[index, other] > iou_threshold for other in kept)):
            kept.append(index)
    return kept


def at_threshold(detections: Detections, config: PostprocessConfig) -> Detections:
    """Of detections reported at a lower box threshold (sorted by score, highest first), those ``config``
    would report: above box_threshold, and the boxes of present phrases that present_phrase_keep keeps."""
    return select(detections, present_phrase_keep(detections, config.box_threshold, present_phrase_floor(config),
                                                  config.present_phrase_iou))


def postprocess_batch(logits: torch.Tensor, boxes: torch.Tensor, chunk: PromptChunk,
                      image_sizes: list[tuple[int, int]], config: PostprocessConfig,
                      tokenizer: PromptTokenizer, lowered_from: float | None = None) -> list[Detections]:
    """Detections of a batch (shapes as in :func:`rank_queries`): scores and boxes stay on the device until
    one copy to the host for the whole batch. lowered_from: see :func:`detections_from_ranked`."""
    ranked = rank_queries(logits, boxes, chunk, image_sizes, config).cpu()
    return [detections_from_ranked(rows, chunk, config, tokenizer, lowered_from) for rows in ranked]


def postprocess(logits: torch.Tensor, boxes: torch.Tensor, chunk: PromptChunk, image_size: tuple[int, int],
                config: PostprocessConfig, tokenizer: PromptTokenizer) -> Detections:
    """logits: (K, Nt) of one image; boxes: (K, 4) normalized cxcywh; image_size: original (height, width)."""
    return postprocess_batch(logits[None], boxes[None], chunk, [image_size], config, tokenizer)[0]


def select(detections: Detections, indices: list[int]) -> Detections:
    return Detections(detections.boxes[indices], detections.scores[indices], [detections.labels[i] for i in indices])


def nms_keep(boxes: np.ndarray, labels: list, iou_threshold: float) -> list[int]:
    """Greedy NMS within each label over (N, 4) xyxy boxes sorted by score (descending): the indices of the
    boxes kept, in that order. A box is dropped when it overlaps a kept box of its label by more than
    iou_threshold."""
    boxes = torch.from_numpy(np.asarray(boxes))
    iou = box_iou(boxes, boxes) if len(boxes) else torch.zeros((0, 0))
    suppressed = torch.zeros(len(boxes), dtype=torch.bool)
    kept = []
    for i in range(len(boxes)):
        if suppressed[i]:
            continue
        kept.append(i)
        same_label = torch.tensor([label == labels[i] for label in labels])
        suppressed |= same_label & (iou[i] > iou_threshold)
    return kept


def per_phrase_nms(detections: Detections, iou_threshold: float) -> Detections:
    """Greedy NMS within each label; input sorted by score (descending), output keeps that order."""
    return select(detections, nms_keep(detections.boxes, detections.labels, iou_threshold))


def merge(parts: list[Detections], config: PostprocessConfig) -> Detections:
    """Detections of several prompt chunks on one image, as one list sorted by score."""
    if len(parts) == 1:
        return parts[0]
    merged = Detections(
        np.concatenate([p.boxes for p in parts]),
        np.concatenate([p.scores for p in parts]),
        [label for p in parts for label in p.labels],
    )
    order = (-merged.scores).argsort(kind="stable").tolist()
    merged = select(merged, order)
    if config.nms_iou is not None:
        merged = per_phrase_nms(merged, config.nms_iou)
    return select(merged, list(range(min(len(merged), config.max_detections))))
