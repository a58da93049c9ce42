// nb_mixture_log_likelihood: the log-pmf of counts under a mixture of two
// negative binomials per element or summed over the genes, with its
// derivatives written in the same pass (CUDA). Launched as
// count_log_likelihood's: the math is common/formulas/count.h, as on the CPU.
#include "cuda_utils.cuh"
#include "nb_mixture_log_likelihood.cuh"

#include <torch/library.h>

namespace paf::cuda::nb_mixture_log_likelihood {
namespace {

template <typename scalar_t, bool kGrad, bool kGradX>
void launch_nb_mixture(const NbMixtureProblem& p, bool reduce_sum) {
  if (!reduce_sum) {
    launch_for_each_element<scalar_t>(p.rows, p.cols, make_nb_mixture_term<scalar_t, kGrad, kGradX>(p, false));
    return;
  }
  const StoreTotal<scalar_t> store{p.out.data_ptr<scalar_t>()};
  // The derivatives per element (the values to a scratch buffer), then the
  // sums alone, as count_log_likelihood.cu, where the sums' pass would write
  // them and spill registers: x's derivative too (rare), or double (two NB
  // formulas' derivatives in double registers).
  if constexpr (kGradX || (kGrad && std::is_same_v<scalar_t, double>)) {
    NbMixtureProblem per_element = p;
    per_element.out = at::empty({p.rows, p.cols}, p.out.options());
    launch_for_each_element<scalar_t>(p.rows, p.cols,
                                      make_nb_mixture_term<scalar_t, kGrad, kGradX>(per_element, false));
    launch_row_sums<scalar_t>(p.rows, p.cols, make_nb_mixture_term<scalar_t, false, false>(p, true), store,
                              p.out.device());
  } else {
    launch_row_sums<scalar_t>(p.rows, p.cols, make_nb_mixture_term<scalar_t, kGrad, kGradX>(p, true), store,
                              p.out.device());
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
nb_mixture_log_likelihood_cuda(const at::Tensor& x, const at::Tensor& mu_1, const at::Tensor& mu_2,
                               const at::Tensor& theta_1, const std::optional<at::Tensor>& theta_2,
                               const at::Tensor& pi_logits, double eps, bool reduce_sum, bool need_grad,
                               bool need_grad_x) {
  const c10::cuda::CUDAGuard guard(mu_1.device());
  const NbMixtureProblem p =
      make_nb_mixture_problem(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, reduce_sum, need_grad, need_grad_x);
  if (p.rows == 0) return p.outputs();
  PAF_DISPATCH_FLOATING(mu_1.scalar_type(), "nb_mixture_log_likelihood_cuda", [&] {
    dispatch_count_grads(need_grad, need_grad_x, [&](auto grad, auto grad_x) {
      launch_nb_mixture<scalar_t, decltype(grad)::value, decltype(grad_x)::value>(p, reduce_sum);
    });
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("nb_mixture_log_likelihood", &nb_mixture_log_likelihood_cuda);
}

}  // namespace paf::cuda::nb_mixture_log_likelihood
