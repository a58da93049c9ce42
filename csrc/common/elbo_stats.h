// The layout of elbo's stats output, shared by its kernels and its autograd.
#pragma once

#include <ATen/ATen.h>

#include <array>

namespace paf {

enum Stat { kObjective = 0, kElbo = 1, kLogLikelihood = 2, kKl = 3, kNumStats = 4 };

// grad_stats as four doubles (a host read: CPU tensors only).
inline std::array<double, kNumStats> read_grad_stats(const at::Tensor& grad_stats) {
  TORCH_CHECK(grad_stats.numel() == kNumStats, "grad_stats: expected ", kNumStats,
              " elements, got shape ", grad_stats.sizes());
  const at::Tensor g = grad_stats.to(at::kDouble).contiguous();
  const double* p = g.const_data_ptr<double>();
  return {p[0], p[1], p[2], p[3]};
}

}  // namespace paf
