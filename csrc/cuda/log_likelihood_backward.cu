// log_likelihood_backward: the gradient of the elementwise ll(x, x_hat)
// with respect to x, x_hat or x_log_var (CUDA), on TensorIterator as the forward
// (log_likelihood.cu, which says why the two are separate files).
#include "../common/args/log_likelihood.h"
#include "cuda_utils.cuh"
#include "device_math.cuh"

#include <ATen/TensorIterator.h>
#include <ATen/native/cuda/Loops.cuh>
#include <torch/library.h>

namespace paf::cuda::log_likelihood_backward {
namespace {

// grad * d ll / d (x, x_hat or x_log_var: wrt), over (grad, x, x_hat) or,
// for a likelihood that reads it, (grad, x, x_hat, x_log_var).
template <typename scalar_t, Likelihood L, bool kReadsLogVar = reads_log_var(L)>
struct LogLikelihoodGrad {
  using T = opmath_t<scalar_t>;
  LikelihoodInput wrt;
  C10_DEVICE scalar_t operator()(scalar_t grad, scalar_t x, scalar_t x_hat) const {
    return static_cast<scalar_t>(static_cast<T>(grad) *
                                 LikelihoodTerm<L>::grad(wrt, static_cast<T>(x), static_cast<T>(x_hat), T(0)));
  }
};
template <typename scalar_t, Likelihood L>
struct LogLikelihoodGrad<scalar_t, L, true> {
  using T = opmath_t<scalar_t>;
  LikelihoodInput wrt;
  C10_DEVICE scalar_t operator()(scalar_t grad, scalar_t x, scalar_t x_hat, scalar_t x_log_var) const {
    return static_cast<scalar_t>(static_cast<T>(grad) * LikelihoodTerm<L>::grad(wrt, static_cast<T>(x),
                                                                                 static_cast<T>(x_hat),
                                                                                 static_cast<T>(x_log_var)));
  }
};

at::Tensor log_likelihood_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& x_hat,
                                        c10::string_view likelihood_name, c10::string_view wrt_name,
                                        const std::optional<at::Tensor>& x_log_var) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto iter = log_likelihood_backward_iterator(grad, x, x_hat, x_log_var);
  const Likelihood likelihood = parse_likelihood(likelihood_name, x_log_var.has_value());
  const LikelihoodInput wrt = parse_wrt(wrt_name, likelihood);
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_backward_cuda", [&] {
    dispatch_likelihood(likelihood, [&](auto tag) {
      at::native::gpu_kernel(iter, LogLikelihoodGrad<scalar_t, decltype(tag)::value>{wrt});
    });
  });
  return iter.output();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("log_likelihood_backward", &log_likelihood_backward_cuda);
}

}  // namespace paf::cuda::log_likelihood_backward
