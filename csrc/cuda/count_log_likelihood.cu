// count_log_likelihood: the log-pmf of counts per element or summed over
// the genes, with its derivatives written in the same pass (CUDA). Sums are
// the deterministic row sums of cuda_utils.cuh; the math is
// common/formulas/count.h, as on the CPU.
#include "count_log_likelihood.cuh"
#include "cuda_utils.cuh"

#include <torch/library.h>

namespace paf::cuda::count_log_likelihood {
namespace {

template <typename scalar_t, CountLikelihood L, bool kGrad, bool kGradX>
void launch_count(const CountProblem& p, bool reduce_sum) {
  if (!reduce_sum) {
    launch_for_each_element<scalar_t>(p.rows, p.cols, make_count_term<scalar_t, L, kGrad, kGradX>(p, false));
    return;
  }
  const StoreTotal<scalar_t> store{p.out.data_ptr<scalar_t>()};
  if constexpr (kGradX) {
    // x's derivative too (rare): the derivatives per element (the values to
    // a scratch buffer), then the sums alone. Written in the sums' pass, the
    // double kernels would spill registers.
    CountProblem per_element = p;
    per_element.out = at::empty({p.rows, p.cols}, p.out.options());
    launch_for_each_element<scalar_t>(p.rows, p.cols, make_count_term<scalar_t, L, kGrad, kGradX>(per_element, false));
    launch_row_sums<scalar_t>(p.rows, p.cols, make_count_term<scalar_t, L, false, false>(p, true), store, p.out.device());
  } else {
    launch_row_sums<scalar_t>(p.rows, p.cols, make_count_term<scalar_t, L, kGrad, kGradX>(p, true), store, p.out.device());
  }
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> count_log_likelihood_cuda(
    const at::Tensor& x, const at::Tensor& mu, const std::optional<at::Tensor>& theta,
    const std::optional<at::Tensor>& zi_logits, c10::string_view likelihood, double eps, bool reduce_sum,
    bool need_grad, bool need_grad_x) {
  const c10::cuda::CUDAGuard guard(mu.device());
  const CountProblem p =
      make_count_problem(x, mu, theta, zi_logits, likelihood, eps, reduce_sum, need_grad, need_grad_x);
  if (p.rows == 0) return p.outputs();
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "count_log_likelihood_cuda", [&] {
    dispatch_count_likelihood(p.likelihood, [&](auto tag) {
      dispatch_count_grads(need_grad, need_grad_x, [&](auto grad, auto grad_x) {
        launch_count<scalar_t, decltype(tag)::value, decltype(grad)::value, decltype(grad_x)::value>(p, reduce_sum);
      });
    });
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) { m.impl("count_log_likelihood", &count_log_likelihood_cuda); }

}  // namespace paf::cuda::count_log_likelihood
