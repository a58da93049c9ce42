// reparameterize: the per-thread work of its CUDA kernels (sampling and its
// gradient), as functors that are host/device: reparameterize.cu launches them
// on the GPU and tests/test_cuda_host.py runs them on the CPU against the
// reference. What each thread does with them: packs.h.
#pragma once

#include "../common/args/reparameterize.h"
#include "../common/philox.h"
#include "device_math.cuh"
#include "packs.h"

namespace paf::cuda {

// The four normals of Philox block `block`, in opmath T.
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void philox_normals(uint64_t seed, uint64_t block, T (&normal)[4]) {
  uint32_t w[4];
  philox4x32_10(seed, block, w);
  box_muller(open_uniform<T>(w[0]), open_uniform<T>(w[1]), normal[0], normal[1]);
  box_muller(open_uniform<T>(w[2]), open_uniform<T>(w[3]), normal[2], normal[3]);
}

// normal[lane] without indexing a register array at run time (which would
// put it in local memory).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE T lane_of(const T (&normal)[4], int64_t lane) {
  return lane == 0 ? normal[0] : lane == 1 ? normal[1] : lane == 2 ? normal[2] : normal[3];
}

// Element i's inputs sit at (b, d) of the [B, D] latents.
struct SampleIndex {
  int64_t samples, dim;
  C10_HOST_DEVICE C10_ALWAYS_INLINE int64_t batch(int64_t i) const { return i / (samples * dim); }
  C10_HOST_DEVICE C10_ALWAYS_INLINE int64_t column(int64_t i) const { return i % dim; }
};

// Whether p is aligned for vectors of 4 elements (null is).
template <typename T>
bool aligned_for_4(const T* p) {
  return reinterpret_cast<std::uintptr_t>(p) % (4 * sizeof(T)) == 0;
}

// What sampling reads and writes: z [B, S, D] from the [B, D] latents.
template <typename scalar_t>
struct SampleArgs {
  RowMatrix<const scalar_t> mu, log_var;
  const int64_t* seed;
  scalar_t* z;
  opmath_t<scalar_t>* noise;  // null unless the noise is kept
  int64_t numel;
  SampleIndex at;
  // Whether the four elements of every Philox block share one row (dim a
  // multiple of 4) and every row is aligned for vectors of 4 (host side).
  bool packable() const {
    return at.dim % 4 == 0 && rows_aligned<4>(mu) && rows_aligned<4>(log_var) && aligned_for_4(z) &&
           aligned_for_4(noise);
  }
};

// The arguments of the sampling kernel for problem p (noise written when kept).
template <typename scalar_t>
SampleArgs<scalar_t> sample_args(const SampleProblem& p, const int64_t* seed, bool keep_noise) {
  return {const_row_matrix<scalar_t>(p.mu),
          const_row_matrix<scalar_t>(p.log_var),
          seed,
          p.z.data_ptr<scalar_t>(),
          keep_noise ? p.noise.data_ptr<opmath_t<scalar_t>>() : nullptr,
          p.z.numel(),
          {p.samples, p.dim}};
}

// One thread per Philox block: the (up to) four elements 4k .. 4k + 3 of z,
// read and written as one vector each when kPacked (args.packable()).
template <typename scalar_t, bool kPacked>
struct Sample {
  SampleArgs<scalar_t> a;
  C10_HOST_DEVICE void operator()(int64_t block) const {
    using T = opmath_t<scalar_t>;
    T eps[4];
    philox_normals(static_cast<uint64_t>(*a.seed), static_cast<uint64_t>(block), eps);
    const int64_t first = 4 * block;
    if constexpr (kPacked) {
      const int64_t b = a.at.batch(first), d = a.at.column(first);
      T m[4], l[4];
      load_pack<4>(a.mu.row(b) + d, m);
      load_pack<4>(a.log_var.row(b) + d, l);
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) m[lane] += vm::exp(T(0.5) * l[lane]) * eps[lane];
      store_pack<4>(a.z + first, m);
      if (a.noise != nullptr) store_pack<4>(a.noise + first, eps);
    } else {
#pragma unroll
      for (int lane = 0; lane < 4; ++lane) {
        const int64_t i = first + lane;
        if (i >= a.numel) break;
        const int64_t b = a.at.batch(i), d = a.at.column(i);
        const T std = vm::exp(T(0.5) * load(a.log_var.row(b), d));
        a.z[i] = static_cast<scalar_t>(load(a.mu.row(b), d) + std * eps[lane]);
        if (a.noise != nullptr) a.noise[i] = eps[lane];
      }
    }
  }
};

