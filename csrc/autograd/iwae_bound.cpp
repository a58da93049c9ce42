// iwae_bound: autograd (schema: csrc/schemas.cpp; kernels: csrc/<device>/iwae_bound).
//
// d bound[b] / d lw[b, s] is the normalised weight the forward returned, so
// every gradient is the incoming grad[b] times weights[b, s] (a [B, S]
// row factor) times the partial derivatives of the row's terms:
// - x_hat (and x_log_var): when a gradient is recorded the forward writes
//   d ll / d x_hat (d x_log_var), into buffers of the node's own unless the
//   caller asked for them with need_grad (Buffers in autograd_common.h). The
//   first backward scales its own buffer in place by the row factor and
//   hands it on as the gradient (no second x_hat-sized tensor); the
//   caller's it scales into a new tensor. Without buffers (none recorded,
//   or a later backward of a node whose buffers were its own) it reruns the
//   forward for them: the same bits, so the same gradients.
// - x: log_likelihood_sum_backward with the row factor.
// - z, mu, log_var: iwae_bound_backward_latent (small: [B, S, D]).
#include "autograd_common.h"

namespace paf::autograd::iwae_bound {
namespace {

using Tensors3 = std::tuple<at::Tensor, at::Tensor, at::Tensor>;
using Tensors4 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Forward = Tensors4(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                         const at::Tensor&, c10::string_view, bool, const std::optional<at::Tensor>&);
using LikelihoodSumBackward = at::Tensor(const at::Tensor&, const at::Tensor&, const at::Tensor&, c10::string_view,
                                         c10::string_view, const std::optional<at::Tensor>&);
using BackwardLatent = Tensors3(const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                const at::Tensor&);

// The row factor [B, S] viewed against a [B, S, ...] tensor of `dims` dimensions.
at::Tensor per_row(const at::Tensor& row_factor, int64_t dims) {
  std::vector<int64_t> shape(row_factor.sizes().begin(), row_factor.sizes().end());
  shape.resize(dims, 1);
  return row_factor.view(shape);
}

class IwaeBound : public torch::autograd::Function<IwaeBound> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& x_hat,
                               const at::Tensor& z, const at::Tensor& mu, const at::Tensor& log_var,
                               c10::string_view likelihood, bool need_grad,
                               const std::optional<at::Tensor>& x_log_var, bool records) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [bound, weights, d_x_hat, d_x_log_var] =
        PAF_OP(iwae_bound, Forward).call(x, x_hat, z, mu, log_var, likelihood, need_grad || records, x_log_var);
    ctx->set_materialize_grads(false);
    ctx->save_for_backward(
        {x, x_hat, z, mu, log_var, x_log_var.value_or(at::Tensor()), weights, d_x_hat, d_x_log_var});
    save_buffers(ctx, need_grad ? Buffers::kShared : records ? Buffers::kOwned : Buffers::kNone);
    ctx->saved_data["likelihood"] = std::string(likelihood);
    variable_list out = {bound, weights, d_x_hat, d_x_log_var};
    if (!need_grad) out[2] = placeholder(bound), out[3] = placeholder(bound);
    ctx->mark_non_differentiable({out[1], out[2], out[3]});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(9);  // x, x_hat, z, mu, log_var, likelihood, need_grad, x_log_var, records
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return result;  // only the weights or buffers were used
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &x_hat = saved[1], &z = saved[2], &mu = saved[3], &log_var = saved[4];
    const at::Tensor &x_log_var = saved[5], &weights = saved[6];
    at::Tensor d_x_hat = saved[7], d_x_log_var = saved[8];
    const std::string likelihood = ctx->saved_data["likelihood"].toStringRef();
    // needs_input_grad counts the tensors passed (a None x_log_var is not one).
    const bool want_x = ctx->needs_input_grad(0), want_x_hat = ctx->needs_input_grad(1);
    const bool want_latent = ctx->needs_input_grad(2) || ctx->needs_input_grad(3) || ctx->needs_input_grad(4);
    const bool want_x_log_var = x_log_var.defined() && ctx->needs_input_grad(5);
    Buffers buffers = take_buffers(ctx);
    if (buffers == Buffers::kNone && (want_x_hat || want_x_log_var)) {
      // None recorded, or a later backward of a node whose buffers were its
      // own: the forward rerun for buffers of this backward's own (the same
      // bits, so a retain_graph backward repeats its gradients exactly).
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      std::tie(std::ignore, std::ignore, d_x_hat, d_x_log_var) =
          PAF_OP(iwae_bound, Forward).call(x, x_hat, z, mu, log_var, likelihood, true, optional(x_log_var));
      buffers = Buffers::kOwned;
    }

    const at::Tensor row_factor = grad.unsqueeze(1).to(weights.scalar_type()).mul(weights);  // [B, S], opmath
    if (want_x) {
      result[0] = PAF_OP(log_likelihood_sum_backward, LikelihoodSumBackward)
                      .call(row_factor.to(x.scalar_type()), x, x_hat, likelihood, "x", optional(x_log_var));
    }
    if (want_x_hat) {
      result[1] = scaled(buffers, d_x_hat, per_row(row_factor, d_x_hat.dim())).to(x_hat.scalar_type());
    }
    if (want_x_log_var) {
      const at::Tensor per_element = scaled(buffers, d_x_log_var, per_row(row_factor, d_x_log_var.dim()));
      result[7] = sum_to(per_element, x_log_var).to(x_log_var.scalar_type());
    }
    if (want_latent) {
      std::tie(result[2], result[3], result[4]) =
          PAF_OP(iwae_bound_backward_latent, BackwardLatent).call(grad, weights, z, mu, log_var);
    }
    return first_order_only(std::move(result), saved, grads, "iwae_bound");
  }
};

Tensors4 iwae_bound_autograd(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& z, const at::Tensor& mu,
                             const at::Tensor& log_var, c10::string_view likelihood, bool need_grad,
                             const std::optional<at::Tensor>& x_log_var) {
  const at::Tensor none;
  const bool records = records_grad({&x_hat, x_log_var ? &*x_log_var : &none});
  auto out = IwaeBound::apply(x, x_hat, z, mu, log_var, likelihood, need_grad, x_log_var, records);
  return {out[0], out[1], out[2], out[3]};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) { m.impl("iwae_bound", &iwae_bound_autograd); }

}  // namespace paf::autograd::iwae_bound
