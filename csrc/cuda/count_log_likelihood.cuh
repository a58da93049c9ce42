// count_log_likelihood: the per-thread work of its CUDA kernels, as a
// host/device functor: count_log_likelihood.cu launches it on the GPU (per
// element, or as a row-sum term) and tests/test_cuda_host.py runs it on the
// CPU against the reference. What each thread does with it: packs.h.
#pragma once

#include "../common/args/count_log_likelihood.h"
#include "device_math.cuh"
#include "packs.h"

namespace paf::cuda {

// Element (r, j) of the [rows, G] problem: the log-pmf and, with kGrad
// (kGradX), its derivatives stored to the dense accumulation-dtype buffers.
template <typename scalar_t, CountLikelihood L, bool kGrad, bool kGradX>
struct CountTerm {
  using T = opmath_t<scalar_t>;
  RowMatrix<const scalar_t> x, mu, theta, zi_logits;  // theta, zi_logits: mu where the likelihood has none
  scalar_t* out;                                     // [rows, G] per element; unused when summed
  T *d_x, *d_mu, *d_theta, *d_zi_logits;            // [rows, G], null when not computed
  int64_t cols;
  T eps;

  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void values(int64_t r, int64_t j, T (&v)[N]) const {
    T xv[N], mv[N], tv[N], zv[N], gx[N], gm[N], gt[N], gz[N];
    load_pack<N>(x.row(r) + j, xv);
    load_pack<N>(mu.row(r) + j, mv);
    if constexpr (has_theta(L)) load_pack<N>(theta.row(r) + j, tv);
    if constexpr (has_zi_logits(L)) load_pack<N>(zi_logits.row(r) + j, zv);
    // Not unrolled: one copy of the long formula per kernel keeps the build
    // short; the packs still make the loads and stores wide.
#pragma unroll 1
    for (int k = 0; k < N; ++k) {
      const CountTerms<T> t = CountLogLikelihood<L>::template terms<kGrad, kGradX>(
          xv[k], mv[k], has_theta(L) ? tv[k] : T(1), has_zi_logits(L) ? zv[k] : T(0), eps);
      v[k] = t.value;
      gx[k] = t.grad.x, gm[k] = t.grad.mu, gt[k] = t.grad.theta, gz[k] = t.grad.zi_logits;
    }
    const int64_t at = r * cols + j;
    if constexpr (kGradX) store_pack<N>(d_x + at, gx);
    if constexpr (kGrad) {
      store_pack<N>(d_mu + at, gm);
      if constexpr (has_theta(L)) store_pack<N>(d_theta + at, gt);
      if constexpr (has_zi_logits(L)) store_pack<N>(d_zi_logits + at, gz);
    }
  }
  // As a row-sum term (summed over the genes).
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void add(int64_t r, int64_t j, T& acc) const {
    add_values<N>(*this, r, j, acc);
  }
  // Per element.
  template <int N>
  C10_HOST_DEVICE void elements(int64_t r, int64_t j) const {
    store_values<N>(*this, r, j, out, cols);
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(x) && rows_aligned<N>(mu) && rows_aligned<N>(theta) && rows_aligned<N>(zi_logits) &&
           dense_rows_aligned<N>(x.rows, cols, out, d_x, d_mu, d_theta, d_zi_logits);
  }
};

// The functor of a checked problem (the rows of mu stand in for a missing
// theta or zi_logits; they are never read then).
template <typename scalar_t, CountLikelihood L, bool kGrad, bool kGradX>
CountTerm<scalar_t, L, kGrad, kGradX> make_count_term(const CountProblem& p, bool reduce_sum) {
  using T = opmath_t<scalar_t>;
  const auto grad_data = [](const at::Tensor& t) { return t.numel() > 0 ? t.data_ptr<T>() : nullptr; };
  const auto mu = const_row_matrix<scalar_t>(p.mu);
  return {const_row_matrix<scalar_t>(p.x),
          mu,
          p.theta.defined() ? const_row_matrix<scalar_t>(p.theta) : mu,
          p.zi_logits.defined() ? const_row_matrix<scalar_t>(p.zi_logits) : mu,
          reduce_sum ? nullptr : p.out.data_ptr<scalar_t>(),
          grad_data(p.d_x),
          grad_data(p.d_mu),
          grad_data(p.d_theta),
          grad_data(p.d_zi_logits),
          p.cols,
          static_cast<T>(p.eps)};
}

}  // namespace paf::cuda
