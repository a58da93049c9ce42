// reparameterize: autograd (schema: csrc/schemas.cpp; kernels: csrc/<device>/reparameterize).
// Only (mu, log_var, seed) are saved: the backward op regenerates the noise
// from the seed, so neither eps nor z is kept alive.
#include "autograd_common.h"

namespace paf::autograd {
namespace {

using Forward = at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, const at::Tensor&);
using Backward = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&);

class Reparameterize : public torch::autograd::Function<Reparameterize> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& mu, const at::Tensor& log_var,
                            int64_t num_samples, const at::Tensor& seed) {
    at::AutoDispatchBelowADInplaceOrView guard;
    ctx->save_for_backward({mu, log_var, seed});
    return PAF_OP(reparameterize, Forward).call(mu, log_var, num_samples, seed);
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    auto [grad_mu, grad_log_var] = PAF_OP(reparameterize_backward, Backward).call(grads[0], saved[0], saved[1], saved[2]);
    return {ctx->needs_input_grad(0) ? grad_mu : at::Tensor(), ctx->needs_input_grad(1) ? grad_log_var : at::Tensor(),
            at::Tensor(), at::Tensor()};
  }
};

at::Tensor reparameterize_autograd(const at::Tensor& mu, const at::Tensor& log_var, int64_t num_samples,
                                   const at::Tensor& seed) {
  return Reparameterize::apply(mu, log_var, num_samples, seed);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) { m.impl("reparameterize", &reparameterize_autograd); }

}  // namespace paf::autograd
