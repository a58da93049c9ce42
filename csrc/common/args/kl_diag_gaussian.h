// kl_diag_gaussian: its argument checks and problem shape, shared by its CPU kernel
// (csrc/cpu/kl_diag_gaussian.cpp) and its CUDA kernel (csrc/cuda/kl_diag_gaussian.cu), so both
// devices accept and refuse the same calls with the same messages.
#pragma once

#include "../tensor_args.h"

#include <ATen/ExpandUtils.h>

#include <limits>
#include <tuple>
#include <vector>
#include <optional>

namespace paf {

constexpr double kNoClamp = std::numeric_limits<double>::infinity();

// The gradient of a clamped log-variance, as torch.clamp passes it: where
// the raw value lies in [lo, hi], else 0 (a NaN raw value included, whatever
// the gradient is there); unchanged when nothing is clamped.
template <typename T>
struct ClampGradGate {
  T lo, hi;
  bool active;  // clamp_min or clamp_max given
  C10_HOST_DEVICE C10_ALWAYS_INLINE T operator()(T raw, T grad) const {
    return (!active || (raw >= lo && raw <= hi)) ? grad : T(0);
  }
};

// All inputs broadcast to one [rows, D] shape, as row views (no copies for
// broadcast rows), plus the clamp bounds.
struct KlProblem {
  std::vector<int64_t> shape;  // broadcast shape, last dim D
  int64_t rows = 0, cols = 0;
  at::Tensor mu_q, lv_q, mu_p, lv_p;  // [rows, D]; mu_p/lv_p undefined for N(0, I)
  double lo = -kNoClamp;
  double hi = kNoClamp;
  bool clamped_below = false, clamped_above = false;  // clamp_min / clamp_max given
  bool standard() const { return !mu_p.defined(); }
  // Where the clamp passes gradient (ClampGradGate), in the arithmetic type
  // T. At exactly a bound torch.clamp passes it up to torch 2.13 and not
  // from 2.14 (grad_at_bounds); a bound it does not pass becomes the next
  // value of T inward, so the kernels compare alike either way. A missing
  // bound stays infinite: everything passes it, infinities included.
  template <typename T>
  ClampGradGate<T> clamp_grad_gate(bool grad_at_bounds) const {
    ClampGradGate<T> gate{static_cast<T>(lo), static_cast<T>(hi), clamped_below || clamped_above};
    if (!grad_at_bounds) {
      if (clamped_below) gate.lo = std::nextafter(gate.lo, std::numeric_limits<T>::infinity());
      if (clamped_above) gate.hi = std::nextafter(gate.hi, -std::numeric_limits<T>::infinity());
    }
    return gate;
  }
  // The output shape: the broadcast shape, less D when summed.
  std::vector<int64_t> out_shape(bool reduce_sum) const {
    std::vector<int64_t> s = shape;
    if (reduce_sum) s.pop_back();
    return s;
  }
};

inline KlProblem make_kl_problem(const at::Tensor& mu_q, const at::Tensor& lv_q,
                                 const std::optional<at::Tensor>& mu_p, const std::optional<at::Tensor>& lv_p,
                                 std::optional<double> clamp_min, std::optional<double> clamp_max) {
  check_floating(mu_q, "mu_q");
  check_same_dtype_device(mu_q, "mu_q", lv_q, "log_var_q");
  PAF_CHECK(mu_q.dim() >= 1, "mu_q: expected at least 1 dimension, got a 0-d tensor");
  std::vector<at::Tensor> all = {mu_q, lv_q};
  if (mu_p) {
    check_same_dtype_device(mu_q, "mu_q", *mu_p, "mu_p");
    all.push_back(*mu_p);
  }
  if (lv_p) {
    check_same_dtype_device(mu_q, "mu_q", *lv_p, "log_var_p");
    all.push_back(*lv_p);
  }
  KlProblem p;
  p.shape = at::infer_size(mu_q.sizes(), lv_q.sizes());
  for (const auto& t : all) p.shape = at::infer_size(p.shape, t.sizes());
  p.cols = p.shape.back();
  p.rows = p.cols > 0 ? c10::multiply_integers(p.shape) / p.cols
                      : c10::multiply_integers(at::IntArrayRef(p.shape).slice(0, p.shape.size() - 1));
  auto rows_of = [&](const at::Tensor& t) { return as_rows(t.expand(p.shape), p.rows, p.cols); };
  p.mu_q = rows_of(mu_q);
  p.lv_q = rows_of(lv_q);
  if (mu_p || lv_p) {  // a missing p-parameter is 0
    const at::Tensor zero = at::zeros({}, mu_q.options());
    p.mu_p = rows_of(mu_p ? *mu_p : zero);
    p.lv_p = rows_of(lv_p ? *lv_p : zero);
  }
  p.lo = value_or(clamp_min, p.lo);
  p.hi = value_or(clamp_max, p.hi);
  p.clamped_below = clamp_min.has_value();
  p.clamped_above = clamp_max.has_value();
  PAF_CHECK_VALUE(!(p.lo > p.hi), "clamp_min (", p.lo, ") must not exceed clamp_max (", p.hi, ")");
  return p;
}

// The backward's outputs in the broadcast shape (the p-gradients empty for
// N(0, I)) and grad as rows: [rows, 1] (reduce_sum) or [rows, D].
struct KlGrads {
  at::Tensor mu_q, lv_q, mu_p, lv_p, grad_rows;
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const { return {mu_q, lv_q, mu_p, lv_p}; }
};

inline KlGrads make_kl_grads(const KlProblem& p, const at::Tensor& mu_q, const at::Tensor& grad, bool reduce_sum) {
  check_same_dtype_device(mu_q, "mu_q", grad, "grad");
  check_shape(grad, p.out_shape(reduce_sum), "grad");
  const auto options = mu_q.options();
  const bool with_p = !p.standard();
  KlGrads g;
  g.mu_q = at::empty(p.shape, options);
  g.lv_q = at::empty(p.shape, options);
  g.mu_p = with_p ? at::empty(p.shape, options) : at::empty({0}, options);
  g.lv_p = with_p ? at::empty(p.shape, options) : at::empty({0}, options);
  if (g.mu_q.numel() > 0) g.grad_rows = reduce_sum ? grad.reshape({p.rows, 1}) : as_rows(grad, p.rows, p.cols);
  return g;
}

}  // namespace paf
