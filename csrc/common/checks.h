// Argument checks for code that nvcc also compiles: PAF_CHECK(cond, parts...)
// raises a RuntimeError (PAF_CHECK_VALUE: a ValueError) whose message is
// built from text made out of line (checks.cpp, compiled by the C++ compiler
// alone) and never with std::ostream. The first GPU run found why: in the
// nvcc-compiled CUDA files, TORCH_CHECK's stream of an integer or a double
// crashed the process (SIGSEGV in std::ostream::_M_insert<long>, reached
// from the message of a failed check) on the GPU machine's toolchain, where
// the CPU kernels raised. tests/test_nvcc_sources.py keeps TORCH_CHECK,
// c10::str and streams out of the sources nvcc compiles.
#pragma once

#include <c10/core/Device.h>
#include <c10/core/ScalarType.h>
#include <c10/macros/Macros.h>
#include <c10/util/ArrayRef.h>
#include <c10/util/string_view.h>

#include <string>
#include <type_traits>

namespace paf::check_detail {

std::string integer_text(long long value);
std::string unsigned_text(unsigned long long value);
std::string real_text(double value);  // as std::ostream writes it (%g)
std::string text(c10::IntArrayRef sizes);  // [2, 3]
std::string text(const c10::Device& device);
inline std::string text(c10::ScalarType type) { return c10::toString(type); }
inline std::string text(const char* s) { return s; }
inline std::string text(const std::string& s) { return s; }
inline std::string text(c10::string_view s) { return std::string(s.data(), s.size()); }
inline std::string text(bool b) { return b ? "true" : "false"; }

template <typename T, std::enable_if_t<std::is_arithmetic_v<T> || std::is_enum_v<T>, int> = 0>
std::string text(T value) {
  if constexpr (std::is_floating_point_v<T>) {
    return real_text(static_cast<double>(value));
  } else if constexpr (std::is_enum_v<T> || std::is_signed_v<T>) {
    return integer_text(static_cast<long long>(value));
  } else {
    return unsigned_text(static_cast<unsigned long long>(value));
  }
}

template <typename... Parts>
std::string join(const Parts&... parts) {
  std::string message;
  (message += ... += text(parts));
  return message;
}

[[noreturn]] void fail(const std::string& message);        // RuntimeError
[[noreturn]] void fail_value(const std::string& message);  // ValueError

}  // namespace paf::check_detail

#define PAF_CHECK(cond, ...)                                                      \
  do {                                                                            \
    if (C10_UNLIKELY(!(cond))) ::paf::check_detail::fail(::paf::check_detail::join(__VA_ARGS__)); \
  } while (false)

#define PAF_CHECK_VALUE(cond, ...)                                                      \
  do {                                                                                  \
    if (C10_UNLIKELY(!(cond))) ::paf::check_detail::fail_value(::paf::check_detail::join(__VA_ARGS__)); \
  } while (false)
