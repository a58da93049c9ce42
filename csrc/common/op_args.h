// The argument checks and problem shapes of every op, one section per op in
// the order of csrc/schemas.cpp, shared by its CPU kernel (csrc/cpu/<op>)
// and its CUDA kernel (csrc/cuda/<op>.cu): both devices accept and refuse
// the same calls with the same messages.
#pragma once

#include "elbo_stats.h"
#include "likelihood.h"
#include "tensor_args.h"

#include <ATen/ExpandUtils.h>
#include <ATen/TensorIterator.h>
#include <ATen/OpMathType.h>

#include <array>
#include <cmath>
#include <tuple>
#include <utility>
#include <limits>
#include <vector>

namespace paf {

// ------------------------------------------------------- log_likelihood
inline void check_log_likelihood_args(const at::Tensor& x, const at::Tensor& x_hat,
                                      const std::optional<at::Tensor>& x_log_var) {
  check_floating(x, "x");
  check_same_dtype_device(x, "x", x_hat, "x_hat");
  if (x_log_var) check_same_dtype_device(x, "x", *x_log_var, "x_log_var");
}

// The operands of the elementwise likelihood: x, x_hat and, when given,
// x_log_var (the likelihood then reads it: GaussianLogVar).
inline std::vector<at::Tensor> likelihood_operands(const at::Tensor& x, const at::Tensor& x_hat,
                                                   const std::optional<at::Tensor>& x_log_var) {
  std::vector<at::Tensor> operands = {x, x_hat};
  if (x_log_var) operands.push_back(*x_log_var);
  return operands;
}

// The TensorIterators of the forward (out = ll(x, x_hat[, x_log_var])) and
// the backward (out = f(grad, x, x_hat[, x_log_var])), writing a contiguous
// output in the broadcast shape (not TensorIterator's input-following
// layout, so the fake kernel's strides are the real ones). The iterator
// owns the output (it outlives this function); the inputs are the caller's.
inline at::TensorIterator likelihood_iterator(const std::vector<at::Tensor>& inputs) {
  std::vector<int64_t> shape = inputs[0].sizes().vec();
  for (const auto& t : inputs) shape = at::infer_size(shape, t.sizes());
  at::TensorIteratorConfig config;
  config.add_owned_output(at::empty(shape, inputs[0].options()));
  for (const auto& t : inputs) config.add_const_input(t);
  return config.build();
}

inline at::TensorIterator log_likelihood_iterator(const at::Tensor& x, const at::Tensor& x_hat,
                                                  const std::optional<at::Tensor>& x_log_var) {
  check_log_likelihood_args(x, x_hat, x_log_var);
  return likelihood_iterator(likelihood_operands(x, x_hat, x_log_var));
}

inline at::TensorIterator log_likelihood_backward_iterator(const at::Tensor& grad, const at::Tensor& x,
                                                           const at::Tensor& x_hat,
                                                           const std::optional<at::Tensor>& x_log_var) {
  check_log_likelihood_args(x, x_hat, x_log_var);
  check_same_dtype_device(x, "x", grad, "grad");
  std::vector<at::Tensor> operands = likelihood_operands(x, x_hat, x_log_var);
  operands.insert(operands.begin(), grad);
  return likelihood_iterator(operands);
}

// The wrt argument of a backward, checked against the likelihood: only
// GaussianLogVar has an x_log_var to differentiate.
inline LikelihoodInput parse_wrt(c10::string_view wrt, Likelihood likelihood) {
  const LikelihoodInput input = parse_likelihood_input(wrt);
  PAF_CHECK_VALUE(input != LikelihoodInput::XLogVar || reads_log_var(likelihood),
                  "wrt: 'x_log_var' needs x_log_var, got None");
  return input;
}

// -------------------------------------------- x_log_var against x_hat rows
// A log-variance broadcast against x_hat [B, S, ...] as the rows the
// row kernels read: row r = (b, s) of x_hat pairs with row r / divisor, so
// a log-variance shared by the S samples ([B, 1, ...] or [...] per
// feature: divisor S) is read in place like x, and one that is the same
// for every row (per feature, or a 0-d scalar) has row stride 0. Only a
// log-variance broadcast within the features is copied, one row's worth
// per distinct row. Undefined rows (divisor 1) when not given.
// Whether a tensor of shape `from` broadcasts to `to` (without growing it).
inline bool broadcasts_to(at::IntArrayRef from, at::IntArrayRef to) {
  if (from.size() > to.size()) return false;
  const size_t offset = to.size() - from.size();
  for (size_t i = 0; i < from.size(); ++i) {
    if (from[i] != 1 && from[i] != to[offset + i]) return false;
  }
  return true;
}

struct LogVarRows {
  at::Tensor rows;  // [B, F] (divisor S) or [B * S, F] (divisor 1)
  int64_t divisor = 1;
};

inline LogVarRows log_var_rows(const std::optional<at::Tensor>& x_log_var, const at::Tensor& x_hat, int64_t batch,
                               int64_t samples, int64_t features) {
  if (!x_log_var) return {};
  const at::Tensor& lv = *x_log_var;
  check_same_dtype_device(x_hat, "x_hat", lv, "x_log_var");
  const auto shape = x_hat.sizes();
  PAF_CHECK(broadcasts_to(lv.sizes(), shape), "x_log_var: shape ", lv.sizes(), " does not broadcast to x_hat's ",
            shape);
  std::vector<int64_t> padded(x_hat.dim() - lv.dim(), 1);  // lv's sizes aligned with x_hat's
  padded.insert(padded.end(), lv.sizes().begin(), lv.sizes().end());
  at::Tensor v = lv.reshape(padded);
  std::vector<int64_t> dense = padded;  // the feature dimensions at full size
  std::copy(shape.begin() + 2, shape.end(), dense.begin() + 2);
  if (dense != padded) v = v.expand(dense).contiguous();
  if (padded[1] == 1) {  // the same for every sample: x's rows
    std::vector<int64_t> per_x = dense;
    per_x.erase(per_x.begin() + 1);
    per_x[0] = batch;
    return {as_rows(v.select(1, 0).expand(per_x), batch, features), samples};
  }
  return {as_rows(v.expand(shape), batch * samples, features), 1};
}

// --------------------------------------------------- log_likelihood_sum
// x [B, ...] against x_hat [B, S, ...] (and x_log_var broadcast to x_hat):
// row r of x_hat viewed as [B*S, F] pairs with row r / S of x.
struct SumProblem {
  int64_t batch, samples, features;
  Likelihood likelihood;
  at::Tensor x, x_hat;  // row views: x [B, F], x_hat [B*S, F]
  LogVarRows x_log_var;
};

inline SumProblem make_sum_problem(const at::Tensor& x, const at::Tensor& x_hat,
                                   const std::optional<at::Tensor>& x_log_var, c10::string_view likelihood) {
  check_floating(x, "x");
  check_same_dtype_device(x, "x", x_hat, "x_hat");
  PAF_CHECK(x.dim() >= 1, "x: expected shape [B, ...], got a 0-d tensor");
  PAF_CHECK(x_hat.dim() == x.dim() + 1 && x_hat.size(0) == x.size(0) &&
                  x_hat.sizes().slice(2) == x.sizes().slice(1),
              "x_hat: expected shape [B, S, ...] matching x ", x.sizes(), ", got ", x_hat.sizes());
  const int64_t batch = x.size(0);
  const int64_t samples = x_hat.size(1);
  const int64_t features = batch > 0 ? x.numel() / batch : c10::multiply_integers(x.sizes().slice(1));
  return {batch,
          samples,
          features,
          parse_likelihood(likelihood, x_log_var.has_value()),
          as_rows(x, batch, features),
          as_rows(x_hat, batch * samples, features),
          log_var_rows(x_log_var, x_hat, batch, samples, features)};
}

// The backward's grad [B, S], contiguous, and its output: shaped like x
// (wrt x) or x_hat (wrt x_hat; wrt x_log_var too, per element of x_hat in
// the accumulation dtype, which autograd sums to x_log_var's shape).
inline std::pair<at::Tensor, at::Tensor> sum_backward_buffers(const SumProblem& s, const at::Tensor& grad,
                                                              const at::Tensor& x, const at::Tensor& x_hat,
                                                              LikelihoodInput wrt) {
  check_same_dtype_device(x, "x", grad, "grad");
  check_shape(grad, {s.batch, s.samples}, "grad");
  if (wrt == LikelihoodInput::XLogVar) {
    return {grad.contiguous(), at::empty(x_hat.sizes(), x.options().dtype(at::toOpMathType(x.scalar_type())))};
  }
  return {grad.contiguous(), at::empty(wrt == LikelihoodInput::X ? x.sizes() : x_hat.sizes(), x.options())};
}

// ------------------------------------------------------ kl_diag_gaussian
constexpr double kNoClamp = std::numeric_limits<double>::infinity();

// The gradient of a clamped log-variance, as torch.clamp passes it: where
// the raw value lies in [lo, hi], else 0 (a NaN raw value included, whatever
// the gradient is there); unchanged when nothing is clamped.
template <typename T>
struct ClampGradGate {
  T lo, hi;
  bool active;  // clamp_min or clamp_max given
  C10_HOST_DEVICE C10_ALWAYS_INLINE T operator()(T raw, T grad) const {
    return (!active || (raw >= lo && raw <= hi)) ? grad : T(0);
  }
};

// All inputs broadcast to one [rows, D] shape, as row views (no copies for
// broadcast rows), plus the clamp bounds.
struct KlProblem {
  std::vector<int64_t> shape;  // broadcast shape, last dim D
  int64_t rows = 0, cols = 0;
  at::Tensor mu_q, lv_q, mu_p, lv_p;  // [rows, D]; mu_p/lv_p undefined for N(0, I)
  double lo = -kNoClamp;
  double hi = kNoClamp;
  bool clamped_below = false, clamped_above = false;  // clamp_min / clamp_max given
  bool standard() const { return !mu_p.defined(); }
  // Where the clamp passes gradient (ClampGradGate), in the arithmetic type
  // T. At exactly a bound torch.clamp passes it up to torch 2.13 and not
  // from 2.14 (grad_at_bounds); a bound it does not pass becomes the next
  // value of T inward, so the kernels compare alike either way. A missing
  // bound stays infinite: everything passes it, infinities included.
  template <typename T>
  ClampGradGate<T> clamp_grad_gate(bool grad_at_bounds) const {
    ClampGradGate<T> gate{static_cast<T>(lo), static_cast<T>(hi), clamped_below || clamped_above};
    if (!grad_at_bounds) {
      if (clamped_below) gate.lo = std::nextafter(gate.lo, std::numeric_limits<T>::infinity());
      if (clamped_above) gate.hi = std::nextafter(gate.hi, -std::numeric_limits<T>::infinity());
    }
    return gate;
  }
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
  PAF_CHECK(mu_q.dim() >= 1, "mu_q: expected at least 1 dimension, got a 0-d tensor");
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
  p.clamped_below = clamp_min.has_value();
  p.clamped_above = clamp_max.has_value();
  PAF_CHECK_VALUE(!(p.lo > p.hi), "clamp_min (", p.lo, ") must not exceed clamp_max (", p.hi, ")");
  return p;
}

// The backward's outputs in the broadcast shape (the p-gradients empty for
// N(0, I)) and grad as rows: [rows, 1] (reduce_sum) or [rows, D].
struct KlGrads {
  at::Tensor mu_q, lv_q, mu_p, lv_p, grad_rows;
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const { return {mu_q, lv_q, mu_p, lv_p}; }
};

inline KlGrads make_kl_grads(const KlProblem& p, const at::Tensor& mu_q, const at::Tensor& grad, bool reduce_sum) {
  check_same_dtype_device(mu_q, "mu_q", grad, "grad");
  check_shape(grad, p.out_shape(reduce_sum), "grad");
  const auto options = mu_q.options();
  const bool with_p = !p.standard();
  KlGrads g;
  g.mu_q = at::empty(p.shape, options);
  g.lv_q = at::empty(p.shape, options);
  g.mu_p = with_p ? at::empty(p.shape, options) : at::empty({0}, options);
  g.lv_p = with_p ? at::empty(p.shape, options) : at::empty({0}, options);
  if (g.mu_q.numel() > 0) g.grad_rows = reduce_sum ? grad.reshape({p.rows, 1}) : as_rows(grad, p.rows, p.cols);
  return g;
}

// -------------------------------------------------------- reparameterize
// mu and log_var: [B, D] of one dtype and device.
inline void check_latent_pair(const at::Tensor& mu, const at::Tensor& log_var) {
  check_floating(mu, "mu");
  check_same_dtype_device(mu, "mu", log_var, "log_var");
  check_dim(mu, 2, "mu");
  check_shape(log_var, mu.sizes(), "log_var");
}

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

// Gradients with respect to a [B, D] latent pair: two [B, D] outputs.
inline std::tuple<at::Tensor, at::Tensor> latent_pair_grads(const at::Tensor& mu) {
  return {at::empty(mu.sizes(), mu.options()), at::empty(mu.sizes(), mu.options())};
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

// ------------------------------------------------------------------ elbo
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

// ------------------------------------------------------------ iwae_bound
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

// -------------------------------------------------- count_log_likelihood
// The count ops' arguments broadcast to one [rows, G] shape (G: the last
// dimension, the genes) and read as row views (a parameter broadcast over
// rows, e.g. theta [G], costs no copy); their outputs: the log-pmf per
// element or summed over G, and the partial derivatives per element in the
// accumulation dtype (so that the sum over a broadcast parameter's rows adds
// unrounded terms), empty when not asked.
struct CountRows {
  std::vector<int64_t> shape;
  int64_t rows = 0, cols = 0;
  CountRows(const std::vector<const at::Tensor*>& args, const char* first_name) {
    shape = args[0]->sizes().vec();
    for (const auto* t : args) shape = at::infer_size(shape, t->sizes());
    PAF_CHECK(!shape.empty(), first_name, ": expected at least 1 dimension (the genes), got 0-d arguments");
    cols = shape.back();
    rows = c10::multiply_integers(at::IntArrayRef(shape).slice(0, shape.size() - 1));
  }
  at::Tensor of(const at::Tensor& t) const { return as_rows(t.expand(shape), rows, cols); }
  at::Tensor output(const at::Tensor& like, bool reduce_sum) const {
    std::vector<int64_t> out_shape = shape;
    if (reduce_sum) out_shape.pop_back();
    return at::empty(out_shape, like.options());
  }
  at::Tensor grad_buffer(const at::Tensor& like, bool wanted) const {
    const auto options = like.options().dtype(at::toOpMathType(like.scalar_type()));
    return wanted ? at::empty(shape, options) : at::empty({0}, options);
  }
};

// Counts x against the parameters mu, theta (nb, zinb) and zi_logits
// (zinb) as CountRows. x's derivative (need_grad_x) comes with the
// parameters' (need_grad).
struct CountProblem {
  CountLikelihood likelihood;
  double eps;
  std::vector<int64_t> shape;
  int64_t rows = 0, cols = 0;
  at::Tensor x, mu, theta, zi_logits;  // [rows, G]; theta / zi_logits undefined when not used
  at::Tensor out, d_x, d_mu, d_theta, d_zi_logits;
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {out, d_x, d_mu, d_theta, d_zi_logits};
  }
};

inline CountProblem make_count_problem(const at::Tensor& x, const at::Tensor& mu,
                                       const std::optional<at::Tensor>& theta,
                                       const std::optional<at::Tensor>& zi_logits, c10::string_view likelihood,
                                       double eps, bool reduce_sum, bool need_grad, bool need_grad_x) {
  CountProblem p;
  p.likelihood = parse_count_likelihood(likelihood);
  check_floating(mu, "mu");
  check_same_dtype_device(mu, "mu", x, "x");
  const bool wants_theta = has_theta(p.likelihood), wants_zi = has_zi_logits(p.likelihood);
  PAF_CHECK_VALUE(theta.has_value() == wants_theta, "theta: ", wants_theta ? "required" : "not used",
                  " by likelihood '", std::string(likelihood), "'");
  PAF_CHECK_VALUE(zi_logits.has_value() == wants_zi, "zi_logits: ", wants_zi ? "required" : "not used",
                  " by likelihood '", std::string(likelihood), "'");
  PAF_CHECK_VALUE(std::isfinite(eps) && eps >= 0, "eps: expected a finite number >= 0, got ", eps);
  p.eps = eps;
  std::vector<const at::Tensor*> all = {&x, &mu};
  if (theta) {
    check_same_dtype_device(mu, "mu", *theta, "theta");
    all.push_back(&*theta);
  }
  if (zi_logits) {
    check_same_dtype_device(mu, "mu", *zi_logits, "zi_logits");
    all.push_back(&*zi_logits);
  }
  const CountRows rows(all, "mu");
  p.shape = rows.shape, p.rows = rows.rows, p.cols = rows.cols;
  p.x = rows.of(x);
  p.mu = rows.of(mu);
  if (theta) p.theta = rows.of(*theta);
  if (zi_logits) p.zi_logits = rows.of(*zi_logits);
  p.out = rows.output(mu, reduce_sum);
  need_grad = need_grad || need_grad_x;
  p.d_x = rows.grad_buffer(mu, need_grad_x);
  p.d_mu = rows.grad_buffer(mu, need_grad);
  p.d_theta = rows.grad_buffer(mu, need_grad && wants_theta);
  p.d_zi_logits = rows.grad_buffer(mu, need_grad && wants_zi);
  return p;
}

// --------------------------------------------- nb_mixture_log_likelihood
// Counts x against a mixture of two NBs (mu_1, theta_1), (mu_2, theta_2)
// with the logits pi_logits of component 1's weight, as CountRows. Without
// theta_2 both components share theta_1: theta_2 is then theta_1's rows and
// d_theta_2 is empty (theta_1's derivative holds both components').
struct NbMixtureProblem {
  double eps;
  bool shared_theta;
  int64_t rows = 0, cols = 0;
  at::Tensor x, mu_1, mu_2, theta_1, theta_2, pi_logits;  // [rows, G]
  at::Tensor out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi_logits;
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {out, d_x, d_mu_1, d_mu_2, d_theta_1, d_theta_2, d_pi_logits};
  }
};

