// Bilinear grid sampling on CPU (torch.grid_sampler_2d with align_corners=False, zeros or border
// padding), forward and backward on channels-last planes: every sample is a weighted sum of four
// contiguous rows. mmdynup.ops.point_sampling.PointSample calls it; its reference is
// F.grid_sample.
//
// Layouts (all contiguous):
//   planes   (B, H, W, C)   the sampled images, channels last; image n = b G + g is channels
//                           [g c, (g + 1) c) of batch b (c = C / G)
//   grid     (N, M, 2)      normalised (x, y) in [-1, 1] over the image span, N = B G images,
//                           M output points
//   out      (N, c, M)      the host's channels-first layout
// Border padding clamps the pixel coordinate to [0, size - 1] (its gradient is 0 where clamped,
// as ATen's); zero padding reads zero for every corner outside the image.
// The backward runs one job per image n, pixel after pixel: each gradient element is summed in a
// fixed order by one thread (bit-identical results at any thread count).
#include <ATen/Parallel.h>

#include "common.h"

namespace {

using namespace mmdynup_native;

constexpr int64_t kPixels = 64;  // output points per tile

// The pixel coordinate of a normalised grid component, and d coordinate / d component.
template <typename scalar_t>
inline scalar_t unnormalise(scalar_t g, int64_t size, bool border, scalar_t& derivative) {
  scalar_t u = ((g + 1) * size - 1) / 2;
  derivative = scalar_t(size) / 2;
  if (border) {
    const scalar_t limit = scalar_t(size - 1);
    if (u < 0) {
      u = 0;
      derivative = 0;
    } else if (u > limit) {
      u = limit;
      derivative = 0;
    }
  }
  return u;
}

template <typename scalar_t>
inline void grid_corners(const scalar_t* where, int64_t height, int64_t width, bool border,
                         Corners<scalar_t>& c, scalar_t& du, scalar_t& dv) {
  const scalar_t u = unnormalise(where[0], width, border, du);
  const scalar_t v = unnormalise(where[1], height, border, dv);
  corners_at(u, v, height, width, c);
}

// Image n's channels in (B, H, W, C) planes: the first of them, and the row stride.
struct Image {
  int64_t offset, stride;
};

inline Image image_of(int64_t n, int64_t groups, int64_t height, int64_t width, int64_t all) {
  return {(n / groups) * height * width * all + (n % groups) * (all / groups), all};
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& planes_t, const at::Tensor& grid_t, int64_t groups,
                    bool border, at::Tensor& out_t) {
  const int64_t images = grid_t.size(0), height = planes_t.size(1), width = planes_t.size(2);
  const int64_t all = planes_t.size(3), channels = all / groups, points = grid_t.size(1);
  const scalar_t* planes = planes_t.data_ptr<scalar_t>();
  const scalar_t* grid = grid_t.data_ptr<scalar_t>();
  scalar_t* out = out_t.data_ptr<scalar_t>();
  const int64_t tiles = (points + kPixels - 1) / kPixels;
  at::parallel_for(0, images * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> tile(kPixels * channels);
    const scalar_t ones[4] = {1, 1, 1, 1};
    for (int64_t job = begin; job < end; ++job) {
      const int64_t n = job / tiles, m0 = (job % tiles) * kPixels;
      const int64_t count = std::min(kPixels, points - m0);
      const Image image = image_of(n, groups, height, width, all);
      for (int64_t t = 0; t < count; ++t) {
        Corners<scalar_t> c;
        Tap<scalar_t> taps[4];
        scalar_t du, dv;
        grid_corners(grid + (n * points + m0 + t) * 2, height, width, border, c, du, dv);
        const int used = taps_of(c, planes + image.offset, image.stride, 0, taps);
        tap_sum(taps, ones, used, channels, tile.data() + t * channels, false);
      }
      scatter_tile(tile.data(), channels, points, m0, count, out + n * channels * points);
    }
  });
}

