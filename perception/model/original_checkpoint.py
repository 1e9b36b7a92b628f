"""Key map between the original IDEA-Research Grounding DINO checkpoints and the Hugging Face layout.

The original files (``groundingdino_swint_ogc.pth``, ``groundingdino_swinb_cogcoor.pth``) hold
``{"model": state_dict}``, keys optionally prefixed ``module.``. Their names follow the original code:
a timm-style Swin under ``backbone.0.`` with fused ``attn.qkv``, BERT under ``bert.``,
``nn.MultiheadAttention`` layers with fused ``in_proj_*``, and the shared box head stored under
several names. :func:`original_to_hf` renames them to the names that transformers'
``GroundingDinoForObjectDetection.save_pretrained`` writes (hub naming, e.g.
``model.backbone.conv_encoder.model.encoder.layers.0.blocks.0.attention.self.query.weight``);
:func:`hf_to_original` is its inverse. Both are strict: a key that matches no rule, a repeated tensor
that differs from the one it repeats, a missing repeat, or a derived buffer that differs from what the
architecture computes is an error that names the keys.

Templates in the rule table: ``{name}`` is one of the words in ``_CHOICES[name]`` when listed there,
otherwise a decimal index (stage, block, layer); either way the same value on both sides.
``{name+1}`` is that index written one higher (original Swin ``norm1`` is HF ``stage2``).
"""
from __future__ import annotations

import argparse
import functools
import logging
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

logger = logging.getLogger(__name__)

QKV_PARTS = ("query", "key", "value")  # row order of fused qkv / in_proj tensors in the original


class CheckpointLayoutError(ValueError):
    """A state dict does not fit the layout it was declared to have."""


@dataclass(frozen=True)
class Rename:
    """One tensor, renamed."""

    original: str
    hf: str


@dataclass(frozen=True)
class SplitQKV:
    """Original (3C, ...) tensor with rows q, k, v; HF keeps three (C, ...) tensors, named by ``{part}``."""

    original: str
    hf: str


@dataclass(frozen=True)
class Tied:
    """A second name of a module the original shares; must equal ``canonical`` (an original name).

    A field of ``original`` that ``canonical`` lacks (only ``{n}``) runs over the decoder layers.
    """

    original: str
    canonical: str


@dataclass(frozen=True)
class Derived:
    """A buffer the architecture computes, not a learned weight: checked against ``compute``, never loaded."""

    original: str
    source_hf: str  # the HF tensor it is computed from
    compute: Callable[[Tensor], Tensor]


@dataclass(frozen=True)
class Unused:
    """Stored in some original files but never read at inference: dropped."""

    original: str


Rule = Rename | SplitQKV | Tied | Derived | Unused


def _relative_position_index(bias_table: Tensor) -> Tensor:
    """(W*W, W*W) int64 index into a Swin bias table of (2W-1)^2 rows, as both implementations build it."""
    side = round(bias_table.shape[0] ** 0.5)
    if side * side != bias_table.shape[0] or side % 2 == 0:
        raise CheckpointLayoutError(f"relative_position_bias_table with {bias_table.shape[0]} rows is not (2W-1)^2")
    window = (side + 1) // 2
    rows, cols = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    coords = torch.stack([rows.flatten(), cols.flatten()])  # (2, W*W)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window - 1)  # (W*W, W*W, 2), >= 0
    return relative[..., 0] * (2 * window - 1) + relative[..., 1]


def _bert_position_ids(position_embeddings: Tensor) -> Tensor:
    """(1, max_position_embeddings) int64 ``arange``, the buffer transformers < 4.31 saved with BERT."""
    return torch.arange(position_embeddings.shape[0]).unsqueeze(0)


