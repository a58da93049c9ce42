// reparameterize: z[b, s, :] = mu[b] + exp(0.5 * log_var[b]) * eps[b, s, :]
// with eps drawn inside the kernel from Philox(seed) (philox_normal.h).
// The backward reads eps from the forward's saved noise, or regenerates it
// from the seed when the noise was too large to keep (autograd/reparameterize).
#include "elementwise_math.h"
#include "kernel_utils.h"
#include "../common/args/reparameterize.h"
#include "philox_normal.h"

#include <torch/library.h>

#include <cmath>

namespace paf::cpu::reparameterize {
namespace {

uint64_t read_seed(const at::Tensor& seed) {
  check_seed(seed);
  TORCH_CHECK(seed.device().is_cpu(), "seed: expected a CPU tensor for the CPU kernel, got ",
              seed.device());
  return static_cast<uint64_t>(seed.item<int64_t>());
}

// The noise of z[b, s, :] is at flat indices [(b*S + s) * D, ... + D): the
// rows of a range of b are one contiguous stretch of the Philox stream.
// Work is split over b; the noise is generated kChunk values at a time,
// several (b, s) rows per fill when D is small (a fill makes whole Philox
// blocks, so short fills would waste most of them).
constexpr int64_t kChunk = 256;

// std[d] = exp(0.5 * log_var[d]) for one row of D values, vectorised; the
// forward and the backward both call it, so they use the same std bitwise.
template <typename scalar_t>
void row_std(const scalar_t* log_var, int64_t D, at::opmath_type<scalar_t>* std) {
  using IO = VecIO<scalar_t>;
  using opmath_t = typename IO::opmath_t;
  using Vec = typename IO::Vec;
  for_each_column<IO::kWidth>(
      D, [&](int64_t j) { (Vec(opmath_t(0.5)) * IO::load(log_var + j)).exp().store(std + j); },
      [&](int64_t j) { std[j] = vm::exp(opmath_t(0.5) * static_cast<opmath_t>(log_var[j])); });
}

// For the batch rows [begin, end): calls fn(b, offset, d0, n, eps) for every
// stretch z[b, s, d0 : d0 + n] (offset: its flat index), with its noise in
// eps[0 : n], in order of increasing offset. The noise is read from `saved`
// (a [B, S, D] tensor's data) when given, else generated into `buffer`.
template <typename opmath_t, typename Fn>
C10_ALWAYS_INLINE void for_each_noise_span(uint64_t key, const opmath_t* saved, int64_t begin, int64_t end,
                                           int64_t S, int64_t D, opmath_t* buffer, Fn&& fn) {
  if (saved != nullptr) {
    for (int64_t r = begin * S; r < end * S; ++r) fn(r / S, r * D, int64_t(0), D, saved + r * D);
    return;
  }
  const int64_t rows_per_fill = std::max<int64_t>(1, kChunk / D);
  for (int64_t r0 = begin * S; r0 < end * S; r0 += rows_per_fill) {
    if (D <= kChunk) {  // whole rows r0 .. r0 + rows - 1 in one fill
      const int64_t rows = std::min(rows_per_fill, end * S - r0);
      PhiloxNormalFiller<opmath_t>::fill(key, r0 * D, rows * D, buffer);
      for (int64_t k = 0; k < rows; ++k) fn((r0 + k) / S, (r0 + k) * D, int64_t(0), D, buffer + k * D);
    } else {  // one row, kChunk columns at a time
      for (int64_t d0 = 0; d0 < D; d0 += kChunk) {
        const int64_t n = std::min(kChunk, D - d0);
        PhiloxNormalFiller<opmath_t>::fill(key, r0 * D + d0, n, buffer);
        fn(r0 / S, r0 * D + d0, d0, n, buffer);
      }
    }
  }
}

// z, and the noise it used when keep_noise (else an undefined tensor).
std::tuple<at::Tensor, at::Tensor> sample(const at::Tensor& mu, const at::Tensor& log_var, int64_t num_samples,
                                          const at::Tensor& seed, bool keep_noise) {
  const SampleProblem p = make_sample_problem(mu, log_var, num_samples, keep_noise);
  const uint64_t key = read_seed(seed);
  const int64_t B = p.batch, D = p.dim, S = p.samples;
  if (p.z.numel() == 0) return {p.z, p.noise};
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "reparameterize_cpu", [&] {
    using IO = VecIO<scalar_t>;
    using opmath_t = typename IO::opmath_t;
    using Vec = typename IO::Vec;
    const auto m = const_row_matrix<scalar_t>(p.mu);
    const auto l = const_row_matrix<scalar_t>(p.log_var);
    scalar_t* zp = p.z.data_ptr<scalar_t>();
    opmath_t* noise_out = keep_noise ? p.noise.data_ptr<opmath_t>() : nullptr;
    at::parallel_for(0, B, row_grain(4 * S * D), [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> mean(D), std(D);
      opmath_t eps[kChunk];
      int64_t loaded = -1;  // the batch row whose mean and std are in mean, std
      for_each_noise_span(key, static_cast<const opmath_t*>(nullptr), begin, end, S, D, eps,
                          [&](int64_t b, int64_t offset, int64_t d0, int64_t n, const opmath_t* e) {
        if (b != loaded) {
          for (const auto d : c10::irange(D)) mean[d] = static_cast<opmath_t>(m.row(b)[d]);
          row_std(l.row(b), D, std.data());
          loaded = b;
        }
        if (noise_out != nullptr) std::copy(e, e + n, noise_out + offset);
        for_each_column<IO::kWidth>(
            n,
            [&](int64_t j) {
              const Vec v = Vec::loadu(&mean[d0 + j]) + Vec::loadu(&std[d0 + j]) * Vec::loadu(e + j);
              IO::store(zp + offset + j, v);
            },
            [&](int64_t j) { zp[offset + j] = static_cast<scalar_t>(mean[d0 + j] + std[d0 + j] * e[j]); });
      });
    });
  });
  return {p.z, p.noise};
}

at::Tensor reparameterize_cpu(const at::Tensor& mu, const at::Tensor& log_var, int64_t num_samples,
                              const at::Tensor& seed) {
  return std::get<0>(sample(mu, log_var, num_samples, seed, /*keep_noise=*/false));
}

std::tuple<at::Tensor, at::Tensor> reparameterize_with_noise_cpu(const at::Tensor& mu, const at::Tensor& log_var,
                                                                 int64_t num_samples, const at::Tensor& seed) {
  return sample(mu, log_var, num_samples, seed, /*keep_noise=*/true);
}

// d z / d mu = 1 and d z / d log_var = 0.5 * std * eps, summed over samples.
std::tuple<at::Tensor, at::Tensor> reparameterize_backward_cpu(const at::Tensor& grad_z,
                                                               const at::Tensor& mu,
                                                               const at::Tensor& log_var,
                                                               const at::Tensor& seed,
                                                               const std::optional<at::Tensor>& noise) {
  const SampleGradProblem p = make_sample_grad_problem(grad_z, mu, log_var, seed, noise);
  const int64_t B = p.batch, D = p.dim, S = p.samples;
  const uint64_t key = read_seed(seed);
  if (p.g_mu.numel() == 0) return {p.g_mu, p.g_lv};
  PAF_DISPATCH_FLOATING(mu.scalar_type(), "reparameterize_backward_cpu", [&] {
    using IO = VecIO<scalar_t>;
    using opmath_t = typename IO::opmath_t;
    using Vec = typename IO::Vec;
    const auto l = const_row_matrix<scalar_t>(p.log_var);
    const scalar_t* gp = p.grad_z.const_data_ptr<scalar_t>();
    scalar_t* o_mu = p.g_mu.data_ptr<scalar_t>();
    scalar_t* o_lv = p.g_lv.data_ptr<scalar_t>();
    const opmath_t* saved = p.noise.defined() ? p.noise.const_data_ptr<opmath_t>() : nullptr;
    at::parallel_for(0, B, row_grain(4 * S * D), [&](int64_t begin, int64_t end) {
      std::vector<opmath_t> sum_g(D), sum_g_eps(D), sd(D);
      opmath_t eps[kChunk];
      int64_t current = -1;  // the batch row whose sums are being accumulated
      auto finish = [&](int64_t b) {  // writes row b's gradients and clears the sums
        row_std(l.row(b), D, sd.data());
        for (const auto d : c10::irange(D)) {
          o_mu[b * D + d] = static_cast<scalar_t>(sum_g[d]);
          o_lv[b * D + d] = static_cast<scalar_t>(opmath_t(0.5) * sd[d] * sum_g_eps[d]);
        }
        std::fill(sum_g.begin(), sum_g.end(), opmath_t(0));
        std::fill(sum_g_eps.begin(), sum_g_eps.end(), opmath_t(0));
      };
      for_each_noise_span(key, saved, begin, end, S, D, eps,
                          [&](int64_t b, int64_t offset, int64_t d0, int64_t n, const opmath_t* e) {
        if (b != current) {
          if (current >= 0) finish(current);
          current = b;
        }
        for_each_column<IO::kWidth>(
            n,
            [&](int64_t j) {
              const Vec gv = IO::load(gp + offset + j);
              (Vec::loadu(&sum_g[d0 + j]) + gv).store(&sum_g[d0 + j]);
              (Vec::loadu(&sum_g_eps[d0 + j]) + gv * Vec::loadu(e + j)).store(&sum_g_eps[d0 + j]);
            },
            [&](int64_t j) {
              const opmath_t gi = static_cast<opmath_t>(gp[offset + j]);
              sum_g[d0 + j] += gi;
              sum_g_eps[d0 + j] += gi * e[j];
            });
      });
      finish(current);
    });
  });
  return {p.g_mu, p.g_lv};
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) {
  m.impl("reparameterize", &reparameterize_cpu);
  m.impl("reparameterize_with_noise", &reparameterize_with_noise_cpu);
  m.impl("reparameterize_backward", &reparameterize_backward_cpu);
}

}  // namespace paf::cpu::reparameterize
