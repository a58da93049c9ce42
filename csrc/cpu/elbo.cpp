// elbo: the whole (beta-)VAE objective in one op.
//   ll[b, s] = sum_j ll(x[b, j], x_hat[b, s, j])      (one pass, x not expanded;
//              the Gaussian reads x_log_var[b, s, j] too when given)
//   kl[b]    = sum_d KL(N(mu, exp(log_var)) || N(0, I))
//   stats    = [objective, elbo, log_likelihood, kl]
//            = [-elbo, mean_b(mean_s ll - beta kl), mean_b mean_s ll, mean_b kl]
// With need_grad the same passes write d objective / d (x_hat, mu, log_var)
// (and x_log_var),
// so backward only rescales them, and returns them as they are when
// grad_stats is [1, 0, 0, 0] (objective.backward()).
#include "../common/elbo_stats.h"
#include "../common/args/elbo.h"
#include "kl_columns.h"
#include "loglik_rows.h"

#include <torch/library.h>

namespace paf::cpu::elbo {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> elbo_cpu(
    const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& mu, const at::Tensor& log_var, double beta,
    c10::string_view likelihood_name, bool need_grad, const std::optional<at::Tensor>& x_log_var) {
  const ElboProblem p = make_elbo_problem(x, x_hat, mu, log_var, x_log_var, likelihood_name, need_grad);
  const int64_t B = p.B, S = p.S, D = p.D;

  PAF_DISPATCH_FLOATING(x.scalar_type(), "elbo_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    std::vector<opmath_t> ll_rows(B * S);
    LoglikGrads<scalar_t> grads;  // d objective / d (x_hat, x_log_var) = -1 / (B S) d ll
    if (need_grad) {
      grads.x_hat = p.dobj_dx_hat.data_ptr<scalar_t>();
      if (x_log_var) grads.x_log_var = p.dobj_dx_log_var.data_ptr<opmath_t>();
      grads.scale = B * S > 0 ? opmath_t(-1) / static_cast<opmath_t>(B * S) : opmath_t(0);
    }
    loglik_rows<scalar_t>(p.likelihood, loglik_rows_of<scalar_t>(p.x, p.x_hat, p.x_log_var, S), grads,
                          ll_rows.data());

    // The [B, D] KL term is small next to x_hat: one serial vectorised pass,
    // with d objective / d (mu, log_var) = beta / B * d KL.
    const auto m = const_row_matrix<scalar_t>(p.mu), l = const_row_matrix<scalar_t>(p.log_var);
    CompensatedSum kl_total;  // over the batch: accurate for any B
    for (const auto b : c10::irange(B)) {
      const KlRowPtrs<scalar_t> in{m.row(b), l.row(b), nullptr, nullptr};
      if (!need_grad) {
        kl_total.add(kl_row_sum<true>(in, D, -kNoClamp, kNoClamp));
        continue;
      }
      scalar_t* g_mu = p.dobj_dmu.data_ptr<scalar_t>() + b * D;
      scalar_t* g_lv = p.dobj_dlv.data_ptr<scalar_t>() + b * D;
      const opmath_t scale = static_cast<opmath_t>(beta / static_cast<double>(B));
      kl_total.add(kl_row_reduce<true>(in, D, -kNoClamp, kNoClamp, [&](int64_t j, auto mq, auto lq, auto, auto) {
        using T = decltype(mq);
        T d_mu, d_lv;
        const T kl = kl_standard_and_grad(mq, lq, d_mu, d_lv);
        store_at(g_mu, j, T(scale) * d_mu);
        store_at(g_lv, j, T(scale) * d_lv);
        return kl;
      }));
    }
    CompensatedSum ll_total;
    for (const opmath_t v : ll_rows) ll_total.add(v);
    // Empty batches give NaN means, as torch.mean does.
    const double ll_mean = ll_total.value() / static_cast<double>(B * S);
    const double kl_mean = kl_total.value() / static_cast<double>(B);
    const double elbo = ll_mean - beta * kl_mean;
    scalar_t* sp = p.stats.data_ptr<scalar_t>();
    sp[kObjective] = static_cast<scalar_t>(-elbo);
    sp[kElbo] = static_cast<scalar_t>(elbo);
    sp[kLogLikelihood] = static_cast<scalar_t>(ll_mean);
    sp[kKl] = static_cast<scalar_t>(kl_mean);
  });
  return p.outputs();
}

