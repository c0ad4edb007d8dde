// Local deformable attention on CPU: forward and backward in one pass over the pixels, without
// any sampled map of all points (mmdynup.ops.deformable_attention documents the operator; its
// plain-PyTorch reference is local_deformable_attention_reference).
//
// Layouts (all contiguous):
//   query       (B, D, N)          N = oH * oW output pixels, channels first (the host's layout)
//   key_planes  (B, H, W, D)       channels last: a sampled corner is one contiguous row
//   value_planes(B, H, W, C)
//   positions   (B, G, P, N, 2)    (x, y) in low-resolution pixels, centres at k + 0.5
//   key_bias    (heads, P, D / heads) or empty
//   attention   (B, heads, P, N)   softmax weights, saved by the forward for the backward
// Offset group g reads key channels [g D / G, (g + 1) D / G) and value channels likewise; head h
// owns key channels [h D / heads, ...) and value channels likewise. Channels are processed in
// "segments", the intersections of head and group ranges.
//
// Corners outside the image read zero (grid_sample's zero padding, align_corners=False).
// Every output element is written by exactly one thread and summed in a fixed order, so results
// are bit-identical from run to run at any thread count.
#include <ATen/Parallel.h>

#include "common.h"

namespace {

using namespace mmdynup_native;

constexpr int64_t kTile = 64;  // output pixels per inner tile (local channels-last buffers)

struct Segment {
  int64_t start, end, head, group;
};

// Intersections of `heads` equal chunks and `groups` equal chunks of [0, channels).
std::vector<Segment> segments(int64_t channels, int64_t heads, int64_t groups) {
  std::vector<Segment> out;
  const int64_t per_head = channels / heads, per_group = channels / groups;
  int64_t start = 0;
  while (start < channels) {
    const int64_t head = start / per_head, group = start / per_group;
    const int64_t end = std::min((head + 1) * per_head, (group + 1) * per_group);
    out.push_back({start, end, head, group});
    start = end;
  }
  return out;
}

struct Shape {
  int64_t batch, dim, channels, pixels, height, width, groups, points, heads;
};

Shape shape_of(const at::Tensor& query, const at::Tensor& key_planes,
               const at::Tensor& value_planes, const at::Tensor& positions, int64_t heads) {
  TORCH_CHECK(query.dim() == 3 && key_planes.dim() == 4 && value_planes.dim() == 4 &&
                  positions.dim() == 5,
              "deformable attention kernel: unexpected ranks");
  Shape s{query.size(0),        query.size(1),     value_planes.size(3), query.size(2),
          key_planes.size(1),   key_planes.size(2), positions.size(1),   positions.size(2),
          heads};
  TORCH_CHECK(key_planes.size(3) == s.dim && positions.size(3) == s.pixels,
              "deformable attention kernel: inconsistent shapes");
  return s;
}

// Corners of every (group, point) of pixels [n0, n0 + count) of batch b: corners[t][g][p].
template <typename scalar_t>
void tile_corners(const scalar_t* positions, const Shape& s, int64_t b, int64_t n0,
                  int64_t count, Corners<scalar_t>* corners) {
  for (int64_t g = 0; g < s.groups; ++g) {
    for (int64_t p = 0; p < s.points; ++p) {
      const scalar_t* where = positions + (((b * s.groups + g) * s.points + p) * s.pixels + n0) * 2;
      for (int64_t t = 0; t < count; ++t) {
        bilinear_corners(where[2 * t], where[2 * t + 1], s.height, s.width,
                         corners[(t * s.groups + g) * s.points + p]);
      }
    }
  }
}

// The valid corners of all points of a segment's group as taps into `plane`, each with the
// scale factor * weights[head, p] of its point: returns their count.
template <typename scalar_t>
inline int segment_taps(const Segment& seg, const Corners<scalar_t>* corners, int64_t points,
                        const scalar_t* plane, int64_t stride, const scalar_t* weights,
                        scalar_t factor, Tap<scalar_t>* taps, scalar_t* scales) {
  int count = 0;
  for (int64_t p = 0; p < points; ++p) {
    const int added = taps_of(corners[seg.group * points + p], plane, stride, seg.start, taps + count);
    std::fill(scales + count, scales + count + added, weights[seg.head * points + p] * factor);
    count += added;
  }
  return count;
}

template <typename scalar_t>
void forward_kernel(const at::Tensor& query_t, const at::Tensor& key_t, const at::Tensor& value_t,
                    const at::Tensor& positions_t, const at::Tensor& bias_t, const Shape& s,
                    double scale_d, at::Tensor& out_t, at::Tensor& attention_t) {
  const scalar_t* query = query_t.data_ptr<scalar_t>();
  const scalar_t* key = key_t.data_ptr<scalar_t>();
  const scalar_t* value = value_t.data_ptr<scalar_t>();
  const scalar_t* positions = positions_t.data_ptr<scalar_t>();
  const scalar_t* bias = bias_t.numel() ? bias_t.data_ptr<scalar_t>() : nullptr;
  scalar_t* out = out_t.data_ptr<scalar_t>();
  scalar_t* attention = attention_t.data_ptr<scalar_t>();
  const scalar_t scale = static_cast<scalar_t>(scale_d);
  const auto key_segments = segments(s.dim, s.heads, s.groups);
  const auto value_segments = segments(s.channels, s.heads, s.groups);
  const int64_t plane = s.height * s.width, head_dim = s.dim / s.heads;
  const int64_t tiles = (s.pixels + kTile - 1) / kTile;
  at::parallel_for(0, s.batch * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> q(kTile * s.dim), o(kTile * s.channels), logits(s.heads * s.points);
    std::vector<Corners<scalar_t>> corners(kTile * s.groups * s.points);
    std::vector<Tap<scalar_t>> taps(4 * s.points);
    std::vector<scalar_t> scales(4 * s.points);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t b = job / tiles, n0 = (job % tiles) * kTile;
      const int64_t count = std::min(kTile, s.pixels - n0);
      gather_tile(query + b * s.dim * s.pixels, s.dim, s.pixels, n0, count, scale, q.data());
      tile_corners(positions, s, b, n0, count, corners.data());
      const scalar_t* key_b = key + b * plane * s.dim;
      const scalar_t* value_b = value + b * plane * s.channels;
      for (int64_t t = 0; t < count; ++t) {
        const scalar_t* qt = q.data() + t * s.dim;
        const Corners<scalar_t>* ct = corners.data() + t * s.groups * s.points;
        std::fill(logits.begin(), logits.end(), scalar_t(0));
        for (const auto& seg : key_segments) {
          const int64_t len = seg.end - seg.start;
          for (int64_t p = 0; p < s.points; ++p) {
            const int count_taps = taps_of(ct[seg.group * s.points + p], key_b, s.dim, seg.start, taps.data());
            scalar_t dots[3];
            tap_dots(taps.data(), count_taps, qt + seg.start, len, dots);
            scalar_t acc = dots[0];
            if (bias) {
              acc += dot(qt + seg.start,
                         bias + (seg.head * s.points + p) * head_dim + (seg.start - seg.head * head_dim),
                         len);
            }
            logits[seg.head * s.points + p] += acc;
          }
        }
        // Softmax over the points of every head.
        for (int64_t h = 0; h < s.heads; ++h) {
          scalar_t* row = logits.data() + h * s.points;
          const scalar_t peak = *std::max_element(row, row + s.points);
          scalar_t total = 0;
          for (int64_t p = 0; p < s.points; ++p) total += (row[p] = std::exp(row[p] - peak));
          for (int64_t p = 0; p < s.points; ++p) {
            row[p] /= total;
            attention[((b * s.heads + h) * s.points + p) * s.pixels + n0 + t] = row[p];
          }
        }
        // The output: one weighted sum of the valid corners of all points, per value segment.
        scalar_t* ot = o.data() + t * s.channels;
        for (const auto& seg : value_segments) {
          const int count_taps = segment_taps(seg, ct, s.points, value_b, s.channels,
                                              logits.data(), scalar_t(1), taps.data(),
                                              scales.data());
          tap_sum(taps.data(), scales.data(), count_taps, seg.end - seg.start, ot + seg.start, false);
        }
      }
      scatter_tile(o.data(), s.channels, s.pixels, n0, count, out + b * s.channels * s.pixels);
    }
  });
}

