// The latent pair (mu, log_var) [B, D] of a diagonal-Gaussian posterior:
// its checks and its two gradients' buffers, shared by the ops that take one
// (reparameterize, elbo, iwae_bound).
#pragma once

#include "../tensor_args.h"

#include <tuple>

namespace paf {

// mu and log_var: [B, D] of one dtype and device.
inline void check_latent_pair(const at::Tensor& mu, const at::Tensor& log_var) {
  check_floating(mu, "mu");
  check_same_dtype_device(mu, "mu", log_var, "log_var");
  check_dim(mu, 2, "mu");
  check_shape(log_var, mu.sizes(), "log_var");
}

// Gradients with respect to a [B, D] latent pair: two [B, D] outputs.
inline std::tuple<at::Tensor, at::Tensor> latent_pair_grads(const at::Tensor& mu) {
  return {at::empty(mu.sizes(), mu.options()), at::empty(mu.sizes(), mu.options())};
}

}  // namespace paf