# Fields that hold words; every other field is a decimal index.
_CHOICES = {
    "wb": "weight|bias",
    "part": "|".join(QKV_PARTS),
    "proj": "sampling_offsets|attention_weights|value_proj|output_proj",  # deformable attention
    "table": "word|position|token_type",  # BERT embedding tables
    "sub": "dense|LayerNorm",
    "op": "0|1",  # input projection: convolution, GroupNorm
    "i": "1|2",
    "kind": "|values_|out_",  # fusion projections: query/key, value, output
}
_WB = "{wb}"
_SWIN_O, _SWIN_H = "backbone.0.", "model.backbone.conv_encoder.model."
_BLOCK_O = _SWIN_O + "layers.{stage}.blocks.{block}."
_BLOCK_H = _SWIN_H + "encoder.layers.{stage}.blocks.{block}."
_BERT_LAYER_O, _BERT_LAYER_H = "bert.encoder.layer.{layer}.", "model.text_backbone.encoder.layer.{layer}."
_ENC_O, _ENC_H = "transformer.encoder.", "model.encoder.layers.{layer}."
_DEC_O, _DEC_H = "transformer.decoder.layers.{layer}.", "model.decoder.layers.{layer}."
_DEFORMABLE = "{proj}."

_BACKBONE_RULES: tuple[Rule, ...] = (
    # Patch embedding: 4x4 stride-4 convolution, then LayerNorm.
    Rename(_SWIN_O + "patch_embed.proj." + _WB, _SWIN_H + "embeddings.patch_embeddings.projection." + _WB),
    Rename(_SWIN_O + "patch_embed.norm." + _WB, _SWIN_H + "embeddings.norm." + _WB),
    # Swin block: LayerNorm before window attention and before the MLP.
    Rename(_BLOCK_O + "norm1." + _WB, _BLOCK_H + "layernorm_before." + _WB),
    Rename(_BLOCK_O + "norm2." + _WB, _BLOCK_H + "layernorm_after." + _WB),
    # Window attention: one fused Linear(C, 3C) whose output rows are q, k, v.
    SplitQKV(_BLOCK_O + "attn.qkv." + _WB, _BLOCK_H + "attention.self.{part}." + _WB),
    Rename(_BLOCK_O + "attn.relative_position_bias_table", _BLOCK_H + "attention.self.relative_position_bias_table"),
    # Index into the bias table: a function of the window size only (HF recomputes it, never saves it).
    Derived(_BLOCK_O + "attn.relative_position_index", _BLOCK_H + "attention.self.relative_position_bias_table",
            _relative_position_index),
    Rename(_BLOCK_O + "attn.proj." + _WB, _BLOCK_H + "attention.output.dense." + _WB),
    Rename(_BLOCK_O + "mlp.fc1." + _WB, _BLOCK_H + "intermediate.dense." + _WB),
    Rename(_BLOCK_O + "mlp.fc2." + _WB, _BLOCK_H + "output.dense." + _WB),
    # Patch merging after stages 0-2. Both codes concatenate the 2x2 neighbours in the same order
    # (x[0::2, 0::2], x[1::2, 0::2], x[0::2, 1::2], x[1::2, 1::2]), so the weights need no permutation.
    Rename(_SWIN_O + "layers.{stage}.downsample.reduction.weight",
           _SWIN_H + "encoder.layers.{stage}.downsample.reduction.weight"),
    Rename(_SWIN_O + "layers.{stage}.downsample.norm." + _WB,
           _SWIN_H + "encoder.layers.{stage}.downsample.norm." + _WB),
    # LayerNorm on each returned stage (before downsampling): original stage i is HF "stage{i+1}".
    Rename(_SWIN_O + "norm{stage}." + _WB, _SWIN_H + "hidden_states_norms.stage{stage+1}." + _WB),
)

