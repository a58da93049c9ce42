// count_log_likelihood: its argument checks and problem shape, shared by its CPU kernel
// (csrc/cpu/count_log_likelihood.cpp) and its CUDA kernel (csrc/cuda/count_log_likelihood.cu), so both
// devices accept and refuse the same calls with the same messages.
#pragma once

#include "../likelihood.h"
#include "../tensor_args.h"

#include <ATen/ExpandUtils.h>
#include <ATen/OpMathType.h>

#include <cmath>
#include <tuple>
#include <vector>
#include <optional>

namespace paf {

// The count ops' arguments broadcast to one [rows, G] shape (G: the last
// dimension, the genes) and read as row views (a parameter broadcast over
// rows, e.g. theta [G], costs no copy); their outputs: the log-pmf per
// element or summed over G, and the partial derivatives per element in the
// accumulation dtype (so that the sum over a broadcast parameter's rows adds
// unrounded terms), empty when not asked.
struct CountRows {
  std::vector<int64_t> shape;
  int64_t rows = 0, cols = 0;
  CountRows(const std::vector<const at::Tensor*>& args, const char* first_name) {
    shape = args[0]->sizes().vec();
    for (const auto* t : args) shape = at::infer_size(shape, t->sizes());
    PAF_CHECK(!shape.empty(), first_name, ": expected at least 1 dimension (the genes), got 0-d arguments");
    cols = shape.back();
    rows = c10::multiply_integers(at::IntArrayRef(shape).slice(0, shape.size() - 1));
  }
  at::Tensor of(const at::Tensor& t) const { return as_rows(t.expand(shape), rows, cols); }
  at::Tensor output(const at::Tensor& like, bool reduce_sum) const {
    std::vector<int64_t> out_shape = shape;
    if (reduce_sum) out_shape.pop_back();
    return at::empty(out_shape, like.options());
  }
  at::Tensor grad_buffer(const at::Tensor& like, bool wanted) const {
    const auto options = like.options().dtype(at::toOpMathType(like.scalar_type()));
    return wanted ? at::empty(shape, options) : at::empty({0}, options);
  }
};

// Counts x against the parameters mu, theta (nb, zinb) and zi_logits
// (zinb) as CountRows. x's derivative (need_grad_x) comes with the
// parameters' (need_grad).
struct CountProblem {
  CountLikelihood likelihood;
  double eps;
  std::vector<int64_t> shape;
  int64_t rows = 0, cols = 0;
  at::Tensor x, mu, theta, zi_logits;  // [rows, G]; theta / zi_logits undefined when not used
  at::Tensor out, d_x, d_mu, d_theta, d_zi_logits;
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> outputs() const {
    return {out, d_x, d_mu, d_theta, d_zi_logits};
  }
};

inline CountProblem make_count_problem(const at::Tensor& x, const at::Tensor& mu,
                                       const std::optional<at::Tensor>& theta,
                                       const std::optional<at::Tensor>& zi_logits, c10::string_view likelihood,
                                       double eps, bool reduce_sum, bool need_grad, bool need_grad_x) {
  CountProblem p;
  p.likelihood = parse_count_likelihood(likelihood);
  check_floating(mu, "mu");
  check_same_dtype_device(mu, "mu", x, "x");
  const bool wants_theta = has_theta(p.likelihood), wants_zi = has_zi_logits(p.likelihood);
  PAF_CHECK_VALUE(theta.has_value() == wants_theta, "theta: ", wants_theta ? "required" : "not used",
                  " by likelihood '", std::string(likelihood), "'");
  PAF_CHECK_VALUE(zi_logits.has_value() == wants_zi, "zi_logits: ", wants_zi ? "required" : "not used",
                  " by likelihood '", std::string(likelihood), "'");
  PAF_CHECK_VALUE(std::isfinite(eps) && eps >= 0, "eps: expected a finite number >= 0, got ", eps);
  p.eps = eps;
  std::vector<const at::Tensor*> all = {&x, &mu};
  if (theta) {
    check_same_dtype_device(mu, "mu", *theta, "theta");
    all.push_back(&*theta);
  }
  if (zi_logits) {
    check_same_dtype_device(mu, "mu", *zi_logits, "zi_logits");
    all.push_back(&*zi_logits);
  }
  const CountRows rows(all, "mu");
  p.shape = rows.shape, p.rows = rows.rows, p.cols = rows.cols;
  p.x = rows.of(x);
  p.mu = rows.of(mu);
  if (theta) p.theta = rows.of(*theta);
  if (zi_logits) p.zi_logits = rows.of(*zi_logits);
  p.out = rows.output(mu, reduce_sum);
  need_grad = need_grad || need_grad_x;
  p.d_x = rows.grad_buffer(mu, need_grad_x);
  p.d_mu = rows.grad_buffer(mu, need_grad);
  p.d_theta = rows.grad_buffer(mu, need_grad && wants_theta);
  p.d_zi_logits = rows.grad_buffer(mu, need_grad && wants_zi);
  return p;
}

}  // namespace paf
