"""Where weights come from: a Hugging Face layout directory, an original IDEA-Research ``.pth`` file,
a hub id (downloaded only because the user named it), the bundled models, or explicit random weights.

Nothing here runs at import; each call says which weights it loaded.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from perception.model.checkpoint import load_hf_state_dict
from perception.model.config import GroundingDinoConfig, tiny_model_config
from perception.model.grounding_dino import GroundingDino
from perception.model.hf_config import config_from_hf
from perception.preprocess import PreprocessConfig

logger = logging.getLogger(__name__)

BUNDLED_MODEL_DIR = Path(__file__).resolve().parent / "assets" / "bundled_model"
# The bundled model trained on longer on crowds of one phrase (README, Training): finds about 0.9 of a crowd's
# walkers where the bundled model finds half, at the same AP; with its tuned settings (tuned_settings.yaml) it also
# switches identities less often on the default videos. Without them (the tracker's defaults) it switched more.
BUNDLED_CROWD_MODEL_DIR = BUNDLED_MODEL_DIR.parent / "bundled_crowd_model"
BUNDLED_NAMES = {"bundled": ("bundled model", BUNDLED_MODEL_DIR),
                 "bundled:crowds": ("bundled crowd model", BUNDLED_CROWD_MODEL_DIR)}
# What loads when no weights are named. The crowd model with its tuned settings, against the bundled model at the
# defaults, on fresh default videos 2130000-2160000 (358 tracks, bfloat16): 10 identity switches against 27, IDF1
# 0.931 against 0.929; default scenes AP 0.892, AP50 0.967, absent-only prompts empty 94.6% at 0.4 (README).
DEFAULT_BUNDLED = "bundled:crowds"
# Settings measured for a model, kept beside its weights: what gdino's commands and the node use where the user
# sets none (tuned_settings below).
TUNED_SETTINGS_FILE = "tuned_settings.yaml"
# The postprocessing settings such a file may hold at its top level; tracker settings go under "tracking:".
TUNED_POSTPROCESS_KEYS = ("box_threshold", "text_threshold", "nms_iou", "present_phrase_threshold",
                          "present_phrase_iou")
RANDOM_PREFIX = "random:"
RANDOM_CONFIGS = {"tiny": tiny_model_config, "swint": GroundingDinoConfig}
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


class WeightsError(RuntimeError):
    """The weights the user asked for cannot be used; the message says what to pass instead."""


@dataclass
class LoadedWeights:
    model: GroundingDino
    vocab_file: Path | None  # None: the offline bert-base-uncased vocabulary
    description: str  # e.g. "Hugging Face checkpoint /models/grounding-dino-tiny"
    preprocess: PreprocessConfig | None = None  # the input size/normalization the checkpoint asks for


# Where checkpoints keep their image settings: transformers 4 writes preprocessor_config.json (the settings at
# the top level), transformers 5's save_pretrained writes processor_config.json (nested under
# "image_processor"). A checkpoint may hold both; the first found wins, as in transformers.
PREPROCESSOR_FILES = (("preprocessor_config.json", None), ("processor_config.json", "image_processor"))


def read_preprocessor_config(directory: Path) -> PreprocessConfig | None:
    """Input size and normalization from a checkpoint's image-processor settings (transformers' formats);
    None when the checkpoint has none."""
    for name, section in PREPROCESSOR_FILES:
        path = directory / name
        if not path.is_file():
            continue
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise WeightsError(f"{path} is not valid JSON: {error}") from error
        if section is not None:
            if section not in values:
                continue  # a processor file without image settings: e.g. tokenizer settings only
            values = values[section]
        size = values.get("size") or {}
        default = PreprocessConfig()
        return PreprocessConfig(
            shortest_edge=size.get("shortest_edge", default.shortest_edge),
            longest_edge=size.get("longest_edge", default.longest_edge),
            mean=tuple(values.get("image_mean", default.mean)),
            std=tuple(values.get("image_std", default.std)),
        )
    return None


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    return state


def load_hf_directory(directory: Path) -> LoadedWeights:
    config_file = directory / "config.json"
    if not config_file.is_file():
        raise WeightsError(f"{directory} has no config.json: not a Hugging Face Grounding DINO checkpoint directory")
    config = config_from_hf(json.loads(config_file.read_text()))
    weight_file = next((directory / name for name in WEIGHT_FILES if (directory / name).is_file()), None)
    if weight_file is None:
        raise WeightsError(f"{directory} has none of {WEIGHT_FILES}")
    model = GroundingDino(config)
    load_hf_state_dict(model, _read_state_dict(weight_file))
    return LoadedWeights(model, checkpoint_vocab_file(directory), f"Hugging Face checkpoint {directory}",
                         read_preprocessor_config(directory))


def checkpoint_vocab_file(directory: Path) -> Path | None:
    """The checkpoint's vocab.txt; None (the offline bert-base-uncased vocabulary) when it has none.

    transformers 5 saves tokenizer.json without vocab.txt: its WordPiece vocabulary must then be
    bert-base-uncased's (every published Grounding DINO uses it), or the prompt would be tokenized wrongly.
    """
    vocab = directory / "vocab.txt"
    if vocab.is_file():
        return vocab
    tokenizer_file = directory / "tokenizer.json"
    if tokenizer_file.is_file():
        from perception.model.tokenizer import default_vocab_file

        try:
            saved = json.loads(tokenizer_file.read_text()).get("model", {}).get("vocab")
        except json.JSONDecodeError as error:
            raise WeightsError(f"{tokenizer_file} is not valid JSON: {error}") from error
        default = {token: index for index, token in enumerate(default_vocab_file().read_text().splitlines())}
        if saved != default:
            raise WeightsError(
                f"{tokenizer_file} holds a vocabulary other than bert-base-uncased and {directory} has no vocab.txt: "
                "save it beside the checkpoint (tokenizer.save_vocabulary(directory))"
            )
    return None


def load_original_file(path: Path, preset: str | None) -> LoadedWeights:
    from perception.model.original_checkpoint import CheckpointLayoutError, load_original_checkpoint, original_to_hf
    from perception.model.presets import load_preset

    preset_name = preset or path.stem
    try:
        config, _ = load_preset(preset_name)
    except (FileNotFoundError, ValueError) as error:
        raise WeightsError(f"no preset for {path.name}: pass --preset NAME ({error})") from error
    try:
        hf_state = original_to_hf(load_original_checkpoint(path), share_box_head=config.share_box_head)
    except CheckpointLayoutError as error:
        raise WeightsError(f"{path} is not an original Grounding DINO checkpoint: {error}") from error
    model = GroundingDino(config)
    load_hf_state_dict(model, hf_state)
    return LoadedWeights(model, None, f"original IDEA-Research checkpoint {path} (preset {preset_name})")


def download_hub_checkpoint(repo_id: str) -> Path:
    """Fetch a hub checkpoint; only ever called because the user named ``repo_id``."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=["config.json", "*.safetensors", "*.bin", "vocab.txt",
                                                                *(name for name, _ in PREPROCESSOR_FILES)]))
    except Exception as error:  # noqa: BLE001 - any hub/network failure gets the same advice
        raise WeightsError(
            f"could not download {repo_id!r} ({type(error).__name__}: {error}). Without network access, download "
            "the checkpoint elsewhere and pass its directory."
        ) from error


