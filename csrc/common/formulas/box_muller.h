// The per-element math of Box-Muller sampling (part of common/formulas.h: include
// cpu/elementwise_math.h or cuda/device_math.cuh, which declare the paf::vm
// primitives these call, not this file).
#pragma once

#include "paf_math.h"

#include <cmath>
#include <type_traits>

namespace paf {

// Two standard normals from two uniforms in (0, 1) (cpu/philox_normal.h
// makes them from Philox bits): r = sqrt(-2 log u1), theta = 2 pi u2.
template <typename T>
PAF_MATH void box_muller(T u1, T u2, T& cos_part, T& sin_part) {
  const T radius = vm::sqrt(T(-2) * vm::log(u1));
  const T theta = T(6.283185307179586) * u2;
  cos_part = radius * vm::cos(theta);
  sin_part = radius * vm::sin(theta);
}

}  // namespace paf
