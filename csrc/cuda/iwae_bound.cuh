// iwae_bound: the per-thread work of its CUDA kernels (the latent row terms,
// the per-row log-mean-exp, the latent gradients), as functors that are
// host/device: iwae_bound.cu launches them on the GPU and
// tests/test_cuda_host.py runs them on the CPU against the reference. The
// likelihood rows are log_likelihood_sum's LogLikelihoodTerm. What each
// thread does with them: packs.h.
#pragma once

#include "../common/log_mean_exp.h"
#include "../common/args/iwae_bound.h"
#include "device_math.cuh"
#include "log_likelihood_sum.cuh"
#include "packs.h"

namespace paf::cuda {

// Terms of row r = (b, s) of z [B*S, D]: log p(z) - log q(z | x) in
// dimension j, with mu and log_var read from row b = r / S.
template <typename scalar_t>
struct IwaeLatentTerm {
  using T = opmath_t<scalar_t>;
  RowMatrix<const scalar_t> z, mu, log_var;
  int64_t samples;
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void add(int64_t r, int64_t j, T& acc) const {
    T zv[N], m[N], l[N];
    load_pack<N>(z.row(r) + j, zv);
    load_pack<N>(mu.row(r / samples) + j, m);
    load_pack<N>(log_var.row(r / samples) + j, l);
#pragma unroll
    for (int k = 0; k < N; ++k) acc += latent_log_ratio(zv[k], m[k], l[k]);
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(z) && rows_aligned<N>(mu) && rows_aligned<N>(log_var);
  }
};

// Row b: the log-weights lw[b, s] = ll[b * S + s] + latent[b * S + s]
// (the two row sums, in double) -> bound[b] and weights[b, :].
template <typename scalar_t>
struct IwaeCombine {
  const double* log_weights;  // [2, B * S]: the likelihood rows, then the latent rows
  int64_t batch, samples;
  scalar_t* bound;
  opmath_t<scalar_t>* weights;
  double* scratch;  // [B * S]: the log-weights, summed
  C10_HOST_DEVICE void operator()(int64_t b) const {
    double* lw = scratch + b * samples;
    for (int64_t s = 0; s < samples; ++s) {
      const int64_t r = b * samples + s;
      lw[s] = log_weights[r] + log_weights[batch * samples + r];
    }
    bound[b] = static_cast<scalar_t>(log_mean_exp_row(lw, 1, samples, weights + b * samples));
  }
};

// Element (b, j) of the latent gradients: with w = grad[b] * weights[b, s],
// d_z[b, s, j] = w * d ratio / d z for every s, and d_mu[b, j], d_lv[b, j]
// the sums over s of w * d ratio / d (mu, log_var).
template <typename scalar_t>
struct IwaeLatentGrad {
  using T = opmath_t<scalar_t>;
  RowMatrix<const scalar_t> z, mu, log_var;
  const scalar_t* grad;
  const T* weights;
  int64_t samples;
  RowMatrix<scalar_t> d_z, d_mu, d_lv;
  template <int N>
  C10_HOST_DEVICE void elements(int64_t b, int64_t j) const {
    T m[N], l[N], acc_mu[N] = {}, acc_lv[N] = {};
    load_pack<N>(mu.row(b) + j, m);
    load_pack<N>(log_var.row(b) + j, l);
    const T g = load(grad, b);
    for (int64_t s = 0; s < samples; ++s) {
      const int64_t r = b * samples + s;
      const T w = g * weights[r];
      T zv[N];
      load_pack<N>(z.row(r) + j, zv);
#pragma unroll
      for (int k = 0; k < N; ++k) {
        T dz, dm, dl;
        latent_log_ratio_grads(zv[k], m[k], l[k], dz, dm, dl);
        zv[k] = w * dz;  // zv becomes d_z, in place
        acc_mu[k] += w * dm;
        acc_lv[k] += w * dl;
      }
      store_pack<N>(d_z.row(r) + j, zv);
    }
    store_pack<N>(d_mu.row(b) + j, acc_mu);
    store_pack<N>(d_lv.row(b) + j, acc_lv);
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(z) && rows_aligned<N>(mu) && rows_aligned<N>(log_var) && rows_aligned<N>(d_z) &&
           rows_aligned<N>(d_mu) && rows_aligned<N>(d_lv);
  }
};

// The row terms and the gradient functor of a problem: the likelihood rows
// write the unweighted d ll / d x_hat (and d x_log_var) when the problem
// carries buffers (need_grad).
template <typename scalar_t, Likelihood L>
LogLikelihoodTerm<scalar_t, L> iwae_log_likelihood_term(const IwaeProblem& p) {
  using T = opmath_t<scalar_t>;
  const int64_t rows = p.ll.batch * p.ll.samples, F = p.ll.features;
  return {likelihood_rows<scalar_t, L>(p.ll), gradient_rows<scalar_t>(p.d_x_hat, rows, F),
          gradient_rows<T>(p.d_x_log_var, rows, F), T(1)};
}

template <typename scalar_t>
IwaeLatentTerm<scalar_t> iwae_latent_term(const IwaeProblem& p) {
  return {const_row_matrix<scalar_t>(p.z), const_row_matrix<scalar_t>(p.mu), const_row_matrix<scalar_t>(p.log_var),
          p.ll.samples};
}

template <typename scalar_t>
IwaeLatentGrad<scalar_t> iwae_latent_grad(const IwaeLatentGradProblem& p) {
  const int64_t B = p.batch, S = p.samples, D = p.latent;
  return {const_row_matrix<scalar_t>(p.z),
          const_row_matrix<scalar_t>(p.mu),
          const_row_matrix<scalar_t>(p.log_var),
          p.grad.const_data_ptr<scalar_t>(),
          p.weights.const_data_ptr<opmath_t<scalar_t>>(),
          S,
          dense_rows(p.d_z.data_ptr<scalar_t>(), B * S, D),
          dense_rows(p.d_mu.data_ptr<scalar_t>(), B, D),
          dense_rows(p.d_log_var.data_ptr<scalar_t>(), B, D)};
}

}  // namespace paf::cuda
