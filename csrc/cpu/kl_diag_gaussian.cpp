// kl_diag_gaussian: KL(q || p) between diagonal Gaussians, elementwise or
// summed over the last dim, with optional clamping of both log-variances.
// p = N(0, I) when mu_p and log_var_p are both None; one None means 0.
#include "../common/args/kl_diag_gaussian.h"
#include "kl_columns.h"

#include <torch/library.h>

#include <limits>

namespace paf::cpu::kl_diag_gaussian {
namespace {

template <typename scalar_t>
struct KlRows {
  RowMatrix<const scalar_t> mu_q, lv_q, mu_p, lv_p;
  explicit KlRows(const KlProblem& p)
      : mu_q(const_row_matrix<scalar_t>(p.mu_q)),
        lv_q(const_row_matrix<scalar_t>(p.lv_q)),
        mu_p(p.standard() ? mu_q : const_row_matrix<scalar_t>(p.mu_p)),
        lv_p(p.standard() ? lv_q : const_row_matrix<scalar_t>(p.lv_p)) {}
  KlRowPtrs<scalar_t> row(int64_t r, bool standard) const {
    return {mu_q.row(r), lv_q.row(r), standard ? nullptr : mu_p.row(r),
            standard ? nullptr : lv_p.row(r)};
  }
};

at::Tensor kl_diag_gaussian_cpu(const at::Tensor& mu_q, const at::Tensor& log_var_q,
                                const std::optional<at::Tensor>& mu_p,
                                const std::optional<at::Tensor>& log_var_p, bool reduce_sum,
                                std::optional<double> clamp_min,
                                std::optional<double> clamp_max) {
  const KlProblem p = make_kl_problem(mu_q, log_var_q, mu_p, log_var_p, clamp_min, clamp_max);
  at::Tensor out = at::empty(p.out_shape(reduce_sum), mu_q.options());
  if (out.numel() == 0) return out;
  if (p.cols == 0) return out.zero_();  // empty sum
  PAF_DISPATCH_FLOATING(mu_q.scalar_type(), "kl_diag_gaussian_cpu", [&] {
    const KlRows<scalar_t> rows(p);
    scalar_t* o = out.data_ptr<scalar_t>();
    auto run = [&](auto standard_tag) {
      constexpr bool kStandard = decltype(standard_tag)::value;
      at::parallel_for(0, p.rows, row_grain(p.cols), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const auto in = rows.row(r, kStandard);
          if (reduce_sum) {
            o[r] = static_cast<scalar_t>(kl_row_sum<kStandard>(in, p.cols, p.lo, p.hi));
          } else {
            scalar_t* orow = o + r * p.cols;
            for_each_kl_column<kStandard>(in, p.cols, p.lo, p.hi,
                                          [&](int64_t j, auto mq, auto lq, auto mp, auto lp) {
                                            store_at(orow, j, kl_value<kStandard>(mq, lq, mp, lp));
                                          });
          }
        }
      });
    };
    if (p.standard()) {
      run(std::true_type{});
    } else {
      run(std::false_type{});
    }
  });
  return out;
}

// Gradients in the broadcast shape [..., D] for (mu_q, log_var_q, mu_p,
// log_var_p); the p-gradients are empty when p is N(0, I). Clamped
// log-variances pass gradient only inside [clamp_min, clamp_max], as
// torch.clamp does, and at the bounds as the installed torch's does
// (clamp_grad_at_bounds).
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> kl_diag_gaussian_backward_cpu(
    const at::Tensor& grad, const at::Tensor& mu_q, const at::Tensor& log_var_q,
    const std::optional<at::Tensor>& mu_p, const std::optional<at::Tensor>& log_var_p,
    bool reduce_sum, std::optional<double> clamp_min, std::optional<double> clamp_max, bool clamp_grad_at_bounds) {
  const KlProblem p = make_kl_problem(mu_q, log_var_q, mu_p, log_var_p, clamp_min, clamp_max);
  const KlGrads grads = make_kl_grads(p, mu_q, grad, reduce_sum);
  if (grads.mu_q.numel() == 0) return grads.outputs();
  const bool with_p = !p.standard();
  PAF_DISPATCH_FLOATING(mu_q.scalar_type(), "kl_diag_gaussian_backward_cpu", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    const KlRows<scalar_t> rows(p);
    const auto gm = const_row_matrix<scalar_t>(grads.grad_rows);  // one value per row (reduce_sum) or element
    scalar_t* o_mu_q = grads.mu_q.data_ptr<scalar_t>();
    scalar_t* o_lv_q = grads.lv_q.data_ptr<scalar_t>();
    scalar_t* o_mu_p = with_p ? grads.mu_p.data_ptr<scalar_t>() : nullptr;
    scalar_t* o_lv_p = with_p ? grads.lv_p.data_ptr<scalar_t>() : nullptr;
    const ClampGradGate<opmath_t> gate = p.clamp_grad_gate<opmath_t>(clamp_grad_at_bounds);
    auto run = [&](auto standard_tag) {
      constexpr bool kStandard = decltype(standard_tag)::value;
      at::parallel_for(0, p.rows, row_grain(p.cols), [&](int64_t begin, int64_t end) {
        for (int64_t r = begin; r < end; ++r) {
          const auto in = rows.row(r, kStandard);
          const scalar_t* grow = gm.row(r);
          const int64_t off = r * p.cols;
          // Raw (unclamped) log-variances decide where the clamp passes gradient.
          for_each_kl_column<kStandard>(in, p.cols, p.lo, p.hi, [&](int64_t j, auto mq, auto lq, auto mp, auto lp) {
            using T = decltype(mq);
            const T g = reduce_sum ? T(static_cast<opmath_t>(grow[0])) : load_at<scalar_t, T>(grow, j);
            auto gated = [&](const scalar_t* raw, T grad) {
              const T v = load_at<scalar_t, T>(raw, j);
              if constexpr (std::is_arithmetic_v<T>) {
                return gate(v, grad);
              } else {
                return gate.active ? grad & (v >= T(gate.lo)) & (v <= T(gate.hi)) : grad;
              }
            };
            T d_mu_q, d_lv_q, d_mu_p, d_lv_p;
            if constexpr (kStandard) {
              kl_standard_and_grad(mq, lq, d_mu_q, d_lv_q);
            } else {
              kl_general_and_grad(mq, lq, mp, lp, d_mu_q, d_lv_q, d_mu_p, d_lv_p);
              store_at(o_mu_p + off, j, g * d_mu_p);
              store_at(o_lv_p + off, j, gated(in.lv_p, g * d_lv_p));
            }
            store_at(o_mu_q + off, j, g * d_mu_q);
            store_at(o_lv_q + off, j, gated(in.lv_q, g * d_lv_q));
          });
        }
      });
    };
    if (p.standard()) {
      run(std::true_type{});
    } else {
      run(std::false_type{});
    }
  });
  return grads.outputs();
}

}  // namespace

TORCH_LIBRARY_IMPL(pyautoencoder_fast, CPU, m) {
  m.impl("kl_diag_gaussian", &kl_diag_gaussian_cpu);
  m.impl("kl_diag_gaussian_backward", &kl_diag_gaussian_backward_cpu);
}

}  // namespace paf::cpu::kl_diag_gaussian