_TEXT_RULES: tuple[Rule, ...] = (
    # BERT: transformers BertModel names on both sides, under another prefix.
    Rename("bert.embeddings.{table}_embeddings.weight",
           "model.text_backbone.embeddings.{table}_embeddings.weight"),
    Rename("bert.embeddings.LayerNorm." + _WB, "model.text_backbone.embeddings.LayerNorm." + _WB),
    Rename(_BERT_LAYER_O + "attention.self.{part}." + _WB, _BERT_LAYER_H + "attention.self.{part}." + _WB),
    Rename(_BERT_LAYER_O + "attention.output.{sub}." + _WB, _BERT_LAYER_H + "attention.output.{sub}." + _WB),
    Rename(_BERT_LAYER_O + "intermediate.dense." + _WB, _BERT_LAYER_H + "intermediate.dense." + _WB),
    Rename(_BERT_LAYER_O + "output.{sub}." + _WB, _BERT_LAYER_H + "output.{sub}." + _WB),
    # arange(max_position_embeddings), a persistent buffer when the published files were written.
    Derived("bert.embeddings.position_ids", "model.text_backbone.embeddings.position_embeddings.weight",
            _bert_position_ids),
    # The original wrapper runs BERT's pooler but reads only last_hidden_state; HF builds BERT without it.
    Unused("bert.pooler.dense." + _WB),
    # feat_map: Linear from BERT width to hidden_dim.
    Rename("feat_map." + _WB, "model.text_projection." + _WB),
)

