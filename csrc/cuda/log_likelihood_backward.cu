// log_likelihood_backward: the gradient of the elementwise ll(x, x_hat)
// with respect to x or x_hat (CUDA), on TensorIterator as the forward
// (log_likelihood.cu, which says why the two are separate files).
#include "../common/op_args.h"
#include "cuda_utils.cuh"
#include "device_math.cuh"

#include <ATen/TensorIterator.h>
#include <ATen/native/cuda/Loops.cuh>
#include <torch/library.h>

namespace paf::cuda {
namespace {

template <typename scalar_t, Likelihood L>
struct LogLikelihoodGrad {
  bool wrt_x;
  C10_DEVICE scalar_t operator()(scalar_t grad, scalar_t x, scalar_t x_hat) const {
    using T = opmath_t<scalar_t>;
    const T xs = static_cast<T>(x), hs = static_cast<T>(x_hat);
    const T partial = wrt_x ? LogLikelihood<L>::grad_x(xs, hs) : LogLikelihood<L>::grad_x_hat(xs, hs);
    return static_cast<scalar_t>(static_cast<T>(grad) * partial);
  }
};

at::Tensor log_likelihood_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& x_hat,
                                        c10::string_view likelihood_name, bool wrt_x) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto iter = log_likelihood_backward_iterator(grad, x, x_hat);
  const Likelihood likelihood = parse_likelihood(likelihood_name);
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_backward_cuda", [&] {
    dispatch_likelihood(likelihood, [&](auto tag) {
      at::native::gpu_kernel(iter, LogLikelihoodGrad<scalar_t, decltype(tag)::value>{wrt_x});
    });
  });
  return iter.output();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("log_likelihood_backward", &log_likelihood_backward_cuda);
}

}  // namespace paf::cuda
