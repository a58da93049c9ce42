// One-pass per-row log-likelihood: x [B, F] against x_hat [B*S, F] (row r of
// x_hat pairs with row r / S of x, so x is never expanded). Shared by the
// log_likelihood_sum and elbo kernels.
#pragma once

#include "elementwise_math.h"
#include "kernel_utils.h"

#include <vector>

namespace paf {

// Sum over one row of ll(x, x_hat); with kWriteGrad also writes
// grad[j] = grad_scale * d ll / d x_hat[j] in the same pass.
template <Likelihood L, bool kWriteGrad, typename scalar_t>
at::opmath_type<scalar_t> loglik_row(const scalar_t* x, const scalar_t* x_hat,
                                     int64_t n, scalar_t* grad,
                                     at::opmath_type<scalar_t> grad_scale) {
  using IO = VecIO<scalar_t>;
  using opmath_t = typename IO::opmath_t;
  using Vec = typename IO::Vec;
  using Term = LogLikelihood<L>;
  constexpr int64_t W = IO::kWidth;
  constexpr int kAcc = 4;  // independent accumulators hide FMA latency

  const Vec scale(grad_scale);
  auto step = [&](int64_t j, Vec& acc) C10_ALWAYS_INLINE_ATTRIBUTE {
    const Vec xv = IO::load(x + j);
    const Vec hv = IO::load(x_hat + j);
    if constexpr (kWriteGrad) {
      Vec d;
      acc = acc + Term::value_and_grad(xv, hv, d);
      IO::store(grad + j, d * scale);
    } else {
      acc = acc + Term::value(xv, hv);
    }
  };

  Vec acc[kAcc] = {Vec(0), Vec(0), Vec(0), Vec(0)};
  int64_t j = 0;
  for (; j + kAcc * W <= n; j += kAcc * W) {
    for (int a = 0; a < kAcc; ++a) step(j + a * W, acc[a]);
  }
  for (; j + W <= n; j += W) step(j, acc[0]);
  opmath_t total = IO::sum((acc[0] + acc[1]) + (acc[2] + acc[3]));
  for (; j < n; ++j) {  // scalar tail: padded lanes would not sum to 0
    const opmath_t xs = static_cast<opmath_t>(x[j]);
    const opmath_t hs = static_cast<opmath_t>(x_hat[j]);
    if constexpr (kWriteGrad) {
      opmath_t d;
      total += Term::value_and_grad(xs, hs, d);
      grad[j] = static_cast<scalar_t>(d * grad_scale);
    } else {
      total += Term::value(xs, hs);
    }
  }
  return total;
}

// row_sums[r] = sum_j ll(x[r / S, j], x_hat[r, j]) for every r in [0, B*S);
// if grad is given also grad[r, j] = grad_scale * d ll / d x_hat[r, j].
template <typename scalar_t>
void loglik_rows(Likelihood likelihood, const RowMatrix<const scalar_t>& x,
                 const RowMatrix<const scalar_t>& x_hat, int64_t num_samples,
                 const RowMatrix<scalar_t>* grad,
                 at::opmath_type<scalar_t> grad_scale,
                 at::opmath_type<scalar_t>* row_sums) {
  const int64_t cols = x_hat.cols;
  dispatch_likelihood(likelihood, [&](auto tag) {
    constexpr Likelihood L = decltype(tag)::value;
    at::parallel_for(0, x_hat.rows, row_grain(cols), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        const scalar_t* x_row = x.row(r / num_samples);
        if (grad != nullptr) {
          row_sums[r] = loglik_row<L, true>(x_row, x_hat.row(r), cols,
                                            grad->row(r), grad_scale);
        } else {
          row_sums[r] = loglik_row<L, false>(x_row, x_hat.row(r), cols,
                                             static_cast<scalar_t*>(nullptr),
                                             grad_scale);
        }
      }
    });
  });
}

}  // namespace paf
