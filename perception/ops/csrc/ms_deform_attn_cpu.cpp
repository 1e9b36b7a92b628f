// CPU kernels of multi-scale deformable attention, built on the shared per-sample math.
//
// Forward: parallel over items (batch, query, head); each item accumulates its head_dim output
// channels in acc_t (float for float/half/bfloat16, double for double), over contiguous channels so
// the compiler vectorizes the inner loop.
// Backward: parallel over (batch, head); each owns value[b, :, head, :], so the value-gradient
// scatter needs no atomics and the result is deterministic. A sample with its four corners inside runs
// over contiguous channels (vectorized); its results equal the per-channel path's to the bit.
// Both hand out work in small chunks (parallel_chunks) rather than one fixed share per thread, so
// a thread that the OS preempts (a robot runs many processes) does not hold up the whole call.
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <atomic>
#include <vector>

#include "ms_deform_attn.h"
#include "ms_deform_attn_math.h"

namespace gdino {
namespace {

#if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
#define GDINO_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define GDINO_CPU_CLONES
#endif

// Forward items per chunk: one item is num_levels * num_points samples of head_dim channels, so a
// chunk is about 0.1 ms of work at encoder shapes.
constexpr int64_t kForwardChunk = 256;

// Runs body(begin, end) over [0, num_items) in chunks of chunk_size, on at::parallel_for's threads,
// each thread taking the next chunk when it finishes one. Which thread computes an item never
// changes the item's result.
template <typename Body>
void parallel_chunks(int64_t num_items, int64_t chunk_size, const Body& body) {
  std::atomic<int64_t> next_chunk{0};
  const int64_t num_chunks = (num_items + chunk_size - 1) / chunk_size;
  at::parallel_for(0, std::min<int64_t>(num_chunks, at::get_num_threads()), 1, [&](int64_t, int64_t) {
    for (int64_t chunk = next_chunk++; chunk < num_chunks; chunk = next_chunk++) {
      body(chunk * chunk_size, std::min(num_items, (chunk + 1) * chunk_size));
    }
  });
}

struct PlainAdd {
  template <typename acc_t>
  void operator()(acc_t* address, acc_t amount) const {
    *address += amount;
  }
};

// Whether all four corners of a sample are inside the map (most samples): the forward and the backward
// then run one pass over contiguous channels.
template <typename acc_t>
inline bool corners_inside(const BilinearSample<acc_t>& sample) {
  return sample.offset[0] >= 0 && sample.offset[1] >= 0 && sample.offset[2] >= 0 && sample.offset[3] >= 0;
}

// Adds one sample to the head_dim accumulators: per channel, the same corner-by-corner sums as
// accumulate_channel (the GPU's per-channel forward), run over contiguous channels. When all four
// corners are inside (most samples), one pass adds the four terms in corner order, reading and
// writing each accumulator once instead of four times; the result is the same to the bit.
template <typename scalar_t, typename acc_t>
inline void accumulate_sample(acc_t* __restrict__ accumulator, int64_t head_dim, const BilinearSample<acc_t>& sample,
                              acc_t attention, const scalar_t* level_value, int64_t position_stride) {
  if (corners_inside(sample)) {
    const acc_t coefficient[4] = {
        corner_coefficient(sample, 0, attention), corner_coefficient(sample, 1, attention),
        corner_coefficient(sample, 2, attention), corner_coefficient(sample, 3, attention)};
    const scalar_t* __restrict__ value0 = level_value + sample.offset[0] * position_stride;
    const scalar_t* __restrict__ value1 = level_value + sample.offset[1] * position_stride;
    const scalar_t* __restrict__ value2 = level_value + sample.offset[2] * position_stride;
    const scalar_t* __restrict__ value3 = level_value + sample.offset[3] * position_stride;
    for (int64_t channel = 0; channel < head_dim; ++channel) {
      acc_t sum = accumulator[channel];
      sum += coefficient[0] * static_cast<acc_t>(value0[channel]);
      sum += coefficient[1] * static_cast<acc_t>(value1[channel]);
      sum += coefficient[2] * static_cast<acc_t>(value2[channel]);
      sum += coefficient[3] * static_cast<acc_t>(value3[channel]);
      accumulator[channel] = sum;
    }
    return;
  }
  for (int corner = 0; corner < 4; ++corner) {
    if (sample.offset[corner] < 0) {
      continue;
    }
    const acc_t coefficient = corner_coefficient(sample, corner, attention);
    const scalar_t* __restrict__ corner_value = level_value + sample.offset[corner] * position_stride;
    for (int64_t channel = 0; channel < head_dim; ++channel) {
      accumulator[channel] += coefficient * static_cast<acc_t>(corner_value[channel]);
    }
  }
}

// The op's inputs as raw pointers (layouts in ms_deform_attn.h).
template <typename scalar_t>
struct InputPointers {
  AttentionSizes sizes;
  const scalar_t* value;
  const int64_t* spatial_shapes;
  const int64_t* level_start_index;
  const scalar_t* sampling_locations;
  const scalar_t* attention_weights;
};

// The inputs as pointers, for a kernel with the same operands.
template <typename scalar_t>
InputPointers<scalar_t> input_pointers(const AttentionSizes& sizes, const at::Tensor& value,
                                       const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                                       const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  return {sizes,
          value.const_data_ptr<scalar_t>(),
          spatial_shapes.const_data_ptr<int64_t>(),
          level_start_index.const_data_ptr<int64_t>(),
          sampling_locations.const_data_ptr<scalar_t>(),
          attention_weights.const_data_ptr<scalar_t>()};
}

template <typename scalar_t>
struct ForwardArgs : InputPointers<scalar_t> {
  scalar_t* output;
};

// Forward for items [begin, end), item = (b * num_queries + q) * num_heads + head. On x86-64 Linux
// this is also compiled for AVX2 and picked at load time: the channel loop runs 8 floats wide
// instead of 4, with the same operations in the same order (no FMA), so results do not change.
template <typename scalar_t>
GDINO_CPU_CLONES void forward_items(const ForwardArgs<scalar_t>& args, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const AttentionSizes& sizes = args.sizes;
  const int64_t head_dim = sizes.head_dim;
  const int64_t position_stride = sizes.num_heads * head_dim;
  const int64_t samples_per_item = sizes.num_levels * sizes.num_points;
  std::vector<acc_t> accumulator_buffer(head_dim);
  acc_t* __restrict__ accumulator = accumulator_buffer.data();
  for (int64_t item = begin; item < end; ++item) {
    const int64_t head = item % sizes.num_heads;
    const int64_t b = item / (sizes.num_queries * sizes.num_heads);
    const scalar_t* value_head = args.value + b * sizes.num_values * position_stride + head * head_dim;
    const scalar_t* locations = args.sampling_locations + item * samples_per_item * 2;
    const scalar_t* weights = args.attention_weights + item * samples_per_item;
    std::fill(accumulator, accumulator + head_dim, acc_t(0));
    for (int64_t level = 0; level < sizes.num_levels; ++level) {
      const int64_t height = args.spatial_shapes[2 * level];
      const int64_t width = args.spatial_shapes[2 * level + 1];
      const scalar_t* level_value = value_head + args.level_start_index[level] * position_stride;
      for (int64_t point = 0; point < sizes.num_points; ++point) {
        const int64_t sample_index = level * sizes.num_points + point;
        const BilinearSample<acc_t> sample = bilinear_sample<acc_t>(
            locations[2 * sample_index], locations[2 * sample_index + 1], height, width);
        accumulate_sample(accumulator, head_dim, sample, static_cast<acc_t>(weights[sample_index]), level_value,
                          position_stride);
      }
    }
    scalar_t* item_output = args.output + item * head_dim;
    for (int64_t channel = 0; channel < head_dim; ++channel) {
      item_output[channel] = static_cast<scalar_t>(accumulator[channel]);
    }
  }
}

// Channel-by-channel shares of one sample's gradient (channel_gradient), one row per sum.
template <typename acc_t>
struct ChannelShares {
  explicit ChannelShares(int64_t head_dim) : attention(head_dim), pixel_x(head_dim), pixel_y(head_dim) {}
  std::vector<acc_t> attention;
  std::vector<acc_t> pixel_x;
  std::vector<acc_t> pixel_y;
};

// Backward of one sample whose four corners are inside (most samples): per channel the operations of
// backward_channel, run over contiguous channels so the compiler vectorizes them, with each channel's
// shares of the attention and location gradients kept in `shares` and then summed in channel order, as
// backward_channel sums them. The value gradient and the returned sums are the same to the bit.
template <typename scalar_t, typename acc_t>
inline SampleGradient<acc_t> backward_inside_sample(const BilinearSample<acc_t>& sample_in, acc_t attention,
                                                    const scalar_t* __restrict__ grad_output,
                                                    const scalar_t* level_value, acc_t* level_grad,
                                                    int64_t position_stride, int64_t head_dim,
                                                    ChannelShares<acc_t>& shares) {
  const BilinearSample<acc_t> sample = sample_in;  // a local copy: the stores below cannot alias it
  const scalar_t* __restrict__ value0 = level_value + sample.offset[0] * position_stride;
  const scalar_t* __restrict__ value1 = level_value + sample.offset[1] * position_stride;
  const scalar_t* __restrict__ value2 = level_value + sample.offset[2] * position_stride;
  const scalar_t* __restrict__ value3 = level_value + sample.offset[3] * position_stride;
  acc_t* __restrict__ grad0 = level_grad + sample.offset[0] * position_stride;
  acc_t* __restrict__ grad1 = level_grad + sample.offset[1] * position_stride;
  acc_t* __restrict__ grad2 = level_grad + sample.offset[2] * position_stride;
  acc_t* __restrict__ grad3 = level_grad + sample.offset[3] * position_stride;
  acc_t* __restrict__ share_attention = shares.attention.data();
  acc_t* __restrict__ share_x = shares.pixel_x.data();
  acc_t* __restrict__ share_y = shares.pixel_y.data();
  // GCC does not take __restrict__ on these locals as proof that the rows are apart (they are: four
  // positions and three buffers of their own) and would need more run-time alias checks than it allows.
#pragma GCC ivdep
  for (int64_t channel = 0; channel < head_dim; ++channel) {
    const acc_t channel_grad_output = static_cast<acc_t>(grad_output[channel]);
    const acc_t grad_sample = channel_grad_output * attention;
    const acc_t corner_value[4] = {static_cast<acc_t>(value0[channel]), static_cast<acc_t>(value1[channel]),
                                   static_cast<acc_t>(value2[channel]), static_cast<acc_t>(value3[channel])};
    grad0[channel] += grad_sample * sample.weight[0];
    grad1[channel] += grad_sample * sample.weight[1];
    grad2[channel] += grad_sample * sample.weight[2];
    grad3[channel] += grad_sample * sample.weight[3];
    const SampleGradient<acc_t> share = channel_gradient(sample, channel_grad_output, grad_sample, corner_value);
    share_attention[channel] = share.attention;
    share_x[channel] = share.pixel_x;
    share_y[channel] = share.pixel_y;
  }
  SampleGradient<acc_t> gradient;
  for (int64_t channel = 0; channel < head_dim; ++channel) {
    gradient.attention += share_attention[channel];
    gradient.pixel_x += share_x[channel];
    gradient.pixel_y += share_y[channel];
  }
  return gradient;
}

// The backward's upstream gradient and outputs, besides the inputs (layouts in ms_deform_attn.h).
template <typename scalar_t>
struct BackwardArgs : InputPointers<scalar_t> {
  const scalar_t* grad_output;
  at::opmath_type<scalar_t>* grad_value;
  scalar_t* grad_locations;
  scalar_t* grad_weights;
};

// Backward for owners [begin, end), owner = b * num_heads + head: every sample of that (batch, head), in
// (query, level, point) order. Compiled for AVX2 too, as forward_items is.
template <typename scalar_t>
GDINO_CPU_CLONES void backward_owners(const BackwardArgs<scalar_t>& args, int64_t begin, int64_t end) {
  using acc_t = at::opmath_type<scalar_t>;
  const AttentionSizes& sizes = args.sizes;
  const int64_t head_dim = sizes.head_dim;
  const int64_t position_stride = sizes.num_heads * head_dim;
  const int64_t samples_per_item = sizes.num_levels * sizes.num_points;
  ChannelShares<acc_t> shares(head_dim);
  for (int64_t owner = begin; owner < end; ++owner) {
    const int64_t head = owner % sizes.num_heads;
    const int64_t b = owner / sizes.num_heads;
    const int64_t head_offset = b * sizes.num_values * position_stride + head * head_dim;
    for (int64_t query = 0; query < sizes.num_queries; ++query) {
      const int64_t item = (b * sizes.num_queries + query) * sizes.num_heads + head;
      const scalar_t* item_grad_output = args.grad_output + item * head_dim;
      for (int64_t level = 0; level < sizes.num_levels; ++level) {
        const int64_t height = args.spatial_shapes[2 * level];
        const int64_t width = args.spatial_shapes[2 * level + 1];
        const int64_t level_offset = head_offset + args.level_start_index[level] * position_stride;
        for (int64_t point = 0; point < sizes.num_points; ++point) {
          const int64_t sample_index = item * samples_per_item + level * sizes.num_points + point;
          const BilinearSample<acc_t> sample =
              bilinear_sample<acc_t>(args.sampling_locations[2 * sample_index],
                                     args.sampling_locations[2 * sample_index + 1], height, width);
          const acc_t attention = args.attention_weights[sample_index];
          SampleGradient<acc_t> gradient;
          if (corners_inside(sample)) {
            gradient = backward_inside_sample(sample, attention, item_grad_output, args.value + level_offset,
                                              args.grad_value + level_offset, position_stride, head_dim, shares);
          } else {
            for (int64_t channel = 0; channel < head_dim; ++channel) {
              backward_channel(sample, attention, static_cast<acc_t>(item_grad_output[channel]),
                               args.value + level_offset + channel, position_stride,
                               args.grad_value + level_offset + channel, PlainAdd{}, gradient);
            }
          }
          args.grad_weights[sample_index] = static_cast<scalar_t>(gradient.attention);
          args.grad_locations[2 * sample_index] = static_cast<scalar_t>(location_gradient(gradient.pixel_x, width));
          args.grad_locations[2 * sample_index + 1] =
              static_cast<scalar_t>(location_gradient(gradient.pixel_y, height));
        }
      }
    }
  }
}

}  // namespace

at::Tensor forward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes, const at::Tensor& level_start_index,
                       const at::Tensor& sampling_locations, const at::Tensor& attention_weights) {
  const AttentionSizes sizes =
      check_inputs(value, spatial_shapes, level_start_index, sampling_locations, attention_weights);
  TORCH_CHECK(value.device().is_cpu(), "forward_cpu needs CPU tensors, got ", value.device());
  at::Tensor output = at::empty({sizes.batch, sizes.num_queries, sizes.num_heads * sizes.head_dim}, value.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "gdino_ms_deform_attn_forward_cpu", [&] {
    const ForwardArgs<scalar_t> args{input_pointers<scalar_t>(sizes, value, spatial_shapes, level_start_index,
                                                              sampling_locations, attention_weights),
                                     output.mutable_data_ptr<scalar_t>()};
    parallel_chunks(sizes.batch * sizes.num_queries * sizes.num_heads, kForwardChunk,
                    [&](int64_t begin, int64_t end) { forward_items(args, begin, end); });
  });
  return output;
}