inline NbMixtureProblem make_nb_mixture_problem(const at::Tensor& x, const at::Tensor& mu_1, const at::Tensor& mu_2,
                                                const at::Tensor& theta_1, const std::optional<at::Tensor>& theta_2,
                                                const at::Tensor& pi_logits, double eps, bool reduce_sum,
                                                bool need_grad, bool need_grad_x) {
  NbMixtureProblem p;
  check_floating(mu_1, "mu_1");
  std::vector<const at::Tensor*> all = {&x, &mu_1, &mu_2, &theta_1, &pi_logits};
  const std::array<const char*, 5> names = {"x", "mu_1", "mu_2", "theta_1", "pi_logits"};
  if (theta_2) all.push_back(&*theta_2);
  for (size_t i = 0; i < all.size(); ++i) {
    check_same_dtype_device(mu_1, "mu_1", *all[i], i < names.size() ? names[i] : "theta_2");
  }
  PAF_CHECK_VALUE(std::isfinite(eps) && eps >= 0, "eps: expected a finite number >= 0, got ", eps);
  p.eps = eps;
  p.shared_theta = !theta_2.has_value();
  const CountRows rows(all, "mu_1");
  p.rows = rows.rows, p.cols = rows.cols;
  p.x = rows.of(x);
  p.mu_1 = rows.of(mu_1);
  p.mu_2 = rows.of(mu_2);
  p.theta_1 = rows.of(theta_1);
  p.theta_2 = theta_2 ? rows.of(*theta_2) : p.theta_1;
  p.pi_logits = rows.of(pi_logits);
  p.out = rows.output(mu_1, reduce_sum);
  need_grad = need_grad || need_grad_x;
  p.d_x = rows.grad_buffer(mu_1, need_grad_x);
  p.d_mu_1 = rows.grad_buffer(mu_1, need_grad);
  p.d_mu_2 = rows.grad_buffer(mu_1, need_grad);
  p.d_theta_1 = rows.grad_buffer(mu_1, need_grad);
  p.d_theta_2 = rows.grad_buffer(mu_1, need_grad && !p.shared_theta);
  p.d_pi_logits = rows.grad_buffer(mu_1, need_grad);
  return p;
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

// kNumInputs [B, D] inputs as row views, four [B, D] outputs and the mask
// (the forward's output, the backward's input).
template <int kNumInputs>
struct PosteriorProblem {
  int64_t B, D;
  std::array<at::Tensor, kNumInputs> in;
  std::array<at::Tensor, 4> out;
  at::Tensor mask;

  PosteriorProblem(const std::array<const at::Tensor*, kNumInputs>& inputs, const at::Tensor& mask_)
      : B(inputs[0]->size(0)), D(inputs[0]->size(1)), mask(mask_) {
    for (int i = 0; i < kNumInputs; ++i) in[i] = as_rows(*inputs[i], B, D);
    for (auto& o : out) o = at::empty({B, D}, inputs[0]->options());
  }
  bool empty() const { return B * D == 0; }
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {out[0], out[1], out[2], out[3]};
  }
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs_and_mask() const {
    return {out[0], out[1], out[2], out[3], mask};
  }
};

