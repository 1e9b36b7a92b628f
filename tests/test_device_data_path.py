"""Frames reach the model's device as uint8 and are resized, normalized and padded there.

Without a GPU, a fake `cuda:0` (FakeTensorMode) shows every preprocessing op running on the device with no
host tensor involved; the tests marked `cuda` check the real copy and the detector on a GPU
(scripts/gpu_check.sh runs them there).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.utils._python_dispatch import TorchDispatchMode

from perception.preprocess import PreprocessConfig, as_rgb_tensor, pad_batch, preprocess

SIZES = PreprocessConfig(shortest_edge=64, longest_edge=100)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh)")


class OpRecorder(TorchDispatchMode):
    """Every aten op called inside the block, with the devices and dtypes of its tensor arguments (and in
    ``sizes`` their element counts, in ``outputs`` the devices of its results)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, list[tuple[str, torch.dtype]], dict]] = []
        self.sizes: list[list[int]] = []
        self.outputs: list[list[str]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        tensors = [a for a in torch.utils._pytree.tree_leaves((args, kwargs)) if isinstance(a, torch.Tensor)]
        self.calls.append((str(func), [(t.device.type, t.dtype) for t in tensors], kwargs))
        self.sizes.append([t.numel() for t in tensors])
        result = func(*args, **kwargs)
        self.outputs.append([t.device.type for t in torch.utils._pytree.tree_leaves(result)
                             if isinstance(t, torch.Tensor)])
        return result

    def uploads(self) -> list[tuple[list[tuple[str, torch.dtype]], list[int]]]:
        """(argument devices and dtypes, element counts) of each op that took host tensors only and gave a
        CUDA one: the copies to the GPU, whichever op names them (under inference mode the dispatcher shows
        ``aten.to.dtype_layout`` where it otherwise shows ``aten._to_copy``; seen on an H200)."""
        return [(devices, size) for (_, devices, _), size, outputs in zip(self.calls, self.sizes, self.outputs)
                if devices and all(device == "cpu" for device, _ in devices) and "cuda" in outputs]


def test_preprocessing_and_padding_run_on_the_device_without_host_tensors():
    with FakeTensorMode():
        frames = [torch.empty((30, 40, 3), dtype=torch.uint8, device="cuda"),
                  torch.empty((30, 40), dtype=torch.uint8, device="cuda")]  # RGB and gray
        recorder = OpRecorder()
        with recorder:
            images = [preprocess(as_rgb_tensor(frame, "cuda"), SIZES) for frame in frames]
            pixel_values, padding = pad_batch(images, minimum_size=(70, 100))
    assert pixel_values.device.type == padding.device.type == "cuda"
    assert pixel_values.shape == (2, 3, 70, 100) and pixel_values.dtype == torch.float32
    host = [(name, devices) for name, devices, _ in recorder.calls if any(device == "cpu" for device, _ in devices)]
    assert not host, f"host tensors in the device path: {host}"
    # uint8 until it is on the device: each frame's float tensor is made there from its uint8 one.
    to_float = [devices for name, devices, kwargs in recorder.calls
                if name == "aten._to_copy.default" and kwargs.get("dtype") == torch.float32]
    assert to_float == [[("cuda", torch.uint8)]] * 2, to_float


def test_a_cpu_device_keeps_the_frame_where_it_is_and_the_values_exact():
    frame = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    tensor = as_rgb_tensor(frame, "cpu")
    assert tensor.dtype == torch.float32 and torch.equal(tensor, torch.from_numpy(frame).permute(2, 0, 1).float())


@needs_cuda
def test_a_host_frame_crosses_to_the_gpu_as_uint8_from_pinned_memory_without_blocking():
    frame = np.random.default_rng(0).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    recorder = OpRecorder()
    with recorder:
        on_device = as_rgb_tensor(frame, "cuda")
    names = [name for name, _, _ in recorder.calls]
    assert "aten._pin_memory.default" in names, names
    copies = [(devices, kwargs) for name, devices, kwargs in recorder.calls
              if name == "aten._to_copy.default" and kwargs.get("device", torch.device("cpu")).type == "cuda"]
    assert len(copies) == 1 and copies[0][0] == [("cpu", torch.uint8)] and copies[0][1].get("non_blocking"), copies
    assert on_device.is_cuda and torch.equal(on_device.cpu(), as_rgb_tensor(frame, "cpu"))


@needs_cuda
def test_the_detector_keeps_text_features_and_inputs_on_the_gpu():
    from perception.detector import GroundingDinoDetector

    detector = GroundingDinoDetector.from_pretrained(None, device="cuda")
    detector.set_prompt("blue cross . yellow circle .")
    encoded = detector._prompt.chunks[0][1]
    assert all(tensor.is_cuda for tensor in vars(encoded).values() if isinstance(tensor, torch.Tensor))
    frame = np.zeros((120, 160, 3), dtype=np.uint8)
    recorder = OpRecorder()
    with recorder:
        detector.detect([frame, frame])
    # The frames go up as uint8; nothing else of more than a few numbers does (post-processing may send up
    # small constants such as the images' sizes).
    uploads = recorder.uploads()
    frames = [size for devices, size in uploads if devices == [("cpu", torch.uint8)]]
    assert frames == [[120 * 160 * 3]] * 2, uploads
    assert all(size[0] <= 1024 for devices, size in uploads if devices != [("cpu", torch.uint8)]), uploads
    assert detector.text_encoder_calls == 1
