// Helpers shared by mmdynup's C++ CPU kernels: bilinear corners of continuous positions, taps
// into channels-last planes, blocked dot products / weighted row sums, and the transposes
// between the host's (channels, pixels) layout and per-tile (pixels, channels) buffers.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <initializer_list>
#include <vector>

namespace mmdynup_native {

template <typename scalar_t>
struct Corners {
  int64_t row[4];       // row of the plane (y * W + x), -1 outside the image
  scalar_t weight[4];   // bilinear weights
  scalar_t d_dx[4];     // their derivatives by the position's x and y
  scalar_t d_dy[4];
};

// Corners of the point at pixel coordinates (u, v) (pixel k's centre at k): zero padding, every
// corner outside the image is invalid (row -1, weight 0).
template <typename scalar_t>
inline void corners_at(scalar_t u, scalar_t v, int64_t height, int64_t width,
                       Corners<scalar_t>& c) {
  // A point at least a pixel outside (or not finite) touches no pixel of the image.
  if (!(u > scalar_t(-1) && u < scalar_t(width) && v > scalar_t(-1) && v < scalar_t(height))) {
    for (int k = 0; k < 4; ++k) {
      c.row[k] = -1;
      c.weight[k] = c.d_dx[k] = c.d_dy[k] = scalar_t(0);
    }
    return;
  }
  const scalar_t left = std::floor(u), top = std::floor(v);
  const scalar_t fx = u - left, fy = v - top;
  const int64_t x0 = static_cast<int64_t>(left), y0 = static_cast<int64_t>(top);
  const int64_t xs[4] = {x0, x0 + 1, x0, x0 + 1}, ys[4] = {y0, y0, y0 + 1, y0 + 1};
  const scalar_t w[4] = {(1 - fx) * (1 - fy), fx * (1 - fy), (1 - fx) * fy, fx * fy};
  const scalar_t dx[4] = {-(1 - fy), 1 - fy, -fy, fy};
  const scalar_t dy[4] = {-(1 - fx), -fx, 1 - fx, fx};
  for (int k = 0; k < 4; ++k) {
    const bool inside = xs[k] >= 0 && xs[k] < width && ys[k] >= 0 && ys[k] < height;
    c.row[k] = inside ? ys[k] * width + xs[k] : -1;
    c.weight[k] = inside ? w[k] : scalar_t(0);
    c.d_dx[k] = inside ? dx[k] : scalar_t(0);
    c.d_dy[k] = inside ? dy[k] : scalar_t(0);
  }
}

// Channels are processed in blocks of kLanes: a block's accumulators are a fixed-size array the
// compiler keeps in vector registers; reductions over a block are pairwise trees.
constexpr int64_t kLanes = 16;

template <typename scalar_t>
inline scalar_t reduce_lanes(scalar_t* acc) {
  for (int64_t width = kLanes / 2; width > 0; width /= 2) {
#pragma omp simd
    for (int64_t l = 0; l < width; ++l) acc[l] += acc[l + width];
  }
  return acc[0];
}

// One valid corner of a point: its row in a channels-last plane and its coefficients.
template <typename scalar_t>
struct Tap {
  const scalar_t* row;
  scalar_t weight, d_dx, d_dy;
};

// The valid corners of `c` as taps into `plane` (row stride `stride`, channel offset `start`).
template <typename scalar_t>
inline int taps_of(const Corners<scalar_t>& c, const scalar_t* plane, int64_t stride,
                   int64_t start, Tap<scalar_t>* taps) {
  int count = 0;
  for (int k = 0; k < 4; ++k) {
    if (c.row[k] >= 0) taps[count++] = {plane + c.row[k] * stride + start, c.weight[k], c.d_dx[k], c.d_dy[k]};
  }
  return count;
}

// The dot products of vec with the taps' rows over len channels, combined with the taps'
// coefficients: out = (sum_j weight_j d_j, sum_j d_dx_j d_j, sum_j d_dy_j d_j) for
// d_j = <vec, row_j>. One multiply-add per element and tap; the coefficients come after the
// reductions.
template <typename scalar_t>
inline void tap_dots(const Tap<scalar_t>* taps, int count, const scalar_t* vec, int64_t len,
                     scalar_t out[3]) {
  scalar_t acc[4][kLanes] = {};
  int64_t b0 = 0;
  for (; b0 + kLanes <= len; b0 += kLanes) {
    for (int j = 0; j < count; ++j) {
      const scalar_t* row = taps[j].row + b0;
#pragma omp simd
      for (int64_t l = 0; l < kLanes; ++l) acc[j][l] += row[l] * vec[b0 + l];
    }
  }
  for (; b0 < len; ++b0) {
    for (int j = 0; j < count; ++j) acc[j][0] += taps[j].row[b0] * vec[b0];
  }
  out[0] = out[1] = out[2] = 0;
  for (int j = 0; j < count; ++j) {
    const scalar_t d = reduce_lanes(acc[j]);
    out[0] += taps[j].weight * d;
    out[1] += taps[j].d_dx * d;
    out[2] += taps[j].d_dy * d;
  }
}

// out[0:len] (+)= sum_j scales[j] * taps[j].weight * taps[j].row[0:len].
template <typename scalar_t>
inline void tap_sum(const Tap<scalar_t>* taps, const scalar_t* scales, int count, int64_t len,
                    scalar_t* out, bool accumulate) {
  int64_t b0 = 0;
  for (; b0 + kLanes <= len; b0 += kLanes) {
    scalar_t acc[kLanes];
    for (int64_t l = 0; l < kLanes; ++l) acc[l] = accumulate ? out[b0 + l] : scalar_t(0);
    for (int j = 0; j < count; ++j) {
      const scalar_t coef = scales[j] * taps[j].weight;
      const scalar_t* row = taps[j].row + b0;
#pragma omp simd
      for (int64_t l = 0; l < kLanes; ++l) acc[l] += coef * row[l];
    }
    for (int64_t l = 0; l < kLanes; ++l) out[b0 + l] = acc[l];
  }
  for (; b0 < len; ++b0) {
    scalar_t acc = accumulate ? out[b0] : scalar_t(0);
    for (int j = 0; j < count; ++j) acc += scales[j] * taps[j].weight * taps[j].row[b0];
    out[b0] = acc;
  }
}

template <typename scalar_t>
inline scalar_t dot(const scalar_t* a, const scalar_t* b, int64_t len) {
  scalar_t acc[kLanes] = {};
  int64_t b0 = 0;
  for (; b0 + kLanes <= len; b0 += kLanes) {
#pragma omp simd
    for (int64_t l = 0; l < kLanes; ++l) acc[l] += a[b0 + l] * b[b0 + l];
  }
  for (; b0 < len; ++b0) acc[0] += a[b0] * b[b0];
  return reduce_lanes(acc);
}

template <typename scalar_t>
inline void axpy(scalar_t alpha, const scalar_t* x, scalar_t* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

// dst[t][c] = src[c][n0 + t] for t < count: a (channels, N) slice to a (tile, channels) buffer.
template <typename scalar_t>
inline void gather_tile(const scalar_t* src, int64_t channels, int64_t pixels, int64_t n0,
                        int64_t count, scalar_t factor, scalar_t* dst) {
  for (int64_t c = 0; c < channels; ++c) {
    const scalar_t* row = src + c * pixels + n0;
    for (int64_t t = 0; t < count; ++t) dst[t * channels + c] = row[t] * factor;
  }
}

template <typename scalar_t>
inline void scatter_tile(const scalar_t* src, int64_t channels, int64_t pixels, int64_t n0,
                         int64_t count, scalar_t* dst) {
  for (int64_t c = 0; c < channels; ++c) {
    scalar_t* row = dst + c * pixels + n0;
    for (int64_t t = 0; t < count; ++t) row[t] = src[t * channels + c];
  }
}

// Corners of the point at (x, y) in pixels with pixel k's centre at k + 0.5.
template <typename scalar_t>
inline void bilinear_corners(scalar_t px, scalar_t py, int64_t height, int64_t width,
                             Corners<scalar_t>& c) {
  corners_at(px - scalar_t(0.5), py - scalar_t(0.5), height, width, c);
}

inline void check_inputs(std::initializer_list<at::Tensor> tensors) {
  const auto dtype = tensors.begin()->scalar_type();
  for (const auto& tensor : tensors) {
    TORCH_CHECK(tensor.device().is_cpu(), "mmdynup kernel: CPU tensors only");
    TORCH_CHECK(tensor.is_contiguous(), "mmdynup kernel: contiguous tensors only");
    TORCH_CHECK(tensor.numel() == 0 || tensor.scalar_type() == dtype,
                "mmdynup kernel: one dtype for all tensors");
  }
}

}  // namespace mmdynup_native
