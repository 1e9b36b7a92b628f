// Launches of the CUDA kernels of multi-scale deformable attention (ms_deform_attn_cuda_kernels.cuh):
// 256-thread blocks, as many blocks as the elements need up to kMaxBlocks.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>

#include "ms_deform_attn.h"
#include "ms_deform_attn_cuda_kernels.cuh"

namespace gdino {
namespace {

constexpr int kThreadsPerBlock = 256;
// Enough blocks to fill the largest GPUs; the grid-stride loop covers any remaining elements.
constexpr int64_t kMaxBlocks = 65535;

int64_t blocks_for(int64_t num_threads) {
  return std::min<int64_t>((num_threads + kThreadsPerBlock - 1) / kThreadsPerBlock, kMaxBlocks);
}

}  // namespace

at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                        const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  const AttentionSizes sizes =
      check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  TORCH_CHECK(value.is_cuda(), "forward_cuda needs CUDA tensors, got ", value.device());
  const c10::cuda::CUDAGuard device_guard(value.device());
  at::Tensor output = at::empty({sizes.batch, sizes.num_queries, sizes.num_heads * sizes.head_dim}, value.options());
  if (output.numel() == 0) {
    return output;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "gdino_ms_deform_attn_forward_cuda", [&] {
    cuda_kernels::forward_kernel<scalar_t><<<blocks_for(output.numel()), kThreadsPerBlock, 0, stream>>>(
        sizes, value.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
        level_start_index.const_data_ptr<int64_t>(), sampling_locations.const_data_ptr<scalar_t>(),
        attention_weights.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>());
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return output;
}

std::vector<at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  TORCH_CHECK(value.is_cuda(), "backward_cuda needs CUDA tensors, got ", value.device());
  const c10::cuda::CUDAGuard device_guard(value.device());
  BackwardTensors gradients =
      prepare_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output);
  if (gradients.grad_weights.numel() > 0) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(
        at::kHalf, at::kBFloat16, value.scalar_type(), "gdino_ms_deform_attn_backward_cuda", [&] {
          cuda_kernels::backward_kernel<scalar_t><<<blocks_for(gradients.grad_weights.numel()), kThreadsPerBlock, 0, stream>>>(
              gradients.sizes, value.const_data_ptr<scalar_t>(), spatial_shapes.const_data_ptr<int64_t>(),
              level_start_index.const_data_ptr<int64_t>(), sampling_locations.const_data_ptr<scalar_t>(),
              attention_weights.const_data_ptr<scalar_t>(), grad_output.const_data_ptr<scalar_t>(),
              gradients.grad_value.mutable_data_ptr<at::opmath_type<scalar_t>>(),
              gradients.grad_locations.mutable_data_ptr<scalar_t>(), gradients.grad_weights.mutable_data_ptr<scalar_t>());
        });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
  return {gradients.grad_value.to(value.scalar_type()), gradients.grad_locations, gradients.grad_weights};
}

}  // namespace gdino
