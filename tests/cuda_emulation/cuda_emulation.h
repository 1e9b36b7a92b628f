// Just enough of CUDA's C++ dialect to compile kernels written for nvcc as host code, and a launch
// that runs a whole grid on the calling CPU thread, block after block, thread after thread.
//
// Running the threads one after another is one of the schedules a GPU may choose, so it is valid for
// kernels without __syncthreads, shared memory or warp intrinsics; none of those is defined here, so
// a kernel that starts to use one stops compiling instead of running wrongly. atomicAdd exists for
// the types the deformable-attention kernels scatter into (float and double: the op-math types); a
// scatter into a 16-bit type would likewise fail to compile until it is added here on purpose.
#pragma once

// torch's headers come first: they must not see the qualifier macros below.
#include <ATen/ATen.h>

#include <cstdint>

#define __global__
#define __device__

namespace cuda_emulation {

// CUDA's uint3 and dim3 (the types of blockIdx and blockDim): unsigned int members, so index
// arithmetic in the kernels converts and overflows as it does on the GPU.
struct Index3 {
  unsigned int x = 0;
  unsigned int y = 0;
  unsigned int z = 0;
};

constexpr unsigned int kMaxThreadsPerBlock = 1024;  // CUDA's limit on every architecture since 2.0

}  // namespace cuda_emulation

// The built-in variables, one set for the whole process: launch() runs one thread at a time.
inline cuda_emulation::Index3 gridDim;
inline cuda_emulation::Index3 blockDim;
inline cuda_emulation::Index3 blockIdx;
inline cuda_emulation::Index3 threadIdx;

// atomicAdd returns the value before the addition, as CUDA's does.
inline float atomicAdd(float* address, float amount) {
  const float old = *address;
  *address = old + amount;
  return old;
}

inline double atomicAdd(double* address, double amount) {
  const double old = *address;
  *address = old + amount;
  return old;
}

namespace cuda_emulation {

// kernel<<<blocks, threads_per_block>>>(args...) on a one-dimensional grid, every thread in turn.
template <typename... Parameters, typename... Args>
void launch(int64_t blocks, int64_t threads_per_block, void (*kernel)(Parameters...), const Args&... args) {
  TORCH_CHECK(blocks >= 1 && blocks <= INT32_MAX, "a grid needs 1 to 2^31 - 1 blocks, got ", blocks);
  TORCH_CHECK(threads_per_block >= 1 && threads_per_block <= kMaxThreadsPerBlock, "a block needs 1 to ",
              kMaxThreadsPerBlock, " threads, got ", threads_per_block);
  gridDim = {static_cast<unsigned int>(blocks), 1, 1};
  blockDim = {static_cast<unsigned int>(threads_per_block), 1, 1};
  for (unsigned int block = 0; block < gridDim.x; ++block) {
    for (unsigned int thread = 0; thread < blockDim.x; ++thread) {
      blockIdx = {block, 0, 0};
      threadIdx = {thread, 0, 0};
      kernel(args...);
    }
  }
}

}  // namespace cuda_emulation
