// The Python module object of pyautoencoder_fast._C. Importing it loads this
// shared library, whose static initialisers register the schemas
// (schemas.cpp) and kernels (cpu/, cuda/) with the PyTorch dispatcher.
#include <Python.h>

#ifndef PAF_CPU_CAPABILITY_NAME
#define PAF_CPU_CAPABILITY_NAME "DEFAULT"
#endif

namespace {

PyObject* cpu_capability(PyObject*, PyObject*) {
  return PyUnicode_FromString(PAF_CPU_CAPABILITY_NAME);
}

PyObject* with_cuda(PyObject*, PyObject*) {
#ifdef WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef methods[] = {
    {"cpu_capability", cpu_capability, METH_NOARGS,
     "Instruction set the CPU kernels were compiled for."},
    {"with_cuda", with_cuda, METH_NOARGS, "Whether CUDA kernels were compiled in."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                          "Compiled kernels of pyautoencoder_fast.", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module_def); }
