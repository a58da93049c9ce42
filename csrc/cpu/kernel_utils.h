// Mechanics shared by every CPU kernel: work splitting, loads/stores that
// widen half types to their float "opmath" type, and accurate row sums.
// (Dtype dispatch, argument checks and row views, shared with the CUDA
// kernels, are in common/tensor_args.h.)
#pragma once

#include "../common/compensated_sum.h"
#include "../common/tensor_args.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>
#include <c10/util/irange.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <type_traits>

namespace paf {

// Rows handed to one task: enough elements to amortise a parallel region.
inline int64_t row_grain(int64_t cols) {
  constexpr int64_t kElementsPerTask = 32768;
  return std::max<int64_t>(1, kElementsPerTask / std::max<int64_t>(cols, 1));
}

// ------------------------------------------------- opmath vector loads
// Loads/stores between scalar_t memory and Vectorized<opmath_t> registers,
// so every kernel computes in float (or double) whatever the storage type.
template <typename scalar_t>
struct VecIO {
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = at::vec::Vectorized<opmath_t>;
  static constexpr int64_t kWidth = Vec::size();
  static constexpr bool kReduced =
      at::vec::is_reduced_floating_point_v<scalar_t>;

  static C10_ALWAYS_INLINE Vec load(const scalar_t* p) {
    if constexpr (kReduced) {
      Vec v;
      at::vec::load_to_float<scalar_t>(p, v);
      return v;
    } else {
      return Vec::loadu(p);
    }
  }

  static C10_ALWAYS_INLINE void store(scalar_t* p, const Vec& v) {
    if constexpr (kReduced) {
      at::vec::convert_from_float<scalar_t>(v, v).store(p, kWidth);
    } else {
      v.store(p);
    }
  }

  // The sum of the lanes as a tree (lane i + lane i + w, w halving):
  // log2(kWidth) dependent adds in registers, pairwise accurate. (Through
  // memory, the narrow reloads of a wide store stall store forwarding.)
  static C10_ALWAYS_INLINE opmath_t sum(const Vec& v) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<opmath_t, float>) {
      return _mm512_reduce_add_ps(v);
    } else {
      return _mm512_reduce_add_pd(v);
    }
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<opmath_t, float>) {
      __m128 s = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
      s = _mm_add_ps(s, _mm_movehl_ps(s, s));
      return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
    } else {
      const __m128d s = _mm_add_pd(_mm256_extractf128_pd(v, 1), _mm256_castpd256_pd128(v));
      return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
    }
#else
    opmath_t lanes[kWidth];
    v.store(lanes);
    for (int64_t w = kWidth / 2; w >= 1; w /= 2) {
      for (int64_t i = 0; i < w; ++i) lanes[i] += lanes[i + w];
    }
    return lanes[0];
#endif
  }
};

// Loads or stores either a Vec at j or one scalar at j.
template <typename scalar_t, typename T>
C10_ALWAYS_INLINE void store_at(scalar_t* p, int64_t j, const T& v) {
  if constexpr (std::is_arithmetic_v<T>) {
    p[j] = static_cast<scalar_t>(v);
  } else {
    VecIO<scalar_t>::store(p + j, v);
  }
}
template <typename scalar_t, typename T>
C10_ALWAYS_INLINE T load_at(const scalar_t* p, int64_t j) {
  if constexpr (std::is_arithmetic_v<T>) {
    return static_cast<T>(p[j]);
  } else {
    return VecIO<scalar_t>::load(p + j);
  }
}

// Walks the columns [0, n) of a row: vec_body(j) for each full vector of
// W columns, then scalar_body(j) for the remaining tail columns.
template <int64_t W, typename VecBody, typename ScalarBody>
C10_ALWAYS_INLINE void for_each_column(int64_t n, VecBody&& vec_body,
                                       ScalarBody&& scalar_body) {
  int64_t j = 0;
  for (; j + W <= n; j += W) vec_body(j);
  for (; j < n; ++j) scalar_body(j);
}

// --------------------------------------------------------- long row sums
// Columns per block of a row sum: each of the 4 * W lanes adds at most
// kSumBlock / (4 * W) terms before its block is folded into the
// compensated sum, so float32 rows of any length sum as accurately as
// torch.sum's (the per-lane accumulators alone stop growing past 2^24 terms).
constexpr int64_t kSumBlock = 2048;

// sum_j term(j) over the columns [0, n) of a row, in double: vec_term(j)
// gives the Vec of terms of columns [j, j + W), scalar_term(j) one tail
// term. Each is called once per column, in increasing j, so they may also
// write per-column outputs (the fused gradients).
template <typename IO, typename VecTerm, typename ScalarTerm>
C10_ALWAYS_INLINE double row_sum(int64_t n, VecTerm&& vec_term, ScalarTerm&& scalar_term) {
  using Vec = typename IO::Vec;
  constexpr int64_t W = IO::kWidth;
  constexpr int kAcc = 4;  // independent accumulators hide the add latency
  static_assert(kSumBlock % (kAcc * W) == 0, "blocks hold whole accumulator rounds");
  CompensatedSum total;
  int64_t j = 0;
  while (j + W <= n) {
    const int64_t block_end = std::min(n, j + kSumBlock);
    Vec acc[kAcc] = {Vec(0), Vec(0), Vec(0), Vec(0)};
    for (; j + kAcc * W <= block_end; j += kAcc * W) {
      for (int a = 0; a < kAcc; ++a) acc[a] = acc[a] + vec_term(j + a * W);
    }
    for (; j + W <= block_end; j += W) acc[0] = acc[0] + vec_term(j);
    total.add(static_cast<double>(IO::sum((acc[0] + acc[1]) + (acc[2] + acc[3]))));
  }
  for (; j < n; ++j) total.add(static_cast<double>(scalar_term(j)));  // padded lanes would not sum to 0
  return total.value();
}

// ------------------------------------------------- rows of element values
// The rows of an elementwise [rows, cols] op with one value per element:
// stored to out [rows, cols], or summed per row to out [rows] (kSum).
// element(tag, r, j) gives the value of element (r, j) (tag: an opmath_t)
// or of the W elements from j (tag: a Vec) and stores any per-element
// outputs of its own; it is called once per element, in increasing j.
template <typename scalar_t, bool kSum, typename Element>
void for_each_row_value(int64_t rows, int64_t cols, scalar_t* out, Element&& element) {
  using IO = VecIO<scalar_t>;
  using opmath_t = typename IO::opmath_t;
  using Vec = typename IO::Vec;
  at::parallel_for(0, rows, row_grain(cols), [&](int64_t begin, int64_t end) {
    for (int64_t r = begin; r < end; ++r) {
      auto vec_value = [&](int64_t j) C10_ALWAYS_INLINE_ATTRIBUTE { return element(Vec(0), r, j); };
      auto scalar_value = [&](int64_t j) { return element(opmath_t(0), r, j); };
      if constexpr (kSum) {
        out[r] = static_cast<scalar_t>(row_sum<IO>(cols, vec_value, scalar_value));
      } else {
        scalar_t* out_row = out + r * cols;
        for_each_column<IO::kWidth>(
            cols, [&](int64_t j) C10_ALWAYS_INLINE_ATTRIBUTE { store_at(out_row, j, vec_value(j)); },
            [&](int64_t j) { store_at(out_row, j, scalar_value(j)); });
      }
    }
  });
}

}  // namespace paf