// What the sampling gradient reads and writes: d z / d mu = 1 and d z /
// d log_var = 0.5 * std * eps, summed over the samples, eps read from the
// saved noise or regenerated.
template <typename scalar_t>
struct SampleGradArgs {
  RowMatrix<const scalar_t> log_var;
  const int64_t* seed;
  const scalar_t* grad_z;           // [B, S, D], contiguous
  const opmath_t<scalar_t>* noise;  // null: regenerate
  scalar_t *g_mu, *g_lv;            // [B, D], contiguous
  int64_t samples, dim;
  // Whether four consecutive columns are one Philox block (dim a multiple
  // of 4) and everything is aligned for vectors of 4 (host side).
  bool packable() const {
    return dim % 4 == 0 && rows_aligned<4>(log_var) && aligned_for_4(grad_z) && aligned_for_4(noise) &&
           aligned_for_4(g_mu) && aligned_for_4(g_lv);
  }
};

// The arguments of the sampling gradient kernel for problem p.
template <typename scalar_t>
SampleGradArgs<scalar_t> sample_grad_args(const SampleGradProblem& p, const int64_t* seed) {
  return {const_row_matrix<scalar_t>(p.log_var),
          seed,
          p.grad_z.const_data_ptr<scalar_t>(),
          p.noise.defined() ? p.noise.const_data_ptr<opmath_t<scalar_t>>() : nullptr,
          p.g_mu.data_ptr<scalar_t>(),
          p.g_lv.data_ptr<scalar_t>(),
          p.samples,
          p.dim};
}

// One thread per N consecutive (b, d); N = 4 when args.packable(): the four
// columns are one Philox block, generated once, and every read is one vector.
template <typename scalar_t, int N>
struct SampleGrad {
  SampleGradArgs<scalar_t> a;
  C10_HOST_DEVICE void operator()(int64_t group) const {
    using T = opmath_t<scalar_t>;
    const int64_t k = group * N, b = k / a.dim, d = k % a.dim;
    T sum_g[N] = {}, sum_g_eps[N] = {};
    for (int64_t s = 0; s < a.samples; ++s) {
      const int64_t i = (b * a.samples + s) * a.dim + d;
      T e[N], g[N];
      if (a.noise != nullptr) {
        load_pack<N>(a.noise + i, e);
      } else {
        T normal[4];
        philox_normals(static_cast<uint64_t>(*a.seed), static_cast<uint64_t>(i / 4), normal);
#pragma unroll
        for (int n = 0; n < N; ++n) e[n] = N == 4 ? normal[n] : lane_of(normal, i % 4);
      }
      load_pack<N>(a.grad_z + i, g);
#pragma unroll
      for (int n = 0; n < N; ++n) {
        sum_g[n] += g[n];
        sum_g_eps[n] += g[n] * e[n];
      }
    }
    T l[N];
    load_pack<N>(a.log_var.row(b) + d, l);
#pragma unroll
    for (int n = 0; n < N; ++n) l[n] = T(0.5) * vm::exp(T(0.5) * l[n]) * sum_g_eps[n];
    store_pack<N>(a.g_mu + k, sum_g);
    store_pack<N>(a.g_lv + k, l);
  }
};

}  // namespace paf::cuda
