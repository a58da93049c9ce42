// nb_mixture_log_likelihood: the log-pmf of counts under a mixture of two
// negative binomials (scvi-tools' log_mixture_nb) per element or summed
// over the genes (the last dimension), and, in the same pass, its partial
// derivatives per element. All arguments are read as [rows, G] row views.
#include "elementwise_math.h"
#include "kernel_utils.h"
#include "../common/args/nb_mixture_log_likelihood.h"

#include <torch/library.h>

namespace paf::cpu::nb_mixture_log_likelihood {
namespace {

template <bool kGrad, bool kGradX, bool kSum, typename scalar_t>
void nb_mixture_rows(const NbMixtureProblem& p) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto xm = const_row_matrix<scalar_t>(p.x), m1 = const_row_matrix<scalar_t>(p.mu_1),
             m2 = const_row_matrix<scalar_t>(p.mu_2), t1 = const_row_matrix<scalar_t>(p.theta_1),
             t2 = const_row_matrix<scalar_t>(p.theta_2), pm = const_row_matrix<scalar_t>(p.pi_logits);
  auto grad_data = [](const at::Tensor& t) { return t.numel() > 0 ? t.data_ptr<opmath_t>() : nullptr; };
  opmath_t *d_x = grad_data(p.d_x), *d_mu_1 = grad_data(p.d_mu_1), *d_mu_2 = grad_data(p.d_mu_2),
           *d_theta_1 = grad_data(p.d_theta_1), *d_theta_2 = grad_data(p.d_theta_2),
           *d_pi = grad_data(p.d_pi_logits);
  const int64_t G = p.cols;
  const opmath_t eps = static_cast<opmath_t>(p.eps);
  const bool shared_theta = p.shared_theta;
  for_each_row_value<scalar_t, kSum>(
      p.rows, G, p.out.data_ptr<scalar_t>(), [&](auto tag, int64_t r, int64_t j) C10_ALWAYS_INLINE_ATTRIBUTE {
        using T = decltype(tag);
        const auto load = [&](const auto& m) { return load_at<scalar_t, T>(m.row(r), j); };
        const auto store_grad = [&](opmath_t* d, const T& v) { store_at(d + r * G, j, v); };
        const NbMixtureTerms<T> t = nb_mixture<kGrad, kGradX>(load(xm), load(m1), load(m2), load(t1), load(t2),
                                                              load(pm), T(eps), shared_theta);
        if constexpr (kGradX) store_grad(d_x, t.grad.x);
        if constexpr (kGrad) {
          store_grad(d_mu_1, t.grad.mu_1);
          store_grad(d_mu_2, t.grad.mu_2);
          store_grad(d_theta_1, t.grad.theta_1);
          if (!shared_theta) store_grad(d_theta_2, t.grad.theta_2);
          store_grad(d_pi, t.grad.pi_logits);
        }
        return t.value;
      });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
nb_mixture_log_likelihood_cpu(const at::Tensor& x, const at::Tensor& mu_1, const at::Tensor& mu_2,
                              const at::Tensor& theta_1, const std::optional<at::Tensor>& theta_2,
                              const at::Tensor& pi_logits, double eps, bool reduce_sum, bool need_grad,
                              bool need_grad_x) {
  const NbMixtureProblem p =
      make_nb_mixture_problem(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, reduce_sum, need_grad, need_grad_x);
  if (p.rows == 0) return p.outputs();
  PAF_DISPATCH_FLOATING(mu_1.scalar_type(), "nb_mixture_log_likelihood_cpu", [&] {
    dispatch_count_grads(need_grad, need_grad_x, [&](auto grad, auto grad_x) {
      dispatch_bool(reduce_sum, [&](auto sum) {
        nb_mixture_rows<decltype(grad)::value, decltype(grad_x)::value, decltype(sum)::value, scalar_t>(p);
      });
    });
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) {
  m.impl("nb_mixture_log_likelihood", &nb_mixture_log_likelihood_cpu);
}

}  // namespace paf::cpu::nb_mixture_log_likelihood
