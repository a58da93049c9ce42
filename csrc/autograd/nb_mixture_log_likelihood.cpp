// nb_mixture_log_likelihood: autograd (schema: csrc/schemas.cpp; kernels:
// csrc/<device>/nb_mixture_log_likelihood).
//
// As count_log_likelihood's: the forward op writes the partial derivatives
// per element when asked, the backward scales them by the incoming gradient
// and sums them down to each input's shape, out of place (the buffers,
// outputs of the op, are never modified). A forward run without them is
// rerun with them.
#include "autograd_common.h"

namespace paf::autograd {
namespace {

using Tensors7 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Forward = Tensors7(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const std::optional<at::Tensor>&, const at::Tensor&, double, bool, bool, bool);

constexpr int kInputs = 6;  // x, mu_1, mu_2, theta_1, theta_2, pi_logits

class NbMixtureLogLikelihood : public torch::autograd::Function<NbMixtureLogLikelihood> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& mu_1,
                               const at::Tensor& mu_2, const at::Tensor& theta_1,
                               const std::optional<at::Tensor>& theta_2, const at::Tensor& pi_logits, double eps,
                               bool reduce_sum, bool need_grad, bool need_grad_x) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi] =
        PAF_OP(nb_mixture_log_likelihood, Forward)
            .call(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, reduce_sum, need_grad, need_grad_x);
    ctx->mark_non_differentiable({d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi});
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({x, mu_1, mu_2, theta_1, theta_2.value_or(at::Tensor()), pi_logits, d_x, d_mu_1, d_mu_2,
                            d_theta_1, d_theta_2, d_pi});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["reduce_sum"] = reduce_sum;
    // (flags, not the buffers' sizes, which may be symbolic under a tracer)
    ctx->saved_data["has_grad"] = need_grad || need_grad_x;
    ctx->saved_data["has_grad_x"] = need_grad_x;
    return {out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(10);
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return result;  // only the derivative buffers were used
    auto saved = ctx->get_saved_variables();
    const bool reduce_sum = ctx->saved_data["reduce_sum"].toBool();
    // needs_input_grad counts the tensors passed (a None theta_2 is not one).
    std::array<bool, kInputs> wanted{};
    for (int i = 0, edge = 0; i < kInputs; ++i) {
      if (saved[i].defined()) wanted[i] = ctx->needs_input_grad(edge++);
    }
    const bool want_x = wanted[0];
    const bool want_params = std::any_of(wanted.begin() + 1, wanted.end(), [](bool w) { return w; });
    std::array<at::Tensor, kInputs> d = {saved[6], saved[7], saved[8], saved[9], saved[10], saved[11]};
    if ((want_x && !ctx->saved_data["has_grad_x"].toBool()) || (want_params && !ctx->saved_data["has_grad"].toBool())) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      auto rerun = PAF_OP(nb_mixture_log_likelihood, Forward)
                       .call(saved[0], saved[1], saved[2], saved[3], optional(saved[4]), saved[5],
                             ctx->saved_data["eps"].toDouble(), reduce_sum, true, want_x);
      d = {std::get<1>(rerun), std::get<2>(rerun), std::get<3>(rerun),
           std::get<4>(rerun), std::get<5>(rerun), std::get<6>(rerun)};
    }
    for (int i = 0; i < kInputs; ++i) {
      if (wanted[i]) result[i] = chain_per_element(d[i], grad, reduce_sum, saved[i]);
    }
    return first_order_only(std::move(result), saved, grads, "nb_mixture_log_likelihood");
  }
};

Tensors7 nb_mixture_log_likelihood_autograd(const at::Tensor& x, const at::Tensor& mu_1, const at::Tensor& mu_2,
                                            const at::Tensor& theta_1, const std::optional<at::Tensor>& theta_2,
                                            const at::Tensor& pi_logits, double eps, bool reduce_sum, bool need_grad,
                                            bool need_grad_x) {
  auto out = NbMixtureLogLikelihood::apply(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, reduce_sum, need_grad,
                                           need_grad_x);
  return {out[0], out[1], out[2], out[3], out[4], out[5], out[6]};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) {
  m.impl("nb_mixture_log_likelihood", &nb_mixture_log_likelihood_autograd);
}

}  // namespace paf::autograd
