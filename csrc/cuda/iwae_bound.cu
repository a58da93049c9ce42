// iwae_bound: the importance-weighted bound per row (CUDA); see
// csrc/cpu/iwae_bound.cpp for the formulas. Forward: the likelihood row
// sums of log_likelihood_sum (writing d ll / d x_hat, and d x_log_var, in
// the same pass when need_grad), the latent row sums, then one thread per
// row of the batch combines its S log-weights (log_mean_exp_row): a fixed
// number of launches, deterministic, no host sync. Backward of the latent
// terms: one thread per (b, pack of D) walks the S samples.
#include "cuda_utils.cuh"
#include "iwae_bound.cuh"

#include <torch/library.h>

namespace paf::cuda::iwae_bound {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> iwae_bound_cuda(
    const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& z, const at::Tensor& mu, const at::Tensor& log_var,
    c10::string_view likelihood, bool need_grad, const std::optional<at::Tensor>& x_log_var) {
  const c10::cuda::CUDAGuard guard(x.device());
  const IwaeProblem p = make_iwae_problem(x, x_hat, z, mu, log_var, x_log_var, likelihood, need_grad);
  const SumProblem& s = p.ll;
  const int64_t B = s.batch, S = s.samples, F = s.features, D = p.latent;
  if (B == 0) return p.outputs();
  // [likelihood rows, latent rows, their sums]; zero-length rows are not launched: their sums stay 0
  at::Tensor sums = at::zeros({3 * B * S}, x.options().dtype(at::kDouble));
  double* ll_rows = sums.data_ptr<double>();
  double* latent_rows = ll_rows + B * S;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "iwae_bound_cuda", [&] {
    using T = opmath_t<scalar_t>;
    dispatch_likelihood(s.likelihood, [&](auto tag) {
      const auto term = iwae_log_likelihood_term<scalar_t, decltype(tag)::value>(p);
      if (F > 0) launch_row_sums<scalar_t>(B * S, F, term, StoreTotal<double>{ll_rows}, x.device());
    });
    if (D > 0) launch_row_sums<scalar_t>(B * S, D, iwae_latent_term<scalar_t>(p), StoreTotal<double>{latent_rows}, x.device());
    launch_for_each_index(B, IwaeCombine<scalar_t>{ll_rows, B, S, p.bound.data_ptr<scalar_t>(),
                                                   p.weights.data_ptr<T>(), latent_rows + B * S});
  });
  return p.outputs();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> iwae_bound_backward_latent_cuda(const at::Tensor& grad,
                                                                               const at::Tensor& weights,
                                                                               const at::Tensor& z, const at::Tensor& mu,
                                                                               const at::Tensor& log_var) {
  const c10::cuda::CUDAGuard guard(mu.device());
  const IwaeLatentGradProblem p = make_iwae_latent_grad_problem(grad, weights, z, mu, log_var);
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "iwae_bound_backward_latent_cuda", [&] {
    launch_for_each_element<scalar_t>(p.batch, p.latent, iwae_latent_grad<scalar_t>(p));
  });
  return {p.d_z, p.d_mu, p.d_log_var};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("iwae_bound", &iwae_bound_cuda);
  m.impl("iwae_bound_backward_latent", &iwae_bound_backward_latent_cuda);
}

}  // namespace paf::cuda::iwae_bound
