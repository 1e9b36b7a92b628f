// Multi-scale deformable attention kernels: declarations shared by the bindings and the kernels.
//
// Shapes (all tensors contiguous; spatial_shapes and level_start_index int64 on the value's device):
//   value               (batch, num_values, num_heads, head_dim)
//   spatial_shapes      (num_levels, 2): (height, width) of each level
//   level_start_index   (num_levels,): offset of each level in num_values
//   sampling_locations  (batch, num_queries, num_heads, num_levels, num_points, 2): (x, y) in [0, 1] on the map
//   attention_weights   (batch, num_queries, num_heads, num_levels, num_points)
//   output              (batch, num_queries, num_heads * head_dim)
// backward returns {grad_value, grad_sampling_locations, grad_attention_weights}, shaped like the inputs.
#pragma once

#include <ATen/ATen.h>

#include <vector>

namespace gdino {

// Sizes read once from the inputs by check_inputs.
struct AttentionSizes {
  int64_t batch;
  int64_t num_values;
  int64_t num_heads;
  int64_t head_dim;
  int64_t num_queries;
  int64_t num_levels;
  int64_t num_points;
};

// Checks ranks, dtypes, devices and contiguity; the Python dispatch checks the values of the shapes.
AttentionSizes check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                            const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                            const at::Tensor& attention_weights);

// The backward's outputs. grad_value is zeroed and in the op-math type (float for half and bfloat16)
// because the kernels accumulate into it; the entry points cast it to the value's dtype at the end.
struct BackwardTensors {
  AttentionSizes sizes;
  at::Tensor grad_value;
  at::Tensor grad_locations;
  at::Tensor grad_weights;
};

// Checks the inputs and grad_output (contiguous, (batch, num_queries, num_heads * head_dim)) and
// allocates the gradients.
BackwardTensors prepare_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                 const at::Tensor& attention_weights, const at::Tensor& grad_output);

at::Tensor forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                       const at::Tensor& sampling_locations, const at::Tensor& attention_weights);

std::vector<at::Tensor> backward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                     const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                     const at::Tensor& attention_weights, const at::Tensor& grad_output);

#ifdef GDINO_WITH_CUDA
at::Tensor forward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                        const at::Tensor& sampling_locations, const at::Tensor& attention_weights);

std::vector<at::Tensor> backward_cuda(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                      const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                      const at::Tensor& attention_weights, const at::Tensor& grad_output);
#endif

}  // namespace gdino