template <typename scalar_t>
void backward_kernel(const at::Tensor& grad_t, const at::Tensor& planes_t, const at::Tensor& grid_t,
                     int64_t groups, bool border, bool need_input, at::Tensor& grad_planes_t,
                     at::Tensor& grad_grid_t) {
  const int64_t images = grid_t.size(0), height = planes_t.size(1), width = planes_t.size(2);
  const int64_t all = planes_t.size(3), channels = all / groups, points = grid_t.size(1);
  const scalar_t* grad = grad_t.data_ptr<scalar_t>();
  const scalar_t* planes = planes_t.data_ptr<scalar_t>();
  const scalar_t* grid = grid_t.data_ptr<scalar_t>();
  scalar_t* grad_planes = need_input ? grad_planes_t.data_ptr<scalar_t>() : nullptr;
  scalar_t* grad_grid = grad_grid_t.data_ptr<scalar_t>();
  const int64_t tiles = (points + kPixels - 1) / kPixels;
  // Without the input's gradient every tile is independent; with it, one job per image (the
  // images write disjoint channels of the gradient planes).
  const int64_t jobs = need_input ? images : images * tiles;
  at::parallel_for(0, jobs, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> tile(kPixels * channels);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t n = need_input ? job : job / tiles;
      const int64_t first = need_input ? 0 : job % tiles, last = need_input ? tiles : first + 1;
      const Image image = image_of(n, groups, height, width, all);
      scalar_t* grad_plane = need_input ? grad_planes + image.offset : nullptr;
      for (int64_t tile_index = first; tile_index < last; ++tile_index) {
        const int64_t m0 = tile_index * kPixels, count = std::min(kPixels, points - m0);
        gather_tile(grad + n * channels * points, channels, points, m0, count, scalar_t(1),
                    tile.data());
        for (int64_t t = 0; t < count; ++t) {
          const int64_t m = m0 + t;
          const scalar_t* g = tile.data() + t * channels;
          Corners<scalar_t> c;
          Tap<scalar_t> taps[4];
          scalar_t du, dv, dots[3];
          grid_corners(grid + (n * points + m) * 2, height, width, border, c, du, dv);
          const int used = taps_of(c, planes + image.offset, image.stride, 0, taps);
          tap_dots(taps, used, g, channels, dots);
          grad_grid[(n * points + m) * 2] = dots[1] * du;
          grad_grid[(n * points + m) * 2 + 1] = dots[2] * dv;
          if (need_input) {
            for (int k = 0; k < 4; ++k) {
              if (c.row[k] >= 0) axpy(c.weight[k], g, grad_plane + c.row[k] * image.stride, channels);
            }
          }
        }
      }
    }
  });
}

}  // namespace

at::Tensor grid_sample_forward(at::Tensor planes, at::Tensor grid, int64_t groups, bool border) {
  check_inputs({planes, grid});
  TORCH_CHECK(planes.dim() == 4 && grid.dim() == 3 && groups > 0 && planes.size(3) % groups == 0 &&
                  grid.size(0) == planes.size(0) * groups && grid.size(2) == 2,
              "grid sample kernel: planes (B, H, W, C) and grid (B G, M, 2) expected");
  auto out = at::empty({grid.size(0), planes.size(3) / groups, grid.size(1)}, planes.options());
  AT_DISPATCH_FLOATING_TYPES(planes.scalar_type(), "grid_sample_forward", [&] {
    forward_kernel<scalar_t>(planes, grid, groups, border, out);
  });
  return out;
}

std::vector<at::Tensor> grid_sample_backward(at::Tensor grad_out, at::Tensor planes,
                                             at::Tensor grid, int64_t groups, bool border,
                                             bool need_input) {
  check_inputs({grad_out, planes, grid});
  TORCH_CHECK(grad_out.dim() == 3 && grad_out.size(0) == grid.size(0) &&
                  grad_out.size(1) * groups == planes.size(3) && grad_out.size(2) == grid.size(1),
              "grid sample kernel: grad_out (B G, C / G, M) expected");
  auto grad_planes = need_input ? at::zeros(planes.sizes(), planes.options())
                                : at::empty({0}, planes.options());
  auto grad_grid = at::empty(grid.sizes(), grid.options());
  AT_DISPATCH_FLOATING_TYPES(planes.scalar_type(), "grid_sample_backward", [&] {
    backward_kernel<scalar_t>(grad_out, planes, grid, groups, border, need_input, grad_planes,
                              grad_grid);
  });
  return {grad_planes, grad_grid};
}
