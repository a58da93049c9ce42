// The device primitives of the per-element math (namespace paf::vm) for
// float and double, followed by the formulas themselves (common/formulas.h,
// shared with the CPU kernels). The CPU's short polynomials for the
// Bernoulli terms (exp_nonpositive, log1p_unit) are the exact functions
// here: the GPU's are fast enough and the results agree to the tolerance.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <limits>

namespace paf {
namespace vm {

#define PAF_VM C10_HOST_DEVICE C10_ALWAYS_INLINE
// One overload per opmath type, mapping to the CUDA math library.
#define PAF_VM_UNARY(name, float_fn, double_fn)            \
  PAF_VM float name(float v) { return ::float_fn(v); }     \
  PAF_VM double name(double v) { return ::double_fn(v); }
PAF_VM_UNARY(abs, fabsf, fabs)
PAF_VM_UNARY(exp, expf, exp)
PAF_VM_UNARY(log, logf, log)
PAF_VM_UNARY(log1p, log1pf, log1p)
PAF_VM_UNARY(sqrt, sqrtf, sqrt)
PAF_VM_UNARY(cos, cosf, cos)
PAF_VM_UNARY(sin, sinf, sin)
PAF_VM_UNARY(floor, floorf, floor)
#undef PAF_VM_UNARY

template <typename T>
PAF_VM T exp_nonpositive(T v) { return exp(v); }
template <typename T>
PAF_VM T log1p_unit(T e) { return log1p(e); }

template <typename T>
PAF_VM bool is_nan(T v) { return v != v; }
template <typename T>
PAF_VM bool is_inf(T v) { return v == std::numeric_limits<T>::infinity() || v == -std::numeric_limits<T>::infinity(); }

// NaN-propagating, like torch.maximum.
template <typename T>
PAF_VM T max(T a, T b) { return (is_nan(a) || a > b) ? a : b; }
// x < y ? a() : b(), evaluating the taken side only (a long branch that
// is not taken costs no registers).
template <typename T, typename A, typename B>
PAF_VM auto if_less_lazy(T x, T y, A&& a, B&& b) { return x < y ? a() : b(); }
// lgamma(x + 1): the CPU reads the counts below 256 from a table; here
// the general formula serves every x (the results agree to the tolerance).
template <typename T, typename Fn>
PAF_VM T log_factorial_or(T x, Fn&& compute) { return compute(x); }
// The blend of vector lanes the CPU needs; a scalar's is a plain choice.
template <typename T>
PAF_VM T select_lanes(bool mask, T a, T b) { return mask ? a : b; }
// cond >= 0 ? a : b
template <typename T>
PAF_VM T if_nonneg(T cond, T a, T b) { return cond >= T(0) ? a : b; }
// x < y ? a : b (false for NaN)
template <typename T>
PAF_VM T if_less(T x, T y, T a, T b) { return x < y ? a : b; }
// v is an integer in [0, limit] ? a : b (false for NaN).
template <typename T>
PAF_VM T if_count_at_most(T v, T limit, T a, T b) { return (v >= T(0) && v <= limit && v == floor(v)) ? a : b; }
// v, a count in [0, 2^31), as an int (the CPU's largest vector lane).
template <typename T>
PAF_VM int max_lane_count(T v) { return static_cast<int>(v); }
// 0 for v in [0, 1], NaN otherwise (NaN included).
template <typename T>
PAF_VM T nan_outside_unit(T v) { return (v >= T(0) && v <= T(1)) ? T(0) : std::numeric_limits<T>::quiet_NaN(); }
template <typename T>
PAF_VM T mul_add(T a, T b, T c) { return a * b + c; }
// c * v, but 0 where c is exactly 0 and v infinite (the limit; 0 * inf is NaN).
template <typename T>
PAF_VM T mul_or_zero(T c, T v) { return (c == T(0) && is_inf(v)) ? T(0) : c * v; }
// exp(t) - t given e = exp(t), +inf at t = +inf.
template <typename T>
PAF_VM T exp_minus_self(T e, T t) { return t == std::numeric_limits<T>::infinity() ? t : e - t; }
// v, or l where l is NaN.
template <typename T>
PAF_VM T propagate_nan(T v, T l) { return is_nan(l) ? l : v; }
// sign(v) in {-1, 0, 1}; NaN stays NaN.
template <typename T>
PAF_VM T sign(T v) { return is_nan(v) ? v : T(v > T(0)) - T(v < T(0)); }
#undef PAF_VM

}  // namespace vm
}  // namespace paf

#include "../common/formulas.h"
