// PAF_MATH, the attributes of every formula in common/formulas/: inlined,
// callable from host and device code.
#pragma once

#include <c10/macros/Macros.h>

#define PAF_MATH C10_HOST_DEVICE C10_ALWAYS_INLINE
