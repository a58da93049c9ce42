// log_likelihood_sum: per-sample summed log-likelihood (CUDA). x [B, ...]
// against x_hat [B, S, ...] (and x_log_var broadcast to x_hat) -> [B, S]:
// the elementwise term and the feature sum in one pass (deterministic row
// sums, cuda_utils.cuh), x read in place for every sample.
#include "cuda_utils.cuh"
#include "log_likelihood_sum.cuh"

#include <torch/library.h>

namespace paf::cuda::log_likelihood_sum {
namespace {

at::Tensor log_likelihood_sum_cuda(const at::Tensor& x, const at::Tensor& x_hat, c10::string_view likelihood_name,
                                   const std::optional<at::Tensor>& x_log_var) {
  const c10::cuda::CUDAGuard guard(x.device());
  const SumProblem s = make_sum_problem(x, x_hat, x_log_var, likelihood_name);
  at::Tensor out = at::empty({s.batch, s.samples}, x.options());
  if (out.numel() == 0) return out;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_cuda", [&] {
    dispatch_likelihood(s.likelihood, [&](auto tag) {
      const LogLikelihoodTerm<scalar_t, decltype(tag)::value> term{likelihood_rows<scalar_t, decltype(tag)::value>(s)};
      launch_row_sums<scalar_t>(s.batch * s.samples, s.features, term, StoreTotal<scalar_t>{out.data_ptr<scalar_t>()},
                                x.device());
    });
  });
  return out;
}

at::Tensor log_likelihood_sum_backward_cuda(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& x_hat,
                                            c10::string_view likelihood_name, c10::string_view wrt_name,
                                            const std::optional<at::Tensor>& x_log_var) {
  const c10::cuda::CUDAGuard guard(x.device());
  const SumProblem s = make_sum_problem(x, x_hat, x_log_var, likelihood_name);
  const LikelihoodInput wrt = parse_wrt(wrt_name, s.likelihood);
  at::Tensor g, out;
  std::tie(g, out) = sum_backward_buffers(s, grad, x, x_hat, wrt);
  if (out.numel() == 0) return out;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_backward_cuda", [&] {
    dispatch_likelihood(s.likelihood, [&](auto tag) {
      constexpr Likelihood L = decltype(tag)::value;
      const auto in = likelihood_rows<scalar_t, L>(s);
      const scalar_t* grad_data = g.const_data_ptr<scalar_t>();
      const int64_t per_sample_rows = s.batch * s.samples;
      if (wrt == LikelihoodInput::X) {
        launch_for_each_element<scalar_t>(
            s.batch, s.features,
            GradX<scalar_t, L>{in, grad_data, dense_rows(out.data_ptr<scalar_t>(), s.batch, s.features)});
      } else if (wrt == LikelihoodInput::XLogVar) {
        if constexpr (reads_log_var(L)) {  // (parse_wrt refuses it for the others)
          using T = opmath_t<scalar_t>;
          launch_for_each_element<scalar_t>(
              per_sample_rows, s.features,
              GradPerSample<scalar_t, L, T>{in, grad_data, dense_rows(out.data_ptr<T>(), per_sample_rows, s.features),
                                            wrt});
        }
      } else {
        launch_for_each_element<scalar_t>(
            per_sample_rows, s.features,
            GradPerSample<scalar_t, L, scalar_t>{
                in, grad_data, dense_rows(out.data_ptr<scalar_t>(), per_sample_rows, s.features), wrt});
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

}  // namespace paf::cuda::log_likelihood_sum
