// log_likelihood: elementwise ll(x, x_hat) over the broadcast shape (CUDA).
// TensorIterator handles broadcasting, strides, 64-bit indexing and
// vectorised loads; the math is common/formulas.h, as on the CPU. Its
// backward is log_likelihood_backward.cu: each half instantiates
// gpu_kernel 16 times (4 dtypes x 4 likelihoods), and as two files they
// compile side by side (this one was the longest compile of the build).
#include "../common/op_args.h"
#include "cuda_utils.cuh"
#include "device_math.cuh"

#include <ATen/TensorIterator.h>
#include <ATen/native/cuda/Loops.cuh>
#include <torch/library.h>

namespace paf::cuda {
namespace {

template <typename scalar_t, Likelihood L>
struct LogLikelihoodValue {
  C10_DEVICE scalar_t operator()(scalar_t x, scalar_t x_hat) const {
    using T = opmath_t<scalar_t>;
    return static_cast<scalar_t>(LogLikelihood<L>::value(static_cast<T>(x), static_cast<T>(x_hat)));
  }
};

at::Tensor log_likelihood_cuda(const at::Tensor& x, const at::Tensor& x_hat, c10::string_view likelihood_name) {
  const c10::cuda::CUDAGuard guard(x.device());
  auto iter = log_likelihood_iterator(x, x_hat);
  const Likelihood likelihood = parse_likelihood(likelihood_name);
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

}  // namespace paf::cuda
