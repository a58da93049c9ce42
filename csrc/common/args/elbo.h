// elbo: its argument checks and problem shape, shared by its CPU kernel
// (csrc/cpu/elbo.cpp) and its CUDA kernel (csrc/cuda/elbo.cu), so both
// devices accept and refuse the same calls with the same messages.
#pragma once

#include "latent_pair.h"
#include "log_likelihood_sum.h"
#include "../elbo_stats.h"
#include "../likelihood.h"
#include "../tensor_args.h"

#include <ATen/OpMathType.h>

#include <tuple>
#include <optional>

namespace paf {

// The checked arguments as rows (x [B, F], x_hat [B*S, F], mu and log_var
// [B, D]) and the outputs: stats and, when need_grad, the gradient buffers
// (else empty).
// With x_log_var the Gaussian reads it (GaussianLogVar) and the forward
// also writes d objective / d x_log_var per element of x_hat, in the
// accumulation dtype (autograd sums it to x_log_var's shape).
struct ElboProblem {
  int64_t B, S, D, F;
  Likelihood likelihood;
  at::Tensor x, x_hat, mu, log_var;
  LogVarRows x_log_var;
  at::Tensor stats, dobj_dx_hat, dobj_dmu, dobj_dlv, dobj_dx_log_var;
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {stats, dobj_dx_hat, dobj_dmu, dobj_dlv, dobj_dx_log_var};
  }
};

inline ElboProblem make_elbo_problem(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& mu,
                                     const at::Tensor& log_var, const std::optional<at::Tensor>& x_log_var,
                                     c10::string_view likelihood, bool need_grad) {
  check_floating(x, "x");
  check_same_dtype_device(x, "x", x_hat, "x_hat");
  check_same_dtype_device(x, "x", mu, "mu");
  check_same_dtype_device(x, "x", log_var, "log_var");
  PAF_CHECK(x.dim() >= 1, "x: expected shape [B, ...], got a 0-d tensor");
  PAF_CHECK(x_hat.dim() == x.dim() + 1 && x_hat.size(0) == x.size(0) &&
                  x_hat.sizes().slice(2) == x.sizes().slice(1),
              "x_hat: expected shape [B, S, ...] matching x ", x.sizes(), ", got ", x_hat.sizes());
  check_dim(mu, 2, "mu");
  PAF_CHECK(mu.size(0) == x.size(0), "mu: expected batch size ", x.size(0), ", got shape ", mu.sizes());
  check_shape(log_var, mu.sizes(), "log_var");
  ElboProblem p;
  p.B = x.size(0), p.S = x_hat.size(1), p.D = mu.size(1), p.F = c10::multiply_integers(x.sizes().slice(1));
  p.x = as_rows(x, p.B, p.F);
  p.x_hat = as_rows(x_hat, p.B * p.S, p.F);
  p.mu = as_rows(mu, p.B, p.D);
  p.log_var = as_rows(log_var, p.B, p.D);
  p.likelihood = parse_likelihood(likelihood, x_log_var.has_value());
  p.x_log_var = log_var_rows(x_log_var, x_hat, p.B, p.S, p.F);
  const auto options = x.options();
  auto grad_buffer = [&](at::IntArrayRef shape) {
    return need_grad ? at::empty(shape, options) : at::empty({0}, options);
  };
  p.stats = at::empty({kNumStats}, options);
  p.dobj_dx_hat = grad_buffer(x_hat.sizes());
  p.dobj_dmu = grad_buffer(mu.sizes());
  p.dobj_dlv = grad_buffer(mu.sizes());
  p.dobj_dx_log_var = need_grad && x_log_var ? at::empty(x_hat.sizes(), options.dtype(at::toOpMathType(x.scalar_type())))
                                             : at::empty({0}, options);
  return p;
}

}  // namespace paf