// Backward, per pixel: the logits' gradient, the query's and the positions'.
template <typename scalar_t>
void pixel_backward_kernel(const at::Tensor& grad_out_t, const at::Tensor& query_t,
                           const at::Tensor& key_t, const at::Tensor& value_t,
                           const at::Tensor& positions_t, const at::Tensor& bias_t,
                           const at::Tensor& attention_t, const Shape& s, double scale_d,
                           bool need_query, bool need_positions, at::Tensor& grad_logits_t,
                           at::Tensor& grad_query_t, at::Tensor& grad_positions_t) {
  const scalar_t* grad_out = grad_out_t.data_ptr<scalar_t>();
  const scalar_t* query = query_t.data_ptr<scalar_t>();
  const scalar_t* key = key_t.data_ptr<scalar_t>();
  const scalar_t* value = value_t.data_ptr<scalar_t>();
  const scalar_t* positions = positions_t.data_ptr<scalar_t>();
  const scalar_t* bias = bias_t.numel() ? bias_t.data_ptr<scalar_t>() : nullptr;
  const scalar_t* attention = attention_t.data_ptr<scalar_t>();
  scalar_t* grad_logits = grad_logits_t.data_ptr<scalar_t>();
  scalar_t* grad_query = need_query ? grad_query_t.data_ptr<scalar_t>() : nullptr;
  scalar_t* grad_positions = need_positions ? grad_positions_t.data_ptr<scalar_t>() : nullptr;
  const scalar_t scale = static_cast<scalar_t>(scale_d);
  const auto key_segments = segments(s.dim, s.heads, s.groups);
  const auto value_segments = segments(s.channels, s.heads, s.groups);
  const int64_t plane = s.height * s.width, head_dim = s.dim / s.heads;
  const int64_t tiles = (s.pixels + kTile - 1) / kTile;
  const int64_t hp = s.heads * s.points, gp = s.groups * s.points;
  at::parallel_for(0, s.batch * tiles, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> q(kTile * s.dim), g(kTile * s.channels), gq(kTile * s.dim);
    std::vector<scalar_t> attn(hp), grad_attn(hp), gl(hp), grad_xy(gp * 2);
    std::vector<scalar_t> value_dots(value_segments.size() * s.points * 3);
    std::vector<Corners<scalar_t>> corners(kTile * gp);
    std::vector<Tap<scalar_t>> taps(4 * s.points);
    std::vector<scalar_t> scales(4 * s.points);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t b = job / tiles, n0 = (job % tiles) * kTile;
      const int64_t count = std::min(kTile, s.pixels - n0);
      gather_tile(query + b * s.dim * s.pixels, s.dim, s.pixels, n0, count, scale, q.data());
      gather_tile(grad_out + b * s.channels * s.pixels, s.channels, s.pixels, n0, count,
                  scalar_t(1), g.data());
      tile_corners(positions, s, b, n0, count, corners.data());
      const scalar_t* key_b = key + b * plane * s.dim;
      const scalar_t* value_b = value + b * plane * s.channels;
      for (int64_t t = 0; t < count; ++t) {
        const int64_t n = n0 + t;
        const scalar_t* qt = q.data() + t * s.dim;
        const scalar_t* gt = g.data() + t * s.channels;
        const Corners<scalar_t>* ct = corners.data() + t * gp;
        for (int64_t i = 0; i < hp; ++i) attn[i] = attention[(b * hp + i) * s.pixels + n];
        // Per value segment and point: <g, V_p> (the attention's gradient) and its derivatives
        // by the point's x and y (for the positions' gradient).
        std::fill(grad_attn.begin(), grad_attn.end(), scalar_t(0));
        for (size_t si = 0; si < value_segments.size(); ++si) {
          const auto& seg = value_segments[si];
          for (int64_t p = 0; p < s.points; ++p) {
            const int count_taps = taps_of(ct[seg.group * s.points + p], value_b, s.channels, seg.start, taps.data());
            scalar_t* dots = value_dots.data() + (si * s.points + p) * 3;
            tap_dots(taps.data(), count_taps, gt + seg.start, seg.end - seg.start, dots);
            grad_attn[seg.head * s.points + p] += dots[0];
          }
        }
        // Softmax backward: d logit = a * (d a - sum_p a d a).
        for (int64_t h = 0; h < s.heads; ++h) {
          scalar_t inner = 0;
          for (int64_t p = 0; p < s.points; ++p)
            inner += attn[h * s.points + p] * grad_attn[h * s.points + p];
          for (int64_t p = 0; p < s.points; ++p) {
            const int64_t i = h * s.points + p;
            gl[i] = attn[i] * (grad_attn[i] - inner);
            grad_logits[(b * hp + i) * s.pixels + n] = gl[i];
          }
        }
        // logit = sum (scale q) . (K_p + bias): the query's gradient, one weighted sum of the
        // valid key corners of all points per key segment.
        if (need_query) {
          scalar_t* gqt = gq.data() + t * s.dim;
          for (const auto& seg : key_segments) {
            const int count_taps = segment_taps(seg, ct, s.points, key_b, s.dim, gl.data(), scale,
                                                taps.data(), scales.data());
            tap_sum(taps.data(), scales.data(), count_taps, seg.end - seg.start, gqt + seg.start, false);
            if (bias) {
              for (int64_t p = 0; p < s.points; ++p) {
                axpy(gl[seg.head * s.points + p] * scale,
                     bias + (seg.head * s.points + p) * head_dim + (seg.start - seg.head * head_dim),
                     gqt + seg.start, seg.end - seg.start);
              }
            }
          }
        }
        if (need_positions) {
          // d loss / d position = a d<g, V_p>/dpos + d logit * d<scale q, K_p>/dpos, per group.
          std::fill(grad_xy.begin(), grad_xy.end(), scalar_t(0));
          for (size_t si = 0; si < value_segments.size(); ++si) {
            const auto& seg = value_segments[si];
            for (int64_t p = 0; p < s.points; ++p) {
              const scalar_t a = attn[seg.head * s.points + p];
              const scalar_t* dots = value_dots.data() + (si * s.points + p) * 3;
              grad_xy[(seg.group * s.points + p) * 2] += a * dots[1];
              grad_xy[(seg.group * s.points + p) * 2 + 1] += a * dots[2];
            }
          }
          for (const auto& seg : key_segments) {
            for (int64_t p = 0; p < s.points; ++p) {
              const int count_taps = taps_of(ct[seg.group * s.points + p], key_b, s.dim, seg.start, taps.data());
              scalar_t dots[3];
              tap_dots(taps.data(), count_taps, qt + seg.start, seg.end - seg.start, dots);
              const scalar_t weight = gl[seg.head * s.points + p];
              grad_xy[(seg.group * s.points + p) * 2] += weight * dots[1];
              grad_xy[(seg.group * s.points + p) * 2 + 1] += weight * dots[2];
            }
          }
          for (int64_t g_ = 0; g_ < s.groups; ++g_) {
            for (int64_t p = 0; p < s.points; ++p) {
              scalar_t* where = grad_positions + (((b * s.groups + g_) * s.points + p) * s.pixels + n) * 2;
              where[0] = grad_xy[(g_ * s.points + p) * 2];
              where[1] = grad_xy[(g_ * s.points + p) * 2 + 1];
            }
          }
        }
      }
      if (need_query) {
        scatter_tile(gq.data(), s.dim, s.pixels, n0, count, grad_query + b * s.dim * s.pixels);
      }
    }
  });
}

