// The per-element math of the count likelihoods (part of common/formulas.h: include
// cpu/elementwise_math.h or cuda/device_math.cuh, which declare the paf::vm
// primitives these call, not this file).
#pragma once

#include "../likelihood.h"
#include "paf_math.h"

#include <cmath>
#include <type_traits>

namespace paf {

// The log-pmfs of counts x (scvi-tools' negative binomial, zero-inflated NB
// and torch's Poisson) and their partial derivatives, accurate in float32
// at any dispersion: scvi's lgamma(x + theta) - lgamma(theta) loses all
// precision once theta is large (1.7e9 - 1.7e9 at theta = 1e8), so from
// theta >= kStirlingTheta both lgammas come from Stirling's series and their
// difference is formed analytically, with x log(theta) cancelled against the
// x log(theta + mu) of the NB term.

// Series of three functions of v >= 0 that cancel near v = 0, through
// s = v / (2 + v), w = s^2 and P(w) = sum_k w^k / (2k + 3) (log1p(v) =
// 2 atanh(s)); 12 terms reach double precision for v < 1/2 (s < 1/5).
template <typename T>
PAF_MATH T atanh_series_tail(T w) {
  T p = T(1.0 / 25);
  for (int k = 10; k >= 0; --k) p = vm::mul_add(p, w, T(1.0 / (2 * k + 3)));
  return p;
}
constexpr double kSeriesBelow = 0.5;

// log1p(v) - v
template <typename T>
PAF_MATH T log1p_minus_self(T v) {
  const T s = v / (T(2) + v), p = atanh_series_tail(s * s);
  const T series = T(-2) * s * s * (T(1) / (T(1) - s) - s * p);
  return vm::if_less(v, T(kSeriesBelow), series, vm::log1p(v) - v);
}
// v / (1 + v) - log1p(v)
template <typename T>
PAF_MATH T ratio_minus_log1p(T v) {
  const T s = v / (T(2) + v), p = atanh_series_tail(s * s);
  const T series = T(-2) * s * s * (T(1) / (T(1) + s) + s * p);
  return vm::if_less(v, T(kSeriesBelow), series, v / (T(1) + v) - vm::log1p(v));
}
// (1 + v) log1p(v) - v: the series, for |v| < 1/2 (s in (-1/3, 1/5)) ...
template <typename T>
PAF_MATH T xlog1p_minus_self_series(T v) {
  const T s = v / (T(2) + v), w = s * s, p = atanh_series_tail(w);
  return T(2) * w / (T(1) - s) * (T(1) + w * p + s * p);
}
// ... and for any v >= 0
template <typename T>
PAF_MATH T xlog1p_minus_self(T v) {
  return vm::if_less(v, T(kSeriesBelow), xlog1p_minus_self_series(v), (T(1) + v) * vm::log1p(v) - v);
}

constexpr double kHalfLog2Pi = 0.91893853320467274;  // log(2 pi) / 2
// From this theta on, the NB's lgamma(x + theta) - lgamma(theta) comes from
// Stirling's series (negative_binomial_gamma_terms)
constexpr double kStirlingTheta = 10;

// Stirling's series, used for z >= kStirlingShift: lgamma(z) =
// (z - 1/2) log z - z + log(2 pi) / 2 + lgamma_rest(z) and digamma(z) =
// log z - 1/(2z) + digamma_rest(z) (its derivative); 7 terms leave 3e-17
// at z = 10.
constexpr double kStirlingShift = 10;
template <typename T>
PAF_MATH T lgamma_rest(T z) {
  const T r = T(1) / z, r2 = r * r;
  T p = T(1.0 / 156);
  p = vm::mul_add(p, r2, T(-691.0 / 360360));
  p = vm::mul_add(p, r2, T(1.0 / 1188));
  p = vm::mul_add(p, r2, T(-1.0 / 1680));
  p = vm::mul_add(p, r2, T(1.0 / 1260));
  p = vm::mul_add(p, r2, T(-1.0 / 360));
  p = vm::mul_add(p, r2, T(1.0 / 12));
  return p * r;
}
template <typename T>
PAF_MATH T digamma_rest(T z) {
  const T r2 = T(1) / (z * z);
  T p = T(-1.0 / 12);
  p = vm::mul_add(p, r2, T(691.0 / 32760));
  p = vm::mul_add(p, r2, T(-1.0 / 132));
  p = vm::mul_add(p, r2, T(1.0 / 240));
  p = vm::mul_add(p, r2, T(-1.0 / 252));
  p = vm::mul_add(p, r2, T(1.0 / 120));
  p = vm::mul_add(p, r2, T(-1.0 / 12));
  return p * r2;
}

// rest(theta + x) - rest(theta) of both series, for x >= 0, without the
// cancellation of the plain difference (a rounding of rest(theta) is more
// than the whole difference at small x / theta, and two evaluations of the
// same function may round differently once inlined): with q = theta /
// (theta + x), (theta + x)^-n - theta^-n = theta^-n (q^n - 1) and
// q^n - 1 = (q - 1)(1 + q + ... + q^(n-1)), q - 1 = -x / (theta + x).
// Exactly 0 at x = 0.
template <typename T>
struct StirlingRestDifference {
  T total = T(0), power, geometric = T(1), q_power = T(1);
  // One term c z^-n of the series: total += c theta^-n (1 + ... + q^(n-1)),
  // then power and geometric move on by `step` powers (1 or 2 of q).
  PAF_MATH void add(T c, T power_step, T q, int step) {
    total = vm::mul_add(c * power, geometric, total);
    power = power * power_step;
    for (int i = 0; i < step; ++i) {
      q_power = q_power * q;
      geometric = geometric + q_power;
    }
  }
};
template <typename T>
PAF_MATH T lgamma_rest_difference(T theta, T x) {
  const T q = theta / (theta + x), r = T(1) / theta, r2 = r * r;
  StirlingRestDifference<T> d{T(0), r};  // powers theta^-1, -3, ...: geometric sums of 1, 3, ... powers of q
  d.add(T(1.0 / 12), r2, q, 2);
  d.add(T(-1.0 / 360), r2, q, 2);
  d.add(T(1.0 / 1260), r2, q, 2);
  d.add(T(-1.0 / 1680), r2, q, 2);
  d.add(T(1.0 / 1188), r2, q, 2);
  d.add(T(-691.0 / 360360), r2, q, 2);
  d.add(T(1.0 / 156), r2, q, 2);
  return (T(0) - x / (theta + x)) * d.total;
}
template <typename T>
PAF_MATH T digamma_rest_difference(T theta, T x) {
  const T q = theta / (theta + x), r2 = T(1) / (theta * theta);
  const T q2 = q * q, q2_minus_1 = (T(0) - x / (theta + x)) * (q + T(1));
  StirlingRestDifference<T> d{T(0), r2};  // powers theta^-2, -4, ...: geometric sums in q^2
  d.add(T(-1.0 / 12), r2, q2, 1);
  d.add(T(1.0 / 120), r2, q2, 1);
  d.add(T(-1.0 / 252), r2, q2, 1);
  d.add(T(1.0 / 240), r2, q2, 1);
  d.add(T(-1.0 / 132), r2, q2, 1);
  d.add(T(691.0 / 32760), r2, q2, 1);
  d.add(T(-1.0 / 12), r2, q2, 1);
  return q2_minus_1 * d.total;
}

template <typename T>
PAF_MATH T stirling_lgamma(T z) {
  return (z - T(0.5)) * vm::log(z) - z + T(kHalfLog2Pi) + lgamma_rest(z);
}
template <typename T>
PAF_MATH T stirling_digamma(T z) {
  return vm::log(z) - T(0.5) / z + digamma_rest(z);
}

// z > 0 moved up to z + 10 >= 10 where below 10 (branch-free, so vectors
// of mixed z work): lgamma(z) = lgamma(z + 10) - log(prod), digamma(z) =
// digamma(z + 10) - d prod / prod, prod = z (z + 1) ... (z + 9) (< 4e11).
template <typename T>
struct ShiftedGammaArgument {
  T z, prod, d_prod;
  PAF_MATH explicit ShiftedGammaArgument(T v) : z(v), prod(T(1)), d_prod(T(0)) {
    const T shifted = vm::if_less(v, T(kStirlingShift), T(1), T(0));
    T offset(0);
    for (int k = 0; k < static_cast<int>(kStirlingShift); ++k) {
      const T factor = vm::if_less(v, T(kStirlingShift), v + offset, T(1));
      d_prod = d_prod * factor + prod * shifted;
      prod = prod * factor;
      offset = offset + T(1);
    }
    z = v + shifted * T(kStirlingShift);
  }
  PAF_MATH T lgamma() const { return stirling_lgamma(z) - vm::log(prod); }
  PAF_MATH T digamma() const { return stirling_digamma(z) - d_prod / prod; }
};

// lgamma(theta + x) - lgamma(theta) and digamma(theta + x) - digamma(theta)
// for x >= 0 and theta < 10 (the NB's plain-difference branch). For the
// commonest counts, integers x <= kProductCounts, the log of the product
// theta (theta + 1) ... (theta + x - 1) and its logarithmic derivative: no
// lgamma, and no cancellation of digamma(theta) ~ -1/theta at small theta;
// exactly 0 at x = 0. Any other x: the product to kProductCounts, which
// moves theta up to where Stirling's series holds, and lgamma(theta + x) -
// lgamma(theta + kProductCounts), computed only where a lane needs it.
constexpr int kProductCounts = 16;
template <typename T>
struct GammaDifference {
  T lgamma, digamma;
};
template <typename M, typename T>
PAF_MATH GammaDifference<T> select_lanes(const M& mask, const GammaDifference<T>& a, const GammaDifference<T>& b) {
  return {vm::select_lanes(mask, a.lgamma, b.lgamma), vm::select_lanes(mask, a.digamma, b.digamma)};
}
template <typename T>
PAF_MATH GammaDifference<T> gamma_difference_small_theta(T x, T theta) {
  const T factors = vm::if_count_at_most(x, T(kProductCounts), x, T(kProductCounts));
  T prod(1), d_prod(0), k(0);
  // (to the largest lane's count: the rest would multiply by 1)
  const int n = vm::max_lane_count(factors);
  for (int i = 0; i < n; ++i) {
    const T inside = vm::if_less(k, factors, T(1), T(0));
    const T factor = vm::if_less(k, factors, theta + k, T(1));
    d_prod = vm::mul_add(d_prod, factor, prod * inside);
    prod = prod * factor;
    k = k + T(1);
  }
  const GammaDifference<T> product{vm::log(prod), d_prod / prod};
  return vm::if_less_lazy(
      T(0), vm::abs(x - factors),
      [&] {
        // + lgamma(theta + x) - lgamma(z), z = theta + kProductCounts >= 10.
        // theta + x is >= 10 too but for a non-integer x below
        // kProductCounts (a relaxed count), which alone needs shifting; a
        // lane of the product stands in for it with z.
        const T z = theta + T(kProductCounts), z_x = vm::if_less(T(0), vm::abs(x - factors), x + theta, z);
        const GammaDifference<T> rest = vm::if_less_lazy(
            z_x, T(kStirlingShift),
            [&] {
              const ShiftedGammaArgument<T> g(z_x);
              return GammaDifference<T>{g.lgamma(), g.digamma()};
            },
            [&] { return GammaDifference<T>{stirling_lgamma(z_x), stirling_digamma(z_x)}; });
        return GammaDifference<T>{product.lgamma + (rest.lgamma - stirling_lgamma(z)),
                                  product.digamma + (rest.digamma - stirling_digamma(z))};
      },
      [&] { return product; });
}

// lgamma(x + 1), exactly 0 at x = 0 and x = 1 (the commonest counts); the
// CPU reads small counts from a table (vm::log_factorial_or).
template <typename T>
PAF_MATH T log_factorial(T x) {
  return vm::log_factorial_or(x, [](T v) {
    const T value = ShiftedGammaArgument<T>(v + T(1)).lgamma();
    return vm::if_less(vm::abs(v * (v - T(1))), T(1e-30f), T(0), value);
  });
}

// Counts of any size. Below kSaddleCount the log-pmfs are the sums of
// their terms as written; from there those terms (x log m, lgamma(x + 1),
// ...) are O(x log x) while the log-pmf is O(log x), so float32 would keep
// none of its digits at bulk-RNA counts (x = 3e7: a rounding of the terms
// is 32 nats). The saddle-point form (Loader, 2000) forms the same value
// from terms of its own size: Stirling's errors, log-ratios and the
// deviances below.
constexpr double kSaddleCount = 32;

// Stirling's error of lgamma(z + 1), lgamma(z + 1) - ((z + 1/2) log z - z +
// log(2 pi) / 2): the series for z >= 10 (lgamma(z + 1) = lgamma(z) + log z),
// else from lgamma(z) itself.
template <typename T>
PAF_MATH T stirling_error(T z) {
  return vm::if_less_lazy(
      z, T(kStirlingShift),
      [&] { return ShiftedGammaArgument<T>(z).lgamma() - (z - T(0.5)) * vm::log(z) + z - T(kHalfLog2Pi); },
      [&] { return lgamma_rest(z); });
}

// The deviance k log(k / M) + M - k >= 0 of a count k against a mean M (bd0
// in Loader's paper), given r = k / M and v = r - 1, each formed by the
// caller without cancellation: near r = 1 (|v| < 1/2) M ((1 + v) log1p(v) -
// v) from the series, elsewhere k log r + M - k (k = 0: M; M = 0: inf).
template <typename T>
PAF_MATH T deviance(T M, T k, T r, T v) {
  const T near = vm::abs(v);
  return vm::if_less(near, T(kSeriesBelow), M * xlog1p_minus_self_series(vm::if_less(near, T(kSeriesBelow), v, T(0))),
                     vm::mul_or_zero(k, vm::log(r)) + M - k);
}

// log Poisson(x; m) for x >= kSaddleCount: -stirling_error(x) - deviance(x
// against m) - log(2 pi x) / 2.
template <typename T>
PAF_MATH T poisson_saddle_point(T x, T m) {
  return T(0) - lgamma_rest(x) - deviance(m, x, x / m, (x - m) / m) - T(0.5) * vm::log(x) - T(kHalfLog2Pi);
}

// scvi's log NB(x) for x >= kSaddleCount (m = mu + eps): with n = x + theta,
// NB(x) = theta / n Binomial(theta; n, theta / (theta + m)) and the binomial
// in saddle-point form: log(theta / n) + log(n / (2 pi theta x)) / 2 +
// stirling_error(n) - stirling_error(theta) - stirling_error(x) - deviance(theta
// against n theta / (theta + m)) - deviance(x against n m / (theta + m)),
// plus scvi's theta log((theta + eps) / theta). The deviances' ratios and
// their distances from 1, (theta + m) / n - 1 = (m - x) / n and x (theta +
// m) / (n m) - 1 = theta (x - m) / (n m), are formed directly. In two
// parts, log NB(x) = shared - deviances: the terms of x and theta alone
// (the prefactor, the Stirling errors, scvi's eps term), computed once for
// means that share x and theta ...
template <typename T>
PAF_MATH T negative_binomial_saddle_point_shared(T x, T theta, T eps) {
  const T n = x + theta;
  const T prefactor = T(-0.5) * (vm::log1p(x / theta) + vm::log(x)) - T(kHalfLog2Pi);
  const T stirling = vm::if_less_lazy(
                         theta, T(kStirlingTheta), [&] { return lgamma_rest(n) - stirling_error(theta); },
                         [&] { return lgamma_rest_difference(theta, x); }) -
                     lgamma_rest(x);
  return prefactor + stirling + theta * vm::log1p(eps / theta);
}
// ... and the two deviances, which depend on m.
template <typename T>
PAF_MATH T negative_binomial_saddle_point_deviances(T x, T m, T theta) {
  const T n = x + theta, tm = theta + m;
  const T theta_term = deviance(n * theta / tm, theta, tm / n, (m - x) / n);
  const T x_term = deviance(n * m / tm, x, x * tm / (n * m), theta * (x - m) / (n * m));
  return theta_term + x_term;
}

// 0 where v >= 0 (or v > 0), NaN elsewhere: added to every output so that
// a count, mean or dispersion outside its domain gives NaN. (A NaN v gives
// 0 here and NaN through the formula itself.)
template <typename T>
PAF_MATH T nan_if_negative(T v) {
  return vm::nan_outside_unit(vm::if_less(v, T(0), T(2), T(0)));
}
template <typename T>
PAF_MATH T nan_unless_positive(T v) {
  return vm::nan_outside_unit(vm::if_less(T(0), v, T(0), T(2)));
}

// sigmoid(v), sigmoid(-v), softplus(v) and softplus(-v) from one e =
// exp(-|v|) (the fast exp and log1p of the Bernoulli likelihood), each
// accurate where it is small (1 - sigmoid(v) would lose sigmoid(-v)'s
// digits); +-inf give the limits, NaN stays NaN.
template <typename T>
struct Logistic {
  T v, e, r;  // r = 1 / (1 + e)
  PAF_MATH explicit Logistic(T v_) : v(v_), e(vm::exp_nonpositive(T(0) - vm::abs(v_))), r(T(1) / (T(1) + e)) {}
  PAF_MATH T sigmoid() const { return vm::propagate_nan(vm::if_nonneg(v, r, e * r), v); }
  PAF_MATH T sigmoid_of_minus() const { return vm::propagate_nan(vm::if_nonneg(v, e * r, r), v); }
  PAF_MATH T softplus() const { return vm::max(v, T(0)) + vm::log1p_unit(e); }
  PAF_MATH T softplus_of_minus() const { return vm::max(T(0) - v, T(0)) + vm::log1p_unit(e); }
  // log(exp(a) + exp(b)) given v = a - b: max(a, b) + log1p(e); a = b = +-inf
  // (v NaN) gives that infinity, a NaN argument NaN.
  PAF_MATH T logaddexp(T a, T b) const {
    return vm::max(a, b) + vm::if_less(vm::abs(v), T(INFINITY), vm::log1p_unit(e), T(0));
  }
};

// The partial derivatives of one element's log-pmf, and the log-pmf with
// them (what a branch of if_less_lazy returns).
template <typename T>
struct CountGrads {
  T x, mu, theta, zi_logits;
};
template <typename T>
struct CountTerms {
  T value;
  CountGrads<T> grad;
};
// K values, and the terms of K negative binomials that share x and theta
// (a mixture's two components when they share theta: their terms of x and
// theta alone are computed once).
template <typename T, int K>
struct ValuesOf {
  T v[K];
};
template <typename T, int K>
struct CountTermsOf {
  CountTerms<T> k[K];
};
// The lane-by-lane blends if_less_lazy uses for vectors of these (found by
// argument-dependent lookup).
template <typename M, typename T>
PAF_MATH CountTerms<T> select_lanes(const M& mask, const CountTerms<T>& a, const CountTerms<T>& b) {
  return {vm::select_lanes(mask, a.value, b.value),
          {vm::select_lanes(mask, a.grad.x, b.grad.x), vm::select_lanes(mask, a.grad.mu, b.grad.mu),
           vm::select_lanes(mask, a.grad.theta, b.grad.theta),
           vm::select_lanes(mask, a.grad.zi_logits, b.grad.zi_logits)}};
}
template <typename M, typename T, int K>
PAF_MATH ValuesOf<T, K> select_lanes(const M& mask, const ValuesOf<T, K>& a, const ValuesOf<T, K>& b) {
  ValuesOf<T, K> r;
  for (int i = 0; i < K; ++i) r.v[i] = vm::select_lanes(mask, a.v[i], b.v[i]);
  return r;
}
template <typename M, typename T, int K>
PAF_MATH CountTermsOf<T, K> select_lanes(const M& mask, const CountTermsOf<T, K>& a, const CountTermsOf<T, K>& b) {
  CountTermsOf<T, K> r;
  for (int i = 0; i < K; ++i) r.k[i] = select_lanes(mask, a.k[i], b.k[i]);
  return r;
}

// 1 / theta below this: theta = +inf, the NB's Poisson limit (beyond 1e30
// the two agree to double precision). Negative theta lands here too (its
// domain term makes it NaN); NaN theta does not.
constexpr float kPoissonLimit = 1e-30f;

// scvi-tools' log_nb_positive at one element, with its eps: theta (log(theta
// + eps) - log(theta + mu + eps)) + x (log(mu + eps) - log(theta + mu + eps))
// + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1).
//
// The first term, the log-pmf at x = 0, is at_zero: -theta log1p(u), u = mu
// / (theta + eps), with its derivatives (ZINB needs them on their own).
template <typename T, bool kGrad>
struct NegativeBinomialAtZero {
  T value, mu = T(0), theta = T(0);
  NegativeBinomialAtZero() = default;
  PAF_MATH NegativeBinomialAtZero(T mu_, T theta_, T eps) {
    const T u = mu_ / (theta_ + eps);
    const T poisson_limit = T(1) / theta_;  // < kPoissonLimit: theta = inf, where theta log1p(u) is inf * 0
    value = vm::if_less(poisson_limit, T(kPoissonLimit), T(0) - mu_, T(0) - theta_ * vm::log1p(u));
    if constexpr (kGrad) {
      mu = vm::if_less(poisson_limit, T(kPoissonLimit), T(-1), T(0) - theta_ / (theta_ + mu_ + eps));
      // theta / (theta + eps) u / (1 + u) - log1p(u), without its cancellation
      theta = ratio_minus_log1p(u) - eps / (theta_ + eps) * (u / (T(1) + u));
    }
  }
};

// The rest of the log-pmf, x (log m - log(theta + m)) + lgamma(x + theta) -
// lgamma(theta) (m = mu + eps), and its theta derivative, at each of K means
// (the terms of x and theta alone once):
// - theta < 10: the plain differences (gamma_difference_small_theta);
// - theta >= 10: both lgammas from Stirling's series, the difference formed
//   analytically with x log(theta) cancelled: x (log m - log1p(m / theta))
//   + theta ((1 + t) log1p(t) - t) - log1p(t) / 2 + rest difference, t =
//   x / theta.
// Only the branch a scalar takes is evaluated.
template <typename T, bool kGrad, int K>
PAF_MATH CountTermsOf<T, K> negative_binomial_gamma_terms(T x, const T (&m)[K], T theta) {
  return vm::if_less_lazy(
      theta, T(kStirlingTheta),
      [&] {
        const GammaDifference<T> g = gamma_difference_small_theta(x, theta);
        CountTermsOf<T, K> r;
        for (int i = 0; i < K; ++i) {
          r.k[i] = {x * (vm::log(m[i]) - vm::log(theta + m[i])) + g.lgamma, {T(0), T(0), T(0), T(0)}};
          if constexpr (kGrad) r.k[i].grad.theta = g.digamma - x / (theta + m[i]);
        }
        return r;
      },
      [&] {
        const T t = x / theta;
        const T shared = theta * xlog1p_minus_self(t) - T(0.5) * vm::log1p(t) + lgamma_rest_difference(theta, x);
        T shared_theta_grad(0);
        if constexpr (kGrad) {
          shared_theta_grad =
              log1p_minus_self(t) + x / (T(2) * theta * (theta + x)) + digamma_rest_difference(theta, x);
        }
        CountTermsOf<T, K> r;
        for (int i = 0; i < K; ++i) {
          r.k[i] = {x * (vm::log(m[i]) - vm::log1p(m[i] / theta)) + shared, {T(0), T(0), T(0), T(0)}};
          if constexpr (kGrad) r.k[i].grad.theta = x * m[i] / (theta * (theta + m[i])) + shared_theta_grad;
        }
        return r;
      });
}

// log NB(x) at a finite theta and its derivatives (x's with kGradX), at
// each of K means.
template <bool kGrad, bool kGradX, typename T, int K>
PAF_MATH CountTermsOf<T, K> negative_binomials_finite(T x, const T (&mu)[K], T theta, T eps, T domain) {
  T m[K];
  NegativeBinomialAtZero<T, kGrad> at_zero[K];
  for (int i = 0; i < K; ++i) {
    m[i] = mu[i] + eps;
    at_zero[i] = NegativeBinomialAtZero<T, kGrad>(mu[i], theta, eps);
  }
  const CountTermsOf<T, K> gamma = negative_binomial_gamma_terms<T, kGrad>(x, m, theta);
  const ValuesOf<T, K> value = vm::if_less_lazy(
      x, T(kSaddleCount),
      [&] {
        const T log_factorial_x = log_factorial(x);
        ValuesOf<T, K> v;
        for (int i = 0; i < K; ++i) v.v[i] = at_zero[i].value + gamma.k[i].value - log_factorial_x;
        return v;
      },
      [&] {
        const T shared = negative_binomial_saddle_point_shared(x, theta, eps);
        ValuesOf<T, K> v;
        for (int i = 0; i < K; ++i) v.v[i] = shared - negative_binomial_saddle_point_deviances(x, m[i], theta);
        return v;
      });
  T digamma_difference(0);
  if constexpr (kGradX) {
    digamma_difference = ShiftedGammaArgument<T>(x + theta).digamma() - ShiftedGammaArgument<T>(x + T(1)).digamma();
  }
  CountTermsOf<T, K> r;
  for (int i = 0; i < K; ++i) {
    r.k[i] = {value.v[i] + domain, {T(0), T(0), T(0), T(0)}};
    if constexpr (kGrad) {
      // x / m - (theta + x) / (theta + m), without its cancellation
      r.k[i].grad.mu = theta * (x - m[i]) / (m[i] * (theta + m[i])) + domain;
      r.k[i].grad.theta = at_zero[i].theta + gamma.k[i].grad.theta + domain;
    }
    if constexpr (kGradX) r.k[i].grad.x = vm::log(m[i]) - vm::log(theta + m[i]) + digamma_difference + domain;
  }
  return r;
}

// log NB(x) at theta = +inf, its Poisson limit: x log m - mu - lgamma(x + 1)
// (m = mu + eps), and the limits of its derivatives (theta's is 0).
template <bool kGrad, bool kGradX, typename T>
PAF_MATH CountTerms<T> negative_binomial_poisson_limit(T x, T mu, T eps, T domain) {
  const T m = mu + eps, log_m = vm::log(m);
  const T value = vm::if_less_lazy(
      x, T(kSaddleCount), [&] { return vm::mul_or_zero(x, log_m) - mu - log_factorial(x); },
      [&] { return poisson_saddle_point(x, m) + eps; });
  CountTerms<T> r{value + domain, {T(0), T(0), T(0), T(0)}};
  if constexpr (kGrad) {
    r.grad.mu = vm::if_less(T(0), x, x / m, T(0)) - T(1) + domain;  // at x = 0: -1
    r.grad.theta = domain;
  }
  if constexpr (kGradX) r.grad.x = log_m - ShiftedGammaArgument<T>(x + T(1)).digamma() + domain;
  return r;
}

// log NB(x) and its derivatives (x's with kGradX) at each of K means that
// share x and theta. `domain` (0 or NaN) is added to every output. The
// value is the sum of the terms below kSaddleCount, the saddle-point form
// from there.
template <bool kGrad, bool kGradX, typename T, int K>
PAF_MATH CountTermsOf<T, K> negative_binomials(T x, const T (&mu)[K], T theta, T eps, T domain) {
  return vm::if_less_lazy(
      T(1) / theta, T(kPoissonLimit),
      [&] {
        CountTermsOf<T, K> r;
        for (int i = 0; i < K; ++i) r.k[i] = negative_binomial_poisson_limit<kGrad, kGradX>(x, mu[i], eps, domain);
        return r;
      },
      [&] { return negative_binomials_finite<kGrad, kGradX>(x, mu, theta, eps, domain); });
}
// ... at one mean.
template <bool kGrad, bool kGradX, typename T>
PAF_MATH CountTerms<T> negative_binomial(T x, T mu, T theta, T eps, T domain) {
  const T means[1] = {mu};
  return negative_binomials<kGrad, kGradX>(x, means, theta, eps, domain).k[0];
}

// One element's log-pmf and, with kGrad / kGradX, its partial derivatives
// (the others 0): terms(x, mu, theta, zi_logits, eps). A parameter the
// likelihood does not have is ignored.
template <CountLikelihood L>
struct CountLogLikelihood;

template <>
struct CountLogLikelihood<CountLikelihood::NegativeBinomial> {
  template <bool kGrad, bool kGradX, typename T>
  static PAF_MATH CountTerms<T> terms(T x, T mu, T theta, T /*zi_logits*/, T eps) {
    return negative_binomial<kGrad, kGradX>(x, mu, theta, eps,
                                            nan_if_negative(x) + nan_if_negative(mu) + nan_unless_positive(theta));
  }
};

// scvi-tools' log_zinb_positive: with the dropout logits pi, x < eps gives
// log(sigmoid(pi) + sigmoid(-pi) NB(0)) = softplus(at_zero - pi) -
// softplus(-pi), other x log NB(x) - softplus(pi). Only the case that
// applies is evaluated (scvi mixes both, so a NaN in the other leaks).
template <>
struct CountLogLikelihood<CountLikelihood::ZeroInflatedNegativeBinomial> {
  template <bool kGrad, bool kGradX, typename T>
  static PAF_MATH CountTerms<T> terms(T x, T mu, T theta, T pi, T eps) {
    const T domain = nan_if_negative(x) + nan_if_negative(mu) + nan_unless_positive(theta);
    return vm::if_less_lazy(
        x, eps,
        [&] {
          const NegativeBinomialAtZero<T, kGrad> at_zero(mu, theta, eps);
          const Logistic<T> a(at_zero.value - pi), p(pi);
          CountTerms<T> r{a.softplus() - p.softplus_of_minus() + domain, {domain, T(0), T(0), T(0)}};
          if constexpr (kGrad) {
            const T w = a.sigmoid();  // the NB's share of the probability of a zero
            r.grad.mu = w * at_zero.mu + domain;
            r.grad.theta = w * at_zero.theta + domain;
            r.grad.zi_logits = p.sigmoid_of_minus() - w + domain;
          }
          return r;
        },
        [&] {
          CountTerms<T> r = negative_binomial<kGrad, kGradX>(x, mu, theta, eps, domain);
          const Logistic<T> p(pi);
          r.value = r.value - p.softplus();
          if constexpr (kGrad) r.grad.zi_logits = T(0) - p.sigmoid() + domain;
          return r;
        });
  }
};

// torch's Poisson(rate).log_prob: xlogy(x, mu) - mu - lgamma(x + 1) (from
// kSaddleCount on in saddle-point form).
template <>
struct CountLogLikelihood<CountLikelihood::Poisson> {
  template <bool kGrad, bool kGradX, typename T>
  static PAF_MATH CountTerms<T> terms(T x, T mu, T /*theta*/, T /*zi_logits*/, T /*eps*/) {
    const T domain = nan_if_negative(x) + nan_if_negative(mu);
    const T log_mu = vm::log(mu);
    const T value = vm::if_less_lazy(
        x, T(kSaddleCount), [&] { return vm::mul_or_zero(x, log_mu) - mu - log_factorial(x); },
        [&] { return poisson_saddle_point(x, mu); });
    CountTerms<T> r{value + domain, {T(0), T(0), T(0), T(0)}};
    if constexpr (kGrad) r.grad.mu = vm::if_less(T(0), x, x / mu, T(0)) - T(1) + domain;  // at x = 0: -1
    if constexpr (kGradX) r.grad.x = log_mu - ShiftedGammaArgument<T>(x + T(1)).digamma() + domain;
    return r;
  }
};

// scvi-tools' log_mixture_nb at one element: the log-pmf of a mixture of
// two NBs that share x, component 1 weighted sigmoid(pi), component 2
// sigmoid(-pi): logaddexp(l1 - softplus(-pi), l2 - softplus(pi)) (scvi:
// logaddexp(l1, l2 - pi) - softplus(-pi), the same but NaN at pi = -inf),
// each l the NB above (float32-accurate at any count and theta). With w =
// sigmoid(l1 - l2 + pi),
// component 1's share of the probability, every derivative is the
// components' weighted by w and 1 - w, and d/dpi = w - sigmoid(pi). A
// shared theta (kSharedTheta; theta_2 is then theta_1) gets the sum of both
// components' theta derivatives in theta_1.
template <typename T>
struct NbMixtureGrads {
  T x, mu_1, mu_2, theta_1, theta_2, pi_logits;
};
template <typename T>
struct NbMixtureTerms {
  T value;
  NbMixtureGrads<T> grad;
};

template <bool kGrad, bool kGradX, typename T>
PAF_MATH NbMixtureTerms<T> nb_mixture(T x, T mu_1, T mu_2, T theta_1, T theta_2, T pi, T eps, bool shared_theta) {
  const T domain = nan_if_negative(x) + nan_if_negative(mu_1) + nan_if_negative(mu_2) +
                   nan_unless_positive(theta_1) + nan_unless_positive(theta_2);
  CountTerms<T> nb_1, nb_2;
  if (shared_theta) {  // the terms of x and theta alone once
    const T means[2] = {mu_1, mu_2};
    const CountTermsOf<T, 2> nb = negative_binomials<kGrad, kGradX>(x, means, theta_1, eps, domain);
    nb_1 = nb.k[0];
    nb_2 = nb.k[1];
  } else {
    nb_1 = negative_binomial<kGrad, kGradX>(x, mu_1, theta_1, eps, domain);
    nb_2 = negative_binomial<kGrad, kGradX>(x, mu_2, theta_2, eps, domain);
  }
  // the weighted components' logs, log sigmoid(+-pi) = -softplus(-+pi):
  // finite also at pi = +-inf, where the mixture is one component
  const Logistic<T> p(pi);
  const T a = nb_1.value - p.softplus_of_minus(), b = nb_2.value - p.softplus();
  const Logistic<T> d(a - b);
  NbMixtureTerms<T> r{d.logaddexp(a, b), {T(0), T(0), T(0), T(0), T(0), T(0)}};
  if constexpr (kGrad || kGradX) {
    const T w = d.sigmoid(), w_2 = d.sigmoid_of_minus();
    if constexpr (kGradX) r.grad.x = w * nb_1.grad.x + w_2 * nb_2.grad.x;
    if constexpr (kGrad) {
      r.grad.mu_1 = w * nb_1.grad.mu;
      r.grad.mu_2 = w_2 * nb_2.grad.mu;
      r.grad.theta_1 = w * nb_1.grad.theta;
      r.grad.theta_2 = w_2 * nb_2.grad.theta;
      if (shared_theta) r.grad.theta_1 = r.grad.theta_1 + r.grad.theta_2;
      r.grad.pi_logits = w - p.sigmoid() + domain;
    }
  }
  return r;
}

}  // namespace paf