_TRANSFORMER_RULES: tuple[Rule, ...] = (
    # Input projections: 1x1 conv + GroupNorm per backbone level, then stride-2 3x3 conv + GroupNorm.
    Rename("input_proj.{level}.{op}." + _WB, "model.input_proj_vision.{level}.{op}." + _WB),
    Rename("transformer.level_embed", "model.level_embed"),
    # Feature enhancer, image branch: deformable self-attention, post-norm, FFN.
    Rename(_ENC_O + "layers.{layer}.self_attn." + _DEFORMABLE + _WB,
           _ENC_H + "deformable_layer.self_attn.{proj}." + _WB),
    Rename(_ENC_O + "layers.{layer}.norm1." + _WB, _ENC_H + "deformable_layer.self_attn_layer_norm." + _WB),
    Rename(_ENC_O + "layers.{layer}.linear1." + _WB, _ENC_H + "deformable_layer.fc1." + _WB),
    Rename(_ENC_O + "layers.{layer}.linear2." + _WB, _ENC_H + "deformable_layer.fc2." + _WB),
    Rename(_ENC_O + "layers.{layer}.norm2." + _WB, _ENC_H + "deformable_layer.final_layer_norm." + _WB),
    # Feature enhancer, text branch: nn.MultiheadAttention (fused in_proj, rows q, k, v) and FFN.
    SplitQKV(_ENC_O + "text_layers.{layer}.self_attn.in_proj_" + _WB,
             _ENC_H + "text_enhancer_layer.self_attn.{part}." + _WB),
    Rename(_ENC_O + "text_layers.{layer}.self_attn.out_proj." + _WB,
           _ENC_H + "text_enhancer_layer.self_attn.out_proj." + _WB),
    Rename(_ENC_O + "text_layers.{layer}.linear{i}." + _WB, _ENC_H + "text_enhancer_layer.fc{i}." + _WB),
    Rename(_ENC_O + "text_layers.{layer}.norm1." + _WB, _ENC_H + "text_enhancer_layer.layer_norm_before." + _WB),
    Rename(_ENC_O + "text_layers.{layer}.norm2." + _WB, _ENC_H + "text_enhancer_layer.layer_norm_after." + _WB),
    # Bi-directional image-text fusion: v = vision, l = language; gamma_* are the layer-scale vectors.
    Rename(_ENC_O + "fusion_layers.{layer}.gamma_v", _ENC_H + "fusion_layer.vision_param"),
    Rename(_ENC_O + "fusion_layers.{layer}.gamma_l", _ENC_H + "fusion_layer.text_param"),
    Rename(_ENC_O + "fusion_layers.{layer}.layer_norm_v." + _WB, _ENC_H + "fusion_layer.layer_norm_vision." + _WB),
    Rename(_ENC_O + "fusion_layers.{layer}.layer_norm_l." + _WB, _ENC_H + "fusion_layer.layer_norm_text." + _WB),
    Rename(_ENC_O + "fusion_layers.{layer}.attn.{kind}v_proj." + _WB,
           _ENC_H + "fusion_layer.attn.{kind}vision_proj." + _WB),
    Rename(_ENC_O + "fusion_layers.{layer}.attn.{kind}l_proj." + _WB,
           _ENC_H + "fusion_layer.attn.{kind}text_proj." + _WB),
    # Language-guided query selection: encoder output projection, learned content queries.
    Rename("transformer.enc_output." + _WB, "model.enc_output." + _WB),
    Rename("transformer.enc_output_norm." + _WB, "model.enc_output_norm." + _WB),
    Rename("transformer.tgt_embed.weight", "model.query_position_embeddings.weight"),
    # Cross-modality decoder layer: self-attention, text cross-attention, deformable image
    # cross-attention, FFN; norm1/2/3 follow the original's order of definition, not of use.
    SplitQKV(_DEC_O + "self_attn.in_proj_" + _WB, _DEC_H + "self_attn.{part}." + _WB),
    Rename(_DEC_O + "self_attn.out_proj." + _WB, _DEC_H + "self_attn.out_proj." + _WB),
    Rename(_DEC_O + "norm2." + _WB, _DEC_H + "self_attn_layer_norm." + _WB),
    SplitQKV(_DEC_O + "ca_text.in_proj_" + _WB, _DEC_H + "encoder_attn_text.{part}." + _WB),
    Rename(_DEC_O + "ca_text.out_proj." + _WB, _DEC_H + "encoder_attn_text.out_proj." + _WB),
    Rename(_DEC_O + "catext_norm." + _WB, _DEC_H + "encoder_attn_text_layer_norm." + _WB),
    Rename(_DEC_O + "cross_attn." + _DEFORMABLE + _WB, _DEC_H + "encoder_attn.{proj}." + _WB),
    Rename(_DEC_O + "norm1." + _WB, _DEC_H + "encoder_attn_layer_norm." + _WB),
    Rename(_DEC_O + "linear{i}." + _WB, _DEC_H + "fc{i}." + _WB),
    Rename(_DEC_O + "norm3." + _WB, _DEC_H + "final_layer_norm." + _WB),
    # Decoder-wide: output LayerNorm, and the MLP from sine-embedded anchors to query positions.
    Rename("transformer.decoder.norm." + _WB, "model.decoder.layer_norm." + _WB),
    Rename("transformer.decoder.ref_point_head.layers.{k}." + _WB,
           "model.decoder.reference_points_head.layers.{k}." + _WB),
    # Encoder proposal box head: its own MLP in the published configs (two_stage_bbox_embed_share=False).
    Rename("transformer.enc_out_bbox_embed.layers.{k}." + _WB, "model.encoder_output_bbox_embed.layers.{k}." + _WB),
    # DINO's denoising label embedding, left in groundingdino_swinb_cogcoor.pth by training
    # (IDEA-Research/GroundingDINO#271 reports it as unexpected); inference never uses it.
    Unused("label_enc.weight"),
)

_BOX = "bbox_embed.{n}.layers.{k}." + _WB
_BOX_0 = "bbox_embed.0.layers.{k}." + _WB
# Published models share one box MLP across decoder layers (dec_pred_bbox_embed_share=True): the
# original stores it as bbox_embed.N and again as transformer.decoder.bbox_embed.N for every layer N;
# HF saves only bbox_embed.0 and ties the rest to it.
_SHARED_BOX_RULES: tuple[Rule, ...] = (
    Rename(_BOX_0, _BOX_0),
    Tied(_BOX, canonical=_BOX_0),
    Tied("transformer.decoder." + _BOX, canonical=_BOX_0),
)
# One box MLP per decoder layer: bbox_embed.N keeps its name; the decoder's copy repeats it.
_PER_LAYER_BOX_RULES: tuple[Rule, ...] = (
    Rename(_BOX, _BOX),
    Tied("transformer.decoder." + _BOX, canonical=_BOX),
)

