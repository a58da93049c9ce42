// log_likelihood_sum: per-sample summed log-likelihood. x [B, ...] against
// x_hat [B, S, ...] -> [B, S], the elementwise term and the feature sum in
// one pass, x read in place for every sample (no broadcast copy).
#include "../common/loglik_rows.h"
#include "../common/op_args.h"

#include <torch/library.h>

namespace paf {
namespace {

at::Tensor log_likelihood_sum_cpu(const at::Tensor& x, const at::Tensor& x_hat,
                                  c10::string_view likelihood_name) {
  const SumProblem s = make_sum_problem(x, x_hat);
  const Likelihood likelihood = parse_likelihood(likelihood_name);
  at::Tensor out = at::empty({s.batch, s.samples}, x.options());
  if (out.numel() == 0) return out;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    std::vector<opmath_t> sums(s.batch * s.samples);
    loglik_rows<scalar_t>(likelihood, const_row_matrix<scalar_t>(s.x),
                          const_row_matrix<scalar_t>(s.x_hat), s.samples, nullptr,
                          opmath_t(0), sums.data());
    scalar_t* o = out.data_ptr<scalar_t>();
    for (const auto r : c10::irange(sums.size())) o[r] = static_cast<scalar_t>(sums[r]);
  });
  return out;
}

// grad [B, S] -> grad * d/dx_hat, shaped like x_hat, or sum_s grad * d/dx,
// shaped like x (wrt_x).
at::Tensor log_likelihood_sum_backward_cpu(const at::Tensor& grad, const at::Tensor& x,
                                           const at::Tensor& x_hat,
                                           c10::string_view likelihood_name,
                                           bool wrt_x) {
  const SumProblem s = make_sum_problem(x, x_hat);
  at::Tensor g, out;
  std::tie(g, out) = sum_backward_buffers(s, grad, x, x_hat, wrt_x);
  const Likelihood likelihood = parse_likelihood(likelihood_name);
  if (out.numel() == 0) return out;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_backward_cpu", [&] {
    using IO = VecIO<scalar_t>;
    using opmath_t = typename IO::opmath_t;
    using Vec = typename IO::Vec;
    constexpr int64_t W = IO::kWidth;
    const auto xm = const_row_matrix<scalar_t>(s.x);
    const auto hm = const_row_matrix<scalar_t>(s.x_hat);
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int64_t F = s.features;
    dispatch_likelihood(likelihood, [&](auto tag) {
      using Term = LogLikelihood<decltype(tag)::value>;
      if (!wrt_x) {
        // One independent row per (b, s).
        at::parallel_for(0, s.batch * s.samples, row_grain(F), [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) {
            const scalar_t* xr = xm.row(r / s.samples);
            const scalar_t* hr = hm.row(r);
            scalar_t* orow = op + r * F;
            const opmath_t gs = static_cast<opmath_t>(gp[r]);
            const Vec gv(gs);
            int64_t j = 0;
            for (; j + W <= F; j += W) {
              IO::store(orow + j, gv * Term::grad_x_hat(IO::load(xr + j), IO::load(hr + j)));
            }
            for (; j < F; ++j) {
              orow[j] = static_cast<scalar_t>(
                  gs * Term::grad_x_hat(static_cast<opmath_t>(xr[j]),
                                        static_cast<opmath_t>(hr[j])));
            }
          }
        });
        return;
      }
      // wrt x: accumulate the S samples of row b in opmath, then store.
      at::parallel_for(0, s.batch, row_grain(F * s.samples), [&](int64_t begin, int64_t end) {
        std::vector<opmath_t> acc(F);
        for (int64_t b = begin; b < end; ++b) {
          std::fill(acc.begin(), acc.end(), opmath_t(0));
          const scalar_t* xr = xm.row(b);
          for (int64_t smp = 0; smp < s.samples; ++smp) {
            const int64_t r = b * s.samples + smp;
            const scalar_t* hr = hm.row(r);
            const opmath_t gs = static_cast<opmath_t>(gp[r]);
            const Vec gv(gs);
            int64_t j = 0;
            for (; j + W <= F; j += W) {
              const Vec a = Vec::loadu(acc.data() + j) +
                            gv * Term::grad_x(IO::load(xr + j), IO::load(hr + j));
              a.store(acc.data() + j);
            }
            for (; j < F; ++j) {
              acc[j] += gs * Term::grad_x(static_cast<opmath_t>(xr[j]),
                                          static_cast<opmath_t>(hr[j]));
            }
          }
          scalar_t* orow = op + b * F;
          for (const auto j : c10::irange(F)) orow[j] = static_cast<scalar_t>(acc[j]);
        }
      });
    });
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) {
  m.impl("log_likelihood_sum", &log_likelihood_sum_cpu);
  m.impl("log_likelihood_sum_backward", &log_likelihood_sum_backward_cpu);
}

}  // namespace paf
