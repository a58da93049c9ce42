// iwae_bound: its argument checks and problem shape, shared by its CPU kernel
// (csrc/cpu/iwae_bound.cpp) and its CUDA kernel (csrc/cuda/iwae_bound.cu), so both
// devices accept and refuse the same calls with the same messages.
#pragma once

#include "latent_pair.h"
#include "log_likelihood_sum.h"
#include "../tensor_args.h"

#include <ATen/OpMathType.h>

#include <tuple>
#include <optional>

namespace paf {

// The importance-weighted bound of x [B, ...] with S samples z [B, S, D] of
// q = N(mu, exp(log_var)) ([B, D]) decoded to x_hat [B, S, ...]: the
// likelihood's operands as log_likelihood_sum has them, the latents as
// rows (z [B*S, D], row r pairing with row r / S of mu and log_var), and the
// outputs: the bound [B], the normalised weights [B, S] (accumulation
// dtype) and, when need_grad, d ll / d x_hat and d ll / d x_log_var per
// element (not yet weighted: the backward scales each row by its weight).
struct IwaeProblem {
  SumProblem ll;
  int64_t latent;
  at::Tensor z, mu, log_var;  // rows: z [B*S, D], mu and log_var [B, D]
  at::Tensor bound, weights, d_x_hat, d_x_log_var;
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {bound, weights, d_x_hat, d_x_log_var};
  }
};

// z [B, S, D] against mu and log_var [B, D] (the forward's and the backward's check).
inline void check_iwae_latents(const at::Tensor& z, const at::Tensor& mu, const at::Tensor& log_var, int64_t batch,
                               int64_t samples) {
  check_latent_pair(mu, log_var);
  check_same_dtype_device(mu, "mu", z, "z");
  PAF_CHECK(mu.size(0) == batch, "mu: expected batch size ", batch, ", got shape ", mu.sizes());
  check_shape(z, {batch, samples, mu.size(1)}, "z");
}

inline IwaeProblem make_iwae_problem(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& z,
                                     const at::Tensor& mu, const at::Tensor& log_var,
                                     const std::optional<at::Tensor>& x_log_var, c10::string_view likelihood,
                                     bool need_grad) {
  IwaeProblem p{make_sum_problem(x, x_hat, x_log_var, likelihood), 0, {}, {}, {}, {}, {}, {}, {}};
  const int64_t B = p.ll.batch, S = p.ll.samples;
  PAF_CHECK_VALUE(S >= 1, "x_hat: expected S >= 1 samples, got shape ", x_hat.sizes());
  check_same_dtype_device(x, "x", mu, "mu");
  check_iwae_latents(z, mu, log_var, B, S);
  p.latent = mu.size(1);
  p.z = as_rows(z, B * S, p.latent);
  p.mu = as_rows(mu, B, p.latent);
  p.log_var = as_rows(log_var, B, p.latent);
  const auto options = x.options(), opmath_options = options.dtype(at::toOpMathType(x.scalar_type()));
  p.bound = at::empty({B}, options);
  p.weights = at::empty({B, S}, opmath_options);
  p.d_x_hat = need_grad ? at::empty(x_hat.sizes(), options) : at::empty({0}, options);
  p.d_x_log_var = need_grad && x_log_var ? at::empty(x_hat.sizes(), opmath_options) : at::empty({0}, options);
  return p;
}

// The backward of the latent terms: the bound's gradient [B] and the
// forward's weights [B, S] against (z, mu, log_var); d_z [B, S, D], d_mu
// and d_log_var [B, D].
struct IwaeLatentGradProblem {
  int64_t batch, samples, latent;
  at::Tensor grad, weights, z, mu, log_var;  // grad [B], weights [B*S] (contiguous); latents as rows
  at::Tensor d_z, d_mu, d_log_var;
};

inline IwaeLatentGradProblem make_iwae_latent_grad_problem(const at::Tensor& grad, const at::Tensor& weights,
                                                           const at::Tensor& z, const at::Tensor& mu,
                                                           const at::Tensor& log_var) {
  check_floating(mu, "mu");
  check_dim(z, 3, "z");
  const int64_t B = z.size(0), S = z.size(1);
  check_iwae_latents(z, mu, log_var, B, S);
  check_same_dtype_device(mu, "mu", grad, "grad");
  check_shape(grad, {B}, "grad");
  const auto opmath = at::toOpMathType(mu.scalar_type());
  PAF_CHECK(weights.scalar_type() == opmath && weights.device() == mu.device(), "weights: expected ", opmath, " on ",
            mu.device(), " (mu's accumulation dtype and device), got ", weights.scalar_type(), " on ",
            weights.device());
  check_shape(weights, {B, S}, "weights");
  const int64_t D = mu.size(1);
  auto [d_mu, d_lv] = latent_pair_grads(mu);
  return {B, S, D, grad.contiguous(), weights.contiguous(), as_rows(z, B * S, D), as_rows(mu, B, D),
          as_rows(log_var, B, D), at::empty(z.sizes(), z.options()), d_mu, d_lv};
}

}  // namespace paf
