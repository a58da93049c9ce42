// log_likelihood_sum: the per-thread work of its CUDA kernels (the row terms,
// which may also write the gradients (elbo's forward), and the backward's
// gradients), as functors that are host/device: log_likelihood_sum.cu and
// elbo.cu launch them on the GPU and tests/test_cuda_host.py runs them on
// the CPU against the reference. What each thread does with them: packs.h.
#pragma once

#include "../common/args/log_likelihood_sum.h"
#include "device_math.cuh"
#include "packs.h"

namespace paf::cuda {

// The operands of row r = (b, s) of x_hat viewed as [B*S, F]: x's row
// r / S and, for a likelihood that reads it, x_log_var's row r / divisor
// (LogVarRows); lv is 0 for the others.
template <typename scalar_t, Likelihood L>
struct LikelihoodRows {
  using T = opmath_t<scalar_t>;
  RowMatrix<const scalar_t> x, x_hat, x_log_var;
  int64_t samples, log_var_divisor;
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void load(int64_t r, int64_t j, T (&xv)[N], T (&hv)[N], T (&lv)[N]) const {
    load_pack<N>(x.row(r / samples) + j, xv);
    load_pack<N>(x_hat.row(r) + j, hv);
    if constexpr (reads_log_var(L)) {
      load_pack<N>(x_log_var.row(r / log_var_divisor) + j, lv);
    } else {
#pragma unroll
      for (int k = 0; k < N; ++k) lv[k] = T(0);
    }
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(x) && rows_aligned<N>(x_hat) && (!reads_log_var(L) || rows_aligned<N>(x_log_var));
  }
};

template <typename scalar_t, Likelihood L>
LikelihoodRows<scalar_t, L> likelihood_rows(const at::Tensor& x, const at::Tensor& x_hat, const LogVarRows& x_log_var,
                                            int64_t samples) {
  const RowMatrix<const scalar_t> none{nullptr, 0, 0, 0};
  return {const_row_matrix<scalar_t>(x), const_row_matrix<scalar_t>(x_hat),
          x_log_var.rows.defined() ? const_row_matrix<scalar_t>(x_log_var.rows) : none, samples, x_log_var.divisor};
}

template <typename scalar_t, Likelihood L>
LikelihoodRows<scalar_t, L> likelihood_rows(const SumProblem& s) {
  return likelihood_rows<scalar_t, L>(s.x, s.x_hat, s.x_log_var, s.samples);
}

// The [rows, cols] gradient buffer the forward fills when need_grad, else
// a null matrix (no gradient written).
template <typename scalar_t>
RowMatrix<scalar_t> gradient_rows(const at::Tensor& buffer, int64_t rows, int64_t cols) {
  return dense_rows(buffer.defined() && buffer.numel() > 0 ? buffer.data_ptr<scalar_t>() : nullptr, rows, cols);
}

// Terms of row r = (b, s) of x_hat: ll(x[b, j], x_hat[r, j][, lv]), with
// grad[r, j] = grad_scale * d ll / d x_hat (and grad_log_var[r, j] =
// grad_scale * d ll / d lv, in opmath, for a likelihood that reads lv)
// when grad.data is not null.
template <typename scalar_t, Likelihood L>
struct LogLikelihoodTerm {
  using T = opmath_t<scalar_t>;
  LikelihoodRows<scalar_t, L> in;
  RowMatrix<scalar_t> grad{nullptr, 0, 0, 0};
  RowMatrix<T> grad_log_var{nullptr, 0, 0, 0};
  T grad_scale = 0;
  // (LoadsAhead: packs.h)
  template <int N>
  struct Operands {
    T xv[N], hv[N], lv[N];
  };
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void load(int64_t r, int64_t j, Operands<N>& o) const {
    in.template load<N>(r, j, o.xv, o.hv, o.lv);
  }
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void add(int64_t r, int64_t j, T& acc) const {
    Operands<N> o;
    load<N>(r, j, o);
    add_loaded<N>(r, j, o, acc);
  }
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void add_loaded(int64_t r, int64_t j, Operands<N>& o, T& acc) const {
    using Term = LikelihoodTerm<L>;
    T(&xv)[N] = o.xv;
    T(&hv)[N] = o.hv;
    T(&lv)[N] = o.lv;
    if (grad.data == nullptr) {
#pragma unroll
      for (int k = 0; k < N; ++k) acc += Term::value(xv[k], hv[k], lv[k]);
      return;
    }
    // hv and lv become the gradients, in place
#pragma unroll
    for (int k = 0; k < N; ++k) {
      T d, d_lv;
      acc += Term::value_and_grad(xv[k], hv[k], lv[k], d, d_lv);
      hv[k] = d * grad_scale;
      lv[k] = d_lv * grad_scale;
    }
    store_pack<N>(grad.row(r) + j, hv);
    if constexpr (reads_log_var(L)) store_pack<N>(grad_log_var.row(r) + j, lv);
  }
  template <int N>
  bool aligned() const {
    return in.template aligned<N>() && rows_aligned<N>(grad) && rows_aligned<N>(grad_log_var);
  }
};

// out[r, j] = grad[r] * d ll / d (x_hat or x_log_var: wrt)[r, j], for the
// rows r = (b, s) of x_hat (out_t: scalar_t, or opmath for x_log_var).
template <typename scalar_t, Likelihood L, typename out_t>
struct GradPerSample {
  LikelihoodRows<scalar_t, L> in;
  const scalar_t* grad;
  RowMatrix<out_t> out;
  LikelihoodInput wrt;
  template <int N>
  C10_HOST_DEVICE void elements(int64_t r, int64_t j) const {
    using T = opmath_t<scalar_t>;
    T xv[N], hv[N], lv[N];
    in.template load<N>(r, j, xv, hv, lv);
    const T grad_r = load(grad, r);
#pragma unroll
    for (int k = 0; k < N; ++k) hv[k] = grad_r * LikelihoodTerm<L>::grad(wrt, xv[k], hv[k], lv[k]);
    store_pack<N>(out.row(r) + j, hv);
  }
  template <int N>
  bool aligned() const {
    return in.template aligned<N>() && rows_aligned<N>(out);
  }
};

// out[b, j] = sum_s grad[b, s] * d ll / d x[b, j], for the rows b of x.
template <typename scalar_t, Likelihood L>
struct GradX {
  LikelihoodRows<scalar_t, L> in;
  const scalar_t* grad;
  RowMatrix<scalar_t> out;
  template <int N>
  C10_HOST_DEVICE void elements(int64_t b, int64_t j) const {
    using T = opmath_t<scalar_t>;
    T total[N] = {};
    for (int64_t s = 0; s < in.samples; ++s) {
      const int64_t r = b * in.samples + s;
      T xv[N], hv[N], lv[N];
      in.template load<N>(r, j, xv, hv, lv);
      const T grad_r = load(grad, r);
#pragma unroll
      for (int k = 0; k < N; ++k) total[k] += grad_r * LikelihoodTerm<L>::grad(LikelihoodInput::X, xv[k], hv[k], lv[k]);
    }
    store_pack<N>(out.row(b) + j, total);
  }
  template <int N>
  bool aligned() const {
    return in.template aligned<N>() && rows_aligned<N>(out);
  }
};

}  // namespace paf::cuda
