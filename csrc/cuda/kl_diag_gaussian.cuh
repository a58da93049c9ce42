// kl_diag_gaussian: the per-thread work of its CUDA kernels (the inputs, the
// row terms, the elementwise KL and the gradients), as functors that are
// host/device: kl_diag_gaussian.cu launches them on the GPU and
// tests/test_cuda_host.py runs them on the CPU against the reference. What
// each thread does with them: packs.h.
#pragma once

#include "../common/args/kl_diag_gaussian.h"
#include "device_math.cuh"
#include "packs.h"

namespace paf::cuda {

// The four [rows, D] inputs (mu_p/lv_p unused for the standard prior) and
// the clamp bounds of both log-variances.
template <typename scalar_t, bool kStandard>
struct KlInputs {
  using T = opmath_t<scalar_t>;
  RowMatrix<const scalar_t> mu_q, lv_q, mu_p, lv_p;
  T lo, hi;

  // The raw inputs of elements (r, j .. j + N - 1); the prior's are 0 for N(0, I).
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void load(int64_t r, int64_t j, T (&mq)[N], T (&lq)[N], T (&mp)[N],
                                         T (&lp)[N]) const {
    load_pack<N>(mu_q.row(r) + j, mq);
    load_pack<N>(lv_q.row(r) + j, lq);
    if constexpr (kStandard) {
#pragma unroll
      for (int k = 0; k < N; ++k) mp[k] = lp[k] = T(0);
    } else {
      load_pack<N>(mu_p.row(r) + j, mp);
      load_pack<N>(lv_p.row(r) + j, lp);
    }
  }
  C10_HOST_DEVICE C10_ALWAYS_INLINE T clamp(T v) const { return v < lo ? lo : (v > hi ? hi : v); }
  // The KL of raw inputs, log-variances clamped.
  C10_HOST_DEVICE C10_ALWAYS_INLINE T value(T mq, T lq, T mp, T lp) const {
    return kl_value<kStandard>(mq, clamp(lq), mp, kStandard ? lp : clamp(lp));
  }
  template <int N>
  bool aligned() const {
    return rows_aligned<N>(mu_q) && rows_aligned<N>(lv_q) &&
           (kStandard || (rows_aligned<N>(mu_p) && rows_aligned<N>(lv_p)));
  }
};

template <typename scalar_t, bool kStandard>
struct KlTerm {
  KlInputs<scalar_t, kStandard> in;
  template <int N>
  C10_HOST_DEVICE C10_ALWAYS_INLINE void add(int64_t r, int64_t j, opmath_t<scalar_t>& acc) const {
    opmath_t<scalar_t> mq[N], lq[N], mp[N], lp[N];
    in.load(r, j, mq, lq, mp, lp);
#pragma unroll
    for (int k = 0; k < N; ++k) acc += in.value(mq[k], lq[k], mp[k], lp[k]);
  }
  template <int N>
  bool aligned() const {
    return in.template aligned<N>();
  }
};

template <typename scalar_t, bool kStandard>
struct KlElementwise {
  KlInputs<scalar_t, kStandard> in;
  RowMatrix<scalar_t> out;
  template <int N>
  C10_HOST_DEVICE void elements(int64_t r, int64_t j) const {
    opmath_t<scalar_t> mq[N], lq[N], mp[N], lp[N];
    in.load(r, j, mq, lq, mp, lp);
#pragma unroll
    for (int k = 0; k < N; ++k) mq[k] = in.value(mq[k], lq[k], mp[k], lp[k]);
    store_pack<N>(out.row(r) + j, mq);
  }
  template <int N>
  bool aligned() const {
    return in.template aligned<N>() && rows_aligned<N>(out);
  }
};

// Gradients in the broadcast shape for (mu_q, log_var_q[, mu_p, log_var_p]);
// grad is per row (reduce_sum) or per element; a clamped log-variance's
// passes where the gate lets it (KlProblem::clamp_grad_gate).
template <typename scalar_t, bool kStandard>
struct KlGrad {
  using T = opmath_t<scalar_t>;
  KlInputs<scalar_t, kStandard> in;
  RowMatrix<const scalar_t> grad;
  bool reduce_sum;
  ClampGradGate<T> gate;
  RowMatrix<scalar_t> g_mu_q, g_lv_q, g_mu_p, g_lv_p;  // g_*_p unused for N(0, I)
  template <int N>
  C10_HOST_DEVICE void elements(int64_t r, int64_t j) const {
    T mq[N], lq[N], mp[N], lp[N], g[N];
    in.load(r, j, mq, lq, mp, lp);
    if (reduce_sum) {
#pragma unroll
      for (int k = 0; k < N; ++k) g[k] = load(grad.row(r), 0);
    } else {
      load_pack<N>(grad.row(r) + j, g);
    }
    // mq, lq, mp, lp become the four gradients, in place
#pragma unroll
    for (int k = 0; k < N; ++k) {
      T d_mu_q, d_lv_q;
      if constexpr (kStandard) {
        kl_standard_and_grad(mq[k], in.clamp(lq[k]), d_mu_q, d_lv_q);
      } else {
        T d_mu_p, d_lv_p;
        kl_general_and_grad(mq[k], in.clamp(lq[k]), mp[k], in.clamp(lp[k]), d_mu_q, d_lv_q, d_mu_p, d_lv_p);
        mp[k] = g[k] * d_mu_p;
        lp[k] = gate(lp[k], g[k] * d_lv_p);
      }
      mq[k] = g[k] * d_mu_q;
      lq[k] = gate(lq[k], g[k] * d_lv_q);
    }
    store_pack<N>(g_mu_q.row(r) + j, mq);
    store_pack<N>(g_lv_q.row(r) + j, lq);
    if constexpr (!kStandard) {
      store_pack<N>(g_mu_p.row(r) + j, mp);
      store_pack<N>(g_lv_p.row(r) + j, lp);
    }
  }
  template <int N>
  bool aligned() const {
    return in.template aligned<N>() && (reduce_sum || rows_aligned<N>(grad)) && rows_aligned<N>(g_mu_q) &&
           rows_aligned<N>(g_lv_q) && (kStandard || (rows_aligned<N>(g_mu_p) && rows_aligned<N>(g_lv_p)));
  }
};

// Calls fn(KlInputs<scalar_t, kStandard>) for the problem's prior.
template <typename scalar_t, typename Fn>
void with_kl_inputs(const KlProblem& p, Fn&& fn) {
  using T = opmath_t<scalar_t>;
  const auto mq = const_row_matrix<scalar_t>(p.mu_q), lq = const_row_matrix<scalar_t>(p.lv_q);
  const T lo = static_cast<T>(p.lo), hi = static_cast<T>(p.hi);
  if (p.standard()) {
    fn(KlInputs<scalar_t, true>{mq, lq, mq, lq, lo, hi});
  } else {
    fn(KlInputs<scalar_t, false>{mq, lq, const_row_matrix<scalar_t>(p.mu_p), const_row_matrix<scalar_t>(p.lv_p), lo,
                                 hi});
  }
}

// The backward's functor for the problem's inputs, writing into grads'
// dense [rows, D] buffers (mu_p and lv_p's are empty for N(0, I): null,
// never written).
template <typename scalar_t, bool kStandard>
KlGrad<scalar_t, kStandard> make_kl_grad(const KlInputs<scalar_t, kStandard>& in, const KlProblem& p,
                                         const KlGrads& grads, bool reduce_sum, bool clamp_grad_at_bounds) {
  const auto out = [&](const at::Tensor& g) { return dense_rows(g.data_ptr<scalar_t>(), p.rows, p.cols); };
  return {in,
          const_row_matrix<scalar_t>(grads.grad_rows),
          reduce_sum,
          p.clamp_grad_gate<opmath_t<scalar_t>>(clamp_grad_at_bounds),
          out(grads.mu_q),
          out(grads.lv_q),
          out(grads.mu_p),
          out(grads.lv_p)};
}

template <typename Inputs>
struct IsStandard;
template <typename scalar_t, bool kStandard>
struct IsStandard<KlInputs<scalar_t, kStandard>> : std::integral_constant<bool, kStandard> {};

}  // namespace paf::cuda
