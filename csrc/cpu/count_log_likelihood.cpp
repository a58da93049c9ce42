// count_log_likelihood: the log-pmf of counts (nb, zinb, poisson) per
// element or summed over the genes (the last dimension), and, in the same
// pass, its partial derivatives per element. All arguments are read as
// [rows, G] row views, so a per-gene theta is read in place for every row.
#include "elementwise_math.h"
#include "kernel_utils.h"
#include "../common/args/count_log_likelihood.h"

#include <torch/library.h>

namespace paf::cpu::count_log_likelihood {
namespace {

// The rows' outputs, in the types the problem allocated them.
template <typename scalar_t>
struct CountOutputs {
  using opmath_t = at::opmath_type<scalar_t>;
  scalar_t* out;  // [rows, G] or [rows] (summed)
  opmath_t *d_x, *d_mu, *d_theta, *d_zi_logits;  // [rows, G] or null
};

template <CountLikelihood L, bool kGrad, bool kGradX, bool kSum, typename scalar_t>
void count_rows(const CountProblem& p, const CountOutputs<scalar_t>& o) {
  using opmath_t = at::opmath_type<scalar_t>;
  const auto xm = const_row_matrix<scalar_t>(p.x), mm = const_row_matrix<scalar_t>(p.mu);
  const auto tm = has_theta(L) ? const_row_matrix<scalar_t>(p.theta) : mm;  // (mm: never read)
  const auto zm = has_zi_logits(L) ? const_row_matrix<scalar_t>(p.zi_logits) : mm;
  const int64_t G = p.cols;
  const opmath_t eps = static_cast<opmath_t>(p.eps);
  for_each_row_value<scalar_t, kSum>(p.rows, G, o.out, [&](auto tag, int64_t r, int64_t j) C10_ALWAYS_INLINE_ATTRIBUTE {
    using T = decltype(tag);
    const auto load = [&](const auto& m) { return load_at<scalar_t, T>(m.row(r), j); };
    const auto store_grad = [&](opmath_t* d, const T& v) { store_at(d + r * G, j, v); };
    const T theta = has_theta(L) ? load(tm) : T(1);
    const T zi = has_zi_logits(L) ? load(zm) : T(0);
    const CountTerms<T> t = CountLogLikelihood<L>::template terms<kGrad, kGradX>(load(xm), load(mm), theta, zi, T(eps));
    if constexpr (kGradX) store_grad(o.d_x, t.grad.x);
    if constexpr (kGrad) {
      store_grad(o.d_mu, t.grad.mu);
      if constexpr (has_theta(L)) store_grad(o.d_theta, t.grad.theta);
      if constexpr (has_zi_logits(L)) store_grad(o.d_zi_logits, t.grad.zi_logits);
    }
    return t.value;
  });
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> count_log_likelihood_cpu(
    const at::Tensor& x, const at::Tensor& mu, const std::optional<at::Tensor>& theta,
    const std::optional<at::Tensor>& zi_logits, c10::string_view likelihood, double eps, bool reduce_sum,
    bool need_grad, bool need_grad_x) {
  const CountProblem p =
      make_count_problem(x, mu, theta, zi_logits, likelihood, eps, reduce_sum, need_grad, need_grad_x);
  if (p.rows == 0) return p.outputs();
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "count_log_likelihood_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    auto grad_data = [](const at::Tensor& t) { return t.numel() > 0 ? t.data_ptr<opmath_t>() : nullptr; };
    const CountOutputs<scalar_t> o{p.out.data_ptr<scalar_t>(), grad_data(p.d_x), grad_data(p.d_mu),
                                   grad_data(p.d_theta), grad_data(p.d_zi_logits)};
    dispatch_count_likelihood(p.likelihood, [&](auto tag) {
      constexpr CountLikelihood L = decltype(tag)::value;
      dispatch_count_grads(need_grad, need_grad_x, [&](auto grad, auto grad_x) {
        dispatch_bool(reduce_sum, [&](auto sum) {
          count_rows<L, decltype(grad)::value, decltype(grad_x)::value, decltype(sum)::value>(p, o);
        });
      });
    });
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) { m.impl("count_log_likelihood", &count_log_likelihood_cpu); }

}  // namespace paf::cpu::count_log_likelihood