// d/dx_hat of stats . grad_stats = dobj_dx_hat * (kXHatGradWeights . grad_stats).
double x_hat_grad_coefficient(const at::Tensor& grad_stats) {
  return grad_stats_coefficient_on_host(grad_stats, kXHatGradWeights, 1.0);
}

at::Tensor elbo_backward_x_hat_cpu(const at::Tensor& grad_stats, const at::Tensor& dobj_dx_hat) {
  check_floating(dobj_dx_hat, "dobj_dx_hat");
  return at::mul(dobj_dx_hat, x_hat_grad_coefficient(grad_stats));
}

// The same, in place; a coefficient of exactly 1 leaves the buffer untouched.
void elbo_scale_x_hat_grad_cpu_(const at::Tensor& grad_stats, at::Tensor& dobj_dx_hat) {
  check_floating(dobj_dx_hat, "dobj_dx_hat");
  const double coef = x_hat_grad_coefficient(grad_stats);
  if (coef != 1.0) dobj_dx_hat.mul_(coef);
}

// d/dmu and d/dlog_var of stats . grad_stats; only the KL term depends on them:
// coef * (mu, 0.5 (exp(log_var) - 1)) with coef = (beta (g_obj - g_elbo) + g_kl) / B.
std::tuple<at::Tensor, at::Tensor> elbo_backward_latent_cpu(const at::Tensor& grad_stats,
                                                            const at::Tensor& mu,
                                                            const at::Tensor& log_var,
                                                            double beta) {
  check_latent_pair(mu, log_var);
  check_grad_stats(grad_stats);
  const int64_t B = mu.size(0), D = mu.size(1);
  auto [g_mu, g_lv] = latent_pair_grads(mu);
  if (g_mu.numel() == 0) return {g_mu, g_lv};
  const double coef = grad_stats_coefficient_on_host(grad_stats, latent_grad_weights(beta), static_cast<double>(B));
  const at::Tensor mu2 = as_rows(mu, B, D), lv2 = as_rows(log_var, B, D);
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "elbo_backward_latent_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto m = const_row_matrix<scalar_t>(mu2), l = const_row_matrix<scalar_t>(lv2);
    scalar_t* o_mu = g_mu.data_ptr<scalar_t>();
    scalar_t* o_lv = g_lv.data_ptr<scalar_t>();
    const opmath_t c = static_cast<opmath_t>(coef);
    for (const auto b : c10::irange(B)) {
      const KlRowPtrs<scalar_t> in{m.row(b), l.row(b), nullptr, nullptr};
      for_each_kl_column<true>(in, D, -kNoClamp, kNoClamp, [&](int64_t j, auto mq, auto lq, auto, auto) {
        using T = decltype(mq);
        T d_mu, d_lv;
        kl_standard_and_grad(mq, lq, d_mu, d_lv);
        store_at(o_mu + b * D, j, T(c) * d_mu);
        store_at(o_lv + b * D, j, T(c) * d_lv);
      });
    }
  });
  return {g_mu, g_lv};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) {
  m.impl("elbo", &elbo_cpu);
  m.impl("elbo_backward_x_hat", &elbo_backward_x_hat_cpu);
  m.impl("elbo_scale_x_hat_grad_", &elbo_scale_x_hat_grad_cpu_);
  m.impl("elbo_backward_latent", &elbo_backward_latent_cpu);
}

}  // namespace paf::cpu::elbo
