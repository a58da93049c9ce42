// The layout of elbo's stats output, shared by its kernels and its autograd,
// and the backward's coefficients over grad_stats (CPU and CUDA).
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/macros/Macros.h>

#include "checks.h"

#include <array>

namespace paf {

enum Stat { kObjective = 0, kElbo = 1, kLogLikelihood = 2, kKl = 3, kNumStats = 4 };

inline void check_grad_stats(const at::Tensor& grad_stats) {
  PAF_CHECK(grad_stats.numel() == kNumStats, "grad_stats: expected ", kNumStats,
              " elements, got shape ", grad_stats.sizes());
}

// grad_stats as four doubles, read in place (a host read: CPU tensors only).
inline std::array<double, kNumStats> read_grad_stats(const at::Tensor& grad_stats) {
  check_grad_stats(grad_stats);
  const at::Tensor g = grad_stats.reshape({kNumStats});  // a view for the usual [4]
  std::array<double, kNumStats> out{};
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, g.scalar_type(), "read_grad_stats", [&] {
    const scalar_t* p = g.const_data_ptr<scalar_t>();
    for (int i = 0; i < kNumStats; ++i) out[i] = static_cast<double>(p[i * g.stride(0)]);
  });
  return out;
}

// The backward's coefficients, (weights . grad_stats) / divisor:
// d/dx_hat of stats . grad_stats = dobj_dx_hat * (g_objective - g_elbo - g_ll);
constexpr std::array<double, kNumStats> kXHatGradWeights = {1.0, -1.0, -1.0, 0.0};
// d/d(mu, log_var) = d KL * (beta (g_objective - g_elbo) + g_kl) / B.
inline std::array<double, kNumStats> latent_grad_weights(double beta) { return {beta, -beta, 0.0, 1.0}; }

// (weights . grad_stats) / divisor, read on the host (CPU tensors only).
inline double grad_stats_coefficient_on_host(const at::Tensor& grad_stats, const std::array<double, kNumStats>& weights,
                                             double divisor) {
  const std::array<double, kNumStats> g = read_grad_stats(grad_stats);
  double sum = 0;
  for (int k = 0; k < kNumStats; ++k) sum += weights[k] * g[k];
  return sum / divisor;
}

// (weights . grad_stats) / divisor, formed where it is used from the four
// values in place (on the device for CUDA: no host read, no extra launch).
template <typename scalar_t>
struct GradStatsCoefficient {
  const scalar_t* grad_stats;
  int64_t stride;
  double weights[kNumStats];
  double divisor;
  C10_HOST_DEVICE C10_ALWAYS_INLINE double value() const {
    double sum = 0;
#pragma unroll
    for (int k = 0; k < kNumStats; ++k) sum += weights[k] * static_cast<double>(grad_stats[k * stride]);
    return sum / divisor;
  }
};

template <typename scalar_t>
GradStatsCoefficient<scalar_t> grad_stats_coefficient(const at::Tensor& grad_stats,
                                                      const std::array<double, kNumStats>& weights, double divisor) {
  check_grad_stats(grad_stats);
  PAF_CHECK(grad_stats.dim() <= 1 && grad_stats.scalar_type() == c10::CppTypeToScalarType<scalar_t>::value,
              "grad_stats: expected a [4] tensor of the gradients' dtype, got ", grad_stats.scalar_type(), " ",
              grad_stats.sizes());
  const int64_t stride = grad_stats.dim() == 1 ? grad_stats.stride(0) : 1;
  return {grad_stats.const_data_ptr<scalar_t>(), stride, {weights[0], weights[1], weights[2], weights[3]}, divisor};
}

}  // namespace paf
