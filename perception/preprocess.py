"""Image preprocessing as the reference does it: resize so the shortest side is 800 and the longest at
most 1333 (configurable), scale to [0, 1], ImageNet normalization, zero padding at the bottom/right.

Everything after :func:`as_rgb_tensor`'s checks runs on the model's device in torch: a uint8 frame travels
as uint8 (a quarter of float32's bytes; from pinned host memory without blocking when the device is CUDA),
and resizing, normalization and padding are device ops, so nothing waits for the GPU on the way in.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class PreprocessConfig:
    shortest_edge: int = 800  # the published models were trained at 800 on the short side
    longest_edge: int = 1333  # the long side is capped so wide frames do not explode the token count
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not 32 <= self.shortest_edge <= self.longest_edge <= 8192:
            raise ValueError(
                f"need 32 <= shortest_edge <= longest_edge <= 8192, got {self.shortest_edge}, {self.longest_edge}"
            )
        self.mean, self.std = tuple(self.mean), tuple(self.std)
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values each, std > 0")


def resized_size(height: int, width: int, shortest_edge: int, longest_edge: int) -> tuple[int, int]:
    """(height, width) after resizing: short side to shortest_edge unless the long side would pass longest_edge.

    The reference's rule (transformers' ``get_size_with_aspect_ratio``), except that an image thinner than
    1 : 2 * longest_edge, whose short side the reference rounds to 0, keeps a short side of 1 pixel while
    its long side is still brought to longest_edge.
    """
    short, long = min(height, width), max(height, width)
    target = float(shortest_edge)
    exact = None
    if long / short * target > longest_edge:
        exact = longest_edge * short / long
        target = int(round(exact))
    thin = target < 1
    if short == target and not thin:
        return height, width
    scale = exact if exact is not None else target
    target = max(target, 1)
    if width < height:
        return int(scale * height / width), int(target)
    return int(target), int(scale * width / height)


def as_rgb_tensor(image, device: str | torch.device = "cpu") -> torch.Tensor:
    """Validate one image and return it on ``device`` as a (3, H, W) float32 tensor in [0, 255].

    Accepted: numpy/torch uint8 (H, W, 3) RGB, (H, W) or (H, W, 1) grayscale (repeated to RGB), or a
    float torch tensor (3, H, W) in [0, 1]. Anything else raises ValueError/TypeError saying what was given.
    A uint8 image is checked on the host and copied as uint8 (see :func:`to_device`), then made float there.
    """
    device = torch.device(device)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8:
            raise TypeError(f"image arrays must be uint8 RGB, got dtype {image.dtype}")
        tensor = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, torch.Tensor):
        tensor = image
    else:
        raise TypeError(f"an image must be a numpy array or a torch tensor, got {type(image).__name__}")
    if tensor.dtype == torch.uint8:
        if tensor.ndim == 2:
            tensor = tensor[..., None]
        if tensor.ndim != 3 or tensor.shape[-1] not in (1, 3):
            raise ValueError(f"uint8 images must be (H, W, 3) RGB or (H, W) gray, got shape {tuple(tensor.shape)}")
        _check_size(tensor.shape[:2])
        tensor = to_device(tensor, device).permute(2, 0, 1).float().expand(3, -1, -1)
    elif tensor.is_floating_point():
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"float images must be (3, H, W) in [0, 1], got shape {tuple(tensor.shape)}")
        _check_size(tensor.shape[1:])
        if not torch.isfinite(tensor).all():
            raise ValueError("image contains NaN or infinite values")
        tensor = tensor.to(device).float() * 255.0
    else:
        raise TypeError(f"images must be uint8 or floating point, got {tensor.dtype}")
    return tensor


def _check_size(size) -> None:
    if size[0] == 0 or size[1] == 0:
        raise ValueError(f"image has zero size: {tuple(size)}")


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``. A CPU tensor bound for CUDA is staged in pinned (page-locked) memory and
    copied without blocking: the copy is queued on the current stream, ahead of the kernels that read it,
    and torch's pinned-memory cache keeps the staging buffer until the copy has run."""
    if tensor.device == device:
        return tensor
    if device.type == "cuda" and tensor.device.type == "cpu":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def _per_channel(values: tuple, device: torch.device) -> torch.Tensor:
    """(3, 1, 1) float32 ``values`` made on ``device`` by fills, not copied from the host: a copy from
    pageable host memory waits for the GPU to finish its queue."""
    return torch.stack([torch.full((1, 1), value, device=device) for value in values])


def preprocess(image: torch.Tensor, config: PreprocessConfig) -> torch.Tensor:
    """(3, H, W) float in [0, 255] -> (3, H', W') resized and normalized, on the image's device."""
    height, width = image.shape[1:]
    size = resized_size(height, width, config.shortest_edge, config.longest_edge)
    if size != (height, width):
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False, antialias=True)[0]
    mean, std = _per_channel(config.mean, image.device), _per_channel(config.std, image.device)
    return (image / 255.0 - mean) / std


def pad_batch(images: list[torch.Tensor], minimum_size: tuple[int, int] = (1, 1)) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack (3, H_i, W_i) images at the top-left of a zero batch of at least ``minimum_size`` (H, W).

    returns: pixel_values (B, 3, H, W) and image_padding_mask (B, H, W) bool, True = padding.
    """
    height = max([minimum_size[0]] + [image.shape[1] for image in images])
    width = max([minimum_size[1]] + [image.shape[2] for image in images])
    pixel_values = images[0].new_zeros((len(images), 3, height, width))
    padding = torch.ones((len(images), height, width), dtype=torch.bool, device=images[0].device)
    for index, image in enumerate(images):
        pixel_values[index, :, : image.shape[1], : image.shape[2]] = image
        padding[index, : image.shape[1], : image.shape[2]].fill_(False)  # a device fill, no host scalar
    return pixel_values, padding
