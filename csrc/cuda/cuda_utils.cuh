// Mechanics shared by every CUDA kernel: launch configuration (grid-stride
// loops with 64-bit indices on the current stream) and deterministic row
// sums: a row is summed by one warp, one block, or, when longer than a
// block's chunk, by several blocks whose partial sums are combined in a
// fixed order. What each thread does (vector packs, its share of a row) is
// packs.h. No floating-point atomics anywhere, so every
// result is bitwise the same from run to run.
#pragma once

#include "../common/compensated_sum.h"
#include "../common/tensor_args.h"
#include "packs.h"

#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>

#include <algorithm>
#include <cstdint>

namespace paf::cuda {

// Launch bounds of every kernel: kThreads threads, and registers for at
// least 3 resident blocks per SM (85 a thread). With kThreads alone ptxas
// aims at 64 registers and spills in the double-precision KL row sums.
#define PAF_LAUNCH_BOUNDS __launch_bounds__(paf::cuda::kThreads, 3)
// Blocks of a grid-stride launch: enough to fill any current GPU (and
// within the 2^31 - 1 limit of gridDim.x); the loops cover the rest.
constexpr int64_t kMaxBlocks = 65536;

inline dim3 grid_for(int64_t work_items, int items_per_block = kThreads) {
  return dim3(static_cast<unsigned>(std::max<int64_t>(1, std::min(ceil_div(work_items, items_per_block), kMaxBlocks))));
}

inline cudaStream_t current_stream() { return at::cuda::getCurrentCUDAStream(); }

// i = blockIdx.x * blockDim.x + threadIdx.x, striding by the whole grid, in 64 bits.
#define PAF_GRID_STRIDE_LOOP(i, n)                                                         \
  for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
       i += static_cast<int64_t>(blockDim.x) * gridDim.x)

// ------------------------------------------------------------- row sums
// A Term is a functor with, on the device, `template <int N> void
// add(int64_t row, int64_t col, acc_t& acc) const`, which adds the terms of
// columns col .. col + N - 1 of the row (it may also write per-element
// outputs, each exactly once), and on the host `template <int N> bool
// aligned() const` (rows_aligned of everything it reads and writes). A
// Finish is `void operator()(int64_t row, double total) const`.

template <typename acc_t>
C10_DEVICE C10_ALWAYS_INLINE acc_t warp_sum(acc_t v) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) v += __shfl_down_sync(0xffffffffu, v, offset);
  return v;  // in lane 0
}

// The sum of v over the block's threads, in thread 0 (a fixed tree: warps,
// then the warps' sums).
template <typename acc_t>
C10_DEVICE C10_ALWAYS_INLINE acc_t block_sum(acc_t v) {
  __shared__ acc_t warp_sums[kThreads / kWarp];
  const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  v = warp_sum(v);
  if (lane == 0) warp_sums[warp] = v;
  __syncthreads();
  v = threadIdx.x < kThreads / kWarp ? warp_sums[threadIdx.x] : acc_t(0);
  if (warp == 0) v = warp_sum(v);
  __syncthreads();  // warp_sums is reused by the next call
  return v;
}

// Short rows: one warp per row, kThreads / kWarp rows per block.
template <int N, typename acc_t, typename Term, typename Finish>
__global__ void PAF_LAUNCH_BOUNDS warp_row_sums_kernel(int64_t rows, int64_t cols, Term term,
                                                       Finish finish) {
  const int lane = threadIdx.x % kWarp;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * (kThreads / kWarp) + threadIdx.x / kWarp;
  for (int64_t r = first; r < rows; r += static_cast<int64_t>(gridDim.x) * (kThreads / kWarp)) {
    acc_t v(0);
    add_row_slice<N>(term, r, 0, cols, lane, kWarp, v);
    v = warp_sum(v);
    if (lane == 0) finish(r, static_cast<double>(v));
  }
}

// Longer rows: one block per chunk of kChunkCols columns of a row. With one
// chunk per row the block finishes the row; otherwise it writes its
// partial sum, and combine_chunks_kernel adds a row's partials in order.

template <int N, int kAhead, typename acc_t, typename Term, typename Finish>
__global__ void PAF_LAUNCH_BOUNDS block_row_sums_kernel(int64_t rows, int64_t cols, int64_t chunks,
                                                        Term term, Finish finish, double* partials) {
  const int64_t work = rows * chunks;
  for (int64_t w = blockIdx.x; w < work; w += gridDim.x) {  // block-uniform: __syncthreads is safe
    const int64_t r = w / chunks, begin = (w % chunks) * kChunkCols;
    const int64_t end = std::min(cols, begin + kChunkCols);
    acc_t v(0);
    add_row_slice<N, acc_t, Term, kAhead>(term, r, begin, end, threadIdx.x, kThreads, v);
    v = block_sum(v);
    if (threadIdx.x == 0) {
      if (chunks == 1) {
        finish(r, static_cast<double>(v));
      } else {
        partials[w] = static_cast<double>(v);
      }
    }
  }
}

