// kl_diag_gaussian: autograd (schema: csrc/schemas.cpp; kernels: csrc/<device>/kl_diag_gaussian).
#include "autograd_common.h"
#include "torch_conventions.h"

namespace paf::autograd::kl_diag_gaussian {
namespace {

using OptionalTensor = std::optional<at::Tensor>;
using Forward = at::Tensor(const at::Tensor&, const at::Tensor&, const OptionalTensor&, const OptionalTensor&, bool,
                           std::optional<double>, std::optional<double>);
using Backward = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const OptionalTensor&, const OptionalTensor&, bool,
    std::optional<double>, std::optional<double>, bool);

class KlDiagGaussian : public torch::autograd::Function<KlDiagGaussian> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& mu_q, const at::Tensor& log_var_q,
                            const OptionalTensor& mu_p, const OptionalTensor& log_var_p, bool reduce_sum,
                            std::optional<double> clamp_min, std::optional<double> clamp_max) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({mu_q, log_var_q, mu_p.value_or(at::Tensor()), log_var_p.value_or(at::Tensor())});
    ctx->saved_data["reduce_sum"] = reduce_sum;
    ctx->saved_data["clamp_min"] = clamp_min;
    ctx->saved_data["clamp_max"] = clamp_max;
    return PAF_OP(kl_diag_gaussian, Forward).call(mu_q, log_var_q, mu_p, log_var_p, reduce_sum, clamp_min, clamp_max);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const bool wide = reduce_in_float32(saved);
    variable_list in = saved;
    at::Tensor grad = grads[0];
    if (wide) {
      for (auto& t : in) t = to_float32(t);
      grad = to_float32(grad);
    }
    auto [g_mu_q, g_log_var_q, g_mu_p, g_log_var_p] = PAF_OP(kl_diag_gaussian_backward, Backward)
        .call(grad, in[0], in[1], optional(in[2]), optional(in[3]),
              ctx->saved_data["reduce_sum"].toBool(), ctx->saved_data["clamp_min"].toOptional<double>(),
              ctx->saved_data["clamp_max"].toOptional<double>(), clamp_grad_at_bounds());
    variable_list result(7);
    const at::Tensor computed[] = {g_mu_q, g_log_var_q, g_mu_p, g_log_var_p};
    // needs_input_grad counts the tensors passed (a None prior parameter is
    // not one); the inputs broadcast, so each gradient is reduced to its shape.
    for (int i = 0, edge = 0; i < 4; ++i) {
      if (!saved[i].defined()) continue;
      if (ctx->needs_input_grad(edge++)) result[i] = sum_to(computed[i], saved[i]).to(saved[i].scalar_type());
    }
    return first_order_only(std::move(result), saved, grads, "kl_diag_gaussian");
  }
};

at::Tensor kl_diag_gaussian_autograd(const at::Tensor& mu_q, const at::Tensor& log_var_q, const OptionalTensor& mu_p,
                                     const OptionalTensor& log_var_p, bool reduce_sum, std::optional<double> clamp_min,
                                     std::optional<double> clamp_max) {
  return KlDiagGaussian::apply(mu_q, log_var_q, mu_p, log_var_p, reduce_sum, clamp_min, clamp_max);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) { m.impl("kl_diag_gaussian", &kl_diag_gaussian_autograd); }

}  // namespace paf::autograd::kl_diag_gaussian
