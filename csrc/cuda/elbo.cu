// elbo: the whole (beta-)VAE objective in one op (CUDA); see csrc/cpu/elbo.cpp
// for the formulas. Forward: the per-row log-likelihood sums (writing
// d objective / d x_hat in the same pass when need_grad), the per-row KL sums
// (writing d objective / d (mu, log_var)), then one block combines the row
// sums into the four stats: a fixed number of launches for any input rank,
// no host sync. Backward: grad_stats stays on the device (reading it would
// sync the host and break CUDA-graph capture), so the x_hat gradient is
// rescaled by one elementwise pass, where the CPU returns the buffer as is.
#include "../common/elbo_stats.h"
#include "../common/op_args.h"
#include "cuda_utils.cuh"
#include "device_math.cuh"

#include <torch/library.h>

namespace paf::cuda {
namespace {

// Term of row r = (b, s) of x_hat: ll(x[b, j], x_hat[r, j]), with
// grad[r, j] = grad_scale * d ll / d x_hat when grad is not null.
template <typename scalar_t, Likelihood L>
struct ElboLogLikelihoodTerm {
  RowMatrix<const scalar_t> x, x_hat;
  int64_t samples, features;
  scalar_t* grad;
  opmath_t<scalar_t> grad_scale;
  C10_DEVICE C10_ALWAYS_INLINE opmath_t<scalar_t> operator()(int64_t r, int64_t j) const {
    const auto xv = load(x.row(r / samples), j), hv = load(x_hat.row(r), j);
    if (grad == nullptr) return LogLikelihood<L>::value(xv, hv);
    opmath_t<scalar_t> d;
    const auto v = LogLikelihood<L>::value_and_grad(xv, hv, d);
    grad[r * features + j] = static_cast<scalar_t>(grad_scale * d);
    return v;
  }
};

// Term of row b of the latents: KL(q_b || N(0, I)) in dimension j, with
// d objective / d (mu, log_var) = scale * d KL when g_mu is not null.
template <typename scalar_t>
struct ElboKlTerm {
  RowMatrix<const scalar_t> mu, log_var;
  int64_t dim;
  scalar_t *g_mu, *g_lv;
  opmath_t<scalar_t> scale;
  C10_DEVICE C10_ALWAYS_INLINE opmath_t<scalar_t> operator()(int64_t b, int64_t j) const {
    const auto m = load(mu.row(b), j), l = load(log_var.row(b), j);
    if (g_mu == nullptr) return kl_standard(m, l);
    opmath_t<scalar_t> d_mu, d_lv;
    const auto kl = kl_standard_and_grad(m, l, d_mu, d_lv);
    g_mu[b * dim + j] = static_cast<scalar_t>(scale * d_mu);
    g_lv[b * dim + j] = static_cast<scalar_t>(scale * d_lv);
    return kl;
  }
};

struct StoreRowSum {
  double* out;
  C10_DEVICE void operator()(int64_t r, double total) const { out[r] = total; }
};

// One block: the batch means of the row sums and the four stats.
template <typename scalar_t>
__global__ void __launch_bounds__(kThreads) elbo_stats_kernel(const double* ll_rows, int64_t ll_count,
                                                              const double* kl_rows, int64_t kl_count, double beta,
                                                              scalar_t* stats) {
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
    using T = opmath_t<scalar_t>;
    const T grad_scale = B * S > 0 ? T(-1) / static_cast<T>(B * S) : T(0);
    dispatch_likelihood(likelihood, [&](auto tag) {
      const ElboLogLikelihoodTerm<scalar_t, decltype(tag)::value> term{
          const_row_matrix<scalar_t>(p.x), const_row_matrix<scalar_t>(p.x_hat), S, F,
          need_grad ? p.dobj_dx_hat.data_ptr<scalar_t>() : nullptr, grad_scale};
      if (F > 0) launch_row_sums<T>(B * S, F, term, StoreRowSum{ll_rows}, x.device());
    });
    const ElboKlTerm<scalar_t> kl_term{const_row_matrix<scalar_t>(p.mu), const_row_matrix<scalar_t>(p.log_var), D,
                                       need_grad ? p.dobj_dmu.data_ptr<scalar_t>() : nullptr,
                                       need_grad ? p.dobj_dlv.data_ptr<scalar_t>() : nullptr,
                                       static_cast<T>(beta / static_cast<double>(B))};
    if (D > 0) launch_row_sums<T>(B, D, kl_term, StoreRowSum{kl_rows}, x.device());
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
                               static_cast<double>(grad_stats[2 * stride]), static_cast<double>(grad_stats[3 * stride])};
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

template <typename scalar_t>
struct ScaleBy {
  const scalar_t* in;
  const double* coefficient;
  scalar_t* out;
  C10_DEVICE void operator()(int64_t i) const {
    using T = opmath_t<scalar_t>;
    out[i] = static_cast<scalar_t>(load(in, i) * static_cast<T>(*coefficient));
  }
};

// d/dx_hat of stats . grad_stats = dobj_dx_hat * (g_objective - g_elbo - g_ll).
at::Tensor elbo_backward_x_hat_cuda(const at::Tensor& grad_stats, const at::Tensor& dobj_dx_hat) {
  check_floating(dobj_dx_hat, "dobj_dx_hat");
  check_same_dtype_device(dobj_dx_hat, "dobj_dx_hat", grad_stats, "grad_stats");
  const c10::cuda::CUDAGuard guard(dobj_dx_hat.device());
  const at::Tensor coefficient = grad_stats_coefficient(grad_stats, {1.0, -1.0, -1.0, 0.0}, 1.0);
  const at::Tensor in = dobj_dx_hat.contiguous();
  at::Tensor out = at::empty_like(in);
  PAF_DISPATCH_FLOATING(in.scalar_type(), "elbo_backward_x_hat_cuda", [&] {
    launch_for_each_index(in.numel(), ScaleBy<scalar_t>{in.const_data_ptr<scalar_t>(),
                                                        coefficient.const_data_ptr<double>(),
                                                        out.data_ptr<scalar_t>()});
  });
  return out;
}

// coefficient * (mu, 0.5 (exp(log_var) - 1)) for every element of [B, D].
template <typename scalar_t>
struct LatentGrad {
  RowMatrix<const scalar_t> mu, log_var;
  const double* coefficient;
  scalar_t *g_mu, *g_lv;
  int64_t dim;
  C10_DEVICE void operator()(int64_t i) const {
    using T = opmath_t<scalar_t>;
    const int64_t b = i / dim, j = i % dim;
    T d_mu, d_lv;
    kl_standard_and_grad(load(mu.row(b), j), load(log_var.row(b), j), d_mu, d_lv);
    const T c = static_cast<T>(*coefficient);
    g_mu[i] = static_cast<scalar_t>(c * d_mu);
    g_lv[i] = static_cast<scalar_t>(c * d_lv);
  }
};

// coefficient = (beta (g_obj - g_elbo) + g_kl) / B.
std::tuple<at::Tensor, at::Tensor> elbo_backward_latent_cuda(const at::Tensor& grad_stats, const at::Tensor& mu,
                                                             const at::Tensor& log_var, double beta) {
  check_latent_pair(mu, log_var);
  check_same_dtype_device(mu, "mu", grad_stats, "grad_stats");
  const c10::cuda::CUDAGuard guard(mu.device());
  const int64_t B = mu.size(0), D = mu.size(1);
  auto [g_mu, g_lv] = latent_pair_grads(mu);
  if (g_mu.numel() == 0) return {g_mu, g_lv};
  const at::Tensor coefficient =
      grad_stats_coefficient(grad_stats, {beta, -beta, 0.0, 1.0}, static_cast<double>(B));
  const at::Tensor mu2 = as_rows(mu, B, D), lv2 = as_rows(log_var, B, D);
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "elbo_backward_latent_cuda", [&] {
    launch_for_each_index(B * D, LatentGrad<scalar_t>{const_row_matrix<scalar_t>(mu2),
                                                      const_row_matrix<scalar_t>(lv2),
                                                      coefficient.const_data_ptr<double>(),
                                                      g_mu.data_ptr<scalar_t>(), g_lv.data_ptr<scalar_t>(), D});
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
