// reparameterize: autograd (schema: csrc/schemas.cpp; kernels: csrc/<device>/reparameterize).
// Saves (mu, log_var, seed) and, while it is small, the noise eps itself:
// reading it back is much cheaper than regenerating it. Above
// kMaxSavedNoiseElements the backward regenerates eps from the seed instead,
// so sampling never holds a second [B, S, D] tensor of a large model alive.
// Both paths use the same eps, so the gradients are bitwise the same.
#include "autograd_common.h"

namespace paf::autograd::reparameterize {
namespace {

// 2^20 elements: 4 MiB of float32 noise (8 MiB for float64).
constexpr int64_t kMaxSavedNoiseElements = int64_t(1) << 20;

using Forward = at::Tensor(const at::Tensor&, const at::Tensor&, int64_t, const at::Tensor&);
using ForwardWithNoise = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, int64_t,
                                                            const at::Tensor&);
using Backward = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                    const at::Tensor&, const std::optional<at::Tensor>&);

class Reparameterize : public torch::autograd::Function<Reparameterize> {
 public:
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& mu, const at::Tensor& log_var,
                            int64_t num_samples, const at::Tensor& seed) {
    // (sym_numel: under torch.compile with dynamic shapes the size is
    // symbolic; the comparison then becomes a guard of the compiled graph.)
    const bool keep_noise = (mu.requires_grad() || log_var.requires_grad()) && mu.dim() == 2 &&
                            num_samples >= 1 &&
                            mu.sym_numel() <= kMaxSavedNoiseElements / num_samples;
    at::AutoDispatchBelowADInplaceOrView guard;
    if (!keep_noise) {
      ctx->save_for_backward({mu, log_var, seed});
      return PAF_OP(reparameterize, Forward).call(mu, log_var, num_samples, seed);
    }
    auto [z, noise] = PAF_OP(reparameterize_with_noise, ForwardWithNoise).call(mu, log_var, num_samples, seed);
    ctx->save_for_backward({mu, log_var, seed, noise});
    return z;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto noise = saved.size() > 3 ? optional(saved[3]) : std::nullopt;
    auto [grad_mu, grad_log_var] =
        PAF_OP(reparameterize_backward, Backward).call(grads[0], saved[0], saved[1], saved[2], noise);
    return first_order_only({ctx->needs_input_grad(0) ? grad_mu : at::Tensor(),
                             ctx->needs_input_grad(1) ? grad_log_var : at::Tensor(), at::Tensor(), at::Tensor()},
                            saved, grads, "reparameterize");
  }
};

at::Tensor reparameterize_autograd(const at::Tensor& mu, const at::Tensor& log_var, int64_t num_samples,
                                   const at::Tensor& seed) {
  return Reparameterize::apply(mu, log_var, num_samples, seed);
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, Autograd, m) { m.impl("reparameterize", &reparameterize_autograd); }

}  // namespace paf::autograd::reparameterize
