// The argument checks and problem shapes of every op, one section per op in
// the order of csrc/schemas.cpp, shared by its CPU kernel (csrc/cpu/<op>)
// and its CUDA kernel (csrc/cuda/<op>.cu): both devices accept and refuse
// the same calls with the same messages.
#pragma once

#include "formulas.h"
#include "tensor_args.h"

#include <ATen/ExpandUtils.h>

#include <array>
#include <limits>
#include <vector>

namespace paf {

// ------------------------------------------------------- log_likelihood
inline void check_log_likelihood_args(const at::Tensor& x, const at::Tensor& x_hat) {
  check_floating(x, "x");
  check_same_dtype_device(x, "x", x_hat, "x_hat");
}

// --------------------------------------------------- log_likelihood_sum
// x [B, ...] against x_hat [B, S, ...]: row r of x_hat viewed as [B*S, F]
// pairs with row r / S of x.
struct SumShapes {
  int64_t batch, samples, features;
};

inline SumShapes check_sum_inputs(const at::Tensor& x, const at::Tensor& x_hat) {
  check_floating(x, "x");
  check_same_dtype_device(x, "x", x_hat, "x_hat");
  TORCH_CHECK(x.dim() >= 1, "x: expected shape [B, ...], got a 0-d tensor");
  TORCH_CHECK(x_hat.dim() == x.dim() + 1 && x_hat.size(0) == x.size(0) &&
                  x_hat.sizes().slice(2) == x.sizes().slice(1),
              "x_hat: expected shape [B, S, ...] matching x ", x.sizes(), ", got ", x_hat.sizes());
  const int64_t batch = x.size(0);
  const int64_t samples = x_hat.size(1);
  const int64_t features = batch > 0 ? x.numel() / batch : c10::multiply_integers(x.sizes().slice(1));
  return {batch, samples, features};
}

// ------------------------------------------------------ kl_diag_gaussian
constexpr double kNoClamp = std::numeric_limits<double>::infinity();

// All inputs broadcast to one [rows, D] shape, as row views (no copies for
// broadcast rows), plus the clamp bounds.
struct KlProblem {
  std::vector<int64_t> shape;  // broadcast shape, last dim D
  int64_t rows = 0, cols = 0;
  at::Tensor mu_q, lv_q, mu_p, lv_p;  // [rows, D]; mu_p/lv_p undefined for N(0, I)
  double lo = -kNoClamp;
  double hi = kNoClamp;
  bool standard() const { return !mu_p.defined(); }
  // The output shape: the broadcast shape, less D when summed.
  std::vector<int64_t> out_shape(bool reduce_sum) const {
    std::vector<int64_t> s = shape;
    if (reduce_sum) s.pop_back();
    return s;
  }
};

inline KlProblem make_kl_problem(const at::Tensor& mu_q, const at::Tensor& lv_q,
                                 const std::optional<at::Tensor>& mu_p, const std::optional<at::Tensor>& lv_p,
                                 std::optional<double> clamp_min, std::optional<double> clamp_max) {
  check_floating(mu_q, "mu_q");
  check_same_dtype_device(mu_q, "mu_q", lv_q, "log_var_q");
  TORCH_CHECK(mu_q.dim() >= 1, "mu_q: expected at least 1 dimension, got a 0-d tensor");
  std::vector<at::Tensor> all = {mu_q, lv_q};
  if (mu_p) {
    check_same_dtype_device(mu_q, "mu_q", *mu_p, "mu_p");
    all.push_back(*mu_p);
  }
  if (lv_p) {
    check_same_dtype_device(mu_q, "mu_q", *lv_p, "log_var_p");
    all.push_back(*lv_p);
  }
  KlProblem p;
  p.shape = at::infer_size(mu_q.sizes(), lv_q.sizes());
  for (const auto& t : all) p.shape = at::infer_size(p.shape, t.sizes());
  p.cols = p.shape.back();
  p.rows = p.cols > 0 ? c10::multiply_integers(p.shape) / p.cols
                      : c10::multiply_integers(at::IntArrayRef(p.shape).slice(0, p.shape.size() - 1));
  auto rows_of = [&](const at::Tensor& t) { return as_rows(t.expand(p.shape), p.rows, p.cols); };
  p.mu_q = rows_of(mu_q);
  p.lv_q = rows_of(lv_q);
  if (mu_p || lv_p) {  // a missing p-parameter is 0
    const at::Tensor zero = at::zeros({}, mu_q.options());
    p.mu_p = rows_of(mu_p ? *mu_p : zero);
    p.lv_p = rows_of(lv_p ? *lv_p : zero);
  }
  p.lo = value_or(clamp_min, p.lo);
  p.hi = value_or(clamp_max, p.hi);
  TORCH_CHECK_VALUE(!(p.lo > p.hi), "clamp_min (", p.lo, ") must not exceed clamp_max (", p.hi, ")");
  return p;
}

inline void check_kl_grad(const KlProblem& p, const at::Tensor& mu_q, const at::Tensor& grad, bool reduce_sum) {
  check_same_dtype_device(mu_q, "mu_q", grad, "grad");
  check_shape(grad, p.out_shape(reduce_sum), "grad");
}

// -------------------------------------------------------- reparameterize
// mu and log_var: [B, D] of one dtype and device.
inline void check_latent_pair(const at::Tensor& mu, const at::Tensor& log_var) {
  check_floating(mu, "mu");
  check_same_dtype_device(mu, "mu", log_var, "log_var");
  check_dim(mu, 2, "mu");
  check_shape(log_var, mu.sizes(), "log_var");
}

inline void check_num_samples(int64_t num_samples) {
  TORCH_CHECK_VALUE(num_samples >= 1, "num_samples: expected S >= 1, got ", num_samples);
}

// The Philox key: a one-element int64 tensor (on the kernel's device, or the CPU).
inline void check_seed(const at::Tensor& seed) {
  TORCH_CHECK(seed.scalar_type() == at::kLong && seed.numel() == 1,
              "seed: expected a one-element int64 tensor, got dtype ", seed.scalar_type(), " and shape ",
              seed.sizes());
}

// grad_z [B, S, D] and the optional saved noise (accumulation dtype, mu's device).
inline int64_t check_reparameterize_backward_args(const at::Tensor& grad_z, const at::Tensor& mu,
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
    TORCH_CHECK(noise->scalar_type() == opmath && noise->device() == mu.device(), "noise: expected ", opmath,
                " on ", mu.device(), " (mu's accumulation dtype and device), got ", noise->scalar_type(), " on ",
                noise->device());
    check_shape(*noise, {B, S, D}, "noise");
  }
  return S;
}