# HF-only tensors, with no counterpart in the original: dropped by hf_to_original. transformers'
# SwinModel applies a final LayerNorm that SwinBackbone computes but never returns (it returns the
# hidden_states_norms outputs), and transformers loads checkpoints without it.
_HF_ONLY = (_SWIN_H + "swin.layernorm." + _WB,)


def layout_rules(share_box_head: bool = True) -> tuple[Rule, ...]:
    """The whole table; ``share_box_head`` is ``GroundingDinoConfig.share_box_head`` (True when published)."""
    box_rules = _SHARED_BOX_RULES if share_box_head else _PER_LAYER_BOX_RULES
    return _BACKBONE_RULES + _TEXT_RULES + _TRANSFORMER_RULES + box_rules


_FIELD = re.compile(r"\{(\w+)(?:\+(\d+))?\}")


class _Template:
    """A key pattern with named fields (syntax in the module docstring)."""

    def __init__(self, text: str):
        self.text, self.offsets = text, {}
        pattern, end = "", 0
        for field in _FIELD.finditer(text):
            name, offset = field.groups()
            choices = _CHOICES.get(name)
            pattern += re.escape(text[end:field.start()])
            pattern += f"(?P<{name}>{choices})" if choices is not None else rf"(?P<{name}>\d+)"
            self.offsets[name] = None if choices is not None else int(offset or 0)
            end = field.end()
        self.regex = re.compile(pattern + re.escape(text[end:]))

    def match(self, key: str) -> dict[str, int | str] | None:
        found = self.regex.fullmatch(key)
        if found is None:
            return None
        values: dict[str, int | str] = {}
        for name, text in found.groupdict().items():
            offset = self.offsets[name]
            values[name] = text if offset is None else int(text) - offset
            if offset is not None and values[name] < 0:
                return None
        return values

    def format(self, values: Mapping[str, int | str]) -> str:
        def fill(field: re.Match) -> str:
            name, offset = field.groups()
            return str(values[name] + int(offset)) if offset else str(values[name])

        return _FIELD.sub(fill, self.text)


@functools.lru_cache(maxsize=None)
def _template(text: str) -> _Template:
    return _Template(text)


def _match_one(candidates: Iterable[tuple[Rule, str]], key: str) -> tuple[Rule, dict] | None:
    """The single (rule, field values) whose template matches ``key``; a tie-to-itself is no match."""
    found = []
    for rule, text in candidates:
        values = _template(text).match(key)
        if values is None or (isinstance(rule, Tied) and _template(rule.canonical).format(values) == key):
            continue
        found.append((rule, values))
    if len(found) > 1:
        raise RuntimeError(f"rule table is ambiguous for {key!r}: {[rule for rule, _ in found]}")
    return found[0] if found else None


def _listing(keys: Iterable[str], limit: int = 40) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... and {len(keys) - limit} more" if len(keys) > limit else "")


def _decoder_layer_count(hf_keys: Iterable[str]) -> int:
    layers = {int(found.group(1)) for key in hf_keys if (found := re.match(r"model\.decoder\.layers\.(\d+)\.", key))}
    if not layers:
        raise CheckpointLayoutError("no model.decoder.layers.N.* keys: not a Grounding DINO state dict in HF layout")
    return max(layers) + 1


