// CUDA kernels of multi-scale deformable attention, built on the shared per-sample math.
//
// Kept apart from their launches (ms_deform_attn_cuda.cu) so that the same text also compiles for the
// host through tests/cuda_emulation, which runs every block and thread of a grid on the CPU.
// float32, float16 and bfloat16 (and float64) inputs; arithmetic in at::opmath_type (float for the
// 16-bit types). Both kernels use a grid-stride loop, so any grid covers all elements:
// - forward: one thread per output element (batch, query, head, channel). Neighbouring threads are
//   neighbouring channels, so reads of a value row and the output write are coalesced; the threads
//   of one (query, head) repeat the cheap location math instead of sharing it through shared memory.
// - backward: one thread per sample (batch, query, head, level, point), looping over channels. The
//   attention-weight and location gradients are sums over channels that stay in one thread (no
//   reduction across threads); the value gradient is scattered with atomicAdd into a buffer of the
//   op-math type (float32 has native atomics on every architecture), cast to the input dtype at the end.
#pragma once

#include <ATen/OpMathType.h>

#include "ms_deform_attn.h"
#include "ms_deform_attn_math.h"

namespace gdino {
namespace cuda_kernels {

struct AtomicAdd {
  template <typename acc_t>
  __device__ void operator()(acc_t* address, acc_t amount) const {
    atomicAdd(address, amount);
  }
};

template <typename scalar_t>
__global__ void forward_kernel(AttentionSizes sizes, const scalar_t* value, const int64_t* spatial_shapes,
                               const int64_t* level_start_index, const scalar_t* sampling_locations,
                               const scalar_t* attention_weights, scalar_t* output) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t position_stride = sizes.num_heads * sizes.head_dim;
  const int64_t samples_per_item = sizes.num_levels * sizes.num_points;
  const int64_t num_outputs = sizes.batch * sizes.num_queries * position_stride;
  for (int64_t index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; index < num_outputs;
       index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t channel = index % sizes.head_dim;
    const int64_t item = index / sizes.head_dim;  // (b * num_queries + q) * num_heads + head
    const int64_t head = item % sizes.num_heads;
    const int64_t b = item / (sizes.num_queries * sizes.num_heads);
    const scalar_t* value_channel = value + b * sizes.num_values * position_stride + head * sizes.head_dim + channel;
    const scalar_t* locations = sampling_locations + item * samples_per_item * 2;
    const scalar_t* weights = attention_weights + item * samples_per_item;
    acc_t accumulator = 0;
    for (int64_t level = 0; level < sizes.num_levels; ++level) {
      const int64_t height = spatial_shapes[2 * level];
      const int64_t width = spatial_shapes[2 * level + 1];
      const scalar_t* level_value = value_channel + level_start_index[level] * position_stride;
      for (int64_t point = 0; point < sizes.num_points; ++point) {
        const int64_t sample_index = level * sizes.num_points + point;
        const BilinearSample<acc_t> sample = bilinear_sample<acc_t>(
            static_cast<acc_t>(locations[2 * sample_index]), static_cast<acc_t>(locations[2 * sample_index + 1]),
            height, width);
        accumulator = accumulate_channel(accumulator, sample, static_cast<acc_t>(weights[sample_index]), level_value,
                                         position_stride);
      }
    }
    output[index] = static_cast<scalar_t>(accumulator);
  }
}

template <typename scalar_t>
__global__ void backward_kernel(AttentionSizes sizes, const scalar_t* value, const int64_t* spatial_shapes,
                                const int64_t* level_start_index, const scalar_t* sampling_locations,
                                const scalar_t* attention_weights, const scalar_t* grad_output,
                                at::opmath_type<scalar_t>* grad_value, scalar_t* grad_locations,
                                scalar_t* grad_weights) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t position_stride = sizes.num_heads * sizes.head_dim;
  const int64_t samples_per_item = sizes.num_levels * sizes.num_points;
  const int64_t num_samples = sizes.batch * sizes.num_queries * sizes.num_heads * samples_per_item;
  for (int64_t sample_index = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; sample_index < num_samples;
       sample_index += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t level = (sample_index / sizes.num_points) % sizes.num_levels;
    const int64_t item = sample_index / samples_per_item;  // (b * num_queries + q) * num_heads + head
    const int64_t head = item % sizes.num_heads;
    const int64_t b = item / (sizes.num_queries * sizes.num_heads);
    const int64_t height = spatial_shapes[2 * level];
    const int64_t width = spatial_shapes[2 * level + 1];
    const int64_t level_offset =
        b * sizes.num_values * position_stride + level_start_index[level] * position_stride + head * sizes.head_dim;
    const BilinearSample<acc_t> sample =
        bilinear_sample<acc_t>(static_cast<acc_t>(sampling_locations[2 * sample_index]),
                               static_cast<acc_t>(sampling_locations[2 * sample_index + 1]), height, width);
    const acc_t attention = static_cast<acc_t>(attention_weights[sample_index]);
    const scalar_t* item_grad_output = grad_output + item * sizes.head_dim;
    SampleGradient<acc_t> gradient;
    for (int64_t channel = 0; channel < sizes.head_dim; ++channel) {
      backward_channel(sample, attention, static_cast<acc_t>(item_grad_output[channel]),
                       value + level_offset + channel, position_stride, grad_value + level_offset + channel,
                       AtomicAdd{}, gradient);
    }
    grad_weights[sample_index] = static_cast<scalar_t>(gradient.attention);
    grad_locations[2 * sample_index] = static_cast<scalar_t>(location_gradient(gradient.pixel_x, width));
    grad_locations[2 * sample_index + 1] = static_cast<scalar_t>(location_gradient(gradient.pixel_y, height));
  }
}

}  // namespace cuda_kernels
}  // namespace gdino
