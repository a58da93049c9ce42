// adagvae_posterior: Ada-GVAE posterior adaptation (Locatello et al. 2020).
// Per row: kl[d] = KL(q1 || q2) per dimension, tau = (max kl + min kl) / 2;
// where kl[d] < tau both posteriors become their average: mean
// (mu1 + mu2) / 2 and log-variance log((exp(lv1) + exp(lv2)) / 2).
// The mask of averaged dimensions is returned for the backward pass.
#include "elementwise_math.h"
#include "kernel_utils.h"
#include "../common/args/adagvae_posterior.h"

#include <torch/library.h>

#include <array>
#include <cmath>
#include <limits>

namespace paf::cpu::adagvae_posterior {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> adagvae_posterior_cpu(
    const at::Tensor& mu1, const at::Tensor& log_var1, const at::Tensor& mu2,
    const at::Tensor& log_var2) {
  const PosteriorProblem<4> p = make_adagvae_problem(mu1, log_var1, mu2, log_var2);
  if (p.empty()) return p.outputs_and_mask();
  const int64_t B = p.B, D = p.D;
  const auto& in = p.in;
  PAF_DISPATCH_FLOATING(mu1.scalar_type(), "adagvae_posterior_cpu", [&] {
    using IO = VecIO<scalar_t>;
    using opmath_t = typename IO::opmath_t;
    using Vec = typename IO::Vec;
    constexpr int64_t W = IO::kWidth;
    const auto m1 = const_row_matrix<scalar_t>(in[0]), l1 = const_row_matrix<scalar_t>(in[1]);
    const auto m2 = const_row_matrix<scalar_t>(in[2]), l2 = const_row_matrix<scalar_t>(in[3]);
    scalar_t* out[4] = {p.out[0].data_ptr<scalar_t>(), p.out[1].data_ptr<scalar_t>(), p.out[2].data_ptr<scalar_t>(),
                        p.out[3].data_ptr<scalar_t>()};
    bool* pmask = p.mask.data_ptr<bool>();
    at::parallel_for(0, B, row_grain(4 * D), [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> kl(D);
      opmath_t lanes[W];
      for (int64_t b = begin; b < end; ++b) {
        const scalar_t *a_mu = m1.row(b), *a_lv = l1.row(b), *b_mu = m2.row(b), *b_lv = l2.row(b);
        // kl per dimension and its range; NaN is skipped, as by std::min/max.
        const opmath_t inf = std::numeric_limits<opmath_t>::infinity();
        Vec v_lo(inf), v_hi(-inf);
        opmath_t lo = inf, hi = -inf;
        for_each_column<W>(
            D,
            [&](int64_t j) {
              const Vec k = kl_general(IO::load(a_mu + j), IO::load(a_lv + j), IO::load(b_mu + j), IO::load(b_lv + j));
              k.store(kl.data() + j);
              v_lo = vm::if_less(k, v_lo, k, v_lo);
              v_hi = vm::if_less(v_hi, k, k, v_hi);
            },
            [&](int64_t j) {
              kl[j] = kl_general<opmath_t>(a_mu[j], a_lv[j], b_mu[j], b_lv[j]);
              lo = vm::if_less(kl[j], lo, kl[j], lo);
              hi = vm::if_less(hi, kl[j], kl[j], hi);
            });
        if (D >= W) {
          v_lo.store(lanes);
          for (const opmath_t v : lanes) lo = vm::if_less(v, lo, v, lo);
          v_hi.store(lanes);
          for (const opmath_t v : lanes) hi = vm::if_less(hi, v, v, hi);
        }
        const opmath_t tau = opmath_t(0.5) * (hi + lo);
        const int64_t o = b * D;
        for_each_column<W>(
            D,
            [&](int64_t j) {
              const Adapted<Vec> r(IO::load(a_mu + j), IO::load(a_lv + j), IO::load(b_mu + j), IO::load(b_lv + j),
                                   Vec::loadu(kl.data() + j), Vec(tau));
              IO::store(out[0] + o + j, r.mu1);
              IO::store(out[1] + o + j, r.lv1);
              IO::store(out[2] + o + j, r.mu2);
              IO::store(out[3] + o + j, r.lv2);
              r.averaged.store(lanes);
              for (int64_t i = 0; i < W; ++i) pmask[o + j + i] = lanes[i] != opmath_t(0);
            },
            [&](int64_t j) {
              const Adapted<opmath_t> r(a_mu[j], a_lv[j], b_mu[j], b_lv[j], kl[j], tau);
              out[0][o + j] = static_cast<scalar_t>(r.mu1);
              out[1][o + j] = static_cast<scalar_t>(r.lv1);
              out[2][o + j] = static_cast<scalar_t>(r.mu2);
              out[3][o + j] = static_cast<scalar_t>(r.lv2);
              pmask[o + j] = r.averaged != opmath_t(0);
            });
      }
    });
  });
  return p.outputs_and_mask();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> adagvae_posterior_backward_cpu(
    const at::Tensor& g_mu1, const at::Tensor& g_lv1, const at::Tensor& g_mu2,
    const at::Tensor& g_lv2, const at::Tensor& log_var1, const at::Tensor& log_var2,
    const at::Tensor& mask) {
  const PosteriorProblem<6> p =
      make_adagvae_backward_problem(g_mu1, g_lv1, g_mu2, g_lv2, log_var1, log_var2, mask);
  if (p.empty()) return p.outputs();
  const int64_t B = p.B, D = p.D;
  const auto& in = p.in;
  PAF_DISPATCH_FLOATING(g_mu1.scalar_type(), "adagvae_posterior_backward_cpu", [&] {
    using IO = VecIO<scalar_t>;
    using opmath_t = typename IO::opmath_t;
    using Vec = typename IO::Vec;
    constexpr int64_t W = IO::kWidth;
    RowMatrix<const scalar_t> r[6];
    for (int i = 0; i < 6; ++i) r[i] = const_row_matrix<scalar_t>(in[i]);
    const bool* pmask = p.mask.const_data_ptr<bool>();
    scalar_t* out[4] = {p.out[0].data_ptr<scalar_t>(), p.out[1].data_ptr<scalar_t>(), p.out[2].data_ptr<scalar_t>(),
                        p.out[3].data_ptr<scalar_t>()};
    at::parallel_for(0, B, row_grain(6 * D), [&](int64_t begin, int64_t end) {
      opmath_t lanes[W];
      for (int64_t b = begin; b < end; ++b) {
        const int64_t o = b * D;
        const scalar_t* row[6];
        for (int i = 0; i < 6; ++i) row[i] = r[i].row(b);
        for_each_column<W>(
            D,
            [&](int64_t j) {
              for (int64_t i = 0; i < W; ++i) lanes[i] = pmask[o + j + i] ? opmath_t(1) : opmath_t(0);
              const AdaptedGrad<Vec> g(IO::load(row[0] + j), IO::load(row[1] + j), IO::load(row[2] + j),
                                       IO::load(row[3] + j), IO::load(row[4] + j), IO::load(row[5] + j),
                                       Vec::loadu(lanes));
              IO::store(out[0] + o + j, g.mu1);
              IO::store(out[1] + o + j, g.lv1);
              IO::store(out[2] + o + j, g.mu2);
              IO::store(out[3] + o + j, g.lv2);
            },
            [&](int64_t j) {
              const AdaptedGrad<opmath_t> g(row[0][j], row[1][j], row[2][j], row[3][j], row[4][j], row[5][j],
                                            pmask[o + j] ? opmath_t(1) : opmath_t(0));
              out[0][o + j] = static_cast<scalar_t>(g.mu1);
              out[1][o + j] = static_cast<scalar_t>(g.lv1);
              out[2][o + j] = static_cast<scalar_t>(g.mu2);
              out[3][o + j] = static_cast<scalar_t>(g.lv2);
            });
      }
    });
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) {
  m.impl("adagvae_posterior", &adagvae_posterior_cpu);
  m.impl("adagvae_posterior_backward", &adagvae_posterior_backward_cpu);
}

}  // namespace paf::cpu::adagvae_posterior
