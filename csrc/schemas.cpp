// Operator schemas of the pyautoencoder_fast namespace: the index of the
// ops, one block per op with its backward ops. Each op <row> is a row through
// the tree, every piece named after it (docs/adding_an_op.md; checked by
// tests/test_op_rows.py): its argument checks csrc/common/args/<row>.h, its
// kernels csrc/cpu/<row>.cpp and csrc/cuda/<row>.cu, its autograd
// csrc/autograd/<row>.cpp, its fake kernels pyautoencoder_fast/_ops/<row>.py,
// its oracle reference.<row> and its tests tests/test_ops_<row>.py.
#include <torch/library.h>

// The ops are functional: every output is a new tensor that nothing changes
// afterwards, and the only mutations are those a schema declares (Tensor(a!)).
// The need_grad flags of the fused losses return their derivative buffers
// to the caller; when autograd records a gradient it has the op write
// buffers of its own, which only its node holds (csrc/autograd/autograd_common.h,
// Buffers).
TORCH_LIBRARY(pyautoencoder_fast, m) {
  // log_likelihood: elementwise ll(x, x_hat), broadcast shape. With
  // x_log_var (likelihood "gaussian" only) the Gaussian of that
  // log-variance. The backward's wrt: "x", "x_hat" or "x_log_var".
  m.def("log_likelihood(Tensor x, Tensor x_hat, str likelihood, Tensor? x_log_var=None) -> Tensor");
  m.def(
      "log_likelihood_backward(Tensor grad, Tensor x, Tensor x_hat, "
      "str likelihood, str wrt, Tensor? x_log_var=None) -> Tensor");

  // log_likelihood_sum: x [B, F], x_hat [B, S, F] (x_log_var broadcast to
  // x_hat) -> [B, S]. The backward's wrt "x_log_var" gives d/dx_log_var
  // per element of x_hat, in the accumulation dtype.
  m.def("log_likelihood_sum(Tensor x, Tensor x_hat, str likelihood, Tensor? x_log_var=None) -> Tensor");
  m.def(
      "log_likelihood_sum_backward(Tensor grad, Tensor x, Tensor x_hat, "
      "str likelihood, str wrt, Tensor? x_log_var=None) -> Tensor");

  // kl_diag_gaussian: KL(q || p), p = N(0, I) when mu_p/log_var_p are None.
  // Its backward passes a clamped log-variance's gradient at exactly a bound
  // when clamp_grad_at_bounds (torch.clamp's convention up to torch 2.13).
  m.def(
      "kl_diag_gaussian(Tensor mu_q, Tensor log_var_q, Tensor? mu_p, "
      "Tensor? log_var_p, bool reduce_sum, float? clamp_min, "
      "float? clamp_max) -> Tensor");
  m.def(
      "kl_diag_gaussian_backward(Tensor grad, Tensor mu_q, Tensor log_var_q, "
      "Tensor? mu_p, Tensor? log_var_p, bool reduce_sum, float? clamp_min, "
      "float? clamp_max, bool clamp_grad_at_bounds) -> (Tensor, Tensor, Tensor, Tensor)");

  // reparameterize: z[b, s] = mu[b] + exp(0.5 log_var[b]) * eps(seed, b, s).
  m.def(
      "reparameterize(Tensor mu, Tensor log_var, int num_samples, "
      "Tensor seed) -> Tensor");
  // ... and the noise eps it used, in the accumulation dtype, for backward.
  m.def(
      "reparameterize_with_noise(Tensor mu, Tensor log_var, int num_samples, "
      "Tensor seed) -> (Tensor, Tensor)");
  // Reads eps from `noise` when given, else regenerates it from the seed.
  m.def(
      "reparameterize_backward(Tensor grad_z, Tensor mu, Tensor log_var, "
      "Tensor seed, Tensor? noise=None) -> (Tensor, Tensor)");

  // elbo: stats = [objective, elbo, log_likelihood, kl] (batch means) and,
  // when need_grad, d objective / d (x_hat, mu, log_var) from the same passes,
  // and d objective / d x_log_var per element of x_hat (accumulation dtype)
  // when the Gaussian has a log-variance.
  m.def(
      "elbo(Tensor x, Tensor x_hat, Tensor mu, Tensor log_var, float beta, "
      "str likelihood, bool need_grad, Tensor? x_log_var=None) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def("elbo_backward_x_hat(Tensor grad_stats, Tensor dobj_dx_hat) -> Tensor");
  // The same, in place on the forward's buffer (autograd's first backward).
  m.def("elbo_scale_x_hat_grad_(Tensor grad_stats, Tensor(a!) dobj_dx_hat) -> ()");
  m.def(
      "elbo_backward_latent(Tensor grad_stats, Tensor mu, Tensor log_var, "
      "float beta) -> (Tensor, Tensor)");

  // iwae_bound: the importance-weighted bound per row, log (1/S) sum_s
  // exp(log p(x | z_s) + log p(z_s) - log q(z_s | x)), x [B, ...], x_hat
  // [B, S, ...] decoded from z [B, S, D], q = N(mu, exp(log_var)) [B, D];
  // -> (bound [B], normalised weights [B, S] (accumulation dtype), and when
  // need_grad the unweighted d ll / d x_hat and d ll / d x_log_var).
  m.def(
      "iwae_bound(Tensor x, Tensor x_hat, Tensor z, Tensor mu, Tensor log_var, str likelihood, "
      "bool need_grad, Tensor? x_log_var=None) -> (Tensor, Tensor, Tensor, Tensor)");
  // d (bound . grad) / d (z, mu, log_var) from the forward's weights.
  m.def(
      "iwae_bound_backward_latent(Tensor grad, Tensor weights, Tensor z, Tensor mu, "
      "Tensor log_var) -> (Tensor, Tensor, Tensor)");

  // count_log_likelihood: the log-pmf of counts x, "nb" (mu, theta), "zinb"
  // (mu, theta, zi_logits) or "poisson" (mu), per element or summed over the
  // last dimension, and when need_grad (need_grad_x) d/d(mu, theta,
  // zi_logits) (and d/dx) per element, in the accumulation dtype.
  m.def(
      "count_log_likelihood(Tensor x, Tensor mu, Tensor? theta, Tensor? zi_logits, str likelihood, "
      "float eps, bool reduce_sum, bool need_grad, bool need_grad_x) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");

  // nb_mixture_log_likelihood: the log-pmf of counts x under a mixture of
  // two negative binomials, sigmoid(pi_logits) NB(mu_1, theta_1) +
  // sigmoid(-pi_logits) NB(mu_2, theta_2) (theta_2 None: theta_1 for both),
  // per element or summed over the last dimension, and when need_grad
  // (need_grad_x) d/d(mu_1, mu_2, theta_1, theta_2, pi_logits) (and d/dx)
  // per element, in the accumulation dtype (d_theta_2 empty when shared).
  m.def(
      "nb_mixture_log_likelihood(Tensor x, Tensor mu_1, Tensor mu_2, Tensor theta_1, Tensor? theta_2, "
      "Tensor pi_logits, float eps, bool reduce_sum, bool need_grad, bool need_grad_x) -> (Tensor, Tensor, "
      "Tensor, Tensor, Tensor, Tensor, Tensor)");

  // adagvae_posterior: adapted (mu1, lv1, mu2, lv2) and the averaged mask.
  m.def(
      "adagvae_posterior(Tensor mu1, Tensor log_var1, Tensor mu2, "
      "Tensor log_var2) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
  m.def(
      "adagvae_posterior_backward(Tensor grad_mu1, Tensor grad_log_var1, "
      "Tensor grad_mu2, Tensor grad_log_var2, Tensor log_var1, "
      "Tensor log_var2, Tensor mask) -> (Tensor, Tensor, Tensor, Tensor)");
}
