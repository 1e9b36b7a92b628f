// Per-sample math of multi-scale deformable attention, shared by the CPU and the CUDA kernels.
//
// Everything here is inline and host+device, so the CPU kernels (tested on every machine) run the
// arithmetic the GPU runs, in the same order. Conventions match perception/ops/reference.py
// (grid_sample, align_corners=False, padding_mode="zeros"): a location (x, y) in [0, 1] maps to
// pixel coordinates (x * width - 0.5, y * height - 0.5), and corners outside the map read zero.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define GDINO_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define GDINO_HOST_DEVICE inline
#endif

namespace gdino {

GDINO_HOST_DEVICE float floor_of(float v) { return floorf(v); }
GDINO_HOST_DEVICE double floor_of(double v) { return floor(v); }

// The four bilinear corners of one sampling location on one level, in the order
// (row, col), (row, col + 1), (row + 1, col), (row + 1, col + 1) where (row, col) is the corner
// above-left of the location. A corner outside the map has offset -1 and weight 0: it is never read.
template <typename acc_t>
struct BilinearSample {
  int64_t offset[4];  // row * width + col inside the level, or -1 outside the map
  acc_t weight[4];    // (1 - fy)(1 - fx), (1 - fy) fx, fy (1 - fx), fy fx
  acc_t frac_y;       // fy: position of the location between the two rows, in [0, 1)
  acc_t frac_x;       // fx: same between the two columns
};

// Locates (loc_x, loc_y), normalized to the level, on a height x width map. A location with
// y < -1, y >= height, x < -1 or x >= width (or NaN) has four outside corners; that test runs in
// floating point before any integer conversion, so far-away locations cannot overflow.
template <typename acc_t>
GDINO_HOST_DEVICE BilinearSample<acc_t> bilinear_sample(acc_t loc_x, acc_t loc_y, int64_t height, int64_t width) {
  const acc_t y = loc_y * static_cast<acc_t>(height) - acc_t(0.5);
  const acc_t x = loc_x * static_cast<acc_t>(width) - acc_t(0.5);
  BilinearSample<acc_t> sample;
  if (!(y >= acc_t(-1) && y < static_cast<acc_t>(height) && x >= acc_t(-1) && x < static_cast<acc_t>(width))) {
    for (int corner = 0; corner < 4; ++corner) {
      sample.offset[corner] = -1;
      sample.weight[corner] = 0;
    }
    sample.frac_y = 0;
    sample.frac_x = 0;
    return sample;
  }
  const acc_t row_floor = floor_of(y);
  const acc_t col_floor = floor_of(x);
  const int64_t row = static_cast<int64_t>(row_floor);  // in [-1, height - 1]
  const int64_t col = static_cast<int64_t>(col_floor);  // in [-1, width - 1]
  sample.frac_y = y - row_floor;
  sample.frac_x = x - col_floor;
  const bool row_inside[2] = {row >= 0, row + 1 < height};
  const bool col_inside[2] = {col >= 0, col + 1 < width};
  const acc_t weight_y[2] = {acc_t(1) - sample.frac_y, sample.frac_y};
  const acc_t weight_x[2] = {acc_t(1) - sample.frac_x, sample.frac_x};
  for (int corner = 0; corner < 4; ++corner) {
    const int dy = corner / 2;
    const int dx = corner % 2;
    const bool inside = row_inside[dy] && col_inside[dx];
    sample.offset[corner] = inside ? (row + dy) * width + col + dx : int64_t(-1);
    sample.weight[corner] = inside ? weight_y[dy] * weight_x[dx] : acc_t(0);
  }
  return sample;
}

// Forward coefficient of one corner: how much of the value at that corner enters the output.
template <typename acc_t>
GDINO_HOST_DEVICE acc_t corner_coefficient(const BilinearSample<acc_t>& sample, int corner, acc_t attention) {
  return attention * sample.weight[corner];
}

// Forward for one channel: adds the attention-weighted bilinear sample to `accumulator`, corner by
// corner. `value` points at channel c of position 0 of the level for this head; `position_stride`
// is the distance between consecutive positions (num_heads * head_dim). The CPU kernel runs the same
// corner_coefficient products over contiguous channels instead of one channel at a time.
template <typename scalar_t, typename acc_t>
GDINO_HOST_DEVICE acc_t accumulate_channel(acc_t accumulator, const BilinearSample<acc_t>& sample, acc_t attention,
                                           const scalar_t* value, int64_t position_stride) {
  for (int corner = 0; corner < 4; ++corner) {
    if (sample.offset[corner] >= 0) {
      accumulator += corner_coefficient(sample, corner, attention) *
                     static_cast<acc_t>(value[sample.offset[corner] * position_stride]);
    }
  }
  return accumulator;
}

// Gradient of one sample with respect to its attention weight and to its location in pixel units,
// summed over channels by backward_channel.
template <typename acc_t>
struct SampleGradient {
  acc_t attention = 0;
  acc_t pixel_x = 0;
  acc_t pixel_y = 0;
};

// One channel's share of a sample's gradient with respect to its attention weight and its location,
// from the four corner values (zero for an outside corner): backward_channel adds it to the sample's
// SampleGradient channel by channel, and the CPU kernel's fast path computes it over contiguous channels
// and then adds it in the same channel order, so both sums round alike.
template <typename acc_t>
GDINO_HOST_DEVICE SampleGradient<acc_t> channel_gradient(const BilinearSample<acc_t>& sample, acc_t grad_output,
                                                         acc_t grad_sample, const acc_t (&corner_value)[4]) {
  acc_t sampled = 0;  // written out corner by corner: a loop here keeps GCC from vectorizing the CPU fast path
  sampled += sample.weight[0] * corner_value[0];
  sampled += sample.weight[1] * corner_value[1];
  sampled += sample.weight[2] * corner_value[2];
  sampled += sample.weight[3] * corner_value[3];
  SampleGradient<acc_t> share;
  share.attention = grad_output * sampled;
  // d sample / d x and d sample / d y of the bilinear interpolation; outside corners count as zero.
  share.pixel_x = grad_sample * ((acc_t(1) - sample.frac_y) * (corner_value[1] - corner_value[0]) +
                                 sample.frac_y * (corner_value[3] - corner_value[2]));
  share.pixel_y = grad_sample * ((acc_t(1) - sample.frac_x) * (corner_value[2] - corner_value[0]) +
                                 sample.frac_x * (corner_value[3] - corner_value[1]));
  return share;
}

// Backward for one channel of one sample. `grad_output` is d loss / d output for this channel;
// the value gradient of each inside corner goes through `scatter_add(address, amount)` (a plain add
// on the CPU, where one thread owns each (batch, head); atomicAdd on the GPU). `grad_value` points at
// the same element as `value`, in a buffer of type acc_t.
template <typename scalar_t, typename acc_t, typename ScatterAdd>
GDINO_HOST_DEVICE void backward_channel(const BilinearSample<acc_t>& sample, acc_t attention, acc_t grad_output,
                                        const scalar_t* value, int64_t position_stride, acc_t* grad_value,
                                        ScatterAdd scatter_add, SampleGradient<acc_t>& gradient) {
  acc_t corner_value[4];
  const acc_t grad_sample = grad_output * attention;
  for (int corner = 0; corner < 4; ++corner) {
    const int64_t offset = sample.offset[corner] * position_stride;
    corner_value[corner] = sample.offset[corner] >= 0 ? static_cast<acc_t>(value[offset]) : acc_t(0);
    if (sample.offset[corner] >= 0) {
      scatter_add(grad_value + offset, grad_sample * sample.weight[corner]);
    }
  }
  const SampleGradient<acc_t> share = channel_gradient(sample, grad_output, grad_sample, corner_value);
  gradient.attention += share.attention;
  gradient.pixel_x += share.pixel_x;
  gradient.pixel_y += share.pixel_y;
}

// Pixel coordinates are x * width - 0.5 and y * height - 0.5: the chain rule to normalized locations.
template <typename acc_t>
GDINO_HOST_DEVICE acc_t location_gradient(acc_t pixel_gradient, int64_t extent) {
  return pixel_gradient * static_cast<acc_t>(extent);
}

}  // namespace gdino
