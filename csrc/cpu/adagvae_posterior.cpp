// adagvae_posterior: Ada-GVAE posterior adaptation (Locatello et al. 2020).
// Per row: kl[d] = KL(q1 || q2) per dimension, tau = (max kl + min kl) / 2;
// where kl[d] < tau both posteriors become their average: mean
// (mu1 + mu2) / 2 and log-variance log((exp(lv1) + exp(lv2)) / 2).
// The mask of averaged dimensions is returned for the backward pass.
#include "../common/elementwise_math.h"
#include "../common/kernel_utils.h"

#include <torch/library.h>

#include <array>
#include <cmath>
#include <limits>

namespace paf {
namespace {

using Names = std::array<const char*, 4>;

// Four [B, D] tensors of one dtype and device.
void check_posteriors(const std::array<const at::Tensor*, 4>& ts, const Names& names) {
  check_floating(*ts[0], names[0]);
  check_dim(*ts[0], 2, names[0]);
  for (int i = 1; i < 4; ++i) {
    check_same_dtype_device(*ts[0], names[0], *ts[i], names[i]);
    check_shape(*ts[i], ts[0]->sizes(), names[i]);
  }
}

// log((exp(a) + exp(b)) / 2) without overflow.
template <typename T>
T log_mean_exp(T a, T b) {
  return std::max(a, b) + std::log1p(std::exp(-std::abs(a - b))) - T(0.6931471805599453);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> adagvae_posterior_cpu(
    const at::Tensor& mu1, const at::Tensor& log_var1, const at::Tensor& mu2,
    const at::Tensor& log_var2) {
  check_posteriors({&mu1, &log_var1, &mu2, &log_var2}, {"mu1", "log_var1", "mu2", "log_var2"});
  const int64_t B = mu1.size(0), D = mu1.size(1);
  auto new_like = [&] { return at::empty({B, D}, mu1.options()); };
  at::Tensor o_mu1 = new_like(), o_lv1 = new_like(), o_mu2 = new_like(), o_lv2 = new_like();
  at::Tensor mask = at::empty({B, D}, mu1.options().dtype(at::kBool));
  if (mask.numel() == 0) return {o_mu1, o_lv1, o_mu2, o_lv2, mask};
  const at::Tensor in[4] = {as_rows(mu1, B, D), as_rows(log_var1, B, D), as_rows(mu2, B, D),
                            as_rows(log_var2, B, D)};
  PAF_DISPATCH_FLOATING(mu1.scalar_type(), "adagvae_posterior_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const auto m1 = const_row_matrix<scalar_t>(in[0]), l1 = const_row_matrix<scalar_t>(in[1]);
    const auto m2 = const_row_matrix<scalar_t>(in[2]), l2 = const_row_matrix<scalar_t>(in[3]);
    scalar_t *pm1 = o_mu1.data_ptr<scalar_t>(), *pl1 = o_lv1.data_ptr<scalar_t>();
    scalar_t *pm2 = o_mu2.data_ptr<scalar_t>(), *pl2 = o_lv2.data_ptr<scalar_t>();
    bool* pmask = mask.data_ptr<bool>();
    at::parallel_for(0, B, row_grain(4 * D), [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> kl(D);
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t *a_mu = m1.row(b), *a_lv = l1.row(b), *b_mu = m2.row(b), *b_lv = l2.row(b);
        opmath_t lo = std::numeric_limits<opmath_t>::infinity(), hi = -lo;
        for (const auto d : c10::irange(D)) {
          kl[d] = kl_general(static_cast<opmath_t>(a_mu[d]), static_cast<opmath_t>(a_lv[d]),
                             static_cast<opmath_t>(b_mu[d]), static_cast<opmath_t>(b_lv[d]));
          lo = std::min(lo, kl[d]);
          hi = std::max(hi, kl[d]);
        }
        const opmath_t tau = opmath_t(0.5) * (hi + lo);
        const int64_t o = b * D;
        for (const auto d : c10::irange(D)) {
          const bool average = kl[d] < tau;
          pmask[o + d] = average;
          if (average) {
            const opmath_t mu = opmath_t(0.5) * (static_cast<opmath_t>(a_mu[d]) + static_cast<opmath_t>(b_mu[d]));
            const opmath_t lv = log_mean_exp(static_cast<opmath_t>(a_lv[d]), static_cast<opmath_t>(b_lv[d]));
            pm1[o + d] = pm2[o + d] = static_cast<scalar_t>(mu);
            pl1[o + d] = pl2[o + d] = static_cast<scalar_t>(lv);
          } else {
            pm1[o + d] = a_mu[d];
            pl1[o + d] = a_lv[d];
            pm2[o + d] = b_mu[d];
            pl2[o + d] = b_lv[d];
          }
        }
      }
    });
  });
  return {o_mu1, o_lv1, o_mu2, o_lv2, mask};
}

// Averaged dimensions: d mu_avg / d mu_i = 1/2 and
// d lv_avg / d lv_1 = exp(lv1) / (exp(lv1) + exp(lv2)) = sigmoid(lv1 - lv2).
// The selection itself (the mask) is piecewise constant: no gradient.
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> adagvae_posterior_backward_cpu(
    const at::Tensor& g_mu1, const at::Tensor& g_lv1, const at::Tensor& g_mu2,
    const at::Tensor& g_lv2, const at::Tensor& log_var1, const at::Tensor& log_var2,
    const at::Tensor& mask) {
  check_posteriors({&g_mu1, &g_lv1, &g_mu2, &g_lv2},
                   {"grad_mu1", "grad_log_var1", "grad_mu2", "grad_log_var2"});
  check_same_dtype_device(g_mu1, "grad_mu1", log_var1, "log_var1");
  check_same_dtype_device(g_mu1, "grad_mu1", log_var2, "log_var2");
  check_shape(log_var1, g_mu1.sizes(), "log_var1");
  check_shape(log_var2, g_mu1.sizes(), "log_var2");
  check_shape(mask, g_mu1.sizes(), "mask");
  TORCH_CHECK(mask.scalar_type() == at::kBool, "mask: expected dtype bool, got ", mask.scalar_type());
  const int64_t B = g_mu1.size(0), D = g_mu1.size(1);
  auto new_like = [&] { return at::empty({B, D}, g_mu1.options()); };
  at::Tensor o_mu1 = new_like(), o_lv1 = new_like(), o_mu2 = new_like(), o_lv2 = new_like();
  if (o_mu1.numel() == 0) return {o_mu1, o_lv1, o_mu2, o_lv2};
  const at::Tensor in[6] = {as_rows(g_mu1, B, D), as_rows(g_lv1, B, D), as_rows(g_mu2, B, D),
                            as_rows(g_lv2, B, D), as_rows(log_var1, B, D), as_rows(log_var2, B, D)};
  const at::Tensor mask_c = mask.contiguous();
  PAF_DISPATCH_FLOATING(g_mu1.scalar_type(), "adagvae_posterior_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    RowMatrix<const scalar_t> r[6];
    for (int i = 0; i < 6; ++i) r[i] = const_row_matrix<scalar_t>(in[i]);
    const bool* pmask = mask_c.const_data_ptr<bool>();
    scalar_t *pm1 = o_mu1.data_ptr<scalar_t>(), *pl1 = o_lv1.data_ptr<scalar_t>();
    scalar_t *pm2 = o_mu2.data_ptr<scalar_t>(), *pl2 = o_lv2.data_ptr<scalar_t>();
    at::parallel_for(0, B, row_grain(6 * D), [&](int64_t begin, int64_t end) {
      for (int64_t b = begin; b < end; ++b) {
        const int64_t o = b * D;
        for (const auto d : c10::irange(D)) {
          const opmath_t gm1 = r[0].row(b)[d], gl1 = r[1].row(b)[d];
          const opmath_t gm2 = r[2].row(b)[d], gl2 = r[3].row(b)[d];
          if (pmask[o + d]) {
            const opmath_t a = r[4].row(b)[d], c = r[5].row(b)[d];
            const opmath_t w1 = opmath_t(1) / (opmath_t(1) + std::exp(c - a));
            const opmath_t w2 = opmath_t(1) / (opmath_t(1) + std::exp(a - c));
            const opmath_t mu_g = opmath_t(0.5) * (gm1 + gm2);
            pm1[o + d] = pm2[o + d] = static_cast<scalar_t>(mu_g);
            pl1[o + d] = static_cast<scalar_t>(w1 * (gl1 + gl2));
            pl2[o + d] = static_cast<scalar_t>(w2 * (gl1 + gl2));
          } else {
            pm1[o + d] = static_cast<scalar_t>(gm1);
            pl1[o + d] = static_cast<scalar_t>(gl1);
            pm2[o + d] = static_cast<scalar_t>(gm2);
            pl2[o + d] = static_cast<scalar_t>(gl2);
          }
        }
      }
    });
  });
  return {o_mu1, o_lv1, o_mu2, o_lv2};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) {
  m.impl("adagvae_posterior", &adagvae_posterior_cpu);
  m.impl("adagvae_posterior_backward", &adagvae_posterior_backward_cpu);
}

}  // namespace paf
