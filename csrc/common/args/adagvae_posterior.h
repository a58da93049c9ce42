// adagvae_posterior: its argument checks and problem shape, shared by its CPU kernel
// (csrc/cpu/adagvae_posterior.cpp) and its CUDA kernel (csrc/cuda/adagvae_posterior.cu), so both
// devices accept and refuse the same calls with the same messages.
#pragma once

#include "../tensor_args.h"

#include <array>
#include <tuple>

namespace paf {

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
