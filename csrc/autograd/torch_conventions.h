// Conventions of the installed torch that the gradients follow. They change
// between torch releases, so they are probed once, at import, from the torch
// that is loaded (pyautoencoder_fast/_backend.py), and set here through
// pyautoencoder_fast._C (csrc/module.cpp); the autograd kernels pass them to
// the backward ops as arguments, so the kernels themselves stay functions of
// their inputs.
#pragma once

namespace paf::autograd {

// Whether torch.clamp passes the gradient at exactly a bound: it does up to
// torch 2.13 ([-3, -2, 3, 4] clamped to [-3, 3] has gradient [1, 1, 1, 0]),
// and not from torch 2.14 (gradient [0, 1, 0, 0]).
bool clamp_grad_at_bounds();
void set_clamp_grad_at_bounds(bool passes);

}  // namespace paf::autograd
