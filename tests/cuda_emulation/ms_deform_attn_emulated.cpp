// The CUDA kernels of perception/ops/csrc/ms_deform_attn_cuda_kernels.cuh compiled for the host and
// run on emulated grids (cuda_emulation.h): forward and backward as ms_deform_attn_cuda.cu launches
// them, except that the caller chooses the block size and caps the block count, so that a small grid
// walks the kernels' grid-stride loops many times.
//
// Every buffer a kernel touches, except the int64 level tables, sits inside guard bands of kGuard
// elements: NaN around what the kernels read or write (a read past the end turns the result into NaN,
// a write past it replaces a NaN), zero around the accumulated value gradient (an add past its end
// changes the band). A band that changed raises an error naming the buffer.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cuda_emulation.h"
#include "ms_deform_attn_cuda_kernels.cuh"

namespace {

constexpr int64_t kGuard = 64;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// `contents` copied into the middle of a buffer whose kGuard elements on each side hold `band`.
struct Guarded {
  at::Tensor buffer;
  at::Tensor tensor;  // the view the kernel gets, shaped like `contents`
  double band;

  Guarded(const at::Tensor& contents, double band_value)
      : buffer(at::full({contents.numel() + 2 * kGuard}, band_value, contents.options())),
        tensor(buffer.narrow(0, kGuard, contents.numel()).view(contents.sizes())),
        band(band_value) {
    tensor.copy_(contents);
  }

  void check_bands(const char* name) const {
    const at::Tensor bands = at::cat({buffer.narrow(0, 0, kGuard), buffer.narrow(0, kGuard + tensor.numel(), kGuard)});
    const bool untouched = std::isnan(band) ? bands.isnan().all().item<bool>() : bands.eq(band).all().item<bool>();
    TORCH_CHECK(untouched, "the kernel touched memory outside ", name);
  }
};

int64_t capped_blocks(int64_t num_threads, int64_t threads_per_block, int64_t max_blocks) {
  TORCH_CHECK(max_blocks >= 1 && threads_per_block >= 1, "max_blocks and threads_per_block must be at least 1, got ",
              max_blocks, " and ", threads_per_block);
  return std::min((num_threads + threads_per_block - 1) / threads_per_block, max_blocks);
}

at::Tensor forward(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                   const at::Tensor& sampling_locations, const at::Tensor& attention_weights, int64_t max_blocks,
                   int64_t threads_per_block) {
  const gdino::AttentionSizes sizes =
      gdino::check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  TORCH_CHECK(value.device().is_cpu(), "the emulated kernels need CPU tensors, got ", value.device());
  const Guarded guarded_value(value, kNaN), locations(sampling_locations, kNaN), weights(attention_weights, kNaN);
  // Unwritten output stays NaN (the CUDA entry point leaves it uninitialized).
  const Guarded output(at::full({sizes.batch, sizes.num_queries, sizes.num_heads * sizes.head_dim}, kNaN, value.options()),
                       kNaN);
  if (output.tensor.numel() == 0) {
    return output.tensor;
  }
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "emulated_forward", [&] {
    cuda_emulation::launch(capped_blocks(output.tensor.numel(), threads_per_block, max_blocks), threads_per_block,
                           &gdino::cuda_kernels::forward_kernel<scalar_t>, sizes,
                           guarded_value.tensor.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
                           level_start_index.const_data_ptr<int64_t>(), locations.tensor.const_data_ptr<scalar_t>(),
                           weights.tensor.const_data_ptr<scalar_t>(), output.tensor.mutable_data_ptr<scalar_t>());
  });
  output.check_bands("output");
  return output.tensor;
}

std::vector<at::Tensor> backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                 const at::Tensor& attention_weights, const at::Tensor& grad_output,
                                 int64_t max_blocks, int64_t threads_per_block) {
  TORCH_CHECK(value.device().is_cpu(), "the emulated kernels need CPU tensors, got ", value.device());
  const gdino::BackwardTensors gradients = gdino::prepare_backward(value, spatial_shapes, level_start_index,
                                                                   sampling_locations, attention_weights, grad_output);
  const Guarded guarded_value(value, kNaN), locations(sampling_locations, kNaN), weights(attention_weights, kNaN),
      guarded_grad_output(grad_output, kNaN);
  const Guarded grad_value(gradients.grad_value, 0.0), grad_locations(gradients.grad_locations, kNaN),
      grad_weights(gradients.grad_weights, kNaN);
  if (grad_weights.tensor.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "emulated_backward", [&] {
      cuda_emulation::launch(
          capped_blocks(grad_weights.tensor.numel(), threads_per_block, max_blocks), threads_per_block,
          &gdino::cuda_kernels::backward_kernel<scalar_t>, gradients.sizes, guarded_value.tensor.const_data_ptr<scalar_t>(),
          spatial_shapes.const_data_ptr<int64_t>(), level_start_index.const_data_ptr<int64_t>(),
          locations.tensor.const_data_ptr<scalar_t>(), weights.tensor.const_data_ptr<scalar_t>(),
          guarded_grad_output.tensor.const_data_ptr<scalar_t>(),
          grad_value.tensor.mutable_data_ptr<at::opmath_type<scalar_t>>(),
          grad_locations.tensor.mutable_data_ptr<scalar_t>(), grad_weights.tensor.mutable_data_ptr<scalar_t>());
    });
  }
  grad_value.check_bands("grad_value");
  grad_locations.check_bands("grad_sampling_locations");
  grad_weights.check_bands("grad_attention_weights");
  return {grad_value.tensor.to(value.scalar_type()), grad_locations.tensor, grad_weights.tensor};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "The CUDA deformable-attention kernels run on the CPU through an emulated grid.";
  module.def("forward", &forward, "forward_kernel on an emulated grid", pybind11::arg("value"),
             pybind11::arg("spatial_shapes"), pybind11::arg("level_start_index"), pybind11::arg("sampling_locations"),
             pybind11::arg("attention_weights"), pybind11::arg("max_blocks"), pybind11::arg("threads_per_block"));
  module.def("backward", &backward, "backward_kernel on an emulated grid", pybind11::arg("value"),
             pybind11::arg("spatial_shapes"), pybind11::arg("level_start_index"), pybind11::arg("sampling_locations"),
             pybind11::arg("attention_weights"), pybind11::arg("grad_output"), pybind11::arg("max_blocks"),
             pybind11::arg("threads_per_block"));
}
