// Shared mechanics of the autograd kernels (csrc/autograd/<op>.cpp): one
// torch::autograd::Function per op, registered for the Autograd key in C++
// so that neither the forward nor the backward of an op passes through
// Python. Each Function calls the op (and its backward op) through the
// dispatcher below autograd, so the device kernels, the fake kernels
// (pyautoencoder_fast/_ops/<op>.py) and tracing all see ordinary op calls.
#pragma once

#include <ATen/ExpandUtils.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/impl/TorchDispatchModeTLS.h>
#include <torch/autograd.h>
#include <torch/library.h>

#include <optional>

namespace paf::autograd {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

// PAF_OP(name, Signature): the typed dispatcher handle of
// pyautoencoder_fast::name, looked up once (a static per call site).
#define PAF_OP(name, ...)                                                        \
  ([]() -> const c10::TypedOperatorHandle<__VA_ARGS__>& {                        \
    static const auto handle = c10::Dispatcher::singleton()                      \
                                   .findSchemaOrThrow("pyautoencoder_fast::" #name, "") \
                                   .typed<__VA_ARGS__>();                        \
    return handle;                                                               \
  }())

// A gradient computed in a broadcast shape, reduced to an input's shape.
inline at::Tensor sum_to(const at::Tensor& grad, const at::Tensor& input) {
  return grad.defined() ? at::sum_to(grad, input.sym_sizes()) : grad;
}

inline std::optional<at::Tensor> optional(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// Whether the values of t may be read on the host now: a real CPU tensor,
// with no tracing mode or tensor subclass (fake, functional) around it.
inline bool values_readable_on_host(const at::Tensor& t) {
  constexpr c10::DispatchKeySet tracing_keys({c10::DispatchKey::Python, c10::DispatchKey::PythonTLSSnapshot,
                                              c10::DispatchKey::Functionalize});
  return t.defined() && t.device().is_cpu() && t.layout() == at::kStrided && t.has_storage() &&
         !t.key_set().has_any(tracing_keys) && !c10::impl::TorchDispatchModeTLS::any_modes_set();
}

}  // namespace paf::autograd
