"""Sub-sentence text masks: phrases separated by " . " do not attend to each other inside BERT and the
text enhancer, and each phrase restarts its position ids, so one phrase's meaning does not leak into
the next (Grounding DINO, section 3.4).
"""
from __future__ import annotations

import torch

# [CLS], [SEP], "." and "?" in the bert-base-uncased vocabulary close a phrase.
PHRASE_DELIMITER_TOKEN_IDS = (101, 102, 1012, 1029)


def sub_sentence_masks(input_ids: torch.Tensor, delimiter_ids: tuple[int, ...] = PHRASE_DELIMITER_TOKEN_IDS):
    """Attention mask and position ids that keep phrases apart.

    input_ids: (batch, length) int64.
    returns:
        attention_mask: (batch, length, length) bool, True = query token (row) may attend to key (column).
            A phrase is the run of tokens ending at (and including) a delimiter; its tokens attend to
            each other. [CLS], a trailing [SEP] at the last position and tokens with no delimiter after
            them attend only to themselves.
        position_ids: (batch, length) int64, 0, 1, 2, ... within each phrase, 0 outside phrases.
    """
    batch, length = input_ids.shape
    device = input_ids.device
    is_delimiter = torch.isin(input_ids, torch.tensor(delimiter_ids, device=device))
    positions = torch.arange(length, device=device).expand(batch, length)
    # Index of the first delimiter at or after each token (length when there is none).
    closing = torch.where(is_delimiter, positions, torch.full_like(positions, length))
    closing = closing.flip(1).cummin(1).values.flip(1)
    # Index of the last delimiter strictly before each token (-1 when there is none).
    opening = torch.where(is_delimiter, positions, torch.full_like(positions, -1)).cummax(1).values
    opening = torch.cat([opening.new_full((batch, 1), -1), opening[:, :-1]], dim=1)

    in_phrase = (closing != 0) & (closing != length - 1) & (closing != length)
    same_phrase = (closing[:, :, None] == closing[:, None, :]) & in_phrase[:, None, :]
    attention_mask = same_phrase | torch.eye(length, dtype=torch.bool, device=device)
    position_ids = torch.where(in_phrase, positions - opening - 1, torch.zeros_like(positions)).clamp(min=0)
    return attention_mask, position_ids
