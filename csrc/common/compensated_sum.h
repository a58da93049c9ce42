// A running double sum with Neumaier compensation: the error of adding
// millions of partial sums stays at a few units of double rounding.
// Infinite and NaN partial sums propagate as in plain addition. Host and
// device: the CPU row sums and the CUDA block combinations use it alike.
#pragma once

#include <c10/macros/Macros.h>

namespace paf {

class CompensatedSum {
 public:
  C10_HOST_DEVICE C10_ALWAYS_INLINE void add(double v) {
    const double t = sum_ + v;
    compensation_ += magnitude(sum_) >= magnitude(v) ? (sum_ - t) + v : (v - t) + sum_;
    sum_ = t;
  }
  C10_HOST_DEVICE C10_ALWAYS_INLINE double value() const {
    return sum_ - sum_ == 0.0 ? sum_ + compensation_ : sum_;  // (x - x == 0: finite x)
  }

 private:
  C10_HOST_DEVICE static C10_ALWAYS_INLINE double magnitude(double v) { return v < 0.0 ? -v : v; }
  double sum_ = 0.0, compensation_ = 0.0;
};

}  // namespace paf
