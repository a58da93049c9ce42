// The per-element math of the importance weights (IWAE; part of common/formulas.h: include
// cpu/elementwise_math.h or cuda/device_math.cuh, which declare the paf::vm
// primitives these call, not this file).
#pragma once

#include "../likelihood.h"
#include "paf_math.h"

#include <cmath>
#include <type_traits>

namespace paf {

// log p(z) - log q(z | x) for one latent dimension, p = N(0, 1) and
// q = N(mu, exp(lv)): the two Gaussian log-densities of the likelihoods
// above (their constants -0.5 log(2 pi) cancel), p's at mean 0.
template <typename T>
PAF_MATH T latent_log_ratio(T z, T mu, T lv) {
  return LogLikelihood<Likelihood::Gaussian>::value(T(0), z) - LogLikelihood<Likelihood::GaussianLogVar>::value(z, mu, lv);
}
// and its partial derivatives: d/dz = (z - mu) exp(-lv) - z,
// d/dmu = -(z - mu) exp(-lv), d/dlv = 0.5 (1 - (z - mu)^2 exp(-lv)).
// q's derivatives come from one value_and_grad (one exp(-lv), not one per
// derivative); q depends on z - mu, so d log q / dz = -d log q / dmu.
template <typename T>
PAF_MATH void latent_log_ratio_grads(T z, T mu, T lv, T& d_z, T& d_mu, T& d_lv) {
  T dq_dmu, dq_dlv;
  LogLikelihood<Likelihood::GaussianLogVar>::value_and_grad(z, mu, lv, dq_dmu, dq_dlv);
  d_z = LogLikelihood<Likelihood::Gaussian>::grad_x_hat(T(0), z) + dq_dmu;
  d_mu = T(0) - dq_dmu;
  d_lv = T(0) - dq_dlv;
}

}  // namespace paf
