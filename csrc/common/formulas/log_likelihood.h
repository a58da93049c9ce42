// The per-element math of the log-likelihoods (part of common/formulas.h: include
// cpu/elementwise_math.h or cuda/device_math.cuh, which declare the paf::vm
// primitives these call, not this file).
#pragma once

#include "../likelihood.h"
#include "paf_math.h"

#include <cmath>
#include <type_traits>

namespace paf {

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

template <>
struct LogLikelihood<Likelihood::GaussianLogVar> {
  // -0.5 * (lv + (x_hat - x)^2 exp(-lv)): the Gaussian of log-variance lv
  // without its constant -0.5 log(2 pi), so lv = 0 is the Gaussian above.
  // mul_or_zero gives the limits where the residual is 0 and the variance
  // is 0 (lv = -inf: the density is infinite, the gradients 0).
  template <typename T>
  static PAF_MATH T value(T x, T x_hat, T lv) {
    const T d = x_hat - x;
    return T(-0.5) * (lv + vm::mul_or_zero(d * d, vm::exp(T(0) - lv)));
  }
  // d/dx_hat = (x - x_hat) exp(-lv), d/dlv = 0.5 ((x_hat - x)^2 exp(-lv) - 1)
  template <typename T>
  static PAF_MATH T value_and_grad(T x, T x_hat, T lv, T& d_x_hat, T& d_lv) {
    const T d = x_hat - x;
    const T precision = vm::exp(T(0) - lv);
    const T scaled = vm::mul_or_zero(d * d, precision);
    d_x_hat = vm::mul_or_zero(x - x_hat, precision);
    d_lv = T(0.5) * (scaled - T(1));
    return T(-0.5) * (lv + scaled);
  }
  template <typename T>
  static PAF_MATH T grad_x_hat(T x, T x_hat, T lv) { return vm::mul_or_zero(x - x_hat, vm::exp(T(0) - lv)); }
  template <typename T>
  static PAF_MATH T grad_x(T x, T x_hat, T lv) { return vm::mul_or_zero(x_hat - x, vm::exp(T(0) - lv)); }
  template <typename T>
  static PAF_MATH T grad_log_var(T x, T x_hat, T lv) {
    const T d = x_hat - x;
    return T(0.5) * (vm::mul_or_zero(d * d, vm::exp(T(0) - lv)) - T(1));
  }
};

// Every likelihood called with the log-variance operand lv, which only
// GaussianLogVar reads (the others ignore it, and their d/dlv is 0): the
// one form the kernels call, so each kernel has a single body for all five.
template <Likelihood L>
struct LikelihoodTerm {
  using Math = LogLikelihood<L>;
  static constexpr bool kReadsLogVar = reads_log_var(L);
  template <typename T>
  static PAF_MATH T value(T x, T x_hat, T lv) {
    if constexpr (kReadsLogVar) {
      return Math::value(x, x_hat, lv);
    } else {
      return Math::value(x, x_hat);
    }
  }
  template <typename T>
  static PAF_MATH T value_and_grad(T x, T x_hat, T lv, T& d_x_hat, T& d_lv) {
    if constexpr (kReadsLogVar) {
      return Math::value_and_grad(x, x_hat, lv, d_x_hat, d_lv);
    } else {
      d_lv = T(0);
      return Math::value_and_grad(x, x_hat, d_x_hat);
    }
  }
  // The partial derivative with respect to one input.
  template <typename T>
  static PAF_MATH T grad(LikelihoodInput wrt, T x, T x_hat, T lv) {
    if constexpr (kReadsLogVar) {
      if (wrt == LikelihoodInput::XLogVar) return Math::grad_log_var(x, x_hat, lv);
      return wrt == LikelihoodInput::X ? Math::grad_x(x, x_hat, lv) : Math::grad_x_hat(x, x_hat, lv);
    } else {
      if (wrt == LikelihoodInput::XLogVar) return T(0);
      return wrt == LikelihoodInput::X ? Math::grad_x(x, x_hat) : Math::grad_x_hat(x, x_hat);
    }
  }
};

}  // namespace paf
