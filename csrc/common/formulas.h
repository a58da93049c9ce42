// The per-element math of every op, written once: each likelihood's value
// and derivatives, the diagonal-Gaussian KL terms, the Ada-GVAE average and
// Box-Muller. Every formula is a template over T, which is a scalar opmath
// type (float, double) or, on the CPU, at::vec::Vectorized of one, and is
// C10_HOST_DEVICE, so the CPU kernels (csrc/cpu) and the CUDA kernels
// (csrc/cuda) run the same definitions.
//
// The formulas call primitives in namespace paf::vm (exp, log1p, selects,
// ...), which must be declared before this header: common/elementwise_math.h
// defines the CPU ones (scalar and Vectorized), cuda/device_math.cuh the
// device ones. Include one of those, not this header.
#pragma once

#include "likelihood.h"

#include <c10/macros/Macros.h>

#include <type_traits>

// Every formula: inlined, callable from host and device code.
#define PAF_MATH C10_HOST_DEVICE C10_ALWAYS_INLINE

namespace paf {

// -------------------------------------------------------- log-likelihoods
// ll(x, x_hat) and its partial derivatives. For Bernoulli x_hat are logits.
template <Likelihood L>
struct LogLikelihood;

template <>
struct LogLikelihood<Likelihood::Gaussian> {
  // -0.5 * (x_hat - x)^2
  template <typename T>
  static PAF_MATH T value(T x, T x_hat) {
    const T d = x_hat - x;
    return T(-0.5) * d * d;
  }
  template <typename T>
  static PAF_MATH T value_and_grad(T x, T x_hat, T& d_x_hat) {
    const T d = x_hat - x;
    d_x_hat = T(0) - d;
    return T(-0.5) * d * d;
  }
  template <typename T>
  static PAF_MATH T grad_x_hat(T x, T x_hat) { return x - x_hat; }
  template <typename T>
  static PAF_MATH T grad_x(T x, T x_hat) { return x_hat - x; }
};

template <>
struct LogLikelihood<Likelihood::Bernoulli> {
  // x*l - softplus(l) = linear(x, l) - log1p(exp(-|l|)) with
  // linear = x*l - max(l, 0), written as (x - 1)*l for l >= 0 and x*l
  // below, so that an infinite logit gives the limit (-inf, or 0 where the
  // coefficient vanishes) rather than inf - inf. This is the one
  // compute-bound likelihood: a single e = exp(-|l|) serves the value and
  // the sigmoid of the gradient, and both exp and log1p use short
  // polynomials on the bounded ranges they see here (see vm::).
  template <typename T>
  static PAF_MATH T value(T x, T l) {
    const T e = vm::exp_nonpositive(T(0) - vm::abs(l));
    return linear(x, l) - vm::log1p_unit(e);
  }
  template <typename T>
  static PAF_MATH T value_and_grad(T x, T l, T& d_l) {
    const T e = vm::exp_nonpositive(T(0) - vm::abs(l));
    d_l = x - sigmoid_from_exp(l, e);
    return linear(x, l) - vm::log1p_unit(e);
  }
  template <typename T>
  static PAF_MATH T grad_x_hat(T x, T l) {
    return x - sigmoid_from_exp(l, vm::exp_nonpositive(T(0) - vm::abs(l)));
  }
  template <typename T>
  static PAF_MATH T linear(T x, T l) {
    return vm::mul_or_zero(vm::if_nonneg(l, x - T(1), x), l);
  }
  // sigmoid(l) given e = exp(-|l|), without overflow for either sign; a
  // NaN logit stays NaN (the clamping fast exp would make e finite).
  template <typename T>
  static PAF_MATH T sigmoid_from_exp(T l, T e) {
    const T r = T(1) / (T(1) + e);
    return vm::propagate_nan(vm::if_nonneg(l, r, e * r), l);
  }
  template <typename T>
  static PAF_MATH T grad_x(T /*x*/, T l) { return l; }
};

template <>
struct LogLikelihood<Likelihood::Laplace> {
  // -|x_hat - x|
  template <typename T>
  static PAF_MATH T value(T x, T x_hat) {
    return T(0) - vm::abs(x_hat - x);
  }
  template <typename T>
  static PAF_MATH T value_and_grad(T x, T x_hat, T& d_x_hat) {
    const T d = x_hat - x;
    d_x_hat = T(0) - vm::sign(d);
    return T(0) - vm::abs(d);
  }
  template <typename T>
  static PAF_MATH T grad_x_hat(T x, T x_hat) {
    return T(0) - vm::sign(x_hat - x);
  }
  template <typename T>
  static PAF_MATH T grad_x(T x, T x_hat) { return vm::sign(x_hat - x); }
};

template <>
struct LogLikelihood<Likelihood::BernoulliProbs> {
  // x log p + (1 - x) log(1 - p) with both logs clamped at -100, and the
  // gradient -(p - x) / max(p (1 - p), 1e-12): torch's binary_cross_entropy.
  // A target x outside [0, 1] gives NaN (torch refuses it; the log of p
  // already gives NaN for p outside [0, 1]).
  template <typename T>
  static PAF_MATH T value(T x, T p) {
    const T log_p = vm::max(vm::log(p), T(-100));
    const T log_q = vm::max(vm::log(T(1) - p), T(-100));
    return x * log_p + (T(1) - x) * log_q + vm::nan_outside_unit(x);
  }
  template <typename T>
  static PAF_MATH T value_and_grad(T x, T p, T& d_p) {
    d_p = grad_x_hat(x, p);
    return value(x, p);
  }
  template <typename T>
  static PAF_MATH T grad_x_hat(T x, T p) {
    return (x - p) / vm::max(p * (T(1) - p), T(1e-12));
  }
  template <typename T>
  static PAF_MATH T grad_x(T /*x*/, T p) {
    return vm::max(vm::log(p), T(-100)) - vm::max(vm::log(T(1) - p), T(-100));
  }
};

// ------------------------------------------------ diagonal-Gaussian KL
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

// ------------------------------------------------------------- Ada-GVAE
// The four outputs of one element (or vector of elements) of a row whose
// threshold is tau: the average of the two posteriors where kl < tau (mean
// (m1 + m2) / 2, log-variance log_mean_exp(l1, l2)), the inputs elsewhere.
template <typename T>
struct Adapted {
  T mu1, lv1, mu2, lv2, averaged;  // averaged: 1 or 0
  PAF_MATH Adapted(T m1, T l1, T m2, T l2, T kl, T tau) {
    const T mu = T(0.5) * (m1 + m2), lv = log_mean_exp(l1, l2);
    mu1 = vm::if_less(kl, tau, mu, m1);
    lv1 = vm::if_less(kl, tau, lv, l1);
    mu2 = vm::if_less(kl, tau, mu, m2);
    lv2 = vm::if_less(kl, tau, lv, l2);
    averaged = vm::if_less(kl, tau, T(1), T(0));
  }
};

// The gradients of one element (or vector) given the upstream ones:
// averaged dimensions: d mu_avg / d mu_i = 1/2 and d lv_avg / d lv_1 =
// sigmoid(lv1 - lv2); the selection (the mask) is piecewise constant.
template <typename T>
struct AdaptedGrad {
  T mu1, lv1, mu2, lv2;
  PAF_MATH AdaptedGrad(T gm1, T gl1, T gm2, T gl2, T l1, T l2, T averaged) {
    const T mu = T(0.5) * (gm1 + gm2), gl = gl1 + gl2;
    const T zero(0);
    mu1 = vm::if_less(zero, averaged, mu, gm1);
    mu2 = vm::if_less(zero, averaged, mu, gm2);
    lv1 = vm::if_less(zero, averaged, log_mean_exp_weight(l1, l2) * gl, gl1);
    lv2 = vm::if_less(zero, averaged, log_mean_exp_weight(l2, l1) * gl, gl2);
  }
};

// ---------------------------------------------------------- Box-Muller
// Two standard normals from two uniforms in (0, 1) (common/philox_normal.h
// makes them from Philox bits): r = sqrt(-2 log u1), theta = 2 pi u2.
template <typename T>
PAF_MATH void box_muller(T u1, T u2, T& cos_part, T& sin_part) {
  const T radius = vm::sqrt(T(-2) * vm::log(u1));
  const T theta = T(6.283185307179586) * u2;
  cos_part = radius * vm::cos(theta);
  sin_part = radius * vm::sin(theta);
}

}  // namespace paf
