// log_likelihood: elementwise ll(x, x_hat) over the broadcast shape, and its
// gradient with respect to x or x_hat. TensorIterator handles broadcasting
// and strides; the math lives in common/elementwise_math.h.
#include "../common/elementwise_math.h"
#include "../common/kernel_utils.h"
#include "../common/op_args.h"

#include <ATen/TensorIterator.h>
#include <ATen/native/cpu/Loops.h>
#include <torch/library.h>

namespace paf {
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

at::Tensor log_likelihood_cpu(const at::Tensor& x, const at::Tensor& x_hat,
                              c10::string_view likelihood_name) {
  auto iter = log_likelihood_iterator(x, x_hat);
  const Likelihood likelihood = parse_likelihood(likelihood_name);
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    using Vec = at::vec::Vectorized<scalar_t>;
    dispatch_likelihood(likelihood, [&](auto tag) {
      using Term = LogLikelihood<decltype(tag)::value>;
      elementwise<scalar_t>(
          iter,
          [](scalar_t xs, scalar_t hs) -> scalar_t {
            return static_cast<scalar_t>(Term::value(
                static_cast<opmath_t>(xs), static_cast<opmath_t>(hs)));
          },
          [](Vec xv, Vec hv) -> Vec { return Term::value(xv, hv); });
    });
  });
  return iter.output();
}

// grad * d ll / d x (wrt_x) or grad * d ll / d x_hat, in the broadcast shape;
// the Python autograd formula sums it down to the input's shape.
at::Tensor log_likelihood_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                       const at::Tensor& x_hat,
                                       c10::string_view likelihood_name, bool wrt_x) {
  auto iter = log_likelihood_backward_iterator(grad, x, x_hat);
  const Likelihood likelihood = parse_likelihood(likelihood_name);
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    using Vec = at::vec::Vectorized<scalar_t>;
    dispatch_likelihood(likelihood, [&](auto tag) {
      using Term = LogLikelihood<decltype(tag)::value>;
      auto partial = [wrt_x](auto xv, auto hv) {
        return wrt_x ? Term::grad_x(xv, hv) : Term::grad_x_hat(xv, hv);
      };
      elementwise<scalar_t>(
          iter,
          [partial](scalar_t g, scalar_t xs, scalar_t hs) -> scalar_t {
            return static_cast<scalar_t>(
                static_cast<opmath_t>(g) *
                partial(static_cast<opmath_t>(xs), static_cast<opmath_t>(hs)));
          },
          [partial](Vec g, Vec xv, Vec hv) -> Vec { return g * partial(xv, hv); });
    });
  });
  return iter.output();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) {
  m.impl("log_likelihood", &log_likelihood_cpu);
  m.impl("log_likelihood_backward", &log_likelihood_backward_cpu);
}

}  // namespace paf
