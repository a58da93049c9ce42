// count_log_likelihood: autograd (schema: csrc/schemas.cpp; kernels:
// csrc/<device>/count_log_likelihood).
//
// When a gradient is recorded the forward op also writes the partial
// derivatives per element, into buffers of the node's own unless the caller
// asked for them with need_grad / need_grad_x (Buffers in
// autograd_common.h). The backward scales them by the incoming gradient
// (per element, or per row when summed) and sums them down to each input's
// shape (a per-gene theta over the rows), in the accumulation dtype: its
// own buffers in place the first time (an input of the buffer's shape and
// dtype gets the buffer itself), the caller's into new tensors. Without
// buffers it reruns the forward for them.
#include "autograd_common.h"

namespace paf::autograd::count_log_likelihood {
namespace {

using Tensors5 = std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>;
using Forward = Tensors5(const at::Tensor&, const at::Tensor&, const std::optional<at::Tensor>&,
                         const std::optional<at::Tensor>&, c10::string_view, double, bool, bool, bool);

class CountLogLikelihood : public torch::autograd::Function<CountLogLikelihood> {
 public:
  static variable_list forward(AutogradContext* ctx, const at::Tensor& x, const at::Tensor& mu,
                               const std::optional<at::Tensor>& theta, const std::optional<at::Tensor>& zi_logits,
                               c10::string_view likelihood, double eps, bool reduce_sum, bool need_grad,
                               bool need_grad_x, bool records, bool records_x) {
    at::AutoDispatchBelowADInplaceOrView guard;
    auto [out, d_x, d_mu, d_theta, d_zi] = PAF_OP(count_log_likelihood, Forward)
                                               .call(x, mu, theta, zi_logits, likelihood, eps, reduce_sum,
                                                     need_grad || records, need_grad_x || records_x);
    ctx->set_materialize_grads(false);
    const at::Tensor none;
    ctx->save_for_backward({x, mu, theta.value_or(none), zi_logits.value_or(none), d_x, d_mu, d_theta, d_zi});
    ctx->saved_data["likelihood"] = std::string(likelihood);
    ctx->saved_data["eps"] = eps;
    ctx->saved_data["reduce_sum"] = reduce_sum;
    // (flags, not the buffers' sizes, which may be symbolic under a tracer;
    // need_grad_x gives the parameters' derivatives too)
    const bool caller_params = need_grad || need_grad_x;
    save_buffers(ctx, caller_params ? Buffers::kShared : records || records_x ? Buffers::kOwned : Buffers::kNone);
    ctx->saved_data["has_grad_x"] = need_grad_x || records_x;
    variable_list outputs = {out, d_x, d_mu, d_theta, d_zi};
    // (the caller's buffers are those it asked for; the rest placeholders)
    for (size_t i = 1; i < outputs.size(); ++i) {
      if (!(i == 1 ? need_grad_x : caller_params)) outputs[i] = placeholder(outputs[i]);
    }
    ctx->mark_non_differentiable({outputs[1], outputs[2], outputs[3], outputs[4]});
    return outputs;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    variable_list result(11);  // the 9 arguments, records, records_x
    const at::Tensor& grad = grads[0];
    if (!grad.defined()) return result;  // only the derivative buffers were used
    auto saved = ctx->get_saved_variables();
    const at::Tensor &x = saved[0], &mu = saved[1], &theta = saved[2], &zi_logits = saved[3];
    const bool reduce_sum = ctx->saved_data["reduce_sum"].toBool();
    // needs_input_grad counts the tensors passed (a None theta or
    // zi_logits is not one).
    const std::array<const at::Tensor*, 4> inputs = {&x, &mu, &theta, &zi_logits};
    std::array<bool, 4> wanted{};
    for (int i = 0, edge = 0; i < 4; ++i) {
      if (inputs[i]->defined()) wanted[i] = ctx->needs_input_grad(edge++);
    }
    const bool want_x = wanted[0], want_params = wanted[1] || wanted[2] || wanted[3];
    std::array<at::Tensor, 4> d = {saved[4], saved[5], saved[6], saved[7]};
    Buffers buffers = take_buffers(ctx);
    if ((want_x && (buffers == Buffers::kNone || !ctx->saved_data["has_grad_x"].toBool())) ||
        (want_params && buffers == Buffers::kNone)) {
      at::AutoDispatchBelowADInplaceOrView below_autograd;
      auto rerun = PAF_OP(count_log_likelihood, Forward)
                       .call(x, mu, optional(theta), optional(zi_logits), ctx->saved_data["likelihood"].toStringRef(),
                             ctx->saved_data["eps"].toDouble(), reduce_sum, true, want_x);
      d = {std::get<1>(rerun), std::get<2>(rerun), std::get<3>(rerun), std::get<4>(rerun)};
      buffers = Buffers::kOwned;  // (this backward's own)
    }
    for (int i = 0; i < 4; ++i) {
      if (wanted[i]) result[i] = chain_per_element(buffers, d[i], grad, reduce_sum, *inputs[i]);
    }
    return first_order_only(std::move(result), saved, grads, "count_log_likelihood");
  }
};

Tensors5 count_log_likelihood_autograd(const at::Tensor& x, const at::Tensor& mu, const std::optional<at::Tensor>& theta,
                                       const std::optional<at::Tensor>& zi_logits, c10::string_view likelihood,
                                       double eps, bool reduce_sum, bool need_grad, bool need_grad_x) {
  const at::Tensor none;
  const bool records = records_grad({&mu, theta ? &*theta : &none, zi_logits ? &*zi_logits : &none});
  const bool records_x = records_grad({&x});
  auto out = CountLogLikelihood::apply(x, mu, theta, zi_logits, likelihood, eps, reduce_sum, need_grad, need_grad_x,
                                       records, records_x);
  return {out[0], out[1], out[2], out[3], out[4]};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) {
  m.impl("count_log_likelihood", &count_log_likelihood_autograd);
}

}  // namespace paf::autograd::count_log_likelihood
