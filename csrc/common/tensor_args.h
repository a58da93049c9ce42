// Mechanics shared by the CPU and CUDA kernels on the host side: dtype
// dispatch, argument checks and [rows, cols] row views of tensors.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include "checks.h"

#include <cstdint>
#include <optional>
#include <type_traits>

namespace paf {

// Every op accepts the four floating dtypes.
#define PAF_DISPATCH_FLOATING(TYPE, NAME, ...)                          \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, \
                                  __VA_ARGS__)

// Calls fn(std::true_type{}) or fn(std::false_type{}): a runtime flag as a
// compile-time one (one instantiation of fn's body per value).
template <typename Fn>
decltype(auto) dispatch_bool(bool flag, Fn&& fn) {
  if (flag) return fn(std::true_type{});
  return fn(std::false_type{});
}

// ---------------------------------------------------------------- checks
// The Python layer validates arguments with friendlier messages; these
// checks keep direct torch.ops calls from reading out of bounds.
inline void check_floating(const at::Tensor& t, const char* name) {
  PAF_CHECK(t.defined(), name, ": expected a tensor, got None");
  PAF_CHECK(at::isFloatingType(t.scalar_type()), name,
              ": expected a floating-point tensor, got dtype ",
              t.scalar_type());
}

inline void check_same_dtype_device(const at::Tensor& ref, const char* ref_name,
                                    const at::Tensor& t, const char* name) {
  PAF_CHECK(t.scalar_type() == ref.scalar_type(), name, ": dtype ",
              t.scalar_type(), " differs from ", ref_name, "'s ",
              ref.scalar_type());
  PAF_CHECK(t.device() == ref.device(), name, ": device ", t.device(),
              " differs from ", ref_name, "'s ", ref.device());
}

inline void check_dim(const at::Tensor& t, int64_t dim, const char* name) {
  PAF_CHECK(t.dim() == dim, name, ": expected ", dim,
              " dimensions, got shape ", t.sizes());
}

inline void check_shape(const at::Tensor& t, at::IntArrayRef shape,
                        const char* name) {
  PAF_CHECK(t.sizes() == shape, name, ": expected shape ", shape,
              ", got ", t.sizes());
}

// ------------------------------------------------------------- row views
// A [rows, cols] matrix whose columns are contiguous. Rows may have any
// stride, 0 included, so a tensor broadcast over rows costs no copy.
template <typename T>
struct RowMatrix {
  T* data;
  int64_t rows;
  int64_t cols;
  int64_t row_stride;
  C10_HOST_DEVICE T* row(int64_t r) const { return data + r * row_stride; }
};

// Views `t` as [rows, cols]; copies only if the column dimension is strided
// (zero-stride rows, i.e. inputs expanded over batch/samples, stay in place).
inline at::Tensor as_rows(const at::Tensor& t, int64_t rows, int64_t cols) {
  at::Tensor m = t.reshape({rows, cols});
  if (cols > 1 && m.stride(1) != 1) m = m.contiguous();
  if (rows > 1 && cols > 0 && m.stride(0) != 0 && m.stride(0) < cols) {
    m = m.contiguous();  // overlapping rows (unusual as_strided inputs)
  }
  return m;
}

template <typename T>
RowMatrix<T> row_matrix(const at::Tensor& m) {
  TORCH_INTERNAL_ASSERT(m.dim() == 2);
  return {m.data_ptr<T>(), m.size(0), m.size(1),
          m.size(0) > 1 ? m.stride(0) : m.size(1)};
}

template <typename T>
RowMatrix<const T> const_row_matrix(const at::Tensor& m) {
  TORCH_INTERNAL_ASSERT(m.dim() == 2);
  return {m.const_data_ptr<T>(), m.size(0), m.size(1),
          m.size(0) > 1 ? m.stride(0) : m.size(1)};
}

// Reads an optional double argument, with a default for "not given".
inline double value_or(const std::optional<double>& v, double fallback) {
  return v.has_value() ? *v : fallback;
}

}  // namespace paf
