// The Python module object of pyautoencoder_fast._C. Importing it loads this
// shared library, whose static initialisers register the schemas
// (schemas.cpp) and the CUDA kernels (cuda/) with the PyTorch dispatcher.
// The CPU kernels live in one library per instruction set
// (pyautoencoder_fast._cpu_<capability>), loaded after this one.
#include <Python.h>

#include <atomic>

#include "autograd/torch_conventions.h"

namespace paf::autograd {
namespace {
std::atomic<bool> clamp_grad_at_bounds_setting{true};  // torch <= 2.13 until set at import
}  // namespace
bool clamp_grad_at_bounds() { return clamp_grad_at_bounds_setting.load(std::memory_order_relaxed); }
void set_clamp_grad_at_bounds(bool passes) { clamp_grad_at_bounds_setting.store(passes, std::memory_order_relaxed); }
}  // namespace paf::autograd

namespace {

PyObject* with_cuda(PyObject*, PyObject*) {
#ifdef WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyObject* clamp_grad_at_bounds(PyObject*, PyObject*) {
  return PyBool_FromLong(paf::autograd::clamp_grad_at_bounds());
}

PyObject* set_clamp_grad_at_bounds(PyObject*, PyObject* passes) {
  const int value = PyObject_IsTrue(passes);
  if (value < 0) return nullptr;
  paf::autograd::set_clamp_grad_at_bounds(value != 0);
  Py_RETURN_NONE;
}

PyMethodDef methods[] = {
    {"with_cuda", with_cuda, METH_NOARGS, "Whether CUDA kernels were compiled in."},
    {"clamp_grad_at_bounds", clamp_grad_at_bounds, METH_NOARGS,
     "Whether the KL backward passes the gradient of a clamped log-variance at exactly a bound."},
    {"set_clamp_grad_at_bounds", set_clamp_grad_at_bounds, METH_O,
     "Sets it (torch.clamp's convention, probed at import)."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                          "Compiled kernels of pyautoencoder_fast.", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module_def); }
