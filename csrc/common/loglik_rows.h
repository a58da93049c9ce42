// One-pass per-row log-likelihood: x [B, F] against x_hat [B*S, F] (row r of
// x_hat pairs with row r / S of x, so x is never expanded). Shared by the
// log_likelihood_sum and elbo kernels.
#pragma once

#include "elementwise_math.h"
#include "kernel_utils.h"

#include <vector>

namespace paf {

// Sum over one row of ll(x, x_hat) (accurate at any length: row_sum); with
// kWriteGrad also writes grad[j] = grad_scale * d ll / d x_hat[j] in the
// same pass.
template <Likelihood L, bool kWriteGrad, typename scalar_t>
at::opmath_type<scalar_t> loglik_row(const scalar_t* x, const scalar_t* x_hat,
                                     int64_t n, scalar_t* grad,
                                     at::opmath_type<scalar_t> grad_scale) {
  using IO = VecIO<scalar_t>;
  using opmath_t = typename IO::opmath_t;
  using Vec = typename IO::Vec;
  using Term = LogLikelihood<L>;
  const Vec scale(grad_scale);
  const double total = row_sum<IO>(
      n,
      [&](int64_t j) C10_ALWAYS_INLINE_ATTRIBUTE {
        const Vec xv = IO::load(x + j);
        const Vec hv = IO::load(x_hat + j);
        if constexpr (kWriteGrad) {
          Vec d;
          const Vec v = Term::value_and_grad(xv, hv, d);
          IO::store(grad + j, d * scale);
          return v;
        } else {
          return Term::value(xv, hv);
        }
      },
      [&](int64_t j) {
        const opmath_t xs = static_cast<opmath_t>(x[j]);
        const opmath_t hs = static_cast<opmath_t>(x_hat[j]);
        if constexpr (kWriteGrad) {
          opmath_t d;
          const opmath_t v = Term::value_and_grad(xs, hs, d);
          grad[j] = static_cast<scalar_t>(d * grad_scale);
          return v;
        } else {
          return Term::value(xs, hs);
        }
      });
  return static_cast<opmath_t>(total);
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