std::vector<at::Tensor> backward_cpu(const at::Tensor& value, const at::Tensor& spatial_shapes,
                                     const at::Tensor& level_start_index, const at::Tensor& sampling_locations,
                                     const at::Tensor& attention_weights, const at::Tensor& grad_output) {
  TORCH_CHECK(value.device().is_cpu(), "backward_cpu needs CPU tensors, got ", value.device());
  BackwardTensors gradients =
      prepare_backward(value, spatial_shapes, level_start_index, sampling_locations, attention_weights, grad_output);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, value.scalar_type(), "gdino_ms_deform_attn_backward_cpu", [&] {
    const BackwardArgs<scalar_t> args{input_pointers<scalar_t>(gradients.sizes, value, spatial_shapes,
                                                               level_start_index, sampling_locations, attention_weights),
                                      grad_output.const_data_ptr<scalar_t>(),
                                      gradients.grad_value.mutable_data_ptr<at::opmath_type<scalar_t>>(),
                                      gradients.grad_locations.mutable_data_ptr<scalar_t>(),
                                      gradients.grad_weights.mutable_data_ptr<scalar_t>()};
    parallel_chunks(gradients.sizes.batch * gradients.sizes.num_heads, 1,
                    [&](int64_t begin, int64_t end) { backward_owners(args, begin, end); });
  });
  return {gradients.grad_value.to(value.scalar_type()), gradients.grad_locations, gradients.grad_weights};
}

}  // namespace gdino
