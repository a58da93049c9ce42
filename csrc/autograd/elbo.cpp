// elbo: autograd (schema: csrc/schemas.cpp; kernels: csrc/<device>/elbo).
//
// With need_grad the forward op already wrote d objective / d (x_hat, mu,
// log_var, and x_log_var when given), and the node's first backward turns those buffers into the
// gradients:
// - grad_stats readable on the host and [1, 0, 0, 0] (objective.backward()
//   on the CPU): returned as they are; nothing launched or touched;
// - otherwise (other grad_stats, or values on a GPU, not read to spare a host
//   sync): the x_hat buffer is rescaled in place by (g_objective - g_elbo -
//   g_log_likelihood) (elbo_scale_x_hat_grad_, which leaves it untouched when
//   that is 1, as read on the device), and the small latent gradients are
//   recomputed;
// - under a tracer (torch.compile), the functional elbo_backward_x_hat.
// A later backward of the same node (retain_graph) has no buffers left to
// trust (the first may have rescaled them, or handed them to .grad, where
// accumulation mutates them) and recomputes from x and x_hat.
#include "../common/elbo_stats.h"
#include "autograd_common.h"

namespace paf::autograd {
namespace {

using Tensors2 = std::tuple<at::Tensor, at::Tensor>;
using Tensors5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Forward = Tensors5(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&, double,
                         c10::string_view, bool, const std::optional<at::Tensor>&);
using LikelihoodSumBackward = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view,
                                         c10::string_view, const std::optional<at::Tensor>&);
using BackwardXHat = at::Tensor(const at::Tensor&, const at::Tensor&);
using ScaleXHatGrad = void(const at::Tensor&, at::Tensor&);
using BackwardLatent = Tensors2(const at::Tensor&, const at::Tensor&, const at::Tensor&, double);

// grad_stats == [1, 0, 0, 0] (objective.backward()), when its values can be read now.
bool is_objective_only(const at::Tensor& grad_stats) {
  constexpr std::array<double, kNumStats> kObjectiveOnly{1.0, 0.0, 0.0, 0.0};
  return values_readable_on_host(grad_stats) && grad_stats.numel() == kNumStats &&
         read_grad_stats(grad_stats) == kObjectiveOnly;
}

// d stats / d ll[b, s] = (-1, 1, 1, 0) / (B * S), as a [B, S] gradient.
at::Tensor ll_row_grad(const at::Tensor& grad_stats, const at::Tensor& x_hat) {
  const int64_t batch = x_hat.size(0), samples = x_hat.size(1);
  const at::Tensor per_row =
      (grad_stats.select(0, kElbo) + grad_stats.select(0, kLogLikelihood) - grad_stats.select(0, kObjective)) /
      static_cast<double>(std::max<int64_t>(batch * samples, 1));
  return per_row.expand({batch, samples}).contiguous();
}

class Elbo : public torch::autograd::Function<Elbo> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& x_hat,
                               const at::Tensor& mu, const at::Tensor& log_var, double beta,
                               c10::string_view likelihood, bool need_grad,
                               const std::optional<at::Tensor>& x_log_var) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [stats, dobj_dx_hat, dobj_dmu, dobj_dlv, dobj_dx_log_var] =
        PAF_OP(elbo, Forward).call(x, x_hat, mu, log_var, beta, likelihood, need_grad, x_log_var);
    ctx->mark_non_differentiable({dobj_dx_hat, dobj_dmu, dobj_dlv, dobj_dx_log_var});
    // Without this autograd would build an x_hat-sized zero gradient for the
    // (never used) dobj_dx_hat output: a full extra write and 2x the memory.
    ctx->set_materialize_grads(false);
    ctx->save_for_backward(
        {x, x_hat, mu, log_var, dobj_dx_hat, dobj_dmu, dobj_dlv, x_log_var.value_or(at::Tensor()), dobj_dx_log_var});
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["likelihood"] = std::string(likelihood);
    ctx->saved_data["need_grad"] = need_grad;  // (a flag, not the buffers' sizes: symbolic under a tracer)
    return {stats, dobj_dx_hat, dobj_dmu, dobj_dlv, dobj_dx_log_var};
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(8);  // x, x_hat, mu, log_var, beta, likelihood, need_grad, x_log_var
    const at::Tensor& grad_stats = grads[0];
    if (!grad_stats.defined()) return result;  // only the gradient buffers were used
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &x_hat = saved[1], &mu = saved[2], &log_var = saved[3];
    const at::Tensor &dobj_dx_hat = saved[4], &dobj_dmu = saved[5], &dobj_dlv = saved[6];
    const at::Tensor &x_log_var = saved[7], &dobj_dx_log_var = saved[8];
    const double beta = ctx->saved_data["beta"].toDouble();
    const std::string likelihood = ctx->saved_data["likelihood"].toStringRef();
    const bool first_backward = ctx->saved_data.find("buffers_used") == ctx->saved_data.end();
    ctx->saved_data["buffers_used"] = true;
    const bool have_buffers = first_backward && dobj_dx_hat.sizes() == x_hat.sizes();
    const bool objective_only = have_buffers && is_objective_only(grad_stats);
    const auto& ll_sum_backward = PAF_OP(log_likelihood_sum_backward, LikelihoodSumBackward);
    if (ctx->needs_input_grad(0)) {
      result[0] = ll_sum_backward.call(ll_row_grad(grad_stats, x_hat), x, x_hat, likelihood, "x", optional(x_log_var));
    }
    if (ctx->needs_input_grad(1)) {
      if (objective_only) {
        result[1] = dobj_dx_hat;
      } else if (have_buffers && is_plain_tensor(dobj_dx_hat) && is_plain_tensor(grad_stats)) {
        // (below ADInplaceOrView: the saved buffer's version stays, so a
        // retain_graph backward can still unpack the saved variables)
        at::AutoDispatchBelowADInplaceOrView below_autograd;
        at::Tensor buffer = dobj_dx_hat;
        PAF_OP(elbo_scale_x_hat_grad_, ScaleXHatGrad).call(grad_stats, buffer);
        result[1] = std::move(buffer);
      } else if (have_buffers) {
        result[1] = PAF_OP(elbo_backward_x_hat, BackwardXHat).call(grad_stats, dobj_dx_hat);
      } else {  // no buffers: the forward ran without them, or a later backward
        result[1] =
            ll_sum_backward.call(ll_row_grad(grad_stats, x_hat), x, x_hat, likelihood, "x_hat", optional(x_log_var));
      }
    }
    if (ctx->needs_input_grad(2) || ctx->needs_input_grad(3)) {
      if (objective_only) {
        result[2] = dobj_dmu;
        result[3] = dobj_dlv;
      } else {
        std::tie(result[2], result[3]) = PAF_OP(elbo_backward_latent, BackwardLatent).call(grad_stats, mu, log_var, beta);
      }
    }
    // x_log_var (its edge follows the four tensors): the forward's buffer
    // times the x_hat coefficient, formed from grad_stats where it lives (no
    // host read), summed to x_log_var's shape in the accumulation dtype. The
    // buffer is never modified, so every backward of the node reads it
    // (a retain_graph backward gives the first one's values bit for bit).
    if (x_log_var.defined() && ctx->needs_input_grad(4)) {
      at::Tensor per_element;
      if (objective_only) {
        per_element = dobj_dx_log_var;
      } else if (ctx->saved_data["need_grad"].toBool()) {
        const at::Tensor coefficient =
            grad_stats.select(0, kObjective) - grad_stats.select(0, kElbo) - grad_stats.select(0, kLogLikelihood);
        per_element = dobj_dx_log_var * coefficient.to(dobj_dx_log_var.scalar_type());
      } else {
        per_element = ll_sum_backward.call(ll_row_grad(grad_stats, x_hat), x, x_hat, likelihood, "x_log_var",
                                           optional(x_log_var));
      }
      result[7] = sum_to(per_element, x_log_var).to(x_log_var.scalar_type());
    }
    return first_order_only(std::move(result), saved, grads, "elbo");
  }
};

Tensors5 elbo_autograd(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& mu, const at::Tensor& log_var,
                       double beta, c10::string_view likelihood, bool need_grad,
                       const std::optional<at::Tensor>& x_log_var) {
  auto out = Elbo::apply(x, x_hat, mu, log_var, beta, likelihood, need_grad, x_log_var);
  return {out[0], out[1], out[2], out[3], out[4]};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) { m.impl("elbo", &elbo_autograd); }

}  // namespace paf::autograd
