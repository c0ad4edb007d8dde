// The Python module of mmdynup's C++ CPU kernels (mmdynup/ops/native.py builds and loads it).
#include <torch/extension.h>

#include <vector>

std::vector<at::Tensor> deformable_attention_forward(at::Tensor query, at::Tensor key_planes,
                                                     at::Tensor value_planes, at::Tensor positions,
                                                     at::Tensor key_bias, int64_t heads,
                                                     double scale);
std::vector<at::Tensor> deformable_attention_backward(
    at::Tensor grad_out, at::Tensor query, at::Tensor key_planes, at::Tensor value_planes,
    at::Tensor positions, at::Tensor key_bias, at::Tensor attention, int64_t heads, double scale,
    bool need_query, bool need_key, bool need_value, bool need_positions);
at::Tensor grid_sample_forward(at::Tensor planes, at::Tensor grid, int64_t groups, bool border);
std::vector<at::Tensor> grid_sample_backward(at::Tensor grad_out, at::Tensor planes,
                                             at::Tensor grid, int64_t groups, bool border,
                                             bool need_input);

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("deformable_attention_forward", &deformable_attention_forward,
        "local deformable attention, forward (CPU)");
  m.def("deformable_attention_backward", &deformable_attention_backward,
        "local deformable attention, backward (CPU)");
  m.def("grid_sample_forward", &grid_sample_forward,
        "bilinear grid sampling, align_corners=False, zeros or border padding (CPU)");
  m.def("grid_sample_backward", &grid_sample_backward,
        "bilinear grid sampling, backward (CPU)");
}
