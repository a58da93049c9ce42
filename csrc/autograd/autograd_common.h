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
#include <torch/csrc/autograd/functions/basic_ops.h>
#include <torch/library.h>

#include <memory>
#include <optional>
#include <type_traits>
#include <utility>

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

// Whether the backward should run in float32: float16/bfloat16 inputs of
// which one is broadcast (its gradient is then a sum over the broadcast
// dimensions). The kernels compute in float32 anyway; running them on
// float32 copies lets sum_to add unrounded terms and round once, instead of
// adding terms already rounded to the half type (which loses the sum where
// they cancel).
inline bool reduce_in_float32(const variable_list& inputs) {
  at::DimVector shape;
  bool reduced_type = false;
  for (const auto& t : inputs) {
    if (!t.defined()) continue;
    reduced_type = at::isReducedFloatingType(t.scalar_type());
    shape = shape.empty() ? at::DimVector(t.sizes()) : at::infer_size_dimvector(shape, t.sizes());
  }
  if (!reduced_type) return false;
  return std::any_of(inputs.begin(), inputs.end(),
                     [&](const at::Tensor& t) { return t.defined() && t.sizes() != at::IntArrayRef(shape); });
}

inline at::Tensor to_float32(const at::Tensor& t) { return t.defined() ? t.to(at::kFloat) : t; }

inline std::optional<at::Tensor> optional(const at::Tensor& t) {
  return t.defined() ? std::optional<at::Tensor>(t) : std::nullopt;
}

// Whether t is a real tensor with memory, on any device, with no tracing mode
// or tensor subclass (fake, functional) around it: what may be mutated in
// place without a tracer having to follow.
inline bool is_plain_tensor(const at::Tensor& t) {
  constexpr c10::DispatchKeySet tracing_keys({c10::DispatchKey::Python, c10::DispatchKey::PythonTLSSnapshot,
                                              c10::DispatchKey::Functionalize});
  return t.defined() && t.layout() == at::kStrided && t.has_storage() && !t.key_set().has_any(tracing_keys) &&
         !c10::impl::TorchDispatchModeTLS::any_modes_set();
}

// Whether the values of t may be read on the host now: a plain CPU tensor.
inline bool values_readable_on_host(const at::Tensor& t) { return is_plain_tensor(t) && t.device().is_cpu(); }

// Whether autograd records a node for a call with these inputs: grad mode on
// and one of them requiring grad. (Read before Function::apply: its forward
// runs with grad mode off.)
inline bool records_grad(std::initializer_list<const at::Tensor*> inputs) {
  return at::GradMode::is_enabled() &&
         std::any_of(inputs.begin(), inputs.end(), [](const at::Tensor* t) { return t->defined() && t->requires_grad(); });
}

// The derivative buffers a forward op writes for its node's backward (the
// ops with need_grad). Whose they are decides what the backward may do:
// - kOwned: autograd asked for them and the caller did not. The op returns
//   empty placeholders in their place, so nothing but the node holds them:
//   its first backward scales them in place and hands them on as the
//   gradients (no second buffer-sized tensor), and a later backward
//   (retain_graph) recomputes, since the first may have changed or given
//   them away.
// - kShared: the caller asked for them (need_grad): they are its outputs
//   too, and the node only reads them (scaled out of place, every backward).
// - kNone: no buffers (nothing recorded); a backward recomputes.
// No returned tensor is ever changed, and every in-place write is to a
// tensor only the node holds (or through an op whose schema declares it).
enum class Buffers : int64_t { kNone, kShared, kOwned };

inline void save_buffers(AutogradContext* ctx, Buffers buffers) {
  ctx->saved_data["buffers"] = static_cast<int64_t>(buffers);
}

// The buffers as this backward may use them: kOwned only the first time,
// kNone after that (and for kOwned's later backwards).
inline Buffers take_buffers(AutogradContext* ctx) {
  const auto buffers = static_cast<Buffers>(ctx->saved_data["buffers"].toInt());
  if (buffers != Buffers::kOwned) return buffers;
  ctx->saved_data["buffers"] = static_cast<int64_t>(Buffers::kNone);
  return buffers;
}

