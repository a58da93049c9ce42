// The per-element math of every op, written once for a scalar opmath type
// (float or double) and for at::vec::Vectorized of it. Kernels pick the
// scalar form for tails and the vector form for the body.
#pragma once

#include <ATen/cpu/vec/vec.h>
#include <c10/util/string_view.h>

#include <cmath>
#include <limits>
#include <string>
#include <type_traits>

namespace paf {

// ------------------------------------------- overloads for scalar / vector
namespace vm {
template <typename T>
C10_ALWAYS_INLINE T abs(T v) { return std::abs(v); }
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> abs(const at::vec::Vectorized<T>& v) {
  return v.abs();
}
// Scalars go through the same vector routine as the vector body (lane 0 of
// a broadcast), so an element's value does not depend on whether it falls
// in a vectorised body or a scalar tail, which TensorIterator's split of
// the work over threads decides: results are bitwise the same for any
// thread count. (In the DEFAULT build the vector routines are std::.)
template <typename T, typename VecFn>
C10_ALWAYS_INLINE T through_vector(T v, VecFn&& fn) {
  using Vec = at::vec::Vectorized<T>;
  T lanes[Vec::size()];
  fn(Vec(v)).store(lanes);
  return lanes[0];
}
template <typename T>
C10_ALWAYS_INLINE T exp(T v) {
  return through_vector(v, [](const auto& x) { return x.exp(); });
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> exp(const at::vec::Vectorized<T>& v) {
  return v.exp();
}
template <typename T>
C10_ALWAYS_INLINE T log1p(T v) {
  return through_vector(v, [](const auto& x) { return x.log1p(); });
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> log1p(const at::vec::Vectorized<T>& v) {
  return v.log1p();
}
template <typename T>
C10_ALWAYS_INLINE T log(T v) {
  return through_vector(v, [](const auto& x) { return x.log(); });
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> log(const at::vec::Vectorized<T>& v) {
  return v.log();
}
template <typename T>
C10_ALWAYS_INLINE T max(T a, T b) {
  // NaN-propagating, like torch.maximum.
  return (a != a || a > b) ? a : b;
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> max(const at::vec::Vectorized<T>& a,
                                             const at::vec::Vectorized<T>& b) {
  return at::vec::maximum(a, b);
}
// cond >= 0 ? a : b
template <typename T>
C10_ALWAYS_INLINE T if_nonneg(T cond, T a, T b) { return cond >= T(0) ? a : b; }
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> if_nonneg(
    const at::vec::Vectorized<T>& cond, const at::vec::Vectorized<T>& a,
    const at::vec::Vectorized<T>& b) {
  return at::vec::Vectorized<T>::blendv(b, a, cond >= at::vec::Vectorized<T>(0));
}
// x < y ? a : b (false for NaN, as the scalar comparison).
template <typename T>
C10_ALWAYS_INLINE T if_less(T x, T y, T a, T b) { return x < y ? a : b; }
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> if_less(const at::vec::Vectorized<T>& x,
                                                 const at::vec::Vectorized<T>& y,
                                                 const at::vec::Vectorized<T>& a,
                                                 const at::vec::Vectorized<T>& b) {
  return at::vec::Vectorized<T>::blendv(b, a, x < y);
}
// 0 for v in [0, 1], NaN otherwise (NaN included): adds "undefined" to a
// value whose argument must be a probability.
template <typename T>
C10_ALWAYS_INLINE T nan_outside_unit(T v) {
  return (v >= T(0) && v <= T(1)) ? T(0) : std::numeric_limits<T>::quiet_NaN();
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> nan_outside_unit(const at::vec::Vectorized<T>& v) {
  using Vec = at::vec::Vectorized<T>;
  return Vec::blendv(Vec(std::numeric_limits<T>::quiet_NaN()), Vec(0), (v >= Vec(0)) & (v <= Vec(1)));
}
template <typename T>
C10_ALWAYS_INLINE T mul_add(T a, T b, T c) { return a * b + c; }
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> mul_add(const at::vec::Vectorized<T>& a,
                                               const at::vec::Vectorized<T>& b,
                                               const at::vec::Vectorized<T>& c) {
  return at::vec::fmadd(a, b, c);
}

// c * v, but 0 where c is exactly 0 and v infinite: the limit the formulas
// below need where a coefficient vanishes (0 * inf is NaN). NaN v stays NaN.
template <typename T>
C10_ALWAYS_INLINE T mul_or_zero(T c, T v) {
  return (c == T(0) && std::isinf(v)) ? T(0) : c * v;
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> mul_or_zero(const at::vec::Vectorized<T>& c,
                                                   const at::vec::Vectorized<T>& v) {
  using Vec = at::vec::Vectorized<T>;
  const Vec inf(std::numeric_limits<T>::infinity());
  return Vec::blendv(c * v, Vec(0), (c == Vec(0)) & (v.abs() == inf));
}
// exp(t) - t given e = exp(t), and +inf at t = +inf, where exp dominates
// (the plain difference is inf - inf).
template <typename T>
C10_ALWAYS_INLINE T exp_minus_self(T e, T t) {
  return t == std::numeric_limits<T>::infinity() ? t : e - t;
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> exp_minus_self(const at::vec::Vectorized<T>& e,
                                                        const at::vec::Vectorized<T>& t) {
  using Vec = at::vec::Vectorized<T>;
  return Vec::blendv(e - t, t, t == Vec(std::numeric_limits<T>::infinity()));
}
// v, or l where l is NaN: carries a NaN argument through approximations
// (the clamping fast exp) that would turn it into a finite number.
template <typename T>
C10_ALWAYS_INLINE T propagate_nan(T v, T l) { return l != l ? l : v; }
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> propagate_nan(const at::vec::Vectorized<T>& v,
                                                       const at::vec::Vectorized<T>& l) {
  return at::vec::Vectorized<T>::blendv(v, l, l != l);
}

template <typename T>
inline constexpr bool is_float_v =
    std::is_same_v<T, float> || std::is_same_v<T, at::vec::Vectorized<float>>;

// exp(v) for v <= 0. float: ATen's 20-ulp polynomial (a few FMAs instead of
// Sleef's 1-ulp routine); double: the exact one.
template <typename T>
C10_ALWAYS_INLINE T exp_nonpositive(T v) {
  if constexpr (std::is_same_v<T, at::vec::Vectorized<float>>) {
    return v.exp_u20();
  } else if constexpr (std::is_same_v<T, float>) {
    return through_vector(v, [](const auto& x) { return x.exp_u20(); });
  } else {
    return exp(v);
  }
}

// log1p(e) for e in [0, 1]. float: 2 atanh(s) with s = e / (2 + e) <= 1/3,
// whose odd series s^(2k+1) / (2k+1) reaches float precision by k = 6;
// double: the exact log1p.
template <typename T>
C10_ALWAYS_INLINE T log1p_unit(T e) {
  if constexpr (is_float_v<T>) {
    const T s = e / (T(2.f) + e);
    const T w = s * s;
    T p = T(1.f / 13.f);
    p = mul_add(p, w, T(1.f / 11.f));
    p = mul_add(p, w, T(1.f / 9.f));
    p = mul_add(p, w, T(1.f / 7.f));
    p = mul_add(p, w, T(1.f / 5.f));
    p = mul_add(p, w, T(1.f / 3.f));
    p = mul_add(p, w, T(1.f));
    return T(2.f) * s * p;
  } else {
    return log1p(e);
  }
}

// sign(v) in {-1, 0, 1} (NaN stays NaN), the derivative torch uses for abs.
template <typename T>
C10_ALWAYS_INLINE T sign(T v) { return v != v ? v : T(v > T(0)) - T(v < T(0)); }
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> sign(const at::vec::Vectorized<T>& v) {
  using Vec = at::vec::Vectorized<T>;
  const Vec zero(0), one(1);
  return Vec::blendv(((v > zero) & one) - ((v < zero) & one), v, v != v);
}
}  // namespace vm

// -------------------------------------------------------- log-likelihoods
// BernoulliProbs: x_hat are probabilities, as torch.nn.functional.
// binary_cross_entropy takes them (nidl's BetaVAELoss).
enum class Likelihood { Gaussian, Bernoulli, Laplace, BernoulliProbs };

inline Likelihood parse_likelihood(c10::string_view name) {
  if (name == "gaussian") return Likelihood::Gaussian;
  if (name == "bernoulli") return Likelihood::Bernoulli;
  if (name == "laplace") return Likelihood::Laplace;
  if (name == "bernoulli_probs") return Likelihood::BernoulliProbs;
  TORCH_CHECK_VALUE(false, "likelihood: expected 'gaussian', 'bernoulli', "
                           "'laplace' or 'bernoulli_probs', got '", std::string(name), "'");
}

// ll(x, x_hat) and its partial derivatives. For Bernoulli x_hat are logits.
template <Likelihood L>
struct LogLikelihood;

template <>
struct LogLikelihood<Likelihood::Gaussian> {
  // -0.5 * (x_hat - x)^2
  template <typename T>
  static C10_ALWAYS_INLINE T value(T x, T x_hat) {
    const T d = x_hat - x;
    return T(-0.5) * d * d;
  }
  template <typename T>
  static C10_ALWAYS_INLINE T value_and_grad(T x, T x_hat, T& d_x_hat) {
    const T d = x_hat - x;
    d_x_hat = T(0) - d;
    return T(-0.5) * d * d;
  }
  template <typename T>
  static C10_ALWAYS_INLINE T grad_x_hat(T x, T x_hat) { return x - x_hat; }
  template <typename T>
  static C10_ALWAYS_INLINE T grad_x(T x, T x_hat) { return x_hat - x; }
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
  static C10_ALWAYS_INLINE T value(T x, T l) {
    const T e = vm::exp_nonpositive(T(0) - vm::abs(l));
    return linear(x, l) - vm::log1p_unit(e);
  }
  template <typename T>
  static C10_ALWAYS_INLINE T value_and_grad(T x, T l, T& d_l) {
    const T e = vm::exp_nonpositive(T(0) - vm::abs(l));
    d_l = x - sigmoid_from_exp(l, e);
    return linear(x, l) - vm::log1p_unit(e);
  }
  template <typename T>
  static C10_ALWAYS_INLINE T grad_x_hat(T x, T l) {
    return x - sigmoid_from_exp(l, vm::exp_nonpositive(T(0) - vm::abs(l)));
  }
  template <typename T>
  static C10_ALWAYS_INLINE T linear(T x, T l) {
    return vm::mul_or_zero(vm::if_nonneg(l, x - T(1), x), l);
  }
  // sigmoid(l) given e = exp(-|l|), without overflow for either sign; a
  // NaN logit stays NaN (the clamping fast exp would make e finite).
  template <typename T>
  static C10_ALWAYS_INLINE T sigmoid_from_exp(T l, T e) {
    const T r = T(1) / (T(1) + e);
    return vm::propagate_nan(vm::if_nonneg(l, r, e * r), l);
  }
  template <typename T>
  static C10_ALWAYS_INLINE T grad_x(T /*x*/, T l) { return l; }
};

template <>
struct LogLikelihood<Likelihood::Laplace> {
  // -|x_hat - x|
  template <typename T>
  static C10_ALWAYS_INLINE T value(T x, T x_hat) {
    return T(0) - vm::abs(x_hat - x);
  }
  template <typename T>
  static C10_ALWAYS_INLINE T value_and_grad(T x, T x_hat, T& d_x_hat) {
    const T d = x_hat - x;
    d_x_hat = T(0) - vm::sign(d);
    return T(0) - vm::abs(d);
  }
  template <typename T>
  static C10_ALWAYS_INLINE T grad_x_hat(T x, T x_hat) {
    return T(0) - vm::sign(x_hat - x);
  }
  template <typename T>
  static C10_ALWAYS_INLINE T grad_x(T x, T x_hat) { return vm::sign(x_hat - x); }
};

template <>
struct LogLikelihood<Likelihood::BernoulliProbs> {
  // x log p + (1 - x) log(1 - p) with both logs clamped at -100, and the
  // gradient -(p - x) / max(p (1 - p), 1e-12): torch's binary_cross_entropy.
  // A target x outside [0, 1] gives NaN (torch refuses it; the log of p
  // already gives NaN for p outside [0, 1]).
  template <typename T>
  static C10_ALWAYS_INLINE T value(T x, T p) {
    const T log_p = vm::max(vm::log(p), T(-100));
    const T log_q = vm::max(vm::log(T(1) - p), T(-100));
    return x * log_p + (T(1) - x) * log_q + vm::nan_outside_unit(x);
  }
  template <typename T>
  static C10_ALWAYS_INLINE T value_and_grad(T x, T p, T& d_p) {
    d_p = grad_x_hat(x, p);
    return value(x, p);
  }
  template <typename T>
  static C10_ALWAYS_INLINE T grad_x_hat(T x, T p) {
    return (x - p) / vm::max(p * (T(1) - p), T(1e-12));
  }
  template <typename T>
  static C10_ALWAYS_INLINE T grad_x(T /*x*/, T p) {
    return vm::max(vm::log(p), T(-100)) - vm::max(vm::log(T(1) - p), T(-100));
  }
};

// Calls fn(tag) where decltype(tag)::value is the likelihood as a
// compile-time constant, so each likelihood gets its own inner loop.
template <Likelihood L>
using LikelihoodTag = std::integral_constant<Likelihood, L>;

template <typename Fn>
decltype(auto) dispatch_likelihood(Likelihood l, Fn&& fn) {
  switch (l) {
    case Likelihood::Gaussian:
      return fn(LikelihoodTag<Likelihood::Gaussian>{});
    case Likelihood::Bernoulli:
      return fn(LikelihoodTag<Likelihood::Bernoulli>{});
    case Likelihood::Laplace:
      return fn(LikelihoodTag<Likelihood::Laplace>{});
    case Likelihood::BernoulliProbs:
      break;
  }
  return fn(LikelihoodTag<Likelihood::BernoulliProbs>{});
}

// ------------------------------------------------ diagonal-Gaussian KL
// KL(q || p) for one dimension and its partial derivatives. With the
// standard-normal prior (mu_p = lv_p = 0) the general form reduces to
// 0.5*(exp(lv_q) + mu_q^2 - 1 - lv_q). exp_minus_self and mul_or_zero give
// the limits at infinite log-variances (+inf, not inf - inf).
template <typename T>
C10_ALWAYS_INLINE T kl_standard(T mu, T lv) {
  return T(0.5) * (vm::exp_minus_self(vm::exp(lv), lv) + mu * mu - T(1));
}
// d/dmu = mu, d/dlv = 0.5*(exp(lv) - 1)
template <typename T>
C10_ALWAYS_INLINE T kl_standard_and_grad(T mu, T lv, T& d_mu, T& d_lv) {
  const T var = vm::exp(lv);
  d_mu = mu;
  d_lv = T(0.5) * (var - T(1));
  return T(0.5) * (vm::exp_minus_self(var, lv) + mu * mu - T(1));
}

template <typename T>
C10_ALWAYS_INLINE T kl_general(T mu_q, T lv_q, T mu_p, T lv_p) {
  const T diff = mu_q - mu_p;
  const T t = lv_q - lv_p;
  return T(0.5) * (vm::exp_minus_self(vm::exp(t), t) + vm::mul_or_zero(diff * diff, vm::exp(T(0) - lv_p)) - T(1));
}
// log((exp(a) + exp(b)) / 2) without overflow: the log-variance of the
// average of two variances (Ada-GVAE).
template <typename T>
C10_ALWAYS_INLINE T log_mean_exp(T a, T b) {
  return vm::max(a, b) + vm::log1p(vm::exp(T(0) - vm::abs(a - b))) - T(0.6931471805599453);
}
// d log_mean_exp(a, b) / d a = exp(a) / (exp(a) + exp(b)) = sigmoid(a - b).
template <typename T>
C10_ALWAYS_INLINE T log_mean_exp_weight(T a, T b) {
  return T(1) / (T(1) + vm::exp(b - a));
}
template <typename T>
C10_ALWAYS_INLINE T kl_general_and_grad(T mu_q, T lv_q, T mu_p, T lv_p,
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
