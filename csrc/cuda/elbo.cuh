// elbo: the per-thread work of its CUDA kernels (the row terms writing the
// gradients, and the backward's rescales), as functors that are host/device:
// elbo.cu launches them on the GPU and tests/test_cuda_host.py runs them on
// the CPU against the reference. What each thread does with them: packs.h.
#pragma once

#include "../common/elbo_stats.h"
#include "../common/args/elbo.h"
#include "device_math.cuh"
#include "log_likelihood_sum.cuh"
#include "packs.h"

namespace paf::cuda {

// Terms of row b of the latents: KL(q_b || N(0, I)) in dimension j, with
// d objective / d (mu, log_var) = scale * d KL when g_mu.data is not null.
template <typename scalar_t>
struct ElboKlTerm {
  using T = opmath_t<scalar_t>;
  RowMatrix<const scalar_t> mu, log_var;
  RowMatrix<scalar_t> g_mu, g_lv;
  T scale;
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void add(int64_t b, int64_t j, T& acc) const {
    T m[N], l[N];
    load_pack<N>(mu.row(b) + j, m);
    load_pack<N>(log_var.row(b) + j, l);
    if (g_mu.data == nullptr) {
#pragma unroll
      for (int k = 0; k < N; ++k) acc += kl_standard(m[k], l[k]);
      return;
    }
    // m and l become the gradients, in place
#pragma unroll
    for (int k = 0; k < N; ++k) {
      T d_mu, d_lv;
      acc += kl_standard_and_grad(m[k], l[k], d_mu, d_lv);
      m[k] = scale * d_mu;
      l[k] = scale * d_lv;
    }
    store_pack<N>(g_mu.row(b) + j, m);
    store_pack<N>(g_lv.row(b) + j, l);
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(mu) && rows_aligned<N>(log_var) && rows_aligned<N>(g_mu) && rows_aligned<N>(g_lv);
  }
};

// The forward's two row terms for problem p, writing d objective / d x_hat
// (and x_log_var; scaled by -1 / (B S)) and d objective / d (mu, log_var)
// (by beta / B) when the problem carries gradient buffers.
template <typename scalar_t, Likelihood L>
LogLikelihoodTerm<scalar_t, L> elbo_log_likelihood_term(const ElboProblem& p) {
  using T = opmath_t<scalar_t>;
  const int64_t rows = p.B * p.S;
  return {likelihood_rows<scalar_t, L>(p.x, p.x_hat, p.x_log_var, p.S), gradient_rows<scalar_t>(p.dobj_dx_hat, rows, p.F),
          gradient_rows<T>(p.dobj_dx_log_var, rows, p.F), rows > 0 ? T(-1) / static_cast<T>(rows) : T(0)};
}

template <typename scalar_t>
ElboKlTerm<scalar_t> elbo_kl_term(const ElboProblem& p, double beta) {
  return {const_row_matrix<scalar_t>(p.mu), const_row_matrix<scalar_t>(p.log_var),
          gradient_rows<scalar_t>(p.dobj_dmu, p.B, p.D), gradient_rows<scalar_t>(p.dobj_dlv, p.B, p.D),
          static_cast<opmath_t<scalar_t>>(beta / static_cast<double>(p.B))};
}

// out = in * coefficient, elementwise. In place (in and out the same
// buffer, skip_when_one), a coefficient of exactly 1 (objective.backward())
// leaves the buffer as it is: the thread returns before touching it.
template <typename scalar_t>
struct ScaleBy {
  RowMatrix<const scalar_t> in;
  GradStatsCoefficient<scalar_t> coefficient;
  RowMatrix<scalar_t> out;
  bool skip_when_one;
  template <int N>
  C10_HOST_DEVICE void elements(int64_t r, int64_t j) const {
    using T = opmath_t<scalar_t>;
    const double c = coefficient.value();
    if (skip_when_one && c == 1.0) return;
    T v[N];
    load_pack<N>(in.row(r) + j, v);
#pragma unroll
    for (int k = 0; k < N; ++k) v[k] *= static_cast<T>(c);
    store_pack<N>(out.row(r) + j, v);
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(in) && rows_aligned<N>(out);
  }
};

// coefficient * (mu, 0.5 (exp(log_var) - 1)) for every element of [B, D].
template <typename scalar_t>
struct LatentGrad {
  RowMatrix<const scalar_t> mu, log_var;
  GradStatsCoefficient<scalar_t> coefficient;
  RowMatrix<scalar_t> g_mu, g_lv;
  template <int N>
  C10_HOST_DEVICE void elements(int64_t b, int64_t j) const {
    using T = opmath_t<scalar_t>;
    T m[N], l[N];
    load_pack<N>(mu.row(b) + j, m);
    load_pack<N>(log_var.row(b) + j, l);
    const T c = static_cast<T>(coefficient.value());
    // m and l become the gradients, in place
#pragma unroll
    for (int k = 0; k < N; ++k) {
      T d_mu, d_lv;
      kl_standard_and_grad(m[k], l[k], d_mu, d_lv);
      m[k] = c * d_mu;
      l[k] = c * d_lv;
    }
    store_pack<N>(g_mu.row(b) + j, m);
    store_pack<N>(g_lv.row(b) + j, l);
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(mu) && rows_aligned<N>(log_var) && rows_aligned<N>(g_mu) && rows_aligned<N>(g_lv);
  }
};

}  // namespace paf::cuda
