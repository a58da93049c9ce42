// The per-element math of the diagonal-Gaussian KL (part of common/formulas.h: include
// cpu/elementwise_math.h or cuda/device_math.cuh, which declare the paf::vm
// primitives these call, not this file).
#pragma once

#include "paf_math.h"

#include <cmath>
#include <type_traits>

namespace paf {

// KL(q || p) for one dimension and its partial derivatives. With the
// standard-normal prior (mu_p = lv_p = 0) the general form reduces to
// 0.5*(exp(lv_q) + mu_q^2 - 1 - lv_q). exp_minus_self and mul_or_zero give
// the limits at infinite log-variances (+inf, not inf - inf).
template <typename T>
PAF_MATH T kl_standard(T mu, T lv) {
  return T(0.5) * (vm::exp_minus_self(vm::exp(lv), lv) + mu * mu - T(1));
}
// d/dmu = mu, d/dlv = 0.5*(exp(lv) - 1)
template <typename T>
PAF_MATH T kl_standard_and_grad(T mu, T lv, T& d_mu, T& d_lv) {
  const T var = vm::exp(lv);
  d_mu = mu;
  d_lv = T(0.5) * (var - T(1));
  return T(0.5) * (vm::exp_minus_self(var, lv) + mu * mu - T(1));
}

template <typename T>
PAF_MATH T kl_general(T mu_q, T lv_q, T mu_p, T lv_p) {
  const T diff = mu_q - mu_p;
  const T t = lv_q - lv_p;
  return T(0.5) * (vm::exp_minus_self(vm::exp(t), t) + vm::mul_or_zero(diff * diff, vm::exp(T(0) - lv_p)) - T(1));
}
// KL(q || p) of one dimension, the standard prior's short form when kStandard.
template <bool kStandard, typename T>
PAF_MATH T kl_value(T mu_q, T lv_q, T mu_p, T lv_p) {
  if constexpr (kStandard) {
    return kl_standard(mu_q, lv_q);
  } else {
    return kl_general(mu_q, lv_q, mu_p, lv_p);
  }
}

// log((exp(a) + exp(b)) / 2) without overflow: the log-variance of the
// average of two variances (Ada-GVAE).
template <typename T>
PAF_MATH T log_mean_exp(T a, T b) {
  return vm::max(a, b) + vm::log1p(vm::exp(T(0) - vm::abs(a - b))) - T(0.6931471805599453);
}
// d log_mean_exp(a, b) / d a = exp(a) / (exp(a) + exp(b)) = sigmoid(a - b).
template <typename T>
PAF_MATH T log_mean_exp_weight(T a, T b) {
  return T(1) / (T(1) + vm::exp(b - a));
}
template <typename T>
PAF_MATH T kl_general_and_grad(T mu_q, T lv_q, T mu_p, T lv_p,
                                        T& d_mu_q, T& d_lv_q, T& d_mu_p,
                                        T& d_lv_p) {
  const T diff = mu_q - mu_p;
  const T t = lv_q - lv_p;
  const T ratio = vm::exp(t);
  const T scaled = vm::mul_or_zero(diff, vm::exp(T(0) - lv_p));  // (mu_q - mu_p) / var_p
  const T mahal = diff * scaled;
  d_mu_q = scaled;
  d_mu_p = T(0) - scaled;
  d_lv_q = T(0.5) * (ratio - T(1));
  d_lv_p = T(0.5) * (T(1) - ratio - mahal);
  return T(0.5) * (vm::exp_minus_self(ratio, t) + mahal - T(1));
}

}  // namespace paf
