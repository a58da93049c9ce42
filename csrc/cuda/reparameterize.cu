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

// normal[lane] without indexing a register array at run time (which would
// put it in local memory).
template <typename T>
C10_DEVICE C10_ALWAYS_INLINE T lane_of(const T (&normal)[4], int64_t lane) {
  return lane == 0 ? normal[0] : lane == 1 ? normal[1] : lane == 2 ? normal[2] : normal[3];
}

// Element i's inputs sit at (b, d) of the [B, D] latents.
struct SampleIndex {
  int64_t samples, dim;
  C10_DEVICE C10_ALWAYS_INLINE int64_t batch(int64_t i) const { return i / (samples * dim); }
  C10_DEVICE C10_ALWAYS_INLINE int64_t column(int64_t i) const { return i % dim; }
};

// One thread per Philox block: the (up to) four elements 4k .. 4k + 3 of z.
// kPacked (dim % 4 == 0, rows aligned): the four share one row of mu and
// log_var, read and written as one vector each.
template <typename scalar_t, bool kPacked>
struct Sample {
  RowMatrix<const scalar_t> mu, log_var;
  const int64_t* seed;
  scalar_t* z;
  opmath_t<scalar_t>* noise;  // null unless the noise is kept
  int64_t numel;
  SampleIndex at;
  C10_DEVICE void operator()(int64_t block) const {
    using T = opmath_t<scalar_t>;
    T eps[4];
    philox_normals(static_cast<uint64_t>(*seed), static_cast<uint64_t>(block), eps);
    const int64_t first = 4 * block;
    if constexpr (kPacked) {
      const int64_t b = at.batch(first), d = at.column(first);
      T m[4], l[4];
      load_pack<4>(mu.row(b) + d, m);
      load_pack<4>(log_var.row(b) + d, l);
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) m[lane] += vm::exp(T(0.5) * l[lane]) * eps[lane];
      store_pack<4>(z + first, m);
      if (noise != nullptr) store_pack<4>(noise + first, eps);
    } else {
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) {
        const int64_t i = first + lane;
        if (i >= numel) break;
        const int64_t b = at.batch(i), d = at.column(i);
        const T std = vm::exp(T(0.5) * load(log_var.row(b), d));
        z[i] = static_cast<scalar_t>(load(mu.row(b), d) + std * eps[lane]);
        if (noise != nullptr) noise[i] = eps[lane];
      }
    }
  }
};

// One thread per N consecutive (b, d): d z / d mu = 1 and d z / d log_var =
// 0.5 * std * eps, summed over the samples; eps read from the saved noise
// or regenerated. N = 4 when dim % 4 == 0 (rows aligned): the four columns
// are one Philox block, generated once, and every read is one vector.
template <typename scalar_t, int N>
struct SampleGrad {
  RowMatrix<const scalar_t> log_var;
  const int64_t* seed;
  const scalar_t* grad_z;
  const opmath_t<scalar_t>* noise;  // null: regenerate
  scalar_t *g_mu, *g_lv;
  int64_t samples, dim;
  C10_DEVICE void operator()(int64_t group) const {
    using T = opmath_t<scalar_t>;
    const int64_t k = group * N, b = k / dim, d = k % dim;
    T sum_g[N] = {}, sum_g_eps[N] = {};
    for (int64_t s = 0; s < samples; ++s) {
      const int64_t i = (b * samples + s) * dim + d;
      T e[N], g[N];
      if (noise != nullptr) {
        load_pack<N>(noise + i, e);
      } else {
        T normal[4];
        philox_normals(static_cast<uint64_t>(*seed), static_cast<uint64_t>(i / 4), normal);
#pragma unroll
        for (int n = 0; n < N; ++n) e[n] = N == 4 ? normal[n] : lane_of(normal, i % 4);
      }
      load_pack<N>(grad_z + i, g);
#pragma unroll
      for (int n = 0; n < N; ++n) {
        sum_g[n] += g[n];
        sum_g_eps[n] += g[n] * e[n];
      }
    }
    T l[N];
    load_pack<N>(log_var.row(b) + d, l);
#pragma unroll
    for (int n = 0; n < N; ++n) l[n] = T(0.5) * vm::exp(T(0.5) * l[n]) * sum_g_eps[n];
    store_pack<N>(g_mu + k, sum_g);
    store_pack<N>(g_lv + k, l);
  }
};

// Whether p is aligned for vectors of 4 elements.
template <typename T>
bool aligned_for_4(const T* p) {
  return reinterpret_cast<std::uintptr_t>(p) % (4 * sizeof(T)) == 0;
}

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
    using T = opmath_t<scalar_t>;
    const auto mu_rows = const_row_matrix<scalar_t>(p.mu), lv_rows = const_row_matrix<scalar_t>(p.log_var);
    scalar_t* z = p.z.data_ptr<scalar_t>();
    T* noise = keep_noise ? p.noise.data_ptr<T>() : nullptr;
    const bool packed = p.dim % 4 == 0 && rows_aligned<4>(mu_rows) && rows_aligned<4>(lv_rows) && aligned_for_4(z) &&
                        aligned_for_4(noise);
    const int64_t blocks = ceil_div(p.z.numel(), 4);
    const SampleIndex at{p.samples, p.dim};
    const int64_t* seed_data = key.const_data_ptr<int64_t>();
    if (packed) {
      launch_for_each_index(blocks, Sample<scalar_t, true>{mu_rows, lv_rows, seed_data, z, noise, p.z.numel(), at});
    } else {
      launch_for_each_index(blocks, Sample<scalar_t, false>{mu_rows, lv_rows, seed_data, z, noise, p.z.numel(), at});
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
    using T = opmath_t<scalar_t>;
    const auto lv_rows = const_row_matrix<scalar_t>(p.log_var);
    const scalar_t* grad_z = p.grad_z.const_data_ptr<scalar_t>();
    const T* noise = p.noise.defined() ? p.noise.const_data_ptr<T>() : nullptr;
    scalar_t *g_mu = p.g_mu.data_ptr<scalar_t>(), *g_lv = p.g_lv.data_ptr<scalar_t>();
    const bool packed = p.dim % 4 == 0 && rows_aligned<4>(lv_rows) && aligned_for_4(grad_z) && aligned_for_4(noise) &&
                        aligned_for_4(g_mu) && aligned_for_4(g_lv);
    const int64_t* seed_data = key.const_data_ptr<int64_t>();
    if (packed) {
      launch_for_each_index(p.g_mu.numel() / 4, SampleGrad<scalar_t, 4>{lv_rows, seed_data, grad_z, noise, g_mu,
                                                                        g_lv, p.samples, p.dim});
    } else {
      launch_for_each_index(p.g_mu.numel(), SampleGrad<scalar_t, 1>{lv_rows, seed_data, grad_z, noise, g_mu, g_lv,
                                                                    p.samples, p.dim});
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

}  // namespace paf::cuda
