// iwae_bound: the importance-weighted bound (Burda et al., 2016) per row,
//   lw[b, s]  = sum_j ll(x[b, j], x_hat[b, s, j])                 (log p(x | z_s))
//             + sum_d log N(z[b, s, d]; 0, 1) - log N(z[b, s, d]; mu[b, d], exp(log_var[b, d]))
//   bound[b]  = log((1/S) sum_s exp(lw[b, s]))
// with the normalised weights softmax_s(lw[b, :]) the backward scales by.
// The likelihood term is log_likelihood_sum's row pass (x read in place for
// every sample; the Gaussian may read x_log_var), writing d ll / d x_hat
// (and d ll / d x_log_var) in the same pass when need_grad; the latent
// terms and the log-mean-exp are [B, S, D] and [B, S] work.
#include "../common/args/iwae_bound.h"
#include "../common/log_mean_exp.h"
#include "loglik_rows.h"

#include <torch/library.h>

namespace paf::cpu::iwae_bound {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> iwae_bound_cpu(
    const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& z, const at::Tensor& mu, const at::Tensor& log_var,
    c10::string_view likelihood, bool need_grad, const std::optional<at::Tensor>& x_log_var) {
  const IwaeProblem p = make_iwae_problem(x, x_hat, z, mu, log_var, x_log_var, likelihood, need_grad);
  const SumProblem& s = p.ll;
  const int64_t B = s.batch, S = s.samples, D = p.latent;
  if (B == 0) return p.outputs();
  PAF_DISPATCH_FLOATING(x.scalar_type(), "iwae_bound_cpu", [&] {
    using IO = VecIO<scalar_t>;
    using opmath_t = typename IO::opmath_t;
    std::vector<opmath_t> ll(B * S);
    LoglikGrads<scalar_t> grads;  // d ll / d (x_hat, x_log_var), unweighted
    if (need_grad) {
      grads.x_hat = p.d_x_hat.data_ptr<scalar_t>();
      if (x_log_var) grads.x_log_var = p.d_x_log_var.data_ptr<opmath_t>();
      grads.scale = opmath_t(1);
    }
    loglik_rows<scalar_t>(s.likelihood, loglik_rows_of<scalar_t>(s.x, s.x_hat, s.x_log_var, S), grads, ll.data());
    const auto zm = const_row_matrix<scalar_t>(p.z), mm = const_row_matrix<scalar_t>(p.mu),
               lm = const_row_matrix<scalar_t>(p.log_var);
    scalar_t* bound = p.bound.data_ptr<scalar_t>();
    opmath_t* weights = p.weights.data_ptr<opmath_t>();
    at::parallel_for(0, B, row_grain(S * (D + 1)), [&](int64_t begin, int64_t end) {
      std::vector<double> lw(S);
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t *m = mm.row(b), *l = lm.row(b);
        for (int64_t smp = 0; smp < S; ++smp) {
          const scalar_t* zr = zm.row(b * S + smp);
          const double latent = row_sum<IO>(
              D, [&](int64_t j) { return latent_log_ratio(IO::load(zr + j), IO::load(m + j), IO::load(l + j)); },
              [&](int64_t j) {
                return latent_log_ratio(static_cast<opmath_t>(zr[j]), static_cast<opmath_t>(m[j]),
                                        static_cast<opmath_t>(l[j]));
              });
          lw[smp] = static_cast<double>(ll[b * S + smp]) + latent;
        }
        bound[b] = static_cast<scalar_t>(log_mean_exp_row(lw.data(), 1, S, weights + b * S));
      }
    });
  });
  return p.outputs();
}

// d (bound . grad) / d (z, mu, log_var): with w = grad[b] * weights[b, s],
// d_z[b, s] = w * d ratio / d z, and d_mu[b], d_log_var[b] the sums over s
// of w * d ratio / d (mu, log_var) (accumulated in opmath, stored once).
std::tuple<at::Tensor, at::Tensor, at::Tensor> iwae_bound_backward_latent_cpu(const at::Tensor& grad,
                                                                              const at::Tensor& weights,
                                                                              const at::Tensor& z, const at::Tensor& mu,
                                                                              const at::Tensor& log_var) {
  const IwaeLatentGradProblem p = make_iwae_latent_grad_problem(grad, weights, z, mu, log_var);
  const int64_t B = p.batch, S = p.samples, D = p.latent;
  if (B * D == 0) return {p.d_z, p.d_mu, p.d_log_var};
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "iwae_bound_backward_latent_cpu", [&] {
    using IO = VecIO<scalar_t>;
    using opmath_t = typename IO::opmath_t;
    const auto zm = const_row_matrix<scalar_t>(p.z), mm = const_row_matrix<scalar_t>(p.mu),
               lm = const_row_matrix<scalar_t>(p.log_var);
    const scalar_t* g = p.grad.const_data_ptr<scalar_t>();
    const opmath_t* w = p.weights.const_data_ptr<opmath_t>();
    scalar_t *d_z = p.d_z.data_ptr<scalar_t>(), *d_mu = p.d_mu.data_ptr<scalar_t>(),
             *d_lv = p.d_log_var.data_ptr<scalar_t>();
    at::parallel_for(0, B, row_grain(S * D), [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> acc_mu(D), acc_lv(D);
      for (int64_t b = begin; b < end; ++b) {
        std::fill(acc_mu.begin(), acc_mu.end(), opmath_t(0));
        std::fill(acc_lv.begin(), acc_lv.end(), opmath_t(0));
        const scalar_t *m = mm.row(b), *l = lm.row(b);
        for (int64_t smp = 0; smp < S; ++smp) {
          const int64_t r = b * S + smp;
          const opmath_t weight = static_cast<opmath_t>(g[b]) * w[r];
          const scalar_t* zr = zm.row(r);
          auto column = [&](int64_t j, auto zero) {
            using T = decltype(zero);
            T dz, dm, dl;
            latent_log_ratio_grads(load_at<scalar_t, T>(zr, j), load_at<scalar_t, T>(m, j),
                                   load_at<scalar_t, T>(l, j), dz, dm, dl);
            const T wv(weight);
            store_at(d_z + r * D, j, wv * dz);
            store_at(acc_mu.data(), j, load_at<opmath_t, T>(acc_mu.data(), j) + wv * dm);
            store_at(acc_lv.data(), j, load_at<opmath_t, T>(acc_lv.data(), j) + wv * dl);
          };
          for_each_column<IO::kWidth>(
              D, [&](int64_t j) { column(j, typename IO::Vec(0)); }, [&](int64_t j) { column(j, opmath_t(0)); });
        }
        for (int64_t j = 0; j < D; ++j) {
          d_mu[b * D + j] = static_cast<scalar_t>(acc_mu[j]);
          d_lv[b * D + j] = static_cast<scalar_t>(acc_lv[j]);
        }
      }
    });
  });
  return {p.d_z, p.d_mu, p.d_log_var};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) {
  m.impl("iwae_bound", &iwae_bound_cpu);
  m.impl("iwae_bound_backward_latent", &iwae_bound_backward_latent_cpu);
}

}  // namespace paf::cpu::iwae_bound
