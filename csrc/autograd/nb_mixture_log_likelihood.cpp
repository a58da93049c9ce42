// nb_mixture_log_likelihood: autograd (schema: csrc/schemas.cpp; kernels:
// csrc/<device>/nb_mixture_log_likelihood).
//
// As count_log_likelihood's: when a gradient is recorded the forward op
// writes the partial derivatives per element, into buffers of the node's
// own unless the caller asked for them (Buffers in autograd_common.h); the
// backward scales them by the incoming gradient and sums them down to each
// input's shape, its own buffers in place the first time, the caller's into
// new tensors. Without buffers it reruns the forward for them.
#include "autograd_common.h"

namespace paf::autograd::nb_mixture_log_likelihood {
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
                               bool reduce_sum, bool need_grad, bool need_grad_x, bool records, bool records_x) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi] =
        PAF_OP(nb_mixture_log_likelihood, Forward)
            .call(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, reduce_sum, need_grad || records,
                  need_grad_x || records_x);
    ctx->set_materialize_grads(false);
    ctx->save_for_backward({x, mu_1, mu_2, theta_1, theta_2.value_or(at::Tensor()), pi_logits, d_x, d_mu_1, d_mu_2,
                            d_theta_1, d_theta_2, d_pi});
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["reduce_sum"] = reduce_sum;
    // (flags, not the buffers' sizes, which may be symbolic under a tracer)
    const bool caller_params = need_grad || need_grad_x;  // (need_grad_x gives the parameters' too)
    save_buffers(ctx, caller_params ? Buffers::kShared : records || records_x ? Buffers::kOwned : Buffers::kNone);
    ctx->saved_data["has_grad_x"] = need_grad_x || records_x;
    // (the caller's buffers are those it asked for; the rest placeholders)
    variable_list outputs = {out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi};
    for (size_t i = 1; i < outputs.size(); ++i) {
      if (!(i == 1 ? need_grad_x : caller_params)) outputs[i] = placeholder(outputs[i]);
    }
    ctx->mark_non_differentiable(variable_list(outputs.begin() + 1, outputs.end()));
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(12);  // the 10 arguments, records, records_x
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
    Buffers buffers = take_buffers(ctx);
    if ((want_x && (buffers == Buffers::kNone || !ctx->saved_data["has_grad_x"].toBool())) ||
        (want_params && buffers == Buffers::kNone)) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      auto rerun = PAF_OP(nb_mixture_log_likelihood, Forward)
                       .call(saved[0], saved[1], saved[2], saved[3], optional(saved[4]), saved[5],
                             ctx->saved_data["eps"].toDouble(), reduce_sum, true, want_x);
      d = {std::get<1>(rerun), std::get<2>(rerun), std::get<3>(rerun),
           std::get<4>(rerun), std::get<5>(rerun), std::get<6>(rerun)};
      buffers = Buffers::kOwned;  // (this backward's own)
    }
    for (int i = 0; i < kInputs; ++i) {
      if (wanted[i]) result[i] = chain_per_element(buffers, d[i], grad, reduce_sum, saved[i]);
    }
    return first_order_only(std::move(result), saved, grads, "nb_mixture_log_likelihood");
  }
};

Tensors7 nb_mixture_log_likelihood_autograd(const at::Tensor& x, const at::Tensor& mu_1, const at::Tensor& mu_2,
                                            const at::Tensor& theta_1, const std::optional<at::Tensor>& theta_2,
                                            const at::Tensor& pi_logits, double eps, bool reduce_sum, bool need_grad,
                                            bool need_grad_x) {
  const at::Tensor none;
  const bool records = records_grad({&mu_1, &mu_2, &theta_1, theta_2 ? &*theta_2 : &none, &pi_logits});
  const bool records_x = records_grad({&x});
  auto out = NbMixtureLogLikelihood::apply(x, mu_1, mu_2, theta_1, theta_2, pi_logits, eps, reduce_sum, need_grad,
                                           need_grad_x, records, records_x);
  return {out[0], out[1], out[2], out[3], out[4], out[5], out[6]};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) {
  m.impl("nb_mixture_log_likelihood", &nb_mixture_log_likelihood_autograd);
}

}  // namespace paf::autograd::nb_mixture_log_likelihood
