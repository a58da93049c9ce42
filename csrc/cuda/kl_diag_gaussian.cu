// kl_diag_gaussian: KL(q || p) between diagonal Gaussians (CUDA),
// elementwise or summed over the last dim (deterministic row sums), with
// optional clamping of both log-variances; p = N(0, I) when mu_p and
// log_var_p are None. Arguments and broadcasting: common/op_args.h.
#include "../common/op_args.h"
#include "cuda_utils.cuh"
#include "device_math.cuh"

#include <torch/library.h>

namespace paf::cuda {
namespace {

// The four [rows, D] inputs (mu_p/lv_p unused for the standard prior) and
// the clamp bounds, read at (r, j) in opmath.
template <typename scalar_t, bool kStandard>
struct KlInputs {
  RowMatrix<const scalar_t> mu_q, lv_q, mu_p, lv_p;
  opmath_t<scalar_t> lo, hi;

  C10_DEVICE C10_ALWAYS_INLINE opmath_t<scalar_t> clamp(opmath_t<scalar_t> v) const {
    return v < lo ? lo : (v > hi ? hi : v);
  }
  // The inputs of element (r, j), log-variances clamped.
  C10_DEVICE C10_ALWAYS_INLINE void read(int64_t r, int64_t j, opmath_t<scalar_t>& mq, opmath_t<scalar_t>& lq,
                                         opmath_t<scalar_t>& mp, opmath_t<scalar_t>& lp) const {
    using T = opmath_t<scalar_t>;
    mq = load(mu_q.row(r), j);
    lq = clamp(load(lv_q.row(r), j));
    mp = kStandard ? T(0) : load(mu_p.row(r), j);
    lp = kStandard ? T(0) : clamp(load(lv_p.row(r), j));
  }
  C10_DEVICE C10_ALWAYS_INLINE opmath_t<scalar_t> value(int64_t r, int64_t j) const {
    opmath_t<scalar_t> mq, lq, mp, lp;
    read(r, j, mq, lq, mp, lp);
    return kl_value<kStandard>(mq, lq, mp, lp);
  }
  // Whether the raw log-variance lies inside the clamp range (it passes gradient).
  C10_DEVICE C10_ALWAYS_INLINE opmath_t<scalar_t> inside(const RowMatrix<const scalar_t>& lv, int64_t r,
                                                          int64_t j) const {
    const auto v = load(lv.row(r), j);
    return (v >= lo && v <= hi) ? opmath_t<scalar_t>(1) : opmath_t<scalar_t>(0);
  }
};

template <typename scalar_t, bool kStandard>
struct KlTerm {
  KlInputs<scalar_t, kStandard> in;
  C10_DEVICE C10_ALWAYS_INLINE opmath_t<scalar_t> operator()(int64_t r, int64_t j) const { return in.value(r, j); }
};

template <typename scalar_t, bool kStandard>
struct KlElementwise {
  KlInputs<scalar_t, kStandard> in;
  scalar_t* out;
  int64_t cols;
  C10_DEVICE void operator()(int64_t i) const {
    out[i] = static_cast<scalar_t>(in.value(i / cols, i % cols));
  }
};

// Gradients in the broadcast shape for (mu_q, log_var_q[, mu_p, log_var_p]);
// grad is per row (reduce_sum) or per element.
template <typename scalar_t, bool kStandard>
struct KlGrad {
  KlInputs<scalar_t, kStandard> in;
  RowMatrix<const scalar_t> grad;
  bool reduce_sum;
  scalar_t *g_mu_q, *g_lv_q, *g_mu_p, *g_lv_p;
  int64_t cols;
  C10_DEVICE void operator()(int64_t i) const {
    using T = opmath_t<scalar_t>;
    const int64_t r = i / cols, j = i % cols;
    const T g = load(grad.row(r), reduce_sum ? 0 : j);
    T mq, lq, mp, lp, d_mu_q, d_lv_q, d_mu_p, d_lv_p;
    in.read(r, j, mq, lq, mp, lp);
    if constexpr (kStandard) {
      kl_standard_and_grad(mq, lq, d_mu_q, d_lv_q);
    } else {
      kl_general_and_grad(mq, lq, mp, lp, d_mu_q, d_lv_q, d_mu_p, d_lv_p);
      g_mu_p[i] = static_cast<scalar_t>(g * d_mu_p);
      g_lv_p[i] = static_cast<scalar_t>(g * d_lv_p * in.inside(in.lv_p, r, j));
    }
    g_mu_q[i] = static_cast<scalar_t>(g * d_mu_q);
    g_lv_q[i] = static_cast<scalar_t>(g * d_lv_q * in.inside(in.lv_q, r, j));
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

template <typename Inputs>
struct IsStandard;
template <typename scalar_t, bool kStandard>
struct IsStandard<KlInputs<scalar_t, kStandard>> : std::integral_constant<bool, kStandard> {};

at::Tensor kl_diag_gaussian_cuda(const at::Tensor& mu_q, const at::Tensor& log_var_q,
                                 const std::optional<at::Tensor>& mu_p, const std::optional<at::Tensor>& log_var_p,
                                 bool reduce_sum, std::optional<double> clamp_min, std::optional<double> clamp_max) {
  const c10::cuda::CUDAGuard guard(mu_q.device());
  const KlProblem p = make_kl_problem(mu_q, log_var_q, mu_p, log_var_p, clamp_min, clamp_max);
  at::Tensor out = at::empty(p.out_shape(reduce_sum), mu_q.options());
  if (out.numel() == 0) return out;
  if (p.cols == 0) return out.zero_();  // empty sum
  PAF_DISPATCH_FLOATING(mu_q.scalar_type(), "kl_diag_gaussian_cuda", [&] {
    with_kl_inputs<scalar_t>(p, [&](auto in) {
      constexpr bool kStandard = IsStandard<decltype(in)>::value;
      scalar_t* o = out.data_ptr<scalar_t>();
      if (reduce_sum) {
        launch_row_sums<opmath_t<scalar_t>>(p.rows, p.cols, KlTerm<scalar_t, kStandard>{in}, StoreTotal<scalar_t>{o},
                                            mu_q.device());
      } else {
        launch_for_each_index(out.numel(), KlElementwise<scalar_t, kStandard>{in, o, p.cols});
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kl_diag_gaussian_backward_cuda(
    const at::Tensor& grad, const at::Tensor& mu_q, const at::Tensor& log_var_q,
    const std::optional<at::Tensor>& mu_p, const std::optional<at::Tensor>& log_var_p, bool reduce_sum,
    std::optional<double> clamp_min, std::optional<double> clamp_max) {
  const c10::cuda::CUDAGuard guard(mu_q.device());
  const KlProblem p = make_kl_problem(mu_q, log_var_q, mu_p, log_var_p, clamp_min, clamp_max);
  const KlGrads grads = make_kl_grads(p, mu_q, grad, reduce_sum);
  if (grads.mu_q.numel() == 0) return grads.outputs();
  const bool with_p = !p.standard();
  PAF_DISPATCH_FLOATING(mu_q.scalar_type(), "kl_diag_gaussian_backward_cuda", [&] {
    with_kl_inputs<scalar_t>(p, [&](auto in) {
      constexpr bool kStandard = IsStandard<decltype(in)>::value;
      launch_for_each_index(
          grads.mu_q.numel(),
          KlGrad<scalar_t, kStandard>{in, const_row_matrix<scalar_t>(grads.grad_rows), reduce_sum,
                                      grads.mu_q.data_ptr<scalar_t>(), grads.lv_q.data_ptr<scalar_t>(),
                                      with_p ? grads.mu_p.data_ptr<scalar_t>() : nullptr,
                                      with_p ? grads.lv_p.data_ptr<scalar_t>() : nullptr, p.cols});
    });
  });
  return grads.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("kl_diag_gaussian", &kl_diag_gaussian_cuda);
  m.impl("kl_diag_gaussian_backward", &kl_diag_gaussian_backward_cuda);
}

}  // namespace paf::cuda
