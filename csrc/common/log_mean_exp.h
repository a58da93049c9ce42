// The log-mean-exp of a row of S log-weights and their normalised weights
// (the softmax, the bound's derivative with respect to each log-weight),
// in double: the importance-weighted bound's last step (iwae_bound), the
// same code on the CPU and in the CUDA kernel.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>
#include <limits>

namespace paf {

// log((1/S) sum_s exp(lw[s * stride])), stable: the largest term is
// factored out. weights[s] (any floating type) = exp(lw[s]) / sum_t exp(lw[t]),
// the softmax.
// Where the mathematics has limits: all terms -inf gives -inf with weights
// 0 (the bound is flat there; torch.logsumexp's gradient is NaN); a +inf
// term gives +inf, the weight shared by the +inf terms; a NaN term gives
// NaN, weights NaN.
template <typename weight_t>
C10_HOST_DEVICE double log_mean_exp_row(const double* lw, int64_t stride, int64_t samples, weight_t* weights) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  double top = -kInf;
  bool has_nan = false;
  for (int64_t s = 0; s < samples; ++s) {
    const double v = lw[s * stride];
    has_nan = has_nan || v != v;
    top = v > top ? v : top;
  }
  if (has_nan || top == -kInf || top == kInf) {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    int64_t at_top = 0;
    for (int64_t s = 0; s < samples; ++s) at_top += lw[s * stride] == top;
    for (int64_t s = 0; s < samples; ++s) {
      const bool shares = top == kInf && lw[s * stride] == kInf;
      weights[s] = static_cast<weight_t>(has_nan ? nan : shares ? 1.0 / static_cast<double>(at_top) : 0.0);
    }
    return has_nan ? nan : top;
  }
  double total = 0;
  for (int64_t s = 0; s < samples; ++s) total += ::exp(lw[s * stride] - top);
  for (int64_t s = 0; s < samples; ++s) weights[s] = static_cast<weight_t>(::exp(lw[s * stride] - top) / total);
  return top + ::log(total / static_cast<double>(samples));
}

}  // namespace paf
