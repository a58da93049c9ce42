// log_likelihood_sum: per-sample summed log-likelihood. x [B, ...] against
// x_hat [B, S, ...] (and x_log_var, broadcast to x_hat) -> [B, S], the
// elementwise term and the feature sum in one pass, x read in place for
// every sample (no broadcast copy).
#include "loglik_rows.h"
#include "../common/args/log_likelihood_sum.h"

#include <torch/library.h>

namespace paf::cpu::log_likelihood_sum {
namespace {

at::Tensor log_likelihood_sum_cpu(const at::Tensor& x, const at::Tensor& x_hat, c10::string_view likelihood_name,
                                  const std::optional<at::Tensor>& x_log_var) {
  const SumProblem s = make_sum_problem(x, x_hat, x_log_var, likelihood_name);
  at::Tensor out = at::empty({s.batch, s.samples}, x.options());
  if (out.numel() == 0) return out;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    std::vector<opmath_t> sums(s.batch * s.samples);
    loglik_rows<scalar_t>(s.likelihood, loglik_rows_of<scalar_t>(s.x, s.x_hat, s.x_log_var, s.samples),
                          LoglikGrads<scalar_t>{}, sums.data());
    scalar_t* o = out.data_ptr<scalar_t>();
    for (const auto r : c10::irange(sums.size())) o[r] = static_cast<scalar_t>(sums[r]);
  });
  return out;
}

// grad [B, S] -> grad * d/dx_hat, shaped like x_hat; grad * d/dx_log_var,
// per element of x_hat in the accumulation dtype; or sum_s grad * d/dx,
// shaped like x.
at::Tensor log_likelihood_sum_backward_cpu(const at::Tensor& grad, const at::Tensor& x, const at::Tensor& x_hat,
                                           c10::string_view likelihood_name, c10::string_view wrt_name,
                                           const std::optional<at::Tensor>& x_log_var) {
  const SumProblem s = make_sum_problem(x, x_hat, x_log_var, likelihood_name);
  const LikelihoodInput wrt = parse_wrt(wrt_name, s.likelihood);
  at::Tensor g, out;
  std::tie(g, out) = sum_backward_buffers(s, grad, x, x_hat, wrt);
  if (out.numel() == 0) return out;
  PAF_DISPATCH_FLOATING(x.scalar_type(), "log_likelihood_sum_backward_cpu", [&] {
    using IO = VecIO<scalar_t>;
    using opmath_t = typename IO::opmath_t;
    using Vec = typename IO::Vec;
    const LoglikRows<scalar_t> in = loglik_rows_of<scalar_t>(s.x, s.x_hat, s.x_log_var, s.samples);
    const scalar_t* gp = g.const_data_ptr<scalar_t>();
    const int64_t F = s.features;
    dispatch_likelihood(s.likelihood, [&](auto tag) {
      using Term = LikelihoodTerm<decltype(tag)::value>;
      // grad_r * the partial derivative of column j of row r, into out_row.
      auto row_partials = [&](int64_t r, auto* out_row, opmath_t grad_r, bool accumulate) {
        using out_t = std::remove_pointer_t<decltype(out_row)>;
        using OutIO = VecIO<out_t>;
        const scalar_t* xr = in.x_row(r);
        const scalar_t* hr = in.x_hat.row(r);
        const scalar_t* lr = in.log_var_row(r);
        const Vec gv(grad_r);
        for_each_column<IO::kWidth>(
            F,
            [&](int64_t j) {
              const Vec lv = Term::kReadsLogVar ? IO::load(lr + j) : Vec(0);
              Vec v = gv * Term::grad(wrt, IO::load(xr + j), IO::load(hr + j), lv);
              if (accumulate) v = v + OutIO::load(out_row + j);
              OutIO::store(out_row + j, v);
            },
            [&](int64_t j) {
              const opmath_t lv = Term::kReadsLogVar ? static_cast<opmath_t>(lr[j]) : opmath_t(0);
              opmath_t v = grad_r * Term::grad(wrt, static_cast<opmath_t>(xr[j]), static_cast<opmath_t>(hr[j]), lv);
              if (accumulate) v += static_cast<opmath_t>(out_row[j]);
              out_row[j] = static_cast<out_t>(v);
            });
      };
      if (wrt != LikelihoodInput::X) {
        // One independent row per (b, s).
        at::parallel_for(0, s.batch * s.samples, row_grain(F), [&](int64_t begin, int64_t end) {
          for (int64_t r = begin; r < end; ++r) {
            const opmath_t grad_r = static_cast<opmath_t>(gp[r]);
            if (wrt == LikelihoodInput::XLogVar) {
              row_partials(r, out.data_ptr<opmath_t>() + r * F, grad_r, false);
            } else {
              row_partials(r, out.data_ptr<scalar_t>() + r * F, grad_r, false);
            }
          }
        });
        return;
      }
      // wrt x: accumulate the S samples of row b in opmath, then store.
      at::parallel_for(0, s.batch, row_grain(F * s.samples), [&](int64_t begin, int64_t end) {
        std::vector<opmath_t> acc(F);
        for (int64_t b = begin; b < end; ++b) {
          for (int64_t smp = 0; smp < s.samples; ++smp) {
            const int64_t r = b * s.samples + smp;
            row_partials(r, acc.data(), static_cast<opmath_t>(gp[r]), smp > 0);
          }
          scalar_t* orow = out.data_ptr<scalar_t>() + b * F;
          if (s.samples == 0) std::fill(acc.begin(), acc.end(), opmath_t(0));
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

}  // namespace paf::cpu::log_likelihood_sum
