// Column walker shared by the kernels that evaluate the diagonal-Gaussian
// KL on [rows, D] inputs (kl_diag_gaussian, elbo): loads the four inputs of
// a row as Vectorized<opmath> (body) or opmath scalars (tail), clamps the
// log-variances, and hands them to a generic callback.
#pragma once

#include "elementwise_math.h"
#include "kernel_utils.h"
#include "../common/args/kl_diag_gaussian.h"

#include <algorithm>
#include <limits>
#include <type_traits>

namespace paf {

// Row r's four input pointers; mu_p/lv_p are null for the standard prior.
template <typename scalar_t>
struct KlRowPtrs {
  const scalar_t *mu_q, *lv_q, *mu_p, *lv_p;
};

// Calls fn(mu_q, lv_q, mu_p, lv_p) with the four (clamped) inputs of
// column j loaded as T: Vectorized opmath (columns [j, j + W)) or opmath.
template <bool kStandard, typename T, typename scalar_t, typename Fn>
C10_ALWAYS_INLINE auto with_kl_inputs(const KlRowPtrs<scalar_t>& in, int64_t j, double lo, double hi, Fn&& fn) {
  using IO = VecIO<scalar_t>;
  using opmath_t = typename IO::opmath_t;
  if constexpr (std::is_arithmetic_v<T>) {
    const opmath_t slo = static_cast<opmath_t>(lo), shi = static_cast<opmath_t>(hi);
    auto clamp = [&](opmath_t v) { return std::min(std::max(v, slo), shi); };
    return fn(static_cast<opmath_t>(in.mu_q[j]), clamp(static_cast<opmath_t>(in.lv_q[j])),
              kStandard ? opmath_t(0) : static_cast<opmath_t>(in.mu_p[j]),
              kStandard ? opmath_t(0) : clamp(static_cast<opmath_t>(in.lv_p[j])));
  } else {
    const T vlo(static_cast<opmath_t>(lo)), vhi(static_cast<opmath_t>(hi)), zero(0);
    return fn(IO::load(in.mu_q + j), at::vec::clamp(IO::load(in.lv_q + j), vlo, vhi),
              kStandard ? zero : IO::load(in.mu_p + j),
              kStandard ? zero : at::vec::clamp(IO::load(in.lv_p + j), vlo, vhi));
  }
}

// Visits every column of a row with its four (clamped) inputs:
// fn(j, mu_q, lv_q, mu_p, lv_p), vectorised then a scalar tail.
template <bool kStandard, typename scalar_t, typename Fn>
C10_ALWAYS_INLINE void for_each_kl_column(const KlRowPtrs<scalar_t>& in, int64_t n,
                                          double lo, double hi, Fn&& fn) {
  using IO = VecIO<scalar_t>;
  for_each_column<IO::kWidth>(
      n,
      [&](int64_t j) {
        with_kl_inputs<kStandard, typename IO::Vec>(in, j, lo, hi, [&](auto... v) { fn(j, v...); });
      },
      [&](int64_t j) {
        with_kl_inputs<kStandard, typename IO::opmath_t>(in, j, lo, hi, [&](auto... v) { fn(j, v...); });
      });
}

// sum_j term(j, mu_q, lv_q, mu_p, lv_p) over one row (accurate at any
// length: row_sum); term returns the column's KL and may write outputs.
template <bool kStandard, typename scalar_t, typename Term>
C10_ALWAYS_INLINE double kl_row_reduce(const KlRowPtrs<scalar_t>& in, int64_t n, double lo, double hi,
                                       Term&& term) {
  using IO = VecIO<scalar_t>;
  return row_sum<IO>(
      n,
      [&](int64_t j) {
        return with_kl_inputs<kStandard, typename IO::Vec>(in, j, lo, hi,
                                                           [&](auto... v) { return term(j, v...); });
      },
      [&](int64_t j) {
        return with_kl_inputs<kStandard, typename IO::opmath_t>(in, j, lo, hi,
                                                                [&](auto... v) { return term(j, v...); });
      });
}

// sum_j KL(q_j || p_j) over one row.
template <bool kStandard, typename scalar_t>
double kl_row_sum(const KlRowPtrs<scalar_t>& in, int64_t n, double lo, double hi) {
  return kl_row_reduce<kStandard>(in, n, lo, hi, [](int64_t, auto mq, auto lq, auto mp, auto lp) {
    return kl_value<kStandard>(mq, lq, mp, lp);
  });
}

}  // namespace paf
