"""Training targets: each box of an image as normalized cxcywh plus a positive map over the text tokens
of the phrase that names it, the target of Grounding DINO's token-level contrastive classification.

Which tokens belong to which phrase comes either from the tokenizer's offset mapping
(`return_offsets_mapping=True`: a token belongs to a phrase when its character span lies inside the
phrase's; special and padding tokens have empty spans (0, 0)) or from token spans such as
`perception.model.tokenizer.PromptChunk.phrase_token_spans`. Prompts encoded one by one and padded
into a batch need their targets padded too (`GroundingTarget.padded`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import Tensor

from perception.boxes import xyxy_to_cxcywh
from perception.training.dataset import GroundingSample
from perception.training.prompts import Prompt


@dataclass
class GroundingTarget:
    """The targets of one image.

    boxes: (N, 4) float32, normalized cxcywh in [0, 1] (divided by the image width and height).
    positive_map: (N, T) bool, True at the text tokens of the phrase naming each box; T is the
        number of text tokens of the model's input (padding included).
    visibility: (N,) float32, the fraction of each object that is drawn (None: all of it).
    """

    boxes: Tensor
    positive_map: Tensor
    visibility: Tensor | None = None

    def __post_init__(self) -> None:
        if self.boxes.dim() != 2 or self.boxes.shape[1] != 4:
            raise ValueError(f"target boxes must be (N, 4), got {tuple(self.boxes.shape)}")
        if self.positive_map.dim() != 2 or self.positive_map.shape[0] != self.boxes.shape[0]:
            raise ValueError(
                f"positive_map must be (N, T) with N = {self.boxes.shape[0]} boxes, got {tuple(self.positive_map.shape)}"
            )
        if self.positive_map.dtype != torch.bool:
            raise ValueError(f"positive_map must be bool, got {self.positive_map.dtype}")
        if self.visibility is None:
            self.visibility = torch.ones(self.boxes.shape[0], device=self.boxes.device)
        if self.visibility.shape != (self.boxes.shape[0],):
            raise ValueError(f"visibility must be ({self.boxes.shape[0]},), got {tuple(self.visibility.shape)}")

    def to(self, device: torch.device) -> "GroundingTarget":
        return GroundingTarget(self.boxes.to(device), self.positive_map.to(device), self.visibility.to(device))

    def padded(self, num_tokens: int) -> "GroundingTarget":
        """The same target for a prompt padded at its end to `num_tokens` text tokens."""
        extra = num_tokens - self.positive_map.shape[1]
        if extra < 0:
            raise ValueError(f"cannot pad {self.positive_map.shape[1]} text tokens down to {num_tokens}")
        return GroundingTarget(self.boxes, torch.nn.functional.pad(self.positive_map, (0, extra), value=False),
                               self.visibility)


def token_map_from_offsets(prompt: Prompt, offsets: Sequence[Sequence[int]]) -> np.ndarray:
    """(P, T) bool: token t belongs to phrase p; `offsets` is the (T, 2) offset mapping of prompt.text.
    A phrase that truncation cut (its last character in no token) is an error: fit the prompt instead."""
    offsets = np.asarray(offsets, np.int64).reshape(-1, 2)
    starts, ends = offsets[:, 0], offsets[:, 1]
    spans = np.asarray(prompt.phrase_spans, np.int64).reshape(-1, 2)
    token_map = (starts[None, :] >= spans[:, :1]) & (ends[None, :] <= spans[:, 1:]) & (ends > starts)[None, :]
    covered_to = np.where(token_map, ends[None, :], -1).max(axis=1)
    for phrase, end, reached in zip(prompt.phrases, spans[:, 1], covered_to):
        if reached != end:
            raise ValueError(
                f"phrase {phrase!r} is cut off: the prompt ({len(prompt.text)} characters) was truncated to "
                f"{len(offsets)} tokens; raise the text length or use fewer phrases (PromptConfig.max_phrases)"
            )
    return token_map


def token_map_from_spans(token_spans: Sequence[tuple[int, int]], num_tokens: int) -> np.ndarray:
    """(P, T) bool from the [start, end) token positions of each phrase in a T-token input."""
    token_map = np.zeros((len(token_spans), num_tokens), bool)
    for phrase, (start, end) in enumerate(token_spans):
        if not 0 <= start < end <= num_tokens:
            raise ValueError(f"token span ({start}, {end}) of phrase {phrase} is not inside [0, {num_tokens})")
        token_map[phrase, start:end] = True
    return token_map


def build_target(sample: GroundingSample, prompt: Prompt, token_map: np.ndarray) -> GroundingTarget:
    """Targets of the boxes whose phrase the prompt names (boxes of phrases left out of the prompt are
    no target); boxes are clipped to the image first. token_map: (P, T) bool, the tokens of each of
    the prompt's P phrases (token_map_from_offsets or token_map_from_spans)."""
    if token_map.ndim != 2 or token_map.shape[0] != len(prompt.phrases):
        raise ValueError(f"token_map must be ({len(prompt.phrases)}, T) for the prompt's phrases, got {token_map.shape}")
    phrase_index = {phrase: index for index, phrase in enumerate(prompt.phrases)}
    named = [index for index, label in enumerate(sample.labels) if label in phrase_index]
    box_phrases = [phrase_index[sample.labels[index]] for index in named]
    for phrase in {prompt.phrases[p] for p in box_phrases}:
        if not token_map[phrase_index[phrase]].any():
            raise ValueError(f"phrase {phrase!r} names boxes but has no text token in token_map")
    height, width = sample.image.shape[:2]
    boxes = sample.boxes[named].clip(0, [width, height, width, height]) / np.array(
        [width, height, width, height], np.float32
    )
    return GroundingTarget(
        boxes=xyxy_to_cxcywh(torch.from_numpy(boxes.astype(np.float32)).reshape(-1, 4)),
        positive_map=torch.from_numpy(token_map[box_phrases].reshape(-1, token_map.shape[1])),
        visibility=torch.from_numpy(sample.visibility[named].astype(np.float32)),
    )