// ------------------------------------------------------------------ elbo
struct ElboShapes {
  int64_t B, S, D, F;
};

inline ElboShapes check_elbo_inputs(const at::Tensor& x, const at::Tensor& x_hat, const at::Tensor& mu,
                                    const at::Tensor& log_var) {
  check_floating(x, "x");
  check_same_dtype_device(x, "x", x_hat, "x_hat");
  check_same_dtype_device(x, "x", mu, "mu");
  check_same_dtype_device(x, "x", log_var, "log_var");
  TORCH_CHECK(x.dim() >= 1, "x: expected shape [B, ...], got a 0-d tensor");
  TORCH_CHECK(x_hat.dim() == x.dim() + 1 && x_hat.size(0) == x.size(0) &&
                  x_hat.sizes().slice(2) == x.sizes().slice(1),
              "x_hat: expected shape [B, S, ...] matching x ", x.sizes(), ", got ", x_hat.sizes());
  check_dim(mu, 2, "mu");
  TORCH_CHECK(mu.size(0) == x.size(0), "mu: expected batch size ", x.size(0), ", got shape ", mu.sizes());
  check_shape(log_var, mu.sizes(), "log_var");
  return {x.size(0), x_hat.size(1), mu.size(1), c10::multiply_integers(x.sizes().slice(1))};
}

// ----------------------------------------------------- adagvae_posterior
using PosteriorNames = std::array<const char*, 4>;

// Four [B, D] tensors of one dtype and device.
inline void check_posteriors(const std::array<const at::Tensor*, 4>& ts, const PosteriorNames& names) {
  check_floating(*ts[0], names[0]);
  check_dim(*ts[0], 2, names[0]);
  for (int i = 1; i < 4; ++i) {
    check_same_dtype_device(*ts[0], names[0], *ts[i], names[i]);
    check_shape(*ts[i], ts[0]->sizes(), names[i]);
  }
}

inline void check_adagvae_backward_args(const at::Tensor& g_mu1, const at::Tensor& g_lv1, const at::Tensor& g_mu2,
                                        const at::Tensor& g_lv2, const at::Tensor& log_var1,
                                        const at::Tensor& log_var2, const at::Tensor& mask) {
  check_posteriors({&g_mu1, &g_lv1, &g_mu2, &g_lv2}, {"grad_mu1", "grad_log_var1", "grad_mu2", "grad_log_var2"});
  check_same_dtype_device(g_mu1, "grad_mu1", log_var1, "log_var1");
  check_same_dtype_device(g_mu1, "grad_mu1", log_var2, "log_var2");
  check_shape(log_var1, g_mu1.sizes(), "log_var1");
  check_shape(log_var2, g_mu1.sizes(), "log_var2");
  check_shape(mask, g_mu1.sizes(), "mask");
  TORCH_CHECK(mask.scalar_type() == at::kBool, "mask: expected dtype bool, got ", mask.scalar_type());
  TORCH_CHECK(mask.device() == g_mu1.device(), "mask: device ", mask.device(), " differs from grad_mu1's ",
              g_mu1.device());
}

}  // namespace paf
