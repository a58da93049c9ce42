// nb_mixture_log_likelihood: the per-thread work of its CUDA kernels, as a
// host/device functor: nb_mixture_log_likelihood.cu launches it on the GPU
// (per element, or as a row-sum term) and tests/test_cuda_host.py runs it
// on the CPU against the CPU kernel. What each thread does with it: packs.h.
#pragma once

#include "../common/args/nb_mixture_log_likelihood.h"
#include "device_math.cuh"
#include "packs.h"

namespace paf::cuda {

// Element (r, j) of the [rows, G] problem: the log-pmf and, with kGrad
// (kGradX), its derivatives stored to the dense accumulation-dtype buffers.
template <typename scalar_t, bool kGrad, bool kGradX>
struct NbMixtureTerm {
  using T = opmath_t<scalar_t>;
  RowMatrix<const scalar_t> x, mu_1, mu_2, theta_1, theta_2, pi_logits;  // theta_2: theta_1 when shared
  scalar_t* out;                                                         // [rows, G]; unused when summed
  T *d_x, *d_mu_1, *d_mu_2, *d_theta_1, *d_theta_2, *d_pi_logits;       // [rows, G], null when not computed
  int64_t cols;
  T eps;
  bool shared_theta;

  // The values of columns j .. j + N - 1, in packs of at most kMaxPack: a
  // pack of 8 half elements holds 12 arrays of 8 live (the six inputs and
  // the six derivatives) and spills registers; two packs of 4 do not.
  static constexpr int kMaxPack = 4;
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void values(int64_t r, int64_t j, T (&v)[N]) const {
    constexpr int M = N < kMaxPack ? N : kMaxPack;
#pragma unroll 1
    for (int c = 0; c < N; c += M) pack_values<M>(r, j + c, v + c);
  }
  template <int M>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void pack_values(int64_t r, int64_t j, T* v) const {
    T xv[M], m1[M], m2[M], t1[M], t2[M], pv[M], gx[M], gm1[M], gm2[M], gt1[M], gt2[M], gp[M];
    load_pack<M>(x.row(r) + j, xv);
    load_pack<M>(mu_1.row(r) + j, m1);
    load_pack<M>(mu_2.row(r) + j, m2);
    load_pack<M>(theta_1.row(r) + j, t1);
    load_pack<M>(theta_2.row(r) + j, t2);
    load_pack<M>(pi_logits.row(r) + j, pv);
    // Not unrolled: one copy of the two NB formulas per kernel (see
    // count_log_likelihood.cuh).
#pragma unroll 1
    for (int k = 0; k < M; ++k) {
      const NbMixtureTerms<T> t =
          nb_mixture<kGrad, kGradX>(xv[k], m1[k], m2[k], t1[k], t2[k], pv[k], eps, shared_theta);
      v[k] = t.value;
      gx[k] = t.grad.x, gm1[k] = t.grad.mu_1, gm2[k] = t.grad.mu_2;
      gt1[k] = t.grad.theta_1, gt2[k] = t.grad.theta_2, gp[k] = t.grad.pi_logits;
    }
    const int64_t at = r * cols + j;
    if constexpr (kGradX) store_pack<M>(d_x + at, gx);
    if constexpr (kGrad) {
      store_pack<M>(d_mu_1 + at, gm1);
      store_pack<M>(d_mu_2 + at, gm2);
      store_pack<M>(d_theta_1 + at, gt1);
      if (!shared_theta) store_pack<M>(d_theta_2 + at, gt2);
      store_pack<M>(d_pi_logits + at, gp);
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
    return rows_aligned<N>(x) && rows_aligned<N>(mu_1) && rows_aligned<N>(mu_2) && rows_aligned<N>(theta_1) &&
           rows_aligned<N>(theta_2) && rows_aligned<N>(pi_logits) &&
           dense_rows_aligned<N>(x.rows, cols, out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi_logits);
  }
};

// The functor of a checked problem.
template <typename scalar_t, bool kGrad, bool kGradX>
NbMixtureTerm<scalar_t, kGrad, kGradX> make_nb_mixture_term(const NbMixtureProblem& p, bool reduce_sum) {
  using T = opmath_t<scalar_t>;
  const auto grad_data = [](const at::Tensor& t) { return t.numel() > 0 ? t.data_ptr<T>() : nullptr; };
  return {const_row_matrix<scalar_t>(p.x),
          const_row_matrix<scalar_t>(p.mu_1),
          const_row_matrix<scalar_t>(p.mu_2),
          const_row_matrix<scalar_t>(p.theta_1),
          const_row_matrix<scalar_t>(p.theta_2),
          const_row_matrix<scalar_t>(p.pi_logits),
          reduce_sum ? nullptr : p.out.data_ptr<scalar_t>(),
          grad_data(p.d_x),
          grad_data(p.d_mu_1),
          grad_data(p.d_mu_2),
          grad_data(p.d_theta_1),
          grad_data(p.d_theta_2),
          grad_data(p.d_pi_logits),
          p.cols,
          static_cast<T>(p.eps),
          p.shared_theta};
}

}  // namespace paf::cuda
