// The layout of elbo's stats output, shared by its kernels and its autograd.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <array>

namespace paf {

enum Stat { kObjective = 0, kElbo = 1, kLogLikelihood = 2, kKl = 3, kNumStats = 4 };

inline void check_grad_stats(const at::Tensor& grad_stats) {
  TORCH_CHECK(grad_stats.numel() == kNumStats, "grad_stats: expected ", kNumStats,
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

}  // namespace paf
