// reparameterize: its argument checks and problem shape, shared by its CPU kernel
// (csrc/cpu/reparameterize.cpp) and its CUDA kernel (csrc/cuda/reparameterize.cu), so both
// devices accept and refuse the same calls with the same messages.
#pragma once

#include "latent_pair.h"
#include "../tensor_args.h"

#include <ATen/OpMathType.h>

#include <tuple>
#include <optional>

namespace paf {

// Forward: the checked arguments as rows, z [B, S, D] and, when kept, the
// noise [B, S, D] in the accumulation dtype.
struct SampleProblem {
  int64_t batch, samples, dim;
  at::Tensor mu, log_var, z, noise;  // mu, log_var: row views; noise undefined unless kept
};

inline SampleProblem make_sample_problem(const at::Tensor& mu, const at::Tensor& log_var, int64_t num_samples,
                                         bool keep_noise) {
  check_latent_pair(mu, log_var);
  PAF_CHECK_VALUE(num_samples >= 1, "num_samples: expected S >= 1, got ", num_samples);
  const int64_t B = mu.size(0), D = mu.size(1), S = num_samples;
  SampleProblem p{B, S, D, as_rows(mu, B, D), as_rows(log_var, B, D), at::empty({B, S, D}, mu.options()), {}};
  if (keep_noise) p.noise = at::empty({B, S, D}, mu.options().dtype(at::toOpMathType(mu.scalar_type())));
  return p;
}

// The Philox key: a one-element int64 tensor (on the kernel's device, or the CPU).
inline void check_seed(const at::Tensor& seed) {
  PAF_CHECK(seed.scalar_type() == at::kLong && seed.numel() == 1,
              "seed: expected a one-element int64 tensor, got dtype ", seed.scalar_type(), " and shape ",
              seed.sizes());
}

// Backward: grad_z [B, S, D] (contiguous), log_var as rows, the saved noise
// (accumulation dtype, mu's device; contiguous, or undefined: regenerate)
// and the two [B, D] gradients.
struct SampleGradProblem {
  int64_t batch, samples, dim;
  at::Tensor grad_z, log_var, noise, g_mu, g_lv;
};

inline SampleGradProblem make_sample_grad_problem(const at::Tensor& grad_z, const at::Tensor& mu,
                                                  const at::Tensor& log_var, const at::Tensor& seed,
                                                  const std::optional<at::Tensor>& noise) {
  check_latent_pair(mu, log_var);
  check_same_dtype_device(mu, "mu", grad_z, "grad_z");
  check_dim(grad_z, 3, "grad_z");
  const int64_t B = mu.size(0), D = mu.size(1), S = grad_z.size(1);
  check_shape(grad_z, {B, S, D}, "grad_z");
  check_seed(seed);
  if (noise.has_value()) {
    const auto opmath = at::toOpMathType(mu.scalar_type());
    PAF_CHECK(noise->scalar_type() == opmath && noise->device() == mu.device(), "noise: expected ", opmath,
                " on ", mu.device(), " (mu's accumulation dtype and device), got ", noise->scalar_type(), " on ",
                noise->device());
    check_shape(*noise, {B, S, D}, "noise");
  }
  auto [g_mu, g_lv] = latent_pair_grads(mu);
  return {B, S, D, grad_z.contiguous(), as_rows(log_var, B, D),
          noise.has_value() ? noise->contiguous() : at::Tensor(), g_mu, g_lv};
}

}  // namespace paf
