// The out-of-line half of checks.h: message text and the throw, compiled by
// the C++ compiler (never nvcc) into _C and into each CPU kernel library.
#include "checks.h"

#include <c10/util/Exception.h>

#include <cstdio>

namespace paf::check_detail {

std::string integer_text(long long value) { return std::to_string(value); }

std::string unsigned_text(unsigned long long value) { return std::to_string(value); }

std::string real_text(double value) {
  char buffer[32];
  std::snprintf(buffer, sizeof(buffer), "%g", value);
  return buffer;
}

std::string text(c10::IntArrayRef sizes) {
  std::string s = "[";
  for (size_t i = 0; i < sizes.size(); ++i) s += (i ? ", " : "") + std::to_string(sizes[i]);
  return s + "]";
}

std::string text(const c10::Device& device) { return device.str(); }

void fail(const std::string& message) { TORCH_CHECK(false, message); }

void fail_value(const std::string& message) { TORCH_CHECK_VALUE(false, message); }

}  // namespace paf::check_detail