// Adds pixel n's share of group `group` into a channels-last gradient plane: for every segment
// of the group, point p and valid corner, weight[head, p, n] * bilinear weight * source.
template <typename scalar_t>
inline void scatter_pixel(const std::vector<Segment>& segs, int64_t group, const scalar_t* source,
                          int64_t group_start, const scalar_t* weights, int64_t b, int64_t n,
                          const Shape& s, const Corners<scalar_t>* corners, scalar_t* grad_plane,
                          int64_t stride) {
  const int64_t hp = s.heads * s.points;
  for (const auto& seg : segs) {
    if (seg.group != group) continue;
    const int64_t len = seg.end - seg.start;
    const scalar_t* chunk = source + (seg.start - group_start);
    for (int64_t p = 0; p < s.points; ++p) {
      const scalar_t weight = weights[(b * hp + seg.head * s.points + p) * s.pixels + n];
      const Corners<scalar_t>& c = corners[p];
      for (int k = 0; k < 4; ++k) {
        if (c.row[k] >= 0) axpy(weight * c.weight[k], chunk, grad_plane + c.row[k] * stride + seg.start, len);
      }
    }
  }
}

// Backward into the planes: every (batch, group) job adds the corners' shares of its channels,
// pixel after pixel (a fixed order, no two jobs write the same element).
template <typename scalar_t>
void plane_backward_kernel(const at::Tensor& grad_out_t, const at::Tensor& query_t,
                           const at::Tensor& positions_t, const at::Tensor& attention_t,
                           const at::Tensor& grad_logits_t, const Shape& s, double scale_d,
                           bool need_key, bool need_value, at::Tensor& grad_key_t,
                           at::Tensor& grad_value_t) {
  const scalar_t* grad_out = grad_out_t.data_ptr<scalar_t>();
  const scalar_t* query = query_t.data_ptr<scalar_t>();
  const scalar_t* positions = positions_t.data_ptr<scalar_t>();
  const scalar_t* attention = attention_t.data_ptr<scalar_t>();
  const scalar_t* grad_logits = grad_logits_t.data_ptr<scalar_t>();
  scalar_t* grad_key = need_key ? grad_key_t.data_ptr<scalar_t>() : nullptr;
  scalar_t* grad_value = need_value ? grad_value_t.data_ptr<scalar_t>() : nullptr;
  const scalar_t scale = static_cast<scalar_t>(scale_d);
  const auto key_segments = segments(s.dim, s.heads, s.groups);
  const auto value_segments = segments(s.channels, s.heads, s.groups);
  const int64_t plane = s.height * s.width;
  const int64_t key_width = s.dim / s.groups, value_width = s.channels / s.groups;
  at::parallel_for(0, s.batch * s.groups, 1, [&](int64_t begin, int64_t end) {
    std::vector<scalar_t> q(kTile * key_width), g(kTile * value_width);
    std::vector<Corners<scalar_t>> corners(s.points);
    for (int64_t job = begin; job < end; ++job) {
      const int64_t b = job / s.groups, group = job % s.groups;
      const int64_t key_start = group * key_width, value_start = group * value_width;
      for (int64_t n0 = 0; n0 < s.pixels; n0 += kTile) {
        const int64_t count = std::min(kTile, s.pixels - n0);
        if (need_key) {
          gather_tile(query + (b * s.dim + key_start) * s.pixels, key_width, s.pixels, n0, count,
                      scale, q.data());
        }
        if (need_value) {
          gather_tile(grad_out + (b * s.channels + value_start) * s.pixels, value_width, s.pixels,
                      n0, count, scalar_t(1), g.data());
        }
        for (int64_t t = 0; t < count; ++t) {
          const int64_t n = n0 + t;
          for (int64_t p = 0; p < s.points; ++p) {
            const scalar_t* where = positions + (((b * s.groups + group) * s.points + p) * s.pixels + n) * 2;
            bilinear_corners(where[0], where[1], s.height, s.width, corners[p]);
          }
          if (need_value) {
            scatter_pixel(value_segments, group, g.data() + t * value_width, value_start,
                          attention, b, n, s, corners.data(),
                          grad_value + b * plane * s.channels, s.channels);
          }
          if (need_key) {
            scatter_pixel(key_segments, group, q.data() + t * key_width, key_start, grad_logits,
                          b, n, s, corners.data(), grad_key + b * plane * s.dim, s.dim);
          }
        }
      }
    }
  });
}

}  // namespace

