// The per-element math of every op, written once, one file per family in
// common/formulas/: each likelihood's value and derivatives
// (log_likelihood.h; the count likelihoods: count.h), the diagonal-Gaussian
// KL terms (kl.h), the importance weights (importance_weights.h), the
// Ada-GVAE average (adagvae.h) and Box-Muller (box_muller.h). Every formula
// is a template over T, which is a scalar opmath type (float, double) or, on
// the CPU, at::vec::Vectorized of one, and is C10_HOST_DEVICE, so the CPU
// kernels (csrc/cpu) and the CUDA kernels (csrc/cuda) run the same
// definitions.
//
// The formulas call primitives in namespace paf::vm (exp, log1p, selects,
// ...), which must be declared before this header: cpu/elementwise_math.h
// defines the CPU ones (scalar and Vectorized), cuda/device_math.cuh the
// device ones. Include one of those, not this header.
#pragma once

#include "formulas/log_likelihood.h"
#include "formulas/kl.h"
#include "formulas/importance_weights.h"
#include "formulas/adagvae.h"
#include "formulas/count.h"
#include "formulas/box_muller.h"
