// elbo: the whole (beta-)VAE objective in one op (CUDA); see csrc/cpu/elbo.cpp
// for the formulas. Forward: the per-row log-likelihood sums (writing
// d objective / d x_hat in the same pass when need_grad), the per-row KL sums
// (writing d objective / d (mu, log_var)), then one block combines the row
// sums into the four stats: a fixed number of launches for any input rank,
// no host sync. Backward: grad_stats stays on the device (reading it would
// sync the host and break CUDA-graph capture), so the x_hat gradient is
// rescaled by one elementwise pass, where the CPU returns the buffer as is.
#include "../common/elbo_stats.h"
#include "cuda_utils.cuh"
#include "elbo.cuh"

#include <torch/library.h>

namespace paf::cuda {
namespace {

struct StoreRowSum {
  double* out;
  C10_DEVICE void operator()(int64_t r, double total) const { out[r] = total; }
};

// One block: the batch means of the row sums and the four stats.
template <typename scalar_t>
__global__ void PAF_LAUNCH_BOUNDS elbo_stats_kernel(const double* ll_rows, int64_t ll_count, const double* kl_rows,
                                                   int64_t kl_count, double beta, scalar_t* stats) {
  CompensatedSum ll, kl;
  for (int64_t i = threadIdx.x; i < ll_count; i += kThreads) ll.add(ll_rows[i]);
  for (int64_t i = threadIdx.x; i < kl_count; i += kThreads) kl.add(kl_rows[i]);
  const double ll_total = block_sum(ll.value());
  const double kl_total = block_sum(kl.value());
  if (threadIdx.x == 0) {
    // Empty batches give NaN means, as torch.mean does.
    const double ll_mean = ll_total / static_cast<double>(ll_count);
    const double kl_mean = kl_total / static_cast<double>(kl_count);
    const double elbo = ll_mean - beta * kl_mean;
    stats[kObjective] = static_cast<scalar_t>(-elbo);
    stats[kElbo] = static_cast<scalar_t>(elbo);
    stats[kLogLikelihood] = static_cast<scalar_t>(ll_mean);
    stats[kKl] = static_cast<scalar_t>(kl_mean);
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> elbo_cuda(const at::Tensor& x, const at::Tensor& x_hat,
                                                                     const at::Tensor& mu, const at::Tensor& log_var,
                                                                     double beta, c10::string_view likelihood_name,
                                                                     bool need_grad) {
  const c10::cuda::CUDAGuard guard(x.device());
  const ElboProblem p = make_elbo_problem(x, x_hat, mu, log_var, need_grad);
  const int64_t B = p.B, S = p.S, D = p.D, F = p.F;
  const Likelihood likelihood = parse_likelihood(likelihood_name);
  // Per-row sums in double: [B * S] log-likelihoods then [B] KLs.
  // (zero-length rows are not launched: their sums stay 0)
  const auto sums_options = x.options().dtype(at::kDouble);
  at::Tensor row_sums = F > 0 && D > 0 ? at::empty({B * S + B}, sums_options) : at::zeros({B * S + B}, sums_options);
  double* ll_rows = row_sums.data_ptr<double>();
  double* kl_rows = ll_rows + B * S;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "elbo_cuda", [&] {
    dispatch_likelihood(likelihood, [&](auto tag) {
      const auto term = elbo_log_likelihood_term<scalar_t, decltype(tag)::value>(p);
      if (F > 0) launch_row_sums<scalar_t>(B * S, F, term, StoreRowSum{ll_rows}, x.device());
    });
    if (D > 0) launch_row_sums<scalar_t>(B, D, elbo_kl_term<scalar_t>(p, beta), StoreRowSum{kl_rows}, x.device());
    elbo_stats_kernel<scalar_t><<<1, kThreads, 0, current_stream()>>>(ll_rows, B * S, kl_rows, B, beta,
                                                                       p.stats.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return p.outputs();
}

// coefficient = (sum_k weight[k] * grad_stats[k]) / divisor, on the device.
template <typename scalar_t>
__global__ void grad_stats_coefficient_kernel(const scalar_t* grad_stats, int64_t stride, double w0, double w1,
                                              double w2, double w3, double divisor, double* coefficient) {
  const double g[kNumStats] = {static_cast<double>(grad_stats[0]), static_cast<double>(grad_stats[stride]),
                               static_cast<double>(grad_stats[2 * stride]),
                               static_cast<double>(grad_stats[3 * stride])};
  *coefficient = (w0 * g[0] + w1 * g[1] + w2 * g[2] + w3 * g[3]) / divisor;
}

at::Tensor grad_stats_coefficient(const at::Tensor& grad_stats, std::array<double, kNumStats> weights,
                                  double divisor) {
  check_grad_stats(grad_stats);
  check_floating(grad_stats, "grad_stats");
  const at::Tensor g = grad_stats.reshape({kNumStats});
  at::Tensor coefficient = at::empty({1}, g.options().dtype(at::kDouble));
  PAF_DISPATCH_FLOATING(g.scalar_type(), "grad_stats_coefficient", [&] {
    grad_stats_coefficient_kernel<scalar_t><<<1, 1, 0, current_stream()>>>(
        g.const_data_ptr<scalar_t>(), g.stride(0), weights[0], weights[1], weights[2], weights[3], divisor,
        coefficient.data_ptr<double>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return coefficient;
}

// d/dx_hat of stats . grad_stats = dobj_dx_hat * coefficient (kXHatGradWeights).
at::Tensor elbo_backward_x_hat_cuda(const at::Tensor& grad_stats, const at::Tensor& dobj_dx_hat) {
  check_floating(dobj_dx_hat, "dobj_dx_hat");
  check_same_dtype_device(dobj_dx_hat, "dobj_dx_hat", grad_stats, "grad_stats");
  const c10::cuda::CUDAGuard guard(dobj_dx_hat.device());
  const at::Tensor coefficient = grad_stats_coefficient(grad_stats, kXHatGradWeights, 1.0);
  const at::Tensor in = dobj_dx_hat.contiguous();
  at::Tensor out = at::empty_like(in);
  const int64_t n = in.numel();
  PAF_DISPATCH_FLOATING(in.scalar_type(), "elbo_backward_x_hat_cuda", [&] {
    launch_for_each_element<scalar_t>(
        1, n,
        ScaleBy<scalar_t>{RowMatrix<const scalar_t>{in.const_data_ptr<scalar_t>(), 1, n, n},
                          coefficient.const_data_ptr<double>(), dense_rows(out.data_ptr<scalar_t>(), 1, n)});
  });
  return out;
}

// d/d(mu, log_var) of stats . grad_stats (latent_grad_weights).
std::tuple<at::Tensor, at::Tensor> elbo_backward_latent_cuda(const at::Tensor& grad_stats, const at::Tensor& mu,
                                                             const at::Tensor& log_var, double beta) {
  check_latent_pair(mu, log_var);
  check_same_dtype_device(mu, "mu", grad_stats, "grad_stats");
  const c10::cuda::CUDAGuard guard(mu.device());
  const int64_t B = mu.size(0), D = mu.size(1);
  at::Tensor g_mu, g_lv;  // (not a structured binding: the lambda below captures them, C++17)
  std::tie(g_mu, g_lv) = latent_pair_grads(mu);
  if (g_mu.numel() == 0) return {g_mu, g_lv};
  const at::Tensor coefficient =
      grad_stats_coefficient(grad_stats, latent_grad_weights(beta), static_cast<double>(B));
  const at::Tensor mu2 = as_rows(mu, B, D), lv2 = as_rows(log_var, B, D);
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "elbo_backward_latent_cuda", [&] {
    launch_for_each_element<scalar_t>(
        B, D,
        LatentGrad<scalar_t>{const_row_matrix<scalar_t>(mu2), const_row_matrix<scalar_t>(lv2),
                             coefficient.const_data_ptr<double>(), dense_rows(g_mu.data_ptr<scalar_t>(), B, D),
                             dense_rows(g_lv.data_ptr<scalar_t>(), B, D)});
  });
  return {g_mu, g_lv};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("elbo", &elbo_cuda);
  m.impl("elbo_backward_x_hat", &elbo_backward_x_hat_cuda);
  m.impl("elbo_backward_latent", &elbo_backward_latent_cuda);
}

}  // namespace paf::cuda