std::vector<at::Tensor> deformable_attention_forward(at::Tensor query, at::Tensor key_planes,
                                                     at::Tensor value_planes, at::Tensor positions,
                                                     at::Tensor key_bias, int64_t heads,
                                                     double scale) {
  check_inputs({query, key_planes, value_planes, positions, key_bias});
  const Shape s = shape_of(query, key_planes, value_planes, positions, heads);
  auto out = at::empty({s.batch, s.channels, s.pixels}, query.options());
  auto attention = at::empty({s.batch, s.heads, s.points, s.pixels}, query.options());
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "deformable_attention_forward", [&] {
    forward_kernel<scalar_t>(query, key_planes, value_planes, positions, key_bias, s, scale, out,
                             attention);
  });
  return {out, attention};
}

std::vector<at::Tensor> deformable_attention_backward(
    at::Tensor grad_out, at::Tensor query, at::Tensor key_planes, at::Tensor value_planes,
    at::Tensor positions, at::Tensor key_bias, at::Tensor attention, int64_t heads, double scale,
    bool need_query, bool need_key, bool need_value, bool need_positions) {
  check_inputs({grad_out, query, key_planes, value_planes, positions, key_bias, attention});
  const Shape s = shape_of(query, key_planes, value_planes, positions, heads);
  auto options = query.options();
  auto grad_logits = at::empty({s.batch, s.heads, s.points, s.pixels}, options);
  auto grad_query = need_query ? at::empty({s.batch, s.dim, s.pixels}, options) : at::empty({0}, options);
  auto grad_positions = need_positions ? at::empty(positions.sizes(), options) : at::empty({0}, options);
  auto grad_key = need_key ? at::zeros(key_planes.sizes(), options) : at::empty({0}, options);
  auto grad_value = need_value ? at::zeros(value_planes.sizes(), options) : at::empty({0}, options);
  AT_DISPATCH_FLOATING_TYPES(query.scalar_type(), "deformable_attention_backward", [&] {
    pixel_backward_kernel<scalar_t>(grad_out, query, key_planes, value_planes, positions, key_bias,
                                    attention, s, scale, need_query, need_positions, grad_logits,
                                    grad_query, grad_positions);
    if (need_key || need_value) {
      plane_backward_kernel<scalar_t>(grad_out, query, positions, attention, grad_logits, s, scale,
                                      need_key, need_value, grad_key, grad_value);
    }
  });
  return {grad_query, grad_key, grad_value, grad_positions, grad_logits};
}
