// nb_mixture_log_likelihood: its argument checks and problem shape, shared by its CPU kernel
// (csrc/cpu/nb_mixture_log_likelihood.cpp) and its CUDA kernel (csrc/cuda/nb_mixture_log_likelihood.cu), so both
// devices accept and refuse the same calls with the same messages.
#pragma once

#include "count_log_likelihood.h"
#include "../tensor_args.h"

#include <array>
#include <cmath>
#include <tuple>
#include <vector>
#include <optional>

namespace paf {

// Counts x against a mixture of two NBs (mu_1, theta_1), (mu_2, theta_2)
// with the logits pi_logits of component 1's weight, as CountRows. Without
// theta_2 both components share theta_1: theta_2 is then theta_1's rows and
// d_theta_2 is empty (theta_1's derivative holds both components').
struct NbMixtureProblem {
  double eps;
  bool shared_theta;
  int64_t rows = 0, cols = 0;
  at::Tensor x, mu_1, mu_2, theta_1, theta_2, pi_logits;  // [rows, G]
  at::Tensor out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi_logits;
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi_logits};
  }
};

inline NbMixtureProblem make_nb_mixture_problem(const at::Tensor& x, const at::Tensor& mu_1, const at::Tensor& mu_2,
                                                const at::Tensor& theta_1, const std::optional<at::Tensor>& theta_2,
                                                const at::Tensor& pi_logits, double eps, bool reduce_sum,
                                                bool need_grad, bool need_grad_x) {
  NbMixtureProblem p;
  check_floating(mu_1, "mu_1");
  std::vector<const at::Tensor*> all = {&x, &mu_1, &mu_2, &theta_1, &pi_logits};
  const std::array<const char*, 5> names = {"x", "mu_1", "mu_2", "theta_1", "pi_logits"};
  if (theta_2) all.push_back(&*theta_2);
  for (size_t i = 0; i < all.size(); ++i) {
    check_same_dtype_device(mu_1, "mu_1", *all[i], i < names.size() ? names[i] : "theta_2");
  }
  PAF_CHECK_VALUE(std::isfinite(eps) && eps >= 0, "eps: expected a finite number >= 0, got ", eps);
  p.eps = eps;
  p.shared_theta = !theta_2.has_value();
  const CountRows rows(all, "mu_1");
  p.rows = rows.rows, p.cols = rows.cols;
  p.x = rows.of(x);
  p.mu_1 = rows.of(mu_1);
  p.mu_2 = rows.of(mu_2);
  p.theta_1 = rows.of(theta_1);
  p.theta_2 = theta_2 ? rows.of(*theta_2) : p.theta_1;
  p.pi_logits = rows.of(pi_logits);
  p.out = rows.output(mu_1, reduce_sum);
  need_grad = need_grad || need_grad_x;
  p.d_x = rows.grad_buffer(mu_1, need_grad_x);
  p.d_mu_1 = rows.grad_buffer(mu_1, need_grad);
  p.d_mu_2 = rows.grad_buffer(mu_1, need_grad);
  p.d_theta_1 = rows.grad_buffer(mu_1, need_grad);
  p.d_theta_2 = rows.grad_buffer(mu_1, need_grad && !p.shared_theta);
  p.d_pi_logits = rows.grad_buffer(mu_1, need_grad);
  return p;
}

}  // namespace paf
