// The Python module object of pyautoencoder_fast._C. Importing it loads this
// shared library, whose static initialisers register the schemas
// (schemas.cpp) and the CUDA kernels (cuda/) with the PyTorch dispatcher.
// The CPU kernels live in one library per instruction set
// (pyautoencoder_fast._cpu_<capability>), loaded after this one.
#include <Python.h>

namespace {

PyObject* with_cuda(PyObject*, PyObject*) {
#ifdef WITH_CUDA
  Py_RETURN_TRUE;
#else
  Py_RETURN_FALSE;
#endif
}

PyMethodDef methods[] = {
    {"with_cuda", with_cuda, METH_NOARGS, "Whether CUDA kernels were compiled in."},
    {nullptr, nullptr, 0, nullptr}};

PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C",
                          "Compiled kernels of pyautoencoder_fast.", -1, methods};

}  // namespace

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module_def); }