// Forward: (mu1, log_var1, mu2, log_var2); the mask is allocated.
inline PosteriorProblem<4> make_adagvae_problem(const at::Tensor& mu1, const at::Tensor& log_var1,
                                                const at::Tensor& mu2, const at::Tensor& log_var2) {
  check_posteriors({&mu1, &log_var1, &mu2, &log_var2}, {"mu1", "log_var1", "mu2", "log_var2"});
  return PosteriorProblem<4>({&mu1, &log_var1, &mu2, &log_var2},
                             at::empty(mu1.sizes(), mu1.options().dtype(at::kBool)));
}

// Backward: the four upstream gradients, log_var1, log_var2; the given mask.
inline PosteriorProblem<6> make_adagvae_backward_problem(const at::Tensor& g_mu1, const at::Tensor& g_lv1,
                                                         const at::Tensor& g_mu2, const at::Tensor& g_lv2,
                                                         const at::Tensor& log_var1, const at::Tensor& log_var2,
                                                         const at::Tensor& mask) {
  check_posteriors({&g_mu1, &g_lv1, &g_mu2, &g_lv2}, {"grad_mu1", "grad_log_var1", "grad_mu2", "grad_log_var2"});
  check_same_dtype_device(g_mu1, "grad_mu1", log_var1, "log_var1");
  check_same_dtype_device(g_mu1, "grad_mu1", log_var2, "log_var2");
  check_shape(log_var1, g_mu1.sizes(), "log_var1");
  check_shape(log_var2, g_mu1.sizes(), "log_var2");
  check_shape(mask, g_mu1.sizes(), "mask");
  PAF_CHECK(mask.scalar_type() == at::kBool, "mask: expected dtype bool, got ", mask.scalar_type());
  PAF_CHECK(mask.device() == g_mu1.device(), "mask: device ", mask.device(), " differs from grad_mu1's ",
              g_mu1.device());
  return PosteriorProblem<6>({&g_mu1, &g_lv1, &g_mu2, &g_lv2, &log_var1, &log_var2}, mask.contiguous());
}

}  // namespace paf
