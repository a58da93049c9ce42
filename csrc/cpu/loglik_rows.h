// One-pass per-row log-likelihood: x [B, F] against x_hat [B*S, F] (row r of
// x_hat pairs with row r / S of x, so x is never expanded) and, for the
// Gaussian with a learned variance, x_log_var (row r / divisor). Shared by
// the log_likelihood_sum and elbo kernels.
#pragma once

#include "elementwise_math.h"
#include "kernel_utils.h"
#include "../common/args/log_likelihood_sum.h"

#include <vector>

namespace paf {

// The operands of the row sums as row views (x_log_var's data null when the
// likelihood does not read it).
template <typename scalar_t>
struct LoglikRows {
  RowMatrix<const scalar_t> x, x_hat, x_log_var;
  int64_t samples;       // x_hat rows per x row
  int64_t log_var_divisor;  // x_hat rows per x_log_var row
  const scalar_t* x_row(int64_t r) const { return x.row(r / samples); }
  const scalar_t* log_var_row(int64_t r) const {
    return x_log_var.data == nullptr ? nullptr : x_log_var.row(r / log_var_divisor);
  }
};

template <typename scalar_t>
LoglikRows<scalar_t> loglik_rows_of(const at::Tensor& x, const at::Tensor& x_hat, const LogVarRows& x_log_var,
                                    int64_t samples) {
  const RowMatrix<const scalar_t> none{nullptr, 0, 0, 0};
  return {const_row_matrix<scalar_t>(x), const_row_matrix<scalar_t>(x_hat),
          x_log_var.rows.defined() ? const_row_matrix<scalar_t>(x_log_var.rows) : none, samples, x_log_var.divisor};
}

// Where the row sums also write their gradients, [B*S, F] dense (null: not
// written): scale * d ll / d x_hat, and scale * d ll / d x_log_var in the
// accumulation dtype for a likelihood that reads it.
template <typename scalar_t>
struct LoglikGrads {
  using opmath_t = at::opmath_type<scalar_t>;
  scalar_t* x_hat = nullptr;
  opmath_t* x_log_var = nullptr;
  opmath_t scale = 0;
};

// Sum over one row of ll(x, x_hat[, lv]) (accurate at any length:
// row_sum); with kWriteGrad also writes the gradients of the row's
// elements (grad_x_hat, grad_lv: the row's starts) in the same pass.
template <Likelihood L, bool kWriteGrad, typename scalar_t>
at::opmath_type<scalar_t> loglik_row(const scalar_t* x, const scalar_t* x_hat, const scalar_t* lv, int64_t n,
                                     scalar_t* grad_x_hat, at::opmath_type<scalar_t>* grad_lv,
                                     at::opmath_type<scalar_t> grad_scale) {
  using IO = VecIO<scalar_t>;
  using opmath_t = typename IO::opmath_t;
  using Vec = typename IO::Vec;
  using Term = LikelihoodTerm<L>;
  const Vec scale(grad_scale);
  const double total = row_sum<IO>(
      n,
      [&](int64_t j) C10_ALWAYS_INLINE_ATTRIBUTE {
        const Vec xv = IO::load(x + j);
        const Vec hv = IO::load(x_hat + j);
        Vec lvv(0);
        if constexpr (Term::kReadsLogVar) lvv = IO::load(lv + j);
        if constexpr (kWriteGrad) {
          Vec d, d_lv;
          const Vec v = Term::value_and_grad(xv, hv, lvv, d, d_lv);
          IO::store(grad_x_hat + j, d * scale);
          if constexpr (Term::kReadsLogVar) (d_lv * scale).store(grad_lv + j);
          return v;
        } else {
          return Term::value(xv, hv, lvv);
        }
      },
      [&](int64_t j) {
        const opmath_t xs = static_cast<opmath_t>(x[j]);
        const opmath_t hs = static_cast<opmath_t>(x_hat[j]);
        opmath_t lvs = 0;
        if constexpr (Term::kReadsLogVar) lvs = static_cast<opmath_t>(lv[j]);
        if constexpr (kWriteGrad) {
          opmath_t d, d_lv;
          const opmath_t v = Term::value_and_grad(xs, hs, lvs, d, d_lv);
          grad_x_hat[j] = static_cast<scalar_t>(d * grad_scale);
          if constexpr (Term::kReadsLogVar) grad_lv[j] = d_lv * grad_scale;
          return v;
        } else {
          return Term::value(xs, hs, lvs);
        }
      });
  return static_cast<opmath_t>(total);
}

// row_sums[r] = sum_j ll(x[r / S, j], x_hat[r, j][, lv]) for every r in
// [0, B*S); with grads.x_hat also the gradients (LoglikGrads).
template <typename scalar_t>
void loglik_rows(Likelihood likelihood, const LoglikRows<scalar_t>& in, const LoglikGrads<scalar_t>& grads,
                 at::opmath_type<scalar_t>* row_sums) {
  const int64_t cols = in.x_hat.cols;
  dispatch_likelihood(likelihood, [&](auto tag) {
    constexpr Likelihood L = decltype(tag)::value;
    at::parallel_for(0, in.x_hat.rows, row_grain(cols), [&](int64_t begin, int64_t end) {
      for (int64_t r = begin; r < end; ++r) {
        if (grads.x_hat != nullptr) {
          row_sums[r] = loglik_row<L, true>(in.x_row(r), in.x_hat.row(r), in.log_var_row(r), cols,
                                            grads.x_hat + r * cols,
                                            grads.x_log_var == nullptr ? nullptr : grads.x_log_var + r * cols,
                                            grads.scale);
        } else {
          row_sums[r] = loglik_row<L, false>(in.x_row(r), in.x_hat.row(r), in.log_var_row(r), cols,
                                             static_cast<scalar_t*>(nullptr), nullptr, grads.scale);
        }
      }
    });
  });
}

}  // namespace paf
