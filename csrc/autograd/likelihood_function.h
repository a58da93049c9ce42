// The autograd Function shared by log_likelihood and log_likelihood_sum:
// both take (x, x_hat, likelihood), save x and x_hat, and get each input's
// gradient from one call of their backward op (wrt_x true / false).
#pragma once

#include "autograd_common.h"

namespace paf::autograd {

using LikelihoodForward = at::Tensor(const at::Tensor&, const at::Tensor&, c10::string_view);
using LikelihoodBackward =
    at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view, bool);

// Ops: static forward() / backward() returning the typed handles, kName,
// and kBroadcasts (whether a gradient may come in the broadcast shape).
template <typename Ops>
class LikelihoodFunction : public torch::autograd::Function<LikelihoodFunction<Ops>> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& x_hat,
                            c10::string_view likelihood) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({x, x_hat});
    ctx->saved_data["likelihood"] = std::string(likelihood);
    return Ops::forward().call(x, x_hat, likelihood);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const std::string likelihood = ctx->saved_data["likelihood"].toStringRef();
    variable_list result(3);
    const bool wide = Ops::kBroadcasts && reduce_in_float32(saved);
    const at::Tensor grad_out = wide ? to_float32(grads[0]) : grads[0];
    const at::Tensor x = wide ? to_float32(saved[0]) : saved[0];
    const at::Tensor x_hat = wide ? to_float32(saved[1]) : saved[1];
    for (const bool wrt_x : {true, false}) {
      const int index = wrt_x ? 0 : 1;
      if (!ctx->needs_input_grad(index)) continue;
      at::Tensor grad = Ops::backward().call(grad_out, x, x_hat, likelihood, wrt_x);
      result[index] = Ops::kBroadcasts ? sum_to(grad, saved[index]).to(saved[index].scalar_type()) : grad;
    }
    return first_order_only(std::move(result), saved, grads, Ops::kName);
  }
};

}  // namespace paf::autograd
