// reparameterize: z[b, s, :] = mu[b] + exp(0.5 * log_var[b]) * eps[b, s, :]
// (CUDA), eps from Philox(seed) with the CPU kernel's stream layout: element
// i of z takes lane i % 4 of Philox block i / 4 (cpu/philox_normal.h,
// Box-Muller in common/formulas/box_muller.h), so the same seed gives the same z on
// both devices to float rounding. The seed is a one-element int64 tensor
// read on the device (F.draw_seed draws it from the CUDA generator:
// reproducible under torch.manual_seed, no host sync, CUDA-graph safe).
#include "cuda_utils.cuh"
#include "reparameterize.cuh"

#include <torch/library.h>

namespace paf::cuda::reparameterize {
namespace {

// The seed on the kernel's device (a CPU seed is copied there).
at::Tensor seed_on(const at::Tensor& seed, const at::Device& device) {
  check_seed(seed);
  return seed.device() == device ? seed.reshape({1}) : seed.reshape({1}).to(device);
}

std::tuple<at::Tensor, at::Tensor> sample(const at::Tensor& mu, const at::Tensor& log_var, int64_t num_samples,
                                          const at::Tensor& seed, bool keep_noise) {
  const c10::cuda::CUDAGuard guard(mu.device());
  const SampleProblem p = make_sample_problem(mu, log_var, num_samples, keep_noise);
  const at::Tensor key = seed_on(seed, mu.device());
  if (p.z.numel() == 0) return {p.z, p.noise};
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "reparameterize_cuda", [&] {
    const auto args = sample_args<scalar_t>(p, key.const_data_ptr<int64_t>(), keep_noise);
    const int64_t blocks = ceil_div(p.z.numel(), 4);
    if (args.packable()) {
      launch_for_each_index(blocks, Sample<scalar_t, true>{args});
    } else {
      launch_for_each_index(blocks, Sample<scalar_t, false>{args});
    }
  });
  return {p.z, p.noise};
}

at::Tensor reparameterize_cuda(const at::Tensor& mu, const at::Tensor& log_var, int64_t num_samples,
                               const at::Tensor& seed) {
  return std::get<0>(sample(mu, log_var, num_samples, seed, /*keep_noise=*/false));
}

std::tuple<at::Tensor, at::Tensor> reparameterize_with_noise_cuda(const at::Tensor& mu, const at::Tensor& log_var,
                                                                  int64_t num_samples, const at::Tensor& seed) {
  return sample(mu, log_var, num_samples, seed, /*keep_noise=*/true);
}

std::tuple<at::Tensor, at::Tensor> reparameterize_backward_cuda(const at::Tensor& grad_z, const at::Tensor& mu,
                                                                const at::Tensor& log_var, const at::Tensor& seed,
                                                                const std::optional<at::Tensor>& noise) {
  const c10::cuda::CUDAGuard guard(mu.device());
  const SampleGradProblem p = make_sample_grad_problem(grad_z, mu, log_var, seed, noise);
  const at::Tensor key = seed_on(seed, mu.device());
  if (p.g_mu.numel() == 0) return {p.g_mu, p.g_lv};
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "reparameterize_backward_cuda", [&] {
    const auto args = sample_grad_args<scalar_t>(p, key.const_data_ptr<int64_t>());
    if (args.packable()) {
      launch_for_each_index(p.g_mu.numel() / 4, SampleGrad<scalar_t, 4>{args});
    } else {
      launch_for_each_index(p.g_mu.numel(), SampleGrad<scalar_t, 1>{args});
    }
  });
  return {p.g_mu, p.g_lv};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("reparameterize", &reparameterize_cuda);
  m.impl("reparameterize_with_noise", &reparameterize_with_noise_cuda);
  m.impl("reparameterize_backward", &reparameterize_backward_cuda);
}

}  // namespace paf::cuda::reparameterize
