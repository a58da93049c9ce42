// elbo: the whole (beta-)VAE objective in one op (CUDA); see csrc/cpu/elbo.cpp
// for the formulas. Forward: the per-row log-likelihood sums (writing
// d objective / d x_hat in the same pass when need_grad), the per-row KL sums
// (writing d objective / d (mu, log_var)), then one block combines the row
// sums into the four stats: a fixed number of launches for any input rank,
// no host sync. Backward: grad_stats stays on the device (reading it would
// sync the host and break CUDA-graph capture); each kernel forms its
// coefficient from it in place, and the x_hat buffer is rescaled in place
// (elbo_scale_x_hat_grad_), each thread returning at once when the
// coefficient is 1, so objective.backward() moves no x_hat-sized memory.
#include "../common/elbo_stats.h"
#include "cuda_utils.cuh"
#include "elbo.cuh"

#include <torch/library.h>

namespace paf::cuda::elbo {
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

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> elbo_cuda(
    const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& mu, const at::Tensor& log_var, double beta,
    c10::string_view likelihood_name, bool need_grad, const std::optional<at::Tensor>& x_log_var) {
  const c10::cuda::CUDAGuard guard(x.device());
  const ElboProblem p = make_elbo_problem(x, x_hat, mu, log_var, x_log_var, likelihood_name, need_grad);
  const int64_t B = p.B, S = p.S, D = p.D, F = p.F;
  // Per-row sums in double: [B * S] log-likelihoods then [B] KLs.
  // (zero-length rows are not launched: their sums stay 0)
  const auto sums_options = x.options().dtype(at::kDouble);
  at::Tensor row_sums = F > 0 && D > 0 ? at::empty({B * S + B}, sums_options) : at::zeros({B * S + B}, sums_options);
  double* ll_rows = row_sums.data_ptr<double>();
  double* kl_rows = ll_rows + B * S;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "elbo_cuda", [&] {
    dispatch_likelihood(p.likelihood, [&](auto tag) {
      const auto term = elbo_log_likelihood_term<scalar_t, decltype(tag)::value>(p);
      if (F > 0) launch_row_sums<scalar_t, true>(B * S, F, term, StoreRowSum{ll_rows}, x.device());
    });
    if (D > 0) launch_row_sums<scalar_t>(B, D, elbo_kl_term<scalar_t>(p, beta), StoreRowSum{kl_rows}, x.device());
    elbo_stats_kernel<scalar_t><<<1, kThreads, 0, current_stream()>>>(ll_rows, B * S, kl_rows, B, beta,
                                                                       p.stats.data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return p.outputs();
}

// d/dx_hat of stats . grad_stats = dobj_dx_hat * coefficient (kXHatGradWeights),
// into out (a new tensor, or dobj_dx_hat itself: skip_when_one).
void scale_x_hat_grad(const at::Tensor& grad_stats, const at::Tensor& in, const at::Tensor& out, bool skip_when_one) {
  const at::Tensor g = grad_stats.reshape({kNumStats});
  const int64_t n = in.numel();
  PAF_DISPATCH_FLOATING(in.scalar_type(), "elbo_backward_x_hat_cuda", [&] {
    launch_for_each_element<scalar_t>(
        1, n,
        ScaleBy<scalar_t>{RowMatrix<const scalar_t>{in.const_data_ptr<scalar_t>(), 1, n, n},
                          grad_stats_coefficient<scalar_t>(g, kXHatGradWeights, 1.0),
                          dense_rows(out.data_ptr<scalar_t>(), 1, n), skip_when_one},
        skip_when_one ? resident_blocks() : kMaxBlocks);
  });
}

at::Tensor elbo_backward_x_hat_cuda(const at::Tensor& grad_stats, const at::Tensor& dobj_dx_hat) {
  check_floating(dobj_dx_hat, "dobj_dx_hat");
  check_same_dtype_device(dobj_dx_hat, "dobj_dx_hat", grad_stats, "grad_stats");
  check_grad_stats(grad_stats);
  const c10::cuda::CUDAGuard guard(dobj_dx_hat.device());
  const at::Tensor in = dobj_dx_hat.contiguous();
  at::Tensor out = at::empty_like(in);
  scale_x_hat_grad(grad_stats, in, out, false);
  return out;
}

// The same, in place: the forward's buffer becomes the gradient, and with a
// coefficient of 1 (read on the device) no element is read or written.
void elbo_scale_x_hat_grad_cuda_(const at::Tensor& grad_stats, at::Tensor& dobj_dx_hat) {
  check_floating(dobj_dx_hat, "dobj_dx_hat");
  check_same_dtype_device(dobj_dx_hat, "dobj_dx_hat", grad_stats, "grad_stats");
  check_grad_stats(grad_stats);
  PAF_CHECK(dobj_dx_hat.is_contiguous(), "dobj_dx_hat: expected a contiguous buffer (the forward's), got strides ",
              dobj_dx_hat.strides());
  const c10::cuda::CUDAGuard guard(dobj_dx_hat.device());
  scale_x_hat_grad(grad_stats, dobj_dx_hat, dobj_dx_hat, true);
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
  check_grad_stats(grad_stats);
  const at::Tensor g = grad_stats.reshape({kNumStats});
  const at::Tensor mu2 = as_rows(mu, B, D), lv2 = as_rows(log_var, B, D);
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "elbo_backward_latent_cuda", [&] {
    launch_for_each_element<scalar_t>(
        B, D,
        LatentGrad<scalar_t>{const_row_matrix<scalar_t>(mu2), const_row_matrix<scalar_t>(lv2),
                             grad_stats_coefficient<scalar_t>(g, latent_grad_weights(beta), static_cast<double>(B)),
                             dense_rows(g_mu.data_ptr<scalar_t>(), B, D),
                             dense_rows(g_lv.data_ptr<scalar_t>(), B, D)});
  });
  return {g_mu, g_lv};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("elbo", &elbo_cuda);
  m.impl("elbo_backward_x_hat", &elbo_backward_x_hat_cuda);
  m.impl("elbo_scale_x_hat_grad_", &elbo_scale_x_hat_grad_cuda_);
  m.impl("elbo_backward_latent", &elbo_backward_latent_cuda);
}

}  // namespace paf::cuda::elbo
