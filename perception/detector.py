"""The detector: owns the model, the tokenizer and the prompt; encodes each distinct prompt once.

    detector = GroundingDinoDetector.from_pretrained("path/to/grounding-dino-tiny")
    detector.set_prompt("a person . a red mug .")
    results = detector.detect([frame_rgb, other_frame_rgb])   # list[Detections], pixels, xyxy
"""
from __future__ import annotations

import contextlib
import dataclasses
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import torch

from perception.model.backbone import INPUT_PROJECTION_GROUPS, level_shapes
from perception.model.config import GroundingDinoConfig
from perception.model.grounding_dino import GroundingDino
from perception.model.text_encoder import EncodedText
from perception.model.tokenizer import PromptChunk, PromptTokenizer, parse_prompt
from perception.ops.dispatch import IMPLEMENTATIONS
from perception.precision import AUTO, resolve_dtype
from perception.postprocess import PostprocessConfig, merge, postprocess_batch
from perception.preprocess import PreprocessConfig, as_rgb_tensor, pad_batch, preprocess
from perception.types import Detections
from perception.weights import listed, load_weights, tuned_settings

logger = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DTYPE_NAMES = (AUTO, *DTYPES)  # what from_pretrained, the CLI and the node accept (see perception.precision)
# Times one batch's text side may start again for prompt changes that keep arriving; after that, a change
# waits for the next batch (a flood of prompts must not starve the frames).
MAX_TEXT_SIDE_RESTARTS = 3


@dataclass
class DetectorConfig:
    # None: what the checkpoint asks for (its preprocessor_config.json), else the reference's 800/1333.
    preprocess: PreprocessConfig | None = None
    # PreprocessConfig fields set on top of that, e.g. {"shortest_edge": 480}: what the CLI's size options
    # and the node's size parameters give, so one size changes and the other stays the checkpoint's.
    preprocess_overrides: dict = field(default_factory=dict)
    postprocess: PostprocessConfig = field(default_factory=PostprocessConfig)
    batch_size: int = 4  # images per forward pass; more uses more memory
    prompt_cache_size: int = 8  # recently used prompts whose text features are kept
    attention_implementation: str = "auto"  # deformable attention: auto | cuda | cpu | pytorch
    # Run the model under torch.compile (see GroundingDinoDetector.compiled): worth it for a camera's fixed
    # frame size. Each new input size (frame size, batch size or prompt length) compiles again, which takes
    # seconds to minutes; past torch._dynamo.config.cache_size_limit sizes (8) torch falls back to eager.
    compile: bool = False

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.prompt_cache_size < 1:
            raise ValueError(f"prompt_cache_size must be >= 1, got {self.prompt_cache_size}")
        if self.attention_implementation not in IMPLEMENTATIONS:
            raise ValueError(f"attention_implementation must be one of {IMPLEMENTATIONS}")

    def replace_postprocess(self, **changes) -> None:
        """Change post-processing settings between calls; the new values are validated."""
        self.postprocess = dataclasses.replace(self.postprocess, **changes)

    # The two thresholds users change at run time (ROS parameters, CLI options).
    box_threshold = property(lambda self: self.postprocess.box_threshold,
                             lambda self, value: self.replace_postprocess(box_threshold=value))
    text_threshold = property(lambda self: self.postprocess.text_threshold,
                              lambda self, value: self.replace_postprocess(text_threshold=value))


@dataclass
class EncodedPrompt:
    """A prompt split into chunks that fit the text encoder, each with its text features."""

    phrases: list[str]
    chunks: list[tuple[PromptChunk, EncodedText]]


@dataclass
class StageTimes:
    """Seconds spent in each stage by the last detect() call (for benchmarks and health reports)."""

    preprocess: float = 0.0
    model: float = 0.0
    postprocess: float = 0.0


class PromptUpdates(Protocol):
    """Where prompt changes come from while frames are in the model (the ROS node's prompt topic).

    ``prompt_waiting`` is called from inside the model's forward pass: cheap, and it may be called from the
    detecting thread at any time. ``apply_pending`` is called by the detecting thread between the steps of a
    batch; it applies the waiting change through the detector's ``set_prompt`` (or the pipeline's)."""

    def prompt_waiting(self) -> bool: ...

    def apply_pending(self) -> None: ...