@dataclass(frozen=True)
class TunedSettings:
    """The settings a model's tuned_settings.yaml holds: postprocessing fields (PostprocessConfig's), checked when
    read, and tracker settings (TrackerConfig.from_dict's mapping), checked where a tracker is built: detection
    alone must run without the tracking packages (norfair)."""

    source: Path
    postprocess: dict
    tracking: dict


def listed(settings: dict) -> str:
    """'box_threshold 0.4, duplicate_iou 0.5': settings as the logs name them."""
    return ", ".join(f"{name} {value}" for name, value in settings.items())


def tuned_settings(spec: str | None) -> TunedSettings | None:
    """The tuned_settings.yaml of the weights ``spec`` names (as load_weights takes it), read without the model;
    None where there is none (the first bundled model, hub ids, original .pth files and random weights have none).
    A file that is there but wrong is a WeightsError naming it, before any model loads."""
    import yaml

    from perception.postprocess import PostprocessConfig

    if spec is None or spec in BUNDLED_NAMES:
        directory = BUNDLED_NAMES[spec or DEFAULT_BUNDLED][1]
    elif spec.startswith(RANDOM_PREFIX):
        return None
    else:
        directory = Path(spec).expanduser()
    path = directory / TUNED_SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError) as error:
        raise WeightsError(f"cannot read {path}: {error}") from error
    except yaml.YAMLError as error:
        raise WeightsError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(values, dict):
        raise WeightsError(f"{path} must be a mapping of settings")
    tracking = values.pop("tracking", None) or {}
    unknown = sorted(set(values) - set(TUNED_POSTPROCESS_KEYS))
    try:
        if unknown:
            raise ValueError(f"unknown keys {unknown}; allowed: {list(TUNED_POSTPROCESS_KEYS)} and tracking")
        if not isinstance(tracking, dict):
            raise ValueError("tracking must be a mapping of tracker settings")
        PostprocessConfig(**values)
    except (TypeError, ValueError) as error:
        raise WeightsError(f"{path}: {error}") from error
    return TunedSettings(path, values, tracking)


def load_weights(spec: str | None, preset: str | None = None) -> LoadedWeights:
    """Resolve what the user passed as weights; None means DEFAULT_BUNDLED ("bundled:crowds", the bundled model
    trained longer on crowds; "bundled" names the first bundled model)."""
    if spec is None or spec in BUNDLED_NAMES:
        description, directory = BUNDLED_NAMES[spec or DEFAULT_BUNDLED]
        if (directory / "config.json").is_file():
            loaded = load_hf_directory(directory)
            loaded.description = f"{description} {directory}"
            return loaded
        raise WeightsError(
            f"no {description} is installed at {directory}: pass a Hugging Face checkpoint "
            "directory, an original .pth file, a hub id such as IDEA-Research/grounding-dino-tiny (downloads), or "
            "random:tiny"
        )
    if spec.startswith(RANDOM_PREFIX):
        name = spec[len(RANDOM_PREFIX):]
        if name not in RANDOM_CONFIGS:
            raise WeightsError(f"unknown random model {name!r}; choose one of {sorted(RANDOM_CONFIGS)}")
        return LoadedWeights(GroundingDino(RANDOM_CONFIGS[name]()), None,
                             f"RANDOM weights ({name} configuration): detections are meaningless")
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_hf_directory(path)
    if path.is_file():
        if path.suffix in (".pth", ".pt"):
            return load_original_file(path, preset)
        raise WeightsError(f"{path} is a file but not an original .pth checkpoint; pass the checkpoint directory")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return load_hf_directory(download_hub_checkpoint(spec))
    raise WeightsError(f"weights {spec!r}: no such file or directory")