def _original_plan(hf_keys: Iterable[str], share_box_head: bool) -> dict[str, tuple]:
    """For every original key implied by ``hf_keys``: how to build it from the HF tensors.

    Values: ("copy", hf_key) | ("concat", [q, k, v hf keys]) | ("tie", original_key) | ("derive", rule, hf_key).
    """
    hf_keys = list(hf_keys)
    table = layout_rules(share_box_head)
    plan: dict[str, tuple] = {}
    unmatched = []
    for key in hf_keys:
        if any(_template(text).match(key) is not None for text in _HF_ONLY):
            continue
        for rule in table:
            if isinstance(rule, Derived) and (values := _template(rule.source_hf).match(key)) is not None:
                plan[_template(rule.original).format(values)] = ("derive", rule, key)
        found = _match_one(((rule, rule.hf) for rule in table if isinstance(rule, (Rename, SplitQKV))), key)
        if found is None:
            unmatched.append(key)
            continue
        rule, values = found
        original = _template(rule.original).format(values)
        if isinstance(rule, Rename):
            plan[original] = ("copy", key)
        else:
            parts = plan.setdefault(original, ("concat", [None] * len(QKV_PARTS)))[1]
            parts[QKV_PARTS.index(values["part"])] = key
    if unmatched:
        raise CheckpointLayoutError(
            f"{len(unmatched)} keys match no rule of the Hugging Face layout: {_listing(unmatched)}")
    for original, (how, *args) in list(plan.items()):
        if how == "concat" and None in args[0]:
            missing = [part for part, key in zip(QKV_PARTS, args[0]) if key is None]
            raise CheckpointLayoutError(f"{original} needs query, key and value; missing {missing} (have {args[0]})")
    layers = range(_decoder_layer_count(hf_keys))
    for rule in (rule for rule in table if isinstance(rule, Tied)):
        for canonical in [key for key in plan if _template(rule.canonical).match(key) is not None]:
            values = _template(rule.canonical).match(canonical)
            for n in ([values["n"]] if "n" in values else layers):
                copy = _template(rule.original).format({**values, "n": n})
                if copy != canonical:
                    plan[copy] = ("tie", canonical)
    return plan


def hf_to_original(state_dict: Mapping[str, Tensor], *, share_box_head: bool = True) -> dict[str, Tensor]:
    """Rename an HF-layout state dict to the original layout (fused q/k/v, repeated heads, derived buffers).

    Repeated heads are the same tensor object, as in the original model. HF-only tensors (see ``_HF_ONLY``)
    are dropped. The inverse of :func:`original_to_hf`.
    """
    plan = _original_plan(state_dict.keys(), share_box_head)
    original: dict[str, Tensor] = {}
    for key, (how, *args) in plan.items():
        if how == "copy":
            original[key] = state_dict[args[0]]
        elif how == "concat":
            parts = [state_dict[part] for part in args[0]]
            if len({part.shape for part in parts}) != 1:
                shapes = [tuple(part.shape) for part in parts]
                raise CheckpointLayoutError(f"{key}: query, key and value shapes differ: {shapes}")
            original[key] = torch.cat(parts, dim=0)
        elif how == "derive":
            original[key] = args[0].compute(state_dict[args[1]])
    for key, (how, *args) in plan.items():
        if how == "tie":
            original[key] = original[args[0]]
    return original


