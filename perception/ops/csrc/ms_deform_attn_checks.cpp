// Input checks and backward buffers shared by the CPU and CUDA entry points; the checks guard the
// kernels' memory safety.
#include <ATen/OpMathType.h>

#include "ms_deform_attn.h"

namespace gdino {

AttentionSizes check_inputs(const at::Tensor& value, const at::Tensor& spatial_shapes,
                            const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                            const at::Tensor& attention_weights) {
  TORCH_CHECK(value.dim() == 4, "value must be (batch, num_values, num_heads, head_dim), got ", value.sizes());
  TORCH_CHECK(sampling_locations.dim() == 6 && sampling_locations.size(5) == 2,
              "sampling_locations must be (batch, num_queries, num_heads, num_levels, num_points, 2), got ",
              sampling_locations.sizes());
  const AttentionSizes sizes{value.size(0),           value.size(1),           value.size(2),
                             value.size(3),           sampling_locations.size(1), sampling_locations.size(3),
                             sampling_locations.size(4)};
  TORCH_CHECK(sampling_locations.size(0) == sizes.batch && sampling_locations.size(2) == sizes.num_heads,
              "sampling_locations ", sampling_locations.sizes(), " does not match value ", value.sizes());
  TORCH_CHECK(attention_weights.sizes() == sampling_locations.sizes().slice(0, 5), "attention_weights must be ",
              sampling_locations.sizes().slice(0, 5), ", got ", attention_weights.sizes());
  TORCH_CHECK(spatial_shapes.dim() == 2 && spatial_shapes.size(0) == sizes.num_levels && spatial_shapes.size(1) == 2,
              "spatial_shapes must be (", sizes.num_levels, ", 2), got ", spatial_shapes.sizes());
  TORCH_CHECK(level_start_index.dim() == 1 && level_start_index.size(0) == sizes.num_levels,
              "level_start_index must be (", sizes.num_levels, ",), got ", level_start_index.sizes());
  TORCH_CHECK(spatial_shapes.scalar_type() == at::kLong && level_start_index.scalar_type() == at::kLong,
              "spatial_shapes and level_start_index must be int64");
  TORCH_CHECK(sampling_locations.scalar_type() == value.scalar_type() &&
                  attention_weights.scalar_type() == value.scalar_type(),
              "value, sampling_locations and attention_weights must share one dtype, got ", value.scalar_type(), ", ",
              sampling_locations.scalar_type(), ", ", attention_weights.scalar_type());
  for (const at::Tensor* tensor : {&spatial_shapes, &level_start_index, &sampling_locations, &attention_weights}) {
    TORCH_CHECK(tensor->device() == value.device(), "all inputs must be on ", value.device(), ", got ",
                tensor->device());
  }
  for (const at::Tensor* tensor : {&value, &spatial_shapes, &level_start_index, &sampling_locations, &attention_weights}) {
    TORCH_CHECK(tensor->is_contiguous(), "all inputs must be contiguous");
  }
  return sizes;
}

BackwardTensors prepare_backward(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                 const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                 const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  const AttentionSizes sizes =
      check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  TORCH_CHECK(grad_output.dim() == 3 && grad_output.size(0) == sizes.batch &&
                  grad_output.size(1) == sizes.num_queries && grad_output.size(2) == sizes.num_heads * sizes.head_dim,
              "grad_output must be (", sizes.batch, ", ", sizes.num_queries, ", ", sizes.num_heads * sizes.head_dim,
              "), got ", grad_output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == value.scalar_type() && grad_output.device() == value.device() &&
                  grad_output.is_contiguous(),
              "grad_output must be contiguous, ", value.scalar_type(), ", on ", value.device());
  return {sizes, at::zeros(value.sizes(), value.options().dtype(at::toOpMathType(value.scalar_type()))),
          at::zeros_like(sampling_locations), at::zeros_like(attention_weights)};
}

}  // namespace gdino
