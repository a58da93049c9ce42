// log_likelihood: elementwise ll(x, x_hat) over the broadcast shape (CUDA).
// TensorIterator handles broadcasting, strides, 64-bit indexing and
// vectorised loads; the math is common/formulas/log_likelihood.h, as on the CPU. Its
// backward is log_likelihood_backward.cu: each half instantiates
// gpu_kernel 20 times (4 dtypes x 5 likelihoods), and as two files they
// compile side by side (this one was the longest compile of the build).
#include "../common/args/log_likelihood.h"
#include "cuda_utils.cuh"
#include "device_math.cuh"

#include <ATen/TensorIterator.h>
#include <ATen/native/cuda/Loops.cuh>
#include <torch/library.h>

namespace paf::cuda::log_likelihood {
namespace {

// ll(x, x_hat), or ll(x, x_hat, x_log_var) for a likelihood that reads it
// (gpu_kernel takes the operands from operator()'s fixed arity).
template <typename scalar_t, Likelihood L, bool kReadsLogVar = reads_log_var(L)>
struct LogLikelihoodValue {
  using T = opmath_t<scalar_t>;
  C10_DEVICE scalar_t operator()(scalar_t x, scalar_t x_hat) const {
    return static_cast<scalar_t>(LikelihoodTerm<L>::value(static_cast<T>(x), static_cast<T>(x_hat), T(0)));
  }
};
template <typename scalar_t, Likelihood L>
struct LogLikelihoodValue<scalar_t, L, true> {
  using T = opmath_t<scalar_t>;
  C10_DEVICE scalar_t operator()(scalar_t x, scalar_t x_hat, scalar_t x_log_var) const {
    return static_cast<scalar_t>(
        LikelihoodTerm<L>::value(static_cast<T>(x), static_cast<T>(x_hat), static_cast<T>(x_log_var)));
  }
};

at::Tensor log_likelihood_cuda(const at::Tensor& x, const at::Tensor& x_hat, c10::string_view likelihood_name,
                               const std::optional<at::Tensor>& x_log_var) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto iter = log_likelihood_iterator(x, x_hat, x_log_var);
  const Likelihood likelihood = parse_likelihood(likelihood_name, x_log_var.has_value());
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_cuda", [&] {
    dispatch_likelihood(likelihood, [&](auto tag) {
      at::native::gpu_kernel(iter, LogLikelihoodValue<scalar_t, decltype(tag)::value>{});
    });
  });
  return iter.output();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("log_likelihood", &log_likelihood_cuda);
}

}  // namespace paf::cuda::log_likelihood