template <typename Finish>
__global__ void PAF_LAUNCH_BOUNDS combine_chunks_kernel(int64_t rows, int64_t chunks,
                                                        const double* partials, Finish finish) {
  PAF_GRID_STRIDE_LOOP(r, rows) {
    CompensatedSum total;
    for (int64_t c = 0; c < chunks; ++c) total.add(partials[r * chunks + c]);
    finish(r, total.value());
  }
}

// finish(r, sum_j term(r, j)) for every row r of a [rows, cols] problem of
// scalar_t inputs, on the current stream, in packs when the term is
// aligned. `device` is where the partial sums are kept. kVariants: long
// rows take the variant PAF_CUDA_ROW_SUM names (packs.h), for a GPU run to
// measure; otherwise, and for short rows, `packs`.
template <typename scalar_t, bool kVariants = false, typename Term, typename Finish>
void launch_row_sums(int64_t rows, int64_t cols, const Term& term, const Finish& finish, const at::Device& device) {
  using acc_t = opmath_t<scalar_t>;
  if (rows == 0) return;
  const cudaStream_t stream = current_stream();
  const bool aligned = term.template aligned<kVecWidth<scalar_t>>();
  if (summed_by_warps(cols)) {
    with_pack_width<scalar_t>(aligned, [&](auto width) {
      warp_row_sums_kernel<decltype(width)::value, acc_t>
          <<<grid_for(rows, kThreads / kWarp), kThreads, 0, stream>>>(rows, cols, term, finish);
    });
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    return;
  }
  const int64_t chunks = ceil_div(cols, kChunkCols);
  at::Tensor partials;
  if (chunks > 1) partials = at::empty({rows * chunks}, at::TensorOptions().dtype(at::kDouble).device(device));
  double* partial_data = chunks > 1 ? partials.data_ptr<double>() : nullptr;
  const RowSumVariant variant = kVariants ? row_sum_variant() : RowSumVariant::kPacks;
  const auto launch = [&](auto width, auto ahead) {
    block_row_sums_kernel<decltype(width)::value, decltype(ahead)::value, acc_t>
        <<<grid_for(rows * chunks, 1), kThreads, 0, stream>>>(rows, cols, chunks, term, finish, partial_data);
  };
  if constexpr (kVariants) {
    with_row_sum_variant<scalar_t>(term, variant, launch);
  } else {
    with_pack_width<scalar_t>(aligned, [&](auto width) { launch(width, std::integral_constant<int, 1>{}); });
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (chunks > 1) {
    combine_chunks_kernel<<<grid_for(rows), kThreads, 0, stream>>>(rows, chunks, partial_data, finish);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  }
}

// ------------------------------------------------- elementwise launches
// fn(i) for i in [0, n): a grid-stride loop (Fn: a device functor).
template <typename Fn>
__global__ void PAF_LAUNCH_BOUNDS for_each_index_kernel(int64_t n, Fn fn) {
  PAF_GRID_STRIDE_LOOP(i, n) { fn(i); }
}

template <typename Fn>
void launch_for_each_index(int64_t n, const Fn& fn) {
  if (n == 0) return;
  for_each_index_kernel<<<grid_for(n), kThreads, 0, current_stream()>>>(n, fn);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Every element (r, j) of a [rows, cols] problem: Fn has, on the device,
// `template <int N> void elements(int64_t row, int64_t col) const` for
// columns col .. col + N - 1 of the row, and on the host `template <int N>
// bool aligned() const`, as a row-sum Term.
template <int N, typename Fn>
__global__ void PAF_LAUNCH_BOUNDS for_each_element_kernel(int64_t rows, int64_t cols, Fn fn) {
  for_each_pack<N>(rows, cols, static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x,
                   static_cast<int64_t>(blockDim.x) * gridDim.x, fn);
}

// Blocks of kThreads threads that the GPU holds at once: one wave.
inline int64_t resident_blocks() {
  const cudaDeviceProp* device = at::cuda::getCurrentDeviceProperties();
  return static_cast<int64_t>(device->multiProcessorCount) * (device->maxThreadsPerMultiProcessor / kThreads);
}

// max_blocks: at most that many blocks (a grid-stride loop covers the
// rest); one wave (resident_blocks) for a functor whose threads may all
// return at once, which then costs one wave of block launches, not a
// block per 1024 elements (33 us over 100 MB on an H200).
template <typename scalar_t, typename Fn>
void launch_for_each_element(int64_t rows, int64_t cols, const Fn& fn, int64_t max_blocks = kMaxBlocks) {
  if (rows == 0 || cols == 0) return;
  with_pack_width<scalar_t>(fn.template aligned<kVecWidth<scalar_t>>(), [&](auto width) {
    const dim3 grid = grid_for(std::min(ceil_div(rows * cols, decltype(width)::value), max_blocks * kThreads));
    for_each_element_kernel<decltype(width)::value><<<grid, kThreads, 0, current_stream()>>>(rows, cols, fn);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

// Stores of a per-row total: out[r] = total, rounded to scalar_t.
template <typename scalar_t>
struct StoreTotal {
  scalar_t* out;
  C10_DEVICE void operator()(int64_t r, double total) const { out[r] = static_cast<scalar_t>(total); }
};

}  // namespace paf::cuda
