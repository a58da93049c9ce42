// The autograd Function shared by log_likelihood and log_likelihood_sum:
// both take (x, x_hat, likelihood, x_log_var?), save the tensors, and get
// each input's gradient from one call of their backward op (wrt "x",
// "x_hat" or "x_log_var").
#pragma once

#include "autograd_common.h"

#include <array>

namespace paf::autograd {

using LikelihoodForward =
    at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view, const std::optional<at::Tensor>&);
using LikelihoodBackward = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view,
                                      c10::string_view, const std::optional<at::Tensor>&);

// Ops: static forward() / backward() returning the typed handles, kName,
// and kBroadcasts (whether x and x_hat broadcast against each other, so
// that their gradients come in the broadcast shape). x_log_var's gradient
// is summed to its shape either way: for log_likelihood_sum the backward
// op writes it per element of x_hat in the accumulation dtype.
template <typename Ops>
class LikelihoodFunction : public torch::autograd::Function<LikelihoodFunction<Ops>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& x_hat,
                            c10::string_view likelihood, const std::optional<at::Tensor>& x_log_var) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x, x_hat, x_log_var.value_or(at::Tensor())});
    ctx->saved_data["likelihood"] = std::string(likelihood);
    return Ops::forward().call(x, x_hat, likelihood, x_log_var);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::string likelihood = ctx->saved_data["likelihood"].toStringRef();
    variable_list result(4);  // x, x_hat, likelihood, x_log_var
    const bool wide = Ops::kBroadcasts && reduce_in_float32(saved);
    auto operand = [&](const at::Tensor& t) { return wide ? to_float32(t) : t; };
    const at::Tensor grad_out = operand(grads[0]);
    const at::Tensor x = operand(saved[0]), x_hat = operand(saved[1]), x_log_var = operand(saved[2]);
    constexpr std::array<const char*, 3> kWrt = {"x", "x_hat", "x_log_var"};
    constexpr std::array<int, 3> kResultIndex = {0, 1, 3};
    // needs_input_grad counts the tensors passed (a None x_log_var is not one).
    for (int i = 0; i < 3; ++i) {
      if (!saved[i].defined() || !ctx->needs_input_grad(i)) continue;
      const at::Tensor grad = Ops::backward().call(grad_out, x, x_hat, likelihood, kWrt[i], optional(x_log_var));
      const bool summed = Ops::kBroadcasts || i == 2;
      result[kResultIndex[i]] = summed ? sum_to(grad, saved[i]).to(saved[i].scalar_type()) : grad;
    }
    return first_order_only(std::move(result), saved, grads, Ops::kName);
  }
};

// The Autograd kernel of the op Ops.
template <typename Ops>
at::Tensor likelihood_autograd(const at::Tensor& x, const at::Tensor& x_hat, c10::string_view likelihood,
                               const std::optional<at::Tensor>& x_log_var) {
  return LikelihoodFunction<Ops>::apply(x, x_hat, likelihood, x_log_var);
}

}  // namespace paf::autograd
