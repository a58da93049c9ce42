// How a CUDA kernel's threads split a [rows, cols] problem into packs: N
// consecutive columns read (and written) as one aligned vector, then the
// cols % N columns left at each row's end one by one. Rows start aligned
// (the launcher checks), so a pack never straddles two rows and every pack
// starts on an N-element boundary. Host/device on purpose: no GPU runs the
// test suite here, so tests/test_cuda_packs.py compiles this header for the
// host and checks that every element falls to exactly one thread, once.
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

namespace paf::cuda {

// fn.elements<N>(r, j) for the packs, and fn.elements<1>(r, j) for the
// tail columns, that fall to thread `first` of a grid of `step` threads.
template <int N, typename Fn>
C10_HOST_DEVICE C10_ALWAYS_INLINE void for_each_pack(int64_t rows, int64_t cols, int64_t first, int64_t step,
                                                     const Fn& fn) {
  const int64_t packs = cols / N, tail = cols - packs * N;
  for (int64_t p = first; p < rows * packs; p += step) fn.template elements<N>(p / packs, (p % packs) * N);
  if constexpr (N > 1) {
    for (int64_t t = first; t < rows * tail; t += step) fn.template elements<1>(t / tail, packs * N + t % tail);
  }
}

// acc += the terms of row r in columns [begin, end) (begin a multiple of N)
// that fall to thread `first` of `step` threads summing the row: packs of
// N, spread round-robin, then the tail columns.
template <int N, typename acc_t, typename Term>
C10_HOST_DEVICE C10_ALWAYS_INLINE void add_row_slice(const Term& term, int64_t r, int64_t begin, int64_t end,
                                                     int64_t first, int64_t step, acc_t& acc) {
  const int64_t body_end = begin + (end - begin) / N * N;
  // A thread's body is at most 16 terms (cuda_utils.cuh), 4 packs of float
  // or 2 of half: unrolled in full. Double packs are added one at a time:
  // unrolled, the double likelihood and KL terms spill registers.
#pragma unroll(sizeof(acc_t) == 8 ? 1 : 4)
  for (int64_t j = begin + first * N; j < body_end; j += step * N) term.template add<N>(r, j, acc);
  if constexpr (N > 1) {
    for (int64_t j = body_end + first; j < end; j += step) term.template add<1>(r, j, acc);
  }
}

}  // namespace paf::cuda
