// log_likelihood: elementwise ll(x, x_hat) over the broadcast shape, and its
// gradient with respect to x, x_hat or x_log_var (the Gaussian with a
// learned variance: a third operand). TensorIterator handles broadcasting
// and strides; the math lives in cpu/elementwise_math.h (its formulas: common/formulas/log_likelihood.h).
#include "elementwise_math.h"
#include "kernel_utils.h"
#include "../common/args/log_likelihood.h"

#include <ATen/TensorIterator.h>
#include <ATen/native/cpu/Loops.h>
#include <torch/library.h>

namespace paf::cpu::log_likelihood {
namespace {

// Runs a binary or ternary elementwise functor in opmath precision: the
// vectorised path for float/double, a scalar loop for half types.
template <typename scalar_t, typename ScalarFn, typename VecFn>
void elementwise(at::TensorIteratorBase& iter, ScalarFn scalar_fn, VecFn vec_fn) {
  if constexpr (at::vec::is_reduced_floating_point_v<scalar_t>) {
    at::native::cpu_kernel(iter, std::move(scalar_fn));
  } else {
    at::native::cpu_kernel_vec(iter, std::move(scalar_fn), std::move(vec_fn));
  }
}

// Runs out = lead * partial(x, x_hat[, x_log_var]) over the iterator's
// inputs: with kLead the first input is a factor (the backward's grad); the
// likelihood's operands follow, x_log_var only for a likelihood that reads
// it. partial(x, x_hat, lv) is the term in opmath (lv 0 when not read).
template <typename scalar_t, bool kLead, bool kReadsLogVar, typename Partial>
void likelihood_elementwise(at::TensorIteratorBase& iter, Partial partial) {
  using opmath_t = at::opmath_type<scalar_t>;
  using Vec = at::vec::Vectorized<scalar_t>;
  auto cast = [](scalar_t v) { return static_cast<opmath_t>(v); };
  auto out = [](opmath_t v) { return static_cast<scalar_t>(v); };
  if constexpr (kLead && kReadsLogVar) {
    elementwise<scalar_t>(
        iter, [=](scalar_t g, scalar_t xs, scalar_t hs, scalar_t ls) -> scalar_t {
          return out(cast(g) * partial(cast(xs), cast(hs), cast(ls)));
        },
        [=](Vec g, Vec xv, Vec hv, Vec lv) -> Vec { return g * partial(xv, hv, lv); });
  } else if constexpr (kLead) {
    elementwise<scalar_t>(
        iter, [=](scalar_t g, scalar_t xs, scalar_t hs) -> scalar_t {
          return out(cast(g) * partial(cast(xs), cast(hs), opmath_t(0)));
        },
        [=](Vec g, Vec xv, Vec hv) -> Vec { return g * partial(xv, hv, Vec(0)); });
  } else if constexpr (kReadsLogVar) {
    elementwise<scalar_t>(
        iter, [=](scalar_t xs, scalar_t hs, scalar_t ls) -> scalar_t {
          return out(partial(cast(xs), cast(hs), cast(ls)));
        },
        [=](Vec xv, Vec hv, Vec lv) -> Vec { return partial(xv, hv, lv); });
  } else {
    elementwise<scalar_t>(
        iter, [=](scalar_t xs, scalar_t hs) -> scalar_t { return out(partial(cast(xs), cast(hs), opmath_t(0))); },
        [=](Vec xv, Vec hv) -> Vec { return partial(xv, hv, Vec(0)); });
  }
}

at::Tensor log_likelihood_cpu(const at::Tensor& x, const at::Tensor& x_hat, c10::string_view likelihood_name,
                              const std::optional<at::Tensor>& x_log_var) {
  auto iter = log_likelihood_iterator(x, x_hat, x_log_var);
  const Likelihood likelihood = parse_likelihood(likelihood_name, x_log_var.has_value());
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_cpu", [&] {
    dispatch_likelihood(likelihood, [&](auto tag) {
      using Term = LikelihoodTerm<decltype(tag)::value>;
      likelihood_elementwise<scalar_t, false, Term::kReadsLogVar>(
          iter, [](auto xv, auto hv, auto lv) { return Term::value(xv, hv, lv); });
    });
  });
  return iter.output();
}

// grad * d ll / d (x, x_hat or x_log_var: wrt), in the broadcast shape; the
// autograd sums it down to the input's shape.
at::Tensor log_likelihood_backward_cpu(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& x_hat,
                                       c10::string_view likelihood_name, c10::string_view wrt_name,
                                       const std::optional<at::Tensor>& x_log_var) {
  auto iter = log_likelihood_backward_iterator(grad, x, x_hat, x_log_var);
  const Likelihood likelihood = parse_likelihood(likelihood_name, x_log_var.has_value());
  const LikelihoodInput wrt = parse_wrt(wrt_name, likelihood);
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_backward_cpu", [&] {
    dispatch_likelihood(likelihood, [&](auto tag) {
      using Term = LikelihoodTerm<decltype(tag)::value>;
      likelihood_elementwise<scalar_t, true, Term::kReadsLogVar>(
          iter, [wrt](auto xv, auto hv, auto lv) { return Term::grad(wrt, xv, hv, lv); });
    });
  });
  return iter.output();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) {
  m.impl("log_likelihood", &log_likelihood_cpu);
  m.impl("log_likelihood_backward", &log_likelihood_backward_cpu);
}

}  // namespace paf::cpu::log_likelihood
