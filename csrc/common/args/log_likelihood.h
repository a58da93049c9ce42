// log_likelihood: its argument checks and problem shape, shared by its CPU kernel
// (csrc/cpu/log_likelihood.cpp) and its CUDA kernel (csrc/cuda/log_likelihood.cu), so both
// devices accept and refuse the same calls with the same messages.
#pragma once

#include "../likelihood.h"
#include "../tensor_args.h"

#include <ATen/TensorIterator.h>
#include <ATen/ExpandUtils.h>

#include <vector>
#include <optional>

namespace paf {

inline void check_log_likelihood_args(const at::Tensor& x, const at::Tensor& x_hat,
                                      const std::optional<at::Tensor>& x_log_var) {
  check_floating(x, "x");
  check_same_dtype_device(x, "x", x_hat, "x_hat");
  if (x_log_var) check_same_dtype_device(x, "x", *x_log_var, "x_log_var");
}

// The operands of the elementwise likelihood: x, x_hat and, when given,
// x_log_var (the likelihood then reads it: GaussianLogVar).
inline std::vector<at::Tensor> likelihood_operands(const at::Tensor& x, const at::Tensor& x_hat,
                                                   const std::optional<at::Tensor>& x_log_var) {
  std::vector<at::Tensor> operands = {x, x_hat};
  if (x_log_var) operands.push_back(*x_log_var);
  return operands;
}

// The TensorIterators of the forward (out = ll(x, x_hat[, x_log_var])) and
// the backward (out = f(grad, x, x_hat[, x_log_var])), writing a contiguous
// output in the broadcast shape (not TensorIterator's input-following
// layout, so the fake kernel's strides are the real ones). The iterator
// owns the output (it outlives this function); the inputs are the caller's.
inline at::TensorIterator likelihood_iterator(const std::vector<at::Tensor>& inputs) {
  std::vector<int64_t> shape = inputs[0].sizes().vec();
  for (const auto& t : inputs) shape = at::infer_size(shape, t.sizes());
  at::TensorIteratorConfig config;
  config.add_owned_output(at::empty(shape, inputs[0].options()));
  for (const auto& t : inputs) config.add_const_input(t);
  return config.build();
}

inline at::TensorIterator log_likelihood_iterator(const at::Tensor& x, const at::Tensor& x_hat,
                                                  const std::optional<at::Tensor>& x_log_var) {
  check_log_likelihood_args(x, x_hat, x_log_var);
  return likelihood_iterator(likelihood_operands(x, x_hat, x_log_var));
}

inline at::TensorIterator log_likelihood_backward_iterator(const at::Tensor& grad, const at::Tensor& x,
                                                           const at::Tensor& x_hat,
                                                           const std::optional<at::Tensor>& x_log_var) {
  check_log_likelihood_args(x, x_hat, x_log_var);
  check_same_dtype_device(x, "x", grad, "grad");
  std::vector<at::Tensor> operands = likelihood_operands(x, x_hat, x_log_var);
  operands.insert(operands.begin(), grad);
  return likelihood_iterator(operands);
}

}  // namespace paf
