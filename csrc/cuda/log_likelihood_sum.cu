// log_likelihood_sum: per-sample summed log-likelihood (CUDA). x [B, ...]
// against x_hat [B, S, ...] -> [B, S]: the elementwise term and the feature
// sum in one pass (deterministic row sums, cuda_utils.cuh), x read in place
// for every sample.
#include "cuda_utils.cuh"
#include "log_likelihood_sum.cuh"

#include <torch/library.h>

namespace paf::cuda {
namespace {

at::Tensor log_likelihood_sum_cuda(const at::Tensor& x, const at::Tensor& x_hat, c10::string_view likelihood_name) {
  const c10::cuda::CUDAGuard guard(x.device());
  const SumProblem s = make_sum_problem(x, x_hat);
  const Likelihood likelihood = parse_likelihood(likelihood_name);
  at::Tensor out = at::empty({s.batch, s.samples}, x.options());
  if (out.numel() == 0) return out;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_cuda", [&] {
    dispatch_likelihood(likelihood, [&](auto tag) {
      const LogLikelihoodTerm<scalar_t, decltype(tag)::value> term{const_row_matrix<scalar_t>(s.x),
                                                                   const_row_matrix<scalar_t>(s.x_hat), s.samples};
      launch_row_sums<scalar_t>(s.batch * s.samples, s.features, term, StoreTotal<scalar_t>{out.data_ptr<scalar_t>()},
                                x.device());
    });
  });
  return out;
}

at::Tensor log_likelihood_sum_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& x_hat,
                                            c10::string_view likelihood_name, bool wrt_x) {
  const c10::cuda::CUDAGuard guard(x.device());
  const SumProblem s = make_sum_problem(x, x_hat);
  at::Tensor g, out;
  std::tie(g, out) = sum_backward_buffers(s, grad, x, x_hat, wrt_x);
  const Likelihood likelihood = parse_likelihood(likelihood_name);
  if (out.numel() == 0) return out;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_backward_cuda", [&] {
    dispatch_likelihood(likelihood, [&](auto tag) {
      constexpr Likelihood L = decltype(tag)::value;
      const auto xm = const_row_matrix<scalar_t>(s.x), hm = const_row_matrix<scalar_t>(s.x_hat);
      const int64_t rows = wrt_x ? s.batch : s.batch * s.samples;
      const auto out_rows = dense_rows(out.data_ptr<scalar_t>(), rows, s.features);
      if (wrt_x) {
        launch_for_each_element<scalar_t>(
            rows, s.features, GradX<scalar_t, L>{xm, hm, g.const_data_ptr<scalar_t>(), out_rows, s.samples});
      } else {
        launch_for_each_element<scalar_t>(
            rows, s.features, GradXHat<scalar_t, L>{xm, hm, g.const_data_ptr<scalar_t>(), out_rows, s.samples});
      }
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("log_likelihood_sum", &log_likelihood_sum_cuda);
  m.impl("log_likelihood_sum_backward", &log_likelihood_sum_backward_cuda);
}

}  // namespace paf::cuda