def original_to_hf(state_dict: Mapping[str, Tensor], *, share_box_head: bool = True) -> dict[str, Tensor]:
    """Rename an original-layout state dict (already unwrapped) to the names HF ``save_pretrained`` writes.

    Fused q/k/v tensors are split (the parts are views of the input). Repeated heads are checked equal
    and kept once; derived buffers are checked against what the architecture computes and dropped;
    unused tensors (``bert.pooler``, ``label_enc``) are dropped. Raises :class:`CheckpointLayoutError`
    naming every key that matches no rule, every repeat that is missing or differs, every bad buffer.
    """
    table = layout_rules(share_box_head)
    hf: dict[str, Tensor] = {}
    unmatched, ties, derived, unused = [], [], [], []
    for key, tensor in state_dict.items():
        found = _match_one(((rule, rule.original) for rule in table), key)
        if found is None:
            unmatched.append(key)
            continue
        rule, values = found
        if isinstance(rule, Rename):
            hf[_template(rule.hf).format(values)] = tensor
        elif isinstance(rule, SplitQKV):
            if tensor.shape[0] % len(QKV_PARTS):
                raise CheckpointLayoutError(f"{key}: first dimension {tensor.shape[0]} is not divisible by 3 (q, k, v)")
            for part, chunk in zip(QKV_PARTS, tensor.chunk(len(QKV_PARTS), dim=0)):
                hf[_template(rule.hf).format({**values, "part": part})] = chunk
        elif isinstance(rule, Tied):
            ties.append((key, _template(rule.canonical).format(values)))
        elif isinstance(rule, Derived):
            derived.append((key, rule, _template(rule.source_hf).format(values)))
        else:
            unused.append(key)
    if unmatched:
        raise CheckpointLayoutError(
            f"{len(unmatched)} keys match no rule of the original layout: {_listing(unmatched)}")
    for key, canonical in ties:
        if canonical not in state_dict:
            raise CheckpointLayoutError(f"{key} repeats {canonical}, which is missing")
        _check_equal(key, state_dict[key], canonical, state_dict[canonical])
    for key, rule, source in derived:
        if source not in hf:
            raise CheckpointLayoutError(f"{key} is computed from {source}, which is missing")
        _check_equal(key, state_dict[key], f"the value computed from {source}", rule.compute(hf[source]))
    plan = _original_plan(hf.keys(), share_box_head)
    missing = {key for key, (how, *_) in plan.items() if how != "derive"} - set(state_dict)
    if missing:
        raise CheckpointLayoutError(f"{len(missing)} keys of the original layout are missing: {_listing(missing)}")
    logger.info("original checkpoint: %d tensors -> %d in HF layout (%d repeats, %d derived buffers checked; "
                "dropped unused %s)", len(state_dict), len(hf), len(ties), len(derived), sorted(unused))
    return hf


def _check_equal(key: str, tensor: Tensor, other_name: str, other: Tensor) -> None:
    if tensor.shape != other.shape or tensor.dtype.is_floating_point != other.dtype.is_floating_point:
        raise CheckpointLayoutError(f"{key} ({tuple(tensor.shape)}, {tensor.dtype}) does not match "
                                    f"{other_name} ({tuple(other.shape)}, {other.dtype})")
    if not torch.equal(tensor, other.to(tensor.dtype)):
        raise CheckpointLayoutError(f"{key} differs from {other_name}, which it must equal")


def unwrap_original_checkpoint(checkpoint: object) -> dict[str, Tensor]:
    """The state dict inside a ``torch.load``-ed original file: ``checkpoint["model"]`` (or a bare state
    dict), with the ``module.`` prefix of distributed training removed when every key has it."""
    if not isinstance(checkpoint, Mapping):
        raise CheckpointLayoutError(f"expected a dict from the .pth file, got {type(checkpoint).__name__}")
    if "model" in checkpoint:
        others = sorted(str(key) for key in checkpoint if key != "model")
        if others:
            logger.info("original checkpoint: using entry 'model', ignoring %s", others)
        checkpoint = checkpoint["model"]
        if not isinstance(checkpoint, Mapping):
            raise CheckpointLayoutError(f"entry 'model' is a {type(checkpoint).__name__}, expected a state dict")
    not_tensors = [str(key) for key, value in checkpoint.items() if not isinstance(value, Tensor)]
    if not_tensors:
        raise CheckpointLayoutError(f"not a state dict: entries that are not tensors: {_listing(not_tensors)}")
    prefixed = [key.startswith("module.") for key in checkpoint]
    if any(prefixed) and not all(prefixed):
        raise CheckpointLayoutError("some keys start with 'module.' and some do not: "
                                    + _listing(key for key in checkpoint if not key.startswith("module.")))
    return {key.removeprefix("module.") if all(prefixed) else key: value for key, value in checkpoint.items()}


def load_original_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """Read an original ``.pth`` file on CPU (tensors only; argparse namespaces allowed) and unwrap it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"original Grounding DINO checkpoint not found: {path}")
    with torch.serialization.safe_globals([argparse.Namespace]):
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    return unwrap_original_checkpoint(checkpoint)