// An op's output in place of a buffer the caller did not ask for: what the
// op returns without need_grad (empty, `like`'s options).
inline at::Tensor placeholder(const at::Tensor& like) { return at::empty({0}, like.options()); }

// Whether a backward may write into the buffer t: owned by the node, and a
// plain tensor (under a tracer the functional form is traced instead).
inline bool writable(Buffers buffers, const at::Tensor& t) {
  return buffers == Buffers::kOwned && is_plain_tensor(t);
}

// buffer * factor: in place when the buffer is writable (below
// ADInplaceOrView, so that its version, which a retain_graph backward checks
// when it unpacks the saved tensors, stays), else a new tensor.
inline at::Tensor scaled(Buffers buffers, const at::Tensor& buffer, const at::Tensor& factor) {
  if (!writable(buffers, buffer)) return buffer.mul(factor);
  at::AutoDispatchBelowADInplaceOrView below_autograd;
  at::Tensor result = buffer;
  return result.mul_(factor);
}

// An input's gradient from a forward's per-element derivative d (the
// count ops): d times the incoming gradient (per element, or per row of an
// output summed over the last dimension), summed down to the input's shape
// in d's accumulation dtype, then cast to the input's. d is scaled in place
// when `buffers` allow it (see scaled).
inline at::Tensor chain_per_element(Buffers buffers, const at::Tensor& d, const at::Tensor& grad, bool reduce_sum,
                                    const at::Tensor& input) {
  if (reduce_sum && d.dim() >= 2 && input.dim() >= 1 && input.sym_size(-1) == d.sym_size(-1) &&
      input.sym_numel() == d.sym_size(-1)) {
    // One value per column (a per-gene theta) under a summed output: the
    // rows' derivatives weighted by their gradients, one matrix-vector
    // product instead of a [rows, G] product and its sum.
    const at::Tensor columns = at::mv(d.flatten(0, -2).t(), grad.flatten().to(d.scalar_type()));
    return columns.reshape_symint(input.sym_sizes()).to(input.scalar_type());
  }
  return sum_to(scaled(buffers, d, reduce_sum ? grad.unsqueeze(-1) : grad), input).to(input.scalar_type());
}

// The pointer the autograd graph holds its nodes by, read off torch's own
// Edge rather than guessed from a version number: std::shared_ptr<Node> in
// torch 2.11 and 2.12, c10::intrusive_ptr<Node> from 2.13 on.
using NodePtr = decltype(torch::autograd::Edge::function);

template <class NodeT, class... Args>
NodePtr make_node(Args&&... args) {
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<torch::autograd::Node>>) {
    return std::make_shared<NodeT>(std::forward<Args>(args)...);
  } else {
    return c10::make_intrusive<NodeT>(std::forward<Args>(args)...);
  }
}

// The gradients a backward returns, made once-differentiable: the backward
// kernels have no derivatives of their own, so while the graph of the
// gradient is being built (create_graph=True) each gradient gets a node
// that raises if anything differentiates through it, instead of a gradient
// autograd would silently treat as constant (None or zero downstream). The
// node's edges lead to what the gradient depends on (the saved tensors and
// the incoming gradients), so torch.autograd.grad(..., inputs) reaches it.
inline variable_list first_order_only(variable_list grads, const variable_list& saved,
                                      const variable_list& grad_outputs, const char* op) {
  if (!at::GradMode::is_enabled()) return grads;
  torch::autograd::edge_list edges = torch::autograd::collect_next_edges(saved, grad_outputs);
  if (std::none_of(edges.begin(), edges.end(), [](const auto& e) { return e.is_valid(); })) return grads;
  NodePtr refuse = make_node<torch::autograd::Error>(
      std::string("pyautoencoder_fast::") + op +
          ": double backward (differentiating its gradient) is not supported; run it under "
          "pyautoencoder_fast.use_backend('reference'), whose PyTorch ops differentiate twice",
      std::move(edges));
  for (auto& g : grads) {
    if (!g.defined()) continue;
    g = g.detach();
    torch::autograd::create_gradient_edge(g, refuse);
  }
  return grads;
}

}  // namespace paf::autograd
