// reparameterize: z[b, s, :] = mu[b] + exp(0.5 * log_var[b]) * eps[b, s, :]
// (CUDA), eps from Philox(seed) with the CPU kernel's stream layout: element
// i of z takes lane i % 4 of Philox block i / 4 (common/philox_normal.h,
// Box-Muller in common/formulas.h), so the same seed gives the same z on
// both devices to float rounding. The seed is a one-element int64 tensor
// read on the device (F.draw_seed draws it from the CUDA generator:
// reproducible under torch.manual_seed, no host sync, CUDA-graph safe).
#include "../common/op_args.h"
#include "../common/philox_normal.h"
#include "cuda_utils.cuh"
#include "device_math.cuh"

#include <torch/library.h>

namespace paf::cuda {
namespace {

// The four normals of Philox block `block`, in opmath T.
template <typename T>
C10_DEVICE C10_ALWAYS_INLINE void philox_normals(uint64_t seed, uint64_t block, T (&normal)[4]) {
  uint32_t w[4];
  philox4x32_10(seed, block, w);
  box_muller(open_uniform<T>(w[0]), open_uniform<T>(w[1]), normal[0], normal[1]);
  box_muller(open_uniform<T>(w[2]), open_uniform<T>(w[3]), normal[2], normal[3]);
}

// One thread per Philox block: the (up to) four elements 4k .. 4k + 3 of z.
template <typename scalar_t>
struct Sample {
  RowMatrix<const scalar_t> mu, log_var;
  const int64_t* seed;
  scalar_t* z;
  opmath_t<scalar_t>* noise;  // null unless the noise is kept
  int64_t numel, samples, dim;
  C10_DEVICE void operator()(int64_t block) const {
    using T = opmath_t<scalar_t>;
    T eps[4];
    philox_normals(static_cast<uint64_t>(*seed), static_cast<uint64_t>(block), eps);
#pragma unroll
    for (int lane = 0; lane < 4; ++lane) {
      const int64_t i = 4 * block + lane;
      if (i >= numel) break;
      const int64_t b = i / (samples * dim), d = i % dim;
      const T std = vm::exp(T(0.5) * load(log_var.row(b), d));
      z[i] = static_cast<scalar_t>(load(mu.row(b), d) + std * eps[lane]);
      if (noise != nullptr) noise[i] = eps[lane];
    }
  }
};

// One thread per (b, d): d z / d mu = 1 and d z / d log_var = 0.5 * std *
// eps, summed over the samples; eps read from the saved noise or regenerated.
template <typename scalar_t>
struct SampleGrad {
  RowMatrix<const scalar_t> log_var;
  const int64_t* seed;
  const scalar_t* grad_z;
  const opmath_t<scalar_t>* noise;  // null: regenerate
  scalar_t *g_mu, *g_lv;
  int64_t samples, dim;
  C10_DEVICE void operator()(int64_t k) const {
    using T = opmath_t<scalar_t>;
    const int64_t b = k / dim, d = k % dim;
    T sum_g(0), sum_g_eps(0);
    for (int64_t s = 0; s < samples; ++s) {
      const int64_t i = (b * samples + s) * dim + d;
      T e;
      if (noise != nullptr) {
        e = noise[i];
      } else {
        T normal[4];
        philox_normals(static_cast<uint64_t>(*seed), static_cast<uint64_t>(i / 4), normal);
        e = normal[i % 4];
      }
      const T g = load(grad_z, i);
      sum_g += g;
      sum_g_eps += g * e;
    }
    const T std = vm::exp(T(0.5) * load(log_var.row(b), d));
    g_mu[k] = static_cast<scalar_t>(sum_g);
    g_lv[k] = static_cast<scalar_t>(T(0.5) * std * sum_g_eps);
  }
};

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
    launch_for_each_index(
        ceil_div(p.z.numel(), 4),
        Sample<scalar_t>{const_row_matrix<scalar_t>(p.mu), const_row_matrix<scalar_t>(p.log_var),
                         key.const_data_ptr<int64_t>(), p.z.data_ptr<scalar_t>(),
                         keep_noise ? p.noise.data_ptr<opmath_t<scalar_t>>() : nullptr, p.z.numel(), p.samples,
                         p.dim});
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
    using T = opmath_t<scalar_t>;
    launch_for_each_index(
        p.g_mu.numel(),
        SampleGrad<scalar_t>{const_row_matrix<scalar_t>(p.log_var), key.const_data_ptr<int64_t>(),
                             p.grad_z.const_data_ptr<scalar_t>(),
                             p.noise.defined() ? p.noise.const_data_ptr<T>() : nullptr, p.g_mu.data_ptr<scalar_t>(),
                             p.g_lv.data_ptr<scalar_t>(), p.samples, p.dim});
  });
  return {p.g_mu, p.g_lv};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("reparameterize", &reparameterize_cuda);
  m.impl("reparameterize_with_noise", &reparameterize_with_noise_cuda);
  m.impl("reparameterize_backward", &reparameterize_backward_cuda);
}

}  // namespace paf::cuda