class _PromptChanged(Exception):
    """Raised from a forward pre-hook to abandon a batch's text side for a newer prompt."""


@contextlib.contextmanager
def _stop_when(modules: Sequence[torch.nn.Module], waiting: Callable[[], bool]) -> Iterator[None]:
    """Raise _PromptChanged at the start of any of ``modules`` once ``waiting()`` is true."""
    def check(module, args):
        if waiting():
            raise _PromptChanged

    handles = [module.register_forward_pre_hook(check) for module in modules]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def compiled(function):
    """``function`` under torch.compile for fixed input sizes (dynamic=False: one graph per size, each as fast
    as that size allows). Data-dependent steps (Swin's window layout) split the graph; the parts around them
    are compiled."""
    return torch.compile(function, dynamic=False)


def resolve_device(device: str | torch.device) -> torch.device:
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' was asked for but torch sees no CUDA GPU: pass --device cpu")
    return device


class GroundingDinoDetector:
    def __init__(self, model: GroundingDino, tokenizer: PromptTokenizer, config: DetectorConfig | None = None,
                 device: str | torch.device = "cpu", dtype: str = "float32", description: str = "",
                 preferred_preprocess: PreprocessConfig | None = None) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r} (from_pretrained and "
                             "from_model_config resolve 'auto': perception.precision.resolve_dtype)")
        self.config = config or DetectorConfig()
        if self.config.preprocess is None:
            self.config.preprocess = preferred_preprocess or PreprocessConfig()
        if self.config.preprocess_overrides:
            self.config.preprocess = dataclasses.replace(self.config.preprocess, **self.config.preprocess_overrides)
            self.config.preprocess_overrides = {}  # applied: the config now says the sizes in use
        self.device = resolve_device(device)
        self.dtype = DTYPES[dtype]
        self.model = model.to(self.device, self.dtype).eval()
        self.model.set_attention_implementation(self.config.attention_implementation)
        self.tokenizer = tokenizer
        self.description = description
        self.text_encoder_calls = 0
        self.text_side_restarts = 0  # batches' text sides abandoned for a newer prompt (see detect)
        self.last_stage_times = StageTimes()
        self._prompt_cache: OrderedDict[str, EncodedPrompt] = OrderedDict()
        self._prompt: EncodedPrompt | None = None
        self._encode_image, self._forward = self.model.encode_image, self.model
        if self.config.compile:
            self._encode_image, self._forward = compiled(self.model.encode_image), compiled(self.model)

    @classmethod
    def from_model_config(cls, model_config: GroundingDinoConfig, dtype: str = "float32",
                          **kwargs) -> "GroundingDinoDetector":
        """A detector with random weights (tests, benchmarks); dtype may be ``auto``."""
        tokenizer = PromptTokenizer.from_vocab_file(None, model_config.max_text_len)
        dtype = resolve_dtype(dtype, kwargs.get("device", "cpu"))
        return cls(GroundingDino(model_config), tokenizer, description="random weights", dtype=dtype, **kwargs)

    @classmethod
    def from_pretrained(cls, weights: str | None = None, preset: str | None = None, dtype: str = AUTO,
                        **kwargs) -> "GroundingDinoDetector":
        """weights: checkpoint directory, original .pth, hub id, ``bundled``, ``bundled:crowds``, ``random:tiny``,
        or None: the default (perception.weights.DEFAULT_BUNDLED, the bundled crowd model).
        dtype: float32, float16, bfloat16, or auto (perception.precision: float16 on a CUDA GPU, bfloat16 on a
        CPU with bfloat16 instructions that passes a check, else float32).
        Without a ``config``, the post-processing settings tuned for the weights (their tuned_settings.yaml, as the
        CLI and the node use them: box threshold 0.4 for the bundled crowd model) apply, and the log names them;
        a ``config`` given is taken as it is."""
        dtype = resolve_dtype(dtype, kwargs.get("device", "cpu"))
        tuned = tuned_settings(weights) if kwargs.get("config") is None else None
        if tuned is not None and tuned.postprocess:
            logger.info("using the settings tuned for these weights (%s): %s; pass a config to choose others",
                        tuned.source, listed(tuned.postprocess))
            kwargs["config"] = DetectorConfig(postprocess=PostprocessConfig(**tuned.postprocess))
        loaded = load_weights(weights, preset)
        tokenizer = PromptTokenizer.from_vocab_file(loaded.vocab_file, loaded.model.config.max_text_len)
        logger.info("weights: %s", loaded.description)
        return cls(loaded.model, tokenizer, description=loaded.description, preferred_preprocess=loaded.preprocess,
                   dtype=dtype, **kwargs)

    @property
    def box_threshold(self) -> float:
        """The configured box threshold (``config.box_threshold``)."""
        return self.config.box_threshold

    @property
    def phrases(self) -> list[str]:
        return list(self._prompt.phrases) if self._prompt else []

    def set_prompt(self, prompt: str) -> list[str]:
        """Make ``prompt`` current; its text is encoded only if it is not among the recent prompts."""
        phrases, ignored = parse_prompt(prompt)
        key = " . ".join(phrases)  # one cache entry however the phrases are spaced
        cached = self._prompt_cache.get(key)
        if cached is None:
            if ignored:
                logger.warning("prompt phrases %s hold only invisible format characters (byte-order mark, "
                               "zero-width space...): ignored", ignored)
            cached = self._encode_prompt(prompt)
            self._prompt_cache[key] = cached
            while len(self._prompt_cache) > self.config.prompt_cache_size:
                self._prompt_cache.popitem(last=False)
        self._prompt_cache.move_to_end(key)
        self._prompt = cached
        return list(cached.phrases)

    @torch.inference_mode()
    def _encode_prompt(self, prompt: str) -> EncodedPrompt:
        chunks = self.tokenizer.chunk_prompt(prompt)
        encoded = []
        for chunk in chunks:
            self.text_encoder_calls += 1
            encoded.append((chunk, self.model.encode_text(chunk.input_ids.to(self.device))))
        return EncodedPrompt([p for chunk in chunks for p in chunk.phrases], encoded)

    @torch.inference_mode()
    def detect(self, images: Sequence, box_threshold: float | None = None,
               prompt_updates: PromptUpdates | None = None) -> list[Detections]:
        """Detect the current prompt's phrases in each image (see preprocess.as_rgb_tensor for formats).

        Any image of at least 1x1 pixel: boxes are in its own pixels, clipped to it (with the default
        postprocess config). A very thin one keeps one pixel across (preprocess.resized_size) and is padded
        until the model has enough tokens (:meth:`_minimum_input_size`).

        box_threshold: overrides the configured one for this call (trackers ask for lower scores). Boxes a
            lower one adds are labelled by their best phrase even below text_threshold ("phrase" mode), since a
            tracker uses them only to continue tracks of that phrase.
        prompt_updates: prompt changes that may arrive during the call. Within the call's first model batch
        (the images of one size, up to ``batch_size``; a camera node's batch is one), a change waiting when
        the image side is done is applied before the text side, and one that arrives during the text side
        abandons it at the next layer and runs it again with the new prompt on the same image features
        (counted in ``text_side_restarts``). So a new prompt answers within about one batch time, not two,
        and every image of the call is answered with one prompt: later batches take changes at the next call.
        """
        if self._prompt is None:
            raise RuntimeError("no prompt set: call set_prompt('a person . a red mug .') first")
        if isinstance(images, (torch.Tensor,)) or hasattr(images, "shape"):
            raise TypeError("detect() takes a list of images, not one array")
        times = StageTimes()
        start = time.perf_counter()
        rgb = [as_rgb_tensor(image, self.device) for image in images]  # uint8 copied, made float on the device
        original_sizes = [tuple(image.shape[1:]) for image in rgb]
        prepared = [preprocess(image, self.config.preprocess) for image in rgb]
        times.preprocess = time.perf_counter() - start
        results: list[Detections | None] = [None] * len(prepared)
        # Images of one size run together: padding would change a Swin window's content and the result.
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(prepared):
            by_size.setdefault(tuple(image.shape[1:]), []).append(index)
        for indices in by_size.values():
            for begin in range(0, len(indices), self.config.batch_size):
                batch = indices[begin : begin + self.config.batch_size]
                for index, detections in zip(batch, self._detect_batch([prepared[i] for i in batch],
                                                                        [original_sizes[i] for i in batch], times,
                                                                        box_threshold, prompt_updates)):
                    results[index] = detections
                prompt_updates = None  # the call's other batches keep the prompt of its first
        self.last_stage_times = times
        return results

    def _minimum_input_size(self, height: int, width: int) -> tuple[int, int]:
        """The size to pad a (height, width) image to: itself when it gives the model at least the
        num_queries image tokens that query selection picks from, else the smallest square side that does
        (a very thin image, e.g. 1 x 1333). The coarsest level also needs two values per GroupNorm group
        (hidden_dim 32 has one channel per group, so a 1 x 1 map fails). Padding is marked in the mask, so boxes
        stay relative to the image."""
        config, side = self.model.config, 1
        channels_per_group = config.hidden_dim // INPUT_PROJECTION_GROUPS

        def too_small(rows: int, columns: int) -> bool:
            shapes = level_shapes(config, rows, columns)
            coarsest = shapes[-1][0] * shapes[-1][1]
            return sum(h * w for h, w in shapes) < config.num_queries or coarsest * channels_per_group < 2

        while too_small(max(height, side), max(width, side)):
            side += 1
        return side, side

    def _detect_batch(self, images, original_sizes, times: StageTimes, box_threshold: float | None,
                      prompt_updates: PromptUpdates | None) -> list[Detections]:
        start = time.perf_counter()
        pixel_values, padding = pad_batch(images, self._minimum_input_size(*images[0].shape[1:]))
        pixel_values = pixel_values.to(self.dtype)
        # The image side does not depend on the text: one backbone pass serves every chunk of the prompt.
        image_features = self._encode_image(pixel_values, padding)
        per_chunk = self._text_side(pixel_values, padding, image_features, prompt_updates)
        model_done = time.perf_counter()
        times.model += model_done - start
        config, lowered_from = self.config.postprocess, None
        if box_threshold is not None:
            if box_threshold < config.box_threshold:
                lowered_from = config.box_threshold  # the extra boxes are a tracker's: named by their phrase
            config = dataclasses.replace(config, box_threshold=box_threshold)
        # Scores and boxes stay on the device until one copy per chunk (one per batch for a prompt that fits).
        per_chunk_detections = [postprocess_batch(output.logits, output.boxes, chunk, original_sizes, config,
                                                  self.tokenizer, lowered_from) for chunk, output in per_chunk]
        detections = [merge([found[i] for found in per_chunk_detections], config) for i in range(len(original_sizes))]
        times.postprocess += time.perf_counter() - model_done
        return detections

    def _text_side(self, pixel_values, padding, image_features, prompt_updates: PromptUpdates | None) -> list:
        """(chunk, model output) for each chunk of the prompt in force, on one batch's image features; with
        ``prompt_updates``, restarted for changes as :meth:`detect` says. The hooks that abandon a pass are not
        set under torch.compile (they would split its graph): there a change waits for the next batch."""
        for restarts in itertools.count():
            if prompt_updates is not None:
                prompt_updates.apply_pending()
            watch = prompt_updates is not None and restarts < MAX_TEXT_SIDE_RESTARTS and not self.config.compile
            stop = (_stop_when(self.model.text_side_steps(), prompt_updates.prompt_waiting) if watch
                    else contextlib.nullcontext())
            try:
                with stop:
                    return [(chunk, self._forward(pixel_values, padding, text, image_features=image_features))
                            for chunk, text in self._prompt.chunks]
            except _PromptChanged:
                self.text_side_restarts += 1
