// adagvae_posterior: Ada-GVAE posterior adaptation (CUDA); see
// csrc/cpu/adagvae_posterior.cpp. One warp per row: the per-dimension KL's
// range (min and max are exact, so any reduction order gives the same tau)
// by warp shuffles, then the adapted posteriors; the math is
// common/formulas/adagvae.h and kl.h (kl_general, Adapted, AdaptedGrad), as on the CPU.
#include "../common/args/adagvae_posterior.h"
#include "cuda_utils.cuh"
#include "device_math.cuh"

#include <torch/library.h>

#include <limits>

namespace paf::cuda::adagvae_posterior {
namespace {

template <typename scalar_t>
struct Posteriors {
  RowMatrix<const scalar_t> mu1, lv1, mu2, lv2;
  C10_DEVICE C10_ALWAYS_INLINE opmath_t<scalar_t> kl(int64_t b, int64_t j) const {
    return kl_general(load(mu1.row(b), j), load(lv1.row(b), j), load(mu2.row(b), j), load(lv2.row(b), j));
  }
};

template <typename scalar_t>
__global__ void PAF_LAUNCH_BOUNDS adagvae_posterior_kernel(Posteriors<scalar_t> in, int64_t rows,
                                                           int64_t dim, scalar_t* o_mu1, scalar_t* o_lv1,
                                                           scalar_t* o_mu2, scalar_t* o_lv2, bool* mask) {
  using T = opmath_t<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  const int64_t first = static_cast<int64_t>(blockIdx.x) * (kThreads / kWarp) + threadIdx.x / kWarp;
  for (int64_t b = first; b < rows; b += static_cast<int64_t>(gridDim.x) * (kThreads / kWarp)) {
    // The range of kl over the row; NaN is skipped (as the CPU's select).
    T lo = std::numeric_limits<T>::infinity(), hi = -std::numeric_limits<T>::infinity();
    for (int64_t j = lane; j < dim; j += kWarp) {
      const T k = in.kl(b, j);
      lo = vm::if_less(k, lo, k, lo);
      hi = vm::if_less(hi, k, k, hi);
    }
    for (int offset = kWarp / 2; offset > 0; offset /= 2) {
      const T other_lo = __shfl_xor_sync(0xffffffffu, lo, offset);
      const T other_hi = __shfl_xor_sync(0xffffffffu, hi, offset);
      lo = vm::if_less(other_lo, lo, other_lo, lo);
      hi = vm::if_less(hi, other_hi, other_hi, hi);
    }
    const T tau = T(0.5) * (hi + lo);
    for (int64_t j = lane; j < dim; j += kWarp) {
      const Adapted<T> r(load(in.mu1.row(b), j), load(in.lv1.row(b), j), load(in.mu2.row(b), j),
                         load(in.lv2.row(b), j), in.kl(b, j), tau);
      const int64_t i = b * dim + j;
      o_mu1[i] = static_cast<scalar_t>(r.mu1);
      o_lv1[i] = static_cast<scalar_t>(r.lv1);
      o_mu2[i] = static_cast<scalar_t>(r.mu2);
      o_lv2[i] = static_cast<scalar_t>(r.lv2);
      mask[i] = r.averaged != T(0);
    }
  }
}

template <typename scalar_t>
struct PosteriorGrad {
  RowMatrix<const scalar_t> g_mu1, g_lv1, g_mu2, g_lv2, lv1, lv2;
  const bool* mask;
  scalar_t *o_mu1, *o_lv1, *o_mu2, *o_lv2;
  int64_t dim;
  C10_DEVICE void operator()(int64_t i) const {
    using T = opmath_t<scalar_t>;
    const int64_t b = i / dim, j = i % dim;
    const AdaptedGrad<T> g(load(g_mu1.row(b), j), load(g_lv1.row(b), j), load(g_mu2.row(b), j),
                           load(g_lv2.row(b), j), load(lv1.row(b), j), load(lv2.row(b), j),
                           mask[i] ? T(1) : T(0));
    o_mu1[i] = static_cast<scalar_t>(g.mu1);
    o_lv1[i] = static_cast<scalar_t>(g.lv1);
    o_mu2[i] = static_cast<scalar_t>(g.mu2);
    o_lv2[i] = static_cast<scalar_t>(g.lv2);
  }
};

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> adagvae_posterior_cuda(
    const at::Tensor& mu1, const at::Tensor& log_var1, const at::Tensor& mu2, const at::Tensor& log_var2) {
  const c10::cuda::CUDAGuard guard(mu1.device());
  const PosteriorProblem<4> p = make_adagvae_problem(mu1, log_var1, mu2, log_var2);
  if (p.empty()) return p.outputs_and_mask();
  const int64_t B = p.B, D = p.D;
  const auto& in = p.in;
  PAF_DISPATCH_FLOATING(mu1.scalar_type(), "adagvae_posterior_cuda", [&] {
    const Posteriors<scalar_t> posteriors{const_row_matrix<scalar_t>(in[0]), const_row_matrix<scalar_t>(in[1]),
                                          const_row_matrix<scalar_t>(in[2]), const_row_matrix<scalar_t>(in[3])};
    adagvae_posterior_kernel<scalar_t><<<grid_for(B, kThreads / kWarp), kThreads, 0, current_stream()>>>(
        posteriors, B, D, p.out[0].data_ptr<scalar_t>(), p.out[1].data_ptr<scalar_t>(),
        p.out[2].data_ptr<scalar_t>(), p.out[3].data_ptr<scalar_t>(), p.mask.data_ptr<bool>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return p.outputs_and_mask();
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> adagvae_posterior_backward_cuda(
    const at::Tensor& g_mu1, const at::Tensor& g_lv1, const at::Tensor& g_mu2, const at::Tensor& g_lv2,
    const at::Tensor& log_var1, const at::Tensor& log_var2, const at::Tensor& mask) {
  const c10::cuda::CUDAGuard guard(g_mu1.device());
  const PosteriorProblem<6> p =
      make_adagvae_backward_problem(g_mu1, g_lv1, g_mu2, g_lv2, log_var1, log_var2, mask);
  if (p.empty()) return p.outputs();
  const int64_t B = p.B, D = p.D;
  const auto& in = p.in;
  PAF_DISPATCH_FLOATING(g_mu1.scalar_type(), "adagvae_posterior_backward_cuda", [&] {
    launch_for_each_index(
        B * D, PosteriorGrad<scalar_t>{const_row_matrix<scalar_t>(in[0]), const_row_matrix<scalar_t>(in[1]),
                                       const_row_matrix<scalar_t>(in[2]), const_row_matrix<scalar_t>(in[3]),
                                       const_row_matrix<scalar_t>(in[4]), const_row_matrix<scalar_t>(in[5]),
                                       p.mask.const_data_ptr<bool>(), p.out[0].data_ptr<scalar_t>(),
                                       p.out[1].data_ptr<scalar_t>(), p.out[2].data_ptr<scalar_t>(),
                                       p.out[3].data_ptr<scalar_t>(), D});
  });
  return p.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CUDA, m) {
  m.impl("adagvae_posterior", &adagvae_posterior_cuda);
  m.impl("adagvae_posterior_backward", &adagvae_posterior_backward_cuda);
}

}  // namespace paf::cuda::adagvae_posterior
