// The per-element math of the Ada-GVAE average (part of common/formulas.h: include
// cpu/elementwise_math.h or cuda/device_math.cuh, which declare the paf::vm
// primitives these call, not this file).
#pragma once

#include "kl.h"
#include "paf_math.h"

#include <cmath>
#include <type_traits>

namespace paf {

// The four outputs of one element (or vector of elements) of a row whose
// threshold is tau: the average of the two posteriors where kl < tau (mean
// (m1 + m2) / 2, log-variance log_mean_exp(l1, l2)), the inputs elsewhere.
template <typename T>
struct Adapted {
  T mu1, lv1, mu2, lv2, averaged;  // averaged: 1 or 0
  PAF_MATH Adapted(T m1, T l1, T m2, T l2, T kl, T tau) {
    const T mu = T(0.5) * (m1 + m2), lv = log_mean_exp(l1, l2);
    mu1 = vm::if_less(kl, tau, mu, m1);
    lv1 = vm::if_less(kl, tau, lv, l1);
    mu2 = vm::if_less(kl, tau, mu, m2);
    lv2 = vm::if_less(kl, tau, lv, l2);
    averaged = vm::if_less(kl, tau, T(1), T(0));
  }
};

// The gradients of one element (or vector) given the upstream ones:
// averaged dimensions: d mu_avg / d mu_i = 1/2 and d lv_avg / d lv_1 =
// sigmoid(lv1 - lv2); the selection (the mask) is piecewise constant.
template <typename T>
struct AdaptedGrad {
  T mu1, lv1, mu2, lv2;
  PAF_MATH AdaptedGrad(T gm1, T gl1, T gm2, T gl2, T l1, T l2, T averaged) {
    const T mu = T(0.5) * (gm1 + gm2), gl = gl1 + gl2;
    const T zero(0);
    mu1 = vm::if_less(zero, averaged, mu, gm1);
    mu2 = vm::if_less(zero, averaged, mu, gm2);
    lv1 = vm::if_less(zero, averaged, log_mean_exp_weight(l1, l2) * gl, gl1);
    lv2 = vm::if_less(zero, averaged, log_mean_exp_weight(l2, l1) * gl, gl2);
  }
};

}  // namespace paf
