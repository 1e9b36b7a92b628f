// Python module perception.ops._C: the kernels plus what the loader needs to trust them.
#include <torch/extension.h>
#include <torch/version.h>

#include "ms_deform_attn.h"

#define GDINO_STRINGIFY_(x) #x
#define GDINO_STRINGIFY(x) GDINO_STRINGIFY_(x)

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.doc() = "Native multi-scale deformable attention (shapes in perception/ops/csrc/ms_deform_attn.h).";
  // The loader refuses a module built against another torch release (its ABI may differ).
  module.attr("torch_version") = GDINO_STRINGIFY(TORCH_VERSION_MAJOR) "." GDINO_STRINGIFY(
      TORCH_VERSION_MINOR) "." GDINO_STRINGIFY(TORCH_VERSION_PATCH);
  module.def("forward_cpu", &gdino::forward_cpu, "forward on CPU tensors");
  module.def("backward_cpu", &gdino::backward_cpu, "backward on CPU tensors");
#ifdef GDINO_WITH_CUDA
  module.attr("with_cuda") = true;
  module.def("forward_cuda", &gdino::forward_cuda, "forward on CUDA tensors");
  module.def("backward_cuda", &gdino::backward_cuda, "backward on CUDA tensors");
#else
  module.attr("with_cuda") = false;
#endif
}
