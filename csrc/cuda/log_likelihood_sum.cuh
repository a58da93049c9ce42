// log_likelihood_sum: the per-thread work of its CUDA kernels (the row terms
// and both gradients), as functors that are host/device: log_likelihood_sum.cu
// launches them on the GPU and tests/test_cuda_host.py runs them on the CPU
// against the reference. What each thread does with them: packs.h.
#pragma once

#include "../common/op_args.h"
#include "device_math.cuh"
#include "packs.h"

namespace paf::cuda {

// The terms of row r = (b, s) of x_hat viewed as [B*S, F].
template <typename scalar_t, Likelihood L>
struct LogLikelihoodTerm {
  RowMatrix<const scalar_t> x, x_hat;
  int64_t samples;
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void add(int64_t r, int64_t j, opmath_t<scalar_t>& acc) const {
    opmath_t<scalar_t> xv[N], hv[N];
    load_pack<N>(x.row(r / samples) + j, xv);
    load_pack<N>(x_hat.row(r) + j, hv);
#pragma unroll
    for (int k = 0; k < N; ++k) acc += LogLikelihood<L>::value(xv[k], hv[k]);
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(x) && rows_aligned<N>(x_hat);
  }
};

// out[r, j] = grad[r] * d ll / d x_hat[r, j], for the rows r = (b, s) of x_hat.
template <typename scalar_t, Likelihood L>
struct GradXHat {
  RowMatrix<const scalar_t> x, x_hat;
  const scalar_t* grad;
  RowMatrix<scalar_t> out;
  int64_t samples;
  template <int N>
  C10_HOST_DEVICE void elements(int64_t r, int64_t j) const {
    using T = opmath_t<scalar_t>;
    T xv[N], hv[N], g[N];
    load_pack<N>(x.row(r / samples) + j, xv);
    load_pack<N>(x_hat.row(r) + j, hv);
    const T grad_r = load(grad, r);
#pragma unroll
    for (int k = 0; k < N; ++k) g[k] = grad_r * LogLikelihood<L>::grad_x_hat(xv[k], hv[k]);
    store_pack<N>(out.row(r) + j, g);
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(x) && rows_aligned<N>(x_hat) && rows_aligned<N>(out);
  }
};

// out[b, j] = sum_s grad[b, s] * d ll / d x[b, j], for the rows b of x.
template <typename scalar_t, Likelihood L>
struct GradX {
  RowMatrix<const scalar_t> x, x_hat;
  const scalar_t* grad;
  RowMatrix<scalar_t> out;
  int64_t samples;
  template <int N>
  C10_HOST_DEVICE void elements(int64_t b, int64_t j) const {
    using T = opmath_t<scalar_t>;
    T xv[N], hv[N], total[N] = {};
    load_pack<N>(x.row(b) + j, xv);
    for (int64_t s = 0; s < samples; ++s) {
      const int64_t r = b * samples + s;
      load_pack<N>(x_hat.row(r) + j, hv);
      const T grad_r = load(grad, r);
#pragma unroll
      for (int k = 0; k < N; ++k) total[k] += grad_r * LogLikelihood<L>::grad_x(xv[k], hv[k]);
    }
    store_pack<N>(out.row(b) + j, total);
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(x) && rows_aligned<N>(x_hat) && rows_aligned<N>(out);
  }
};

}  // namespace paf::cuda
