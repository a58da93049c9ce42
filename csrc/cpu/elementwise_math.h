// The CPU primitives of the per-element math (namespace paf::vm), for a
// scalar opmath type (float or double) and for at::vec::Vectorized of it,
// followed by the formulas themselves (common/formulas.h, shared with the
// CUDA kernels). Kernels pick the scalar form for tails, the vector form for
// the body.
#pragma once

#include <ATen/cpu/vec/vec.h>

#include <array>
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
C10_ALWAYS_INLINE T sqrt(T v) { return std::sqrt(v); }
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> sqrt(const at::vec::Vectorized<T>& v) { return v.sqrt(); }
template <typename T>
C10_ALWAYS_INLINE T cos(T v) {
  return through_vector(v, [](const auto& x) { return x.cos(); });
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> cos(const at::vec::Vectorized<T>& v) { return v.cos(); }
template <typename T>
C10_ALWAYS_INLINE T sin(T v) {
  return through_vector(v, [](const auto& x) { return x.sin(); });
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> sin(const at::vec::Vectorized<T>& v) { return v.sin(); }
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
// v is an integer in [0, limit] ? a : b (false for NaN): a count small
// enough for a product of that many factors.
template <typename T>
C10_ALWAYS_INLINE T if_count_at_most(T v, T limit, T a, T b) {
  return (v >= T(0) && v <= limit && v == std::floor(v)) ? a : b;
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> if_count_at_most(const at::vec::Vectorized<T>& v,
                                                          const at::vec::Vectorized<T>& limit,
                                                          const at::vec::Vectorized<T>& a,
                                                          const at::vec::Vectorized<T>& b) {
  using Vec = at::vec::Vectorized<T>;
  return Vec::blendv(b, a, (v >= Vec(0)) & (v <= limit) & (v == v.floor()));
}
// The largest lane of v, a count in [0, 2^31), as an int: the bound of a
// loop over the factors of a product (the value itself for a scalar).
template <typename T>
C10_ALWAYS_INLINE int max_lane_count(T v) {
  return static_cast<int>(v);
}
template <typename T>
C10_ALWAYS_INLINE int max_lane_count(const at::vec::Vectorized<T>& v) {
  T lanes[at::vec::Vectorized<T>::size()];
  v.store(lanes);
  T top = lanes[0];
  for (int i = 1; i < at::vec::Vectorized<T>::size(); ++i) top = std::max(top, lanes[i]);
  return static_cast<int>(top);
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

// x < y ? a() : b(), evaluating only what is needed: the taken side for a
// scalar; for a vector one side when all lanes agree, else both, blended
// lane by lane (select_lanes; the formulas add overloads for their result
// structs). A long branch off the taken path costs neither time nor, on
// the GPU, registers.
template <typename T, typename A, typename B>
C10_ALWAYS_INLINE auto if_less_lazy(T x, T y, A&& a, B&& b) {
  return x < y ? a() : b();
}
template <typename T>
C10_ALWAYS_INLINE at::vec::Vectorized<T> select_lanes(const at::vec::Vectorized<T>& mask,
                                                      const at::vec::Vectorized<T>& a,
                                                      const at::vec::Vectorized<T>& b) {
  return at::vec::Vectorized<T>::blendv(b, a, mask);
}
template <typename T, typename A, typename B>
C10_ALWAYS_INLINE auto if_less_lazy(const at::vec::Vectorized<T>& x, const at::vec::Vectorized<T>& y,
                                    A&& a, B&& b) {
  using Vec = at::vec::Vectorized<T>;
  const Vec mask = x < y;
  const int false_lanes = mask.zero_mask();  // a lane's bit is set where x < y is false
  if (false_lanes == 0) return a();
  if (false_lanes == (1 << Vec::size()) - 1) return b();
  return select_lanes(mask, a(), b());
}

// lgamma(x + 1) for the counts x = 0 .. kLogFactorials - 1, from a table
// (each value rounded once, x = 0 and 1 exactly 0); compute(x) for any other
// x (a vector computes only if a lane needs it, and blends per lane, so an
// element's value does not depend on its neighbours). Counts are the
// commonest argument, and the general lgamma is most of a Poisson term.
constexpr int kLogFactorials = 256;
template <typename T>
const T* log_factorial_table() {
  static const std::array<T, kLogFactorials> table = [] {
    std::array<T, kLogFactorials> t{};
    for (int k = 0; k < kLogFactorials; ++k) t[k] = static_cast<T>(std::lgamma(k + 1.0));
    return t;
  }();
  return table.data();
}
template <typename T>
C10_ALWAYS_INLINE bool is_tabled_count(T v) {
  return v >= T(0) && v < T(kLogFactorials) && v == std::floor(v);
}
template <typename T, typename Fn>
C10_ALWAYS_INLINE T log_factorial_or(T x, Fn&& compute) {
  return is_tabled_count(x) ? log_factorial_table<T>()[static_cast<int>(x)] : compute(x);
}
template <typename T, typename Fn>
C10_ALWAYS_INLINE at::vec::Vectorized<T> log_factorial_or(const at::vec::Vectorized<T>& x, Fn&& compute) {
  using Vec = at::vec::Vectorized<T>;
  constexpr int W = Vec::size();
  T lanes[W], out[W];
  bool tabled[W];
  x.store(lanes);
  const T* table = log_factorial_table<T>();
  bool all = true;
  for (int i = 0; i < W; ++i) {
    tabled[i] = is_tabled_count(lanes[i]);
    out[i] = tabled[i] ? table[static_cast<int>(lanes[i])] : T(0);
    all = all && tabled[i];
  }
  if (!all) {
    T computed[W];
    compute(x).store(computed);
    for (int i = 0; i < W; ++i) {
      if (!tabled[i]) out[i] = computed[i];
    }
  }
  return Vec::loadu(out);
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
}  // namespace paf

#include "../common/formulas.h"
