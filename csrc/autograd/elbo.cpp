// elbo: autograd (schema: csrc/schemas.cpp; kernels: csrc/<device>/elbo).
//
// When a gradient is recorded the forward op also writes d objective /
// d (x_hat, mu, log_var, and x_log_var when given), into buffers that belong
// to the node unless the caller asked for them with need_grad (Buffers in
// autograd_common.h). The node's first backward turns them into the
// gradients:
// - grad_stats readable on the host and [1, 0, 0, 0] (objective.backward()
//   on the CPU): the buffers as they are; nothing launched or touched;
// - otherwise (other grad_stats, or values on a GPU, not read to spare a host
//   sync), buffers of its own: the x_hat buffer rescaled in place by
//   (g_objective - g_elbo - g_log_likelihood) (elbo_scale_x_hat_grad_, which
//   declares the write and leaves the buffer untouched when that is 1, as
//   read on the device), the x_log_var buffer likewise, and the small latent
//   gradients recomputed;
// - the caller's buffers, or under a tracer (torch.compile): the functional
//   elbo_backward_x_hat, nothing written.
// A later backward of a node whose buffers were its own (retain_graph)
// reruns the forward for new ones: the same bits, so the same gradients.
#include "../common/elbo_stats.h"
#include "autograd_common.h"

namespace paf::autograd::elbo {
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
                               const std::optional<at::Tensor>& x_log_var, bool records) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [stats, dobj_dx_hat, dobj_dmu, dobj_dlv, dobj_dx_log_var] =
        PAF_OP(elbo, Forward).call(x, x_hat, mu, log_var, beta, likelihood, need_grad || records, x_log_var);
    const Buffers buffers = need_grad ? Buffers::kShared : records ? Buffers::kOwned : Buffers::kNone;
    // Without this autograd would build an x_hat-sized zero gradient for the
    // (never used) dobj_dx_hat output: a full extra write and 2x the memory.
    ctx->set_materialize_grads(false);
    ctx->save_for_backward(
        {x, x_hat, mu, log_var, dobj_dx_hat, dobj_dmu, dobj_dlv, x_log_var.value_or(at::Tensor()), dobj_dx_log_var});
    save_buffers(ctx, buffers);
    ctx->saved_data["beta"] = beta;
    ctx->saved_data["likelihood"] = std::string(likelihood);
    variable_list out = {stats, dobj_dx_hat, dobj_dmu, dobj_dlv, dobj_dx_log_var};
    if (!need_grad) {
      for (size_t i = 1; i < out.size(); ++i) out[i] = placeholder(stats);
    }
    ctx->mark_non_differentiable({out[1], out[2], out[3], out[4]});
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(9);  // x, x_hat, mu, log_var, beta, likelihood, need_grad, x_log_var, records
    const at::Tensor& grad_stats = grads[0];
    if (!grad_stats.defined()) return result;  // only the gradient buffers were used
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &x_hat = saved[1], &mu = saved[2], &log_var = saved[3];
    const at::Tensor& x_log_var = saved[7];
    at::Tensor dobj_dx_hat = saved[4], dobj_dmu = saved[5], dobj_dlv = saved[6], dobj_dx_log_var = saved[8];
    const double beta = ctx->saved_data["beta"].toDouble();
    const std::string likelihood = ctx->saved_data["likelihood"].toStringRef();
    const bool want_x_hat = ctx->needs_input_grad(1), want_latent = ctx->needs_input_grad(2) || ctx->needs_input_grad(3);
    const bool want_x_log_var = x_log_var.defined() && ctx->needs_input_grad(4);
    Buffers buffers = take_buffers(ctx);
    if (buffers == Buffers::kNone && (want_x_hat || want_x_log_var)) {
      // None recorded, or a later backward of a node whose buffers were its
      // own: the forward rerun for buffers of this backward's own, the same
      // bits as the first backward had, so a retain_graph backward repeats
      // its gradients exactly.
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      std::tie(std::ignore, dobj_dx_hat, dobj_dmu, dobj_dlv, dobj_dx_log_var) =
          PAF_OP(elbo, Forward).call(x, x_hat, mu, log_var, beta, likelihood, true, optional(x_log_var));
      buffers = Buffers::kOwned;
    }
    // (the buffers handed on as they are: only a node's own, as once given
    // they may be accumulated into)
    const bool objective_only = buffers == Buffers::kOwned && is_objective_only(grad_stats);
    if (ctx->needs_input_grad(0)) {
      result[0] = PAF_OP(log_likelihood_sum_backward, LikelihoodSumBackward)
                      .call(ll_row_grad(grad_stats, x_hat), x, x_hat, likelihood, "x", optional(x_log_var));
    }
    if (want_x_hat) {
      if (objective_only) {
        result[1] = dobj_dx_hat;
      } else if (writable(buffers, dobj_dx_hat) && is_plain_tensor(grad_stats)) {
        // (below ADInplaceOrView: the saved buffer's version stays, so a
        // retain_graph backward can still unpack the saved variables)
        at::AutoDispatchBelowADInplaceOrView below_autograd;
        PAF_OP(elbo_scale_x_hat_grad_, ScaleXHatGrad).call(grad_stats, dobj_dx_hat);
        result[1] = dobj_dx_hat;
      } else {
        result[1] = PAF_OP(elbo_backward_x_hat, BackwardXHat).call(grad_stats, dobj_dx_hat);
      }
    }
    if (want_latent) {
      if (objective_only) {
        result[2] = dobj_dmu;
        result[3] = dobj_dlv;
      } else {
        std::tie(result[2], result[3]) = PAF_OP(elbo_backward_latent, BackwardLatent).call(grad_stats, mu, log_var, beta);
      }
    }
    // x_log_var (its edge follows the four tensors): the forward's buffer
    // times the x_hat coefficient, formed from grad_stats where it lives (no
    // host read), summed to x_log_var's shape in the accumulation dtype.
    if (want_x_log_var) {
      at::Tensor per_element = dobj_dx_log_var;
      if (!objective_only) {
        const at::Tensor coefficient =
            (grad_stats.select(0, kObjective) - grad_stats.select(0, kElbo) - grad_stats.select(0, kLogLikelihood))
                .to(dobj_dx_log_var.scalar_type());
        per_element = scaled(buffers, dobj_dx_log_var, coefficient);
      }
      result[7] = sum_to(per_element, x_log_var).to(x_log_var.scalar_type());
    }
    return first_order_only(std::move(result), saved, grads, "elbo");
  }
};

Tensors5 elbo_autograd(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& mu, const at::Tensor& log_var,
                       double beta, c10::string_view likelihood, bool need_grad,
                       const std::optional<at::Tensor>& x_log_var) {
  const at::Tensor none;
  const bool records = records_grad({&x_hat, &mu, &log_var, x_log_var ? &*x_log_var : &none});
  auto out = Elbo::apply(x, x_hat, mu, log_var, beta, likelihood, need_grad, x_log_var, records);
  return {out[0], out[1], out[2], out[3], out[4]};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) { m.impl("elbo", &elbo_autograd); }

}  // namespace paf::autograd::elbo
