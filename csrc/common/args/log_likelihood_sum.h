// log_likelihood_sum: its argument checks and problem shape, shared by its CPU kernel
// (csrc/cpu/log_likelihood_sum.cpp) and its CUDA kernel (csrc/cuda/log_likelihood_sum.cu), so both
// devices accept and refuse the same calls with the same messages.
#pragma once

#include "../likelihood.h"
#include "../tensor_args.h"

#include <ATen/OpMathType.h>

#include <utility>
#include <vector>
#include <optional>

namespace paf {

// x_log_var against x_hat rows.
// A log-variance broadcast against x_hat [B, S, ...] as the rows the
// row kernels read: row r = (b, s) of x_hat pairs with row r / divisor, so
// a log-variance shared by the S samples ([B, 1, ...] or [...] per
// feature: divisor S) is read in place like x, and one that is the same
// for every row (per feature, or a 0-d scalar) has row stride 0. Only a
// log-variance broadcast within the features is copied, one row's worth
// per distinct row. Undefined rows (divisor 1) when not given.
// Whether a tensor of shape `from` broadcasts to `to` (without growing it).
inline bool broadcasts_to(at::IntArrayRef from, at::IntArrayRef to) {
  if (from.size() > to.size()) return false;
  const size_t offset = to.size() - from.size();
  for (size_t i = 0; i < from.size(); ++i) {
    if (from[i] != 1 && from[i] != to[offset + i]) return false;
  }
  return true;
}

struct LogVarRows {
  at::Tensor rows;  // [B, F] (divisor S) or [B * S, F] (divisor 1)
  int64_t divisor = 1;
};

inline LogVarRows log_var_rows(const std::optional<at::Tensor>& x_log_var, const at::Tensor& x_hat, int64_t batch,
                               int64_t samples, int64_t features) {
  if (!x_log_var) return {};
  const at::Tensor& lv = *x_log_var;
  check_same_dtype_device(x_hat, "x_hat", lv, "x_log_var");
  const auto shape = x_hat.sizes();
  PAF_CHECK(broadcasts_to(lv.sizes(), shape), "x_log_var: shape ", lv.sizes(), " does not broadcast to x_hat's ",
            shape);
  std::vector<int64_t> padded(x_hat.dim() - lv.dim(), 1);  // lv's sizes aligned with x_hat's
  padded.insert(padded.end(), lv.sizes().begin(), lv.sizes().end());
  at::Tensor v = lv.reshape(padded);
  std::vector<int64_t> dense = padded;  // the feature dimensions at full size
  std::copy(shape.begin() + 2, shape.end(), dense.begin() + 2);
  if (dense != padded) v = v.expand(dense).contiguous();
  if (padded[1] == 1) {  // the same for every sample: x's rows
    std::vector<int64_t> per_x = dense;
    per_x.erase(per_x.begin() + 1);
    per_x[0] = batch;
    return {as_rows(v.select(1, 0).expand(per_x), batch, features), samples};
  }
  return {as_rows(v.expand(shape), batch * samples, features), 1};
}

// The problem.
// x [B, ...] against x_hat [B, S, ...] (and x_log_var broadcast to x_hat):
// row r of x_hat viewed as [B*S, F] pairs with row r / S of x.
struct SumProblem {
  int64_t batch, samples, features;
  Likelihood likelihood;
  at::Tensor x, x_hat;  // row views: x [B, F], x_hat [B*S, F]
  LogVarRows x_log_var;
};

inline SumProblem make_sum_problem(const at::Tensor& x, const at::Tensor& x_hat,
                                   const std::optional<at::Tensor>& x_log_var, c10::string_view likelihood) {
  check_floating(x, "x");
  check_same_dtype_device(x, "x", x_hat, "x_hat");
  PAF_CHECK(x.dim() >= 1, "x: expected shape [B, ...], got a 0-d tensor");
  PAF_CHECK(x_hat.dim() == x.dim() + 1 && x_hat.size(0) == x.size(0) &&
                  x_hat.sizes().slice(2) == x.sizes().slice(1),
              "x_hat: expected shape [B, S, ...] matching x ", x.sizes(), ", got ", x_hat.sizes());
  const int64_t batch = x.size(0);
  const int64_t samples = x_hat.size(1);
  const int64_t features = batch > 0 ? x.numel() / batch : c10::multiply_integers(x.sizes().slice(1));
  return {batch,
          samples,
          features,
          parse_likelihood(likelihood, x_log_var.has_value()),
          as_rows(x, batch, features),
          as_rows(x_hat, batch * samples, features),
          log_var_rows(x_log_var, x_hat, batch, samples, features)};
}

// The backward's grad [B, S], contiguous, and its output: shaped like x
// (wrt x) or x_hat (wrt x_hat; wrt x_log_var too, per element of x_hat in
// the accumulation dtype, which autograd sums to x_log_var's shape).
inline std::pair<at::Tensor, at::Tensor> sum_backward_buffers(const SumProblem& s, const at::Tensor& grad,
                                                              const at::Tensor& x, const at::Tensor& x_hat,
                                                              LikelihoodInput wrt) {
  check_same_dtype_device(x, "x", grad, "grad");
  check_shape(grad, {s.batch, s.samples}, "grad");
  if (wrt == LikelihoodInput::XLogVar) {
    return {grad.contiguous(), at::empty(x_hat.sizes(), x.options().dtype(at::toOpMathType(x.scalar_type())))};
  }
  return {grad.contiguous(), at::empty(wrt == LikelihoodInput::X ? x.sizes() : x_hat.sizes(), x.options())};
}

}  // namespace paf
