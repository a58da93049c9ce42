// adagvae_posterior: autograd (schema: csrc/schemas.cpp; kernels: csrc/<device>/adagvae_posterior).
// The selection mask is an output without gradient; the four adapted
// tensors are differentiable in all four inputs.
#include "autograd_common.h"

namespace paf::autograd::adagvae_posterior {
namespace {

using Tensors4 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Tensors5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Forward = Tensors5(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&);
using Backward = Tensors4(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                          const at::Tensor&, const at::Tensor&, const at::Tensor&);

class AdagvaePosterior : public torch::autograd::Function<AdagvaePosterior> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& mu1, const at::Tensor& log_var1,
                               const at::Tensor& mu2, const at::Tensor& log_var2) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [m1, lv1, m2, lv2, mask] = PAF_OP(adagvae_posterior, Forward).call(mu1, log_var1, mu2, log_var2);
    ctx->mark_non_differentiable({mask});
    ctx->set_materialize_grads(false);  // unused outputs arrive undefined
    ctx->save_for_backward({log_var1, log_var2, mask});
    return {m1, lv1, m2, lv2, mask};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    for (int i = 0; i < 4; ++i) {
      if (!grads[i].defined()) grads[i] = at::zeros_like(saved[0]);
    }
    auto [g1, g2, g3, g4] =
        PAF_OP(adagvae_posterior_backward, Backward).call(grads[0], grads[1], grads[2], grads[3], saved[0], saved[1], saved[2]);
    const at::Tensor computed[] = {g1, g2, g3, g4};
    variable_list result(4);
    for (int i = 0; i < 4; ++i) {
      if (ctx->needs_input_grad(i)) result[i] = computed[i];
    }
    return first_order_only(std::move(result), saved, grads, "adagvae_posterior");
  }
};

Tensors5 adagvae_posterior_autograd(const at::Tensor& mu1, const at::Tensor& log_var1, const at::Tensor& mu2,
                                    const at::Tensor& log_var2) {
  auto out = AdagvaePosterior::apply(mu1, log_var1, mu2, log_var2);
  return {out[0], out[1], out[2], out[3], out[4]};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) { m.impl("adagvae_posterior", &adagvae_posterior_autograd); }

}  // namespace paf::autograd::adagvae_posterior
