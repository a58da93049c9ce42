// Counter-based standard-normal noise: element i of a sampled tensor gets
// the normal number derived from Philox4x32-10(key = seed, counter = i / 4),
// lane i % 4, through Box-Muller. Any element can be regenerated on its own,
// so the backward pass needs only the seed (not the noise), results do not
// depend on the thread count, and a CUDA kernel can produce the same numbers.
// pyautoencoder_fast/reference.py implements the same mapping in PyTorch.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace paf {

struct PhiloxBlock {
  uint32_t r[4];
};

C10_HOST_DEVICE C10_ALWAYS_INLINE PhiloxBlock philox4x32_10(uint64_t seed,
                                                            uint64_t counter) {
  constexpr uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  uint32_t c0 = static_cast<uint32_t>(counter);
  uint32_t c1 = static_cast<uint32_t>(counter >> 32);
  uint32_t c2 = 0, c3 = 0;
  uint32_t k0 = static_cast<uint32_t>(seed);
  uint32_t k1 = static_cast<uint32_t>(seed >> 32);
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = static_cast<uint64_t>(kMul0) * c0;
    const uint64_t p1 = static_cast<uint64_t>(kMul1) * c2;
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c0 = hi1 ^ c1 ^ k0;
    c1 = lo1;
    c2 = hi0 ^ c3 ^ k1;
    c3 = lo0;
    k0 += kWeyl0;
    k1 += kWeyl1;
  }
  return {{c0, c1, c2, c3}};
}

// Uniform in the open interval (0, 1), exactly representable in T.
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE T open_uniform(uint32_t bits);
template <>
C10_HOST_DEVICE C10_ALWAYS_INLINE float open_uniform<float>(uint32_t bits) {
  return (static_cast<float>(bits >> 8) + 0.5f) * 5.9604644775390625e-08f;  // 2^-24
}
template <>
C10_HOST_DEVICE C10_ALWAYS_INLINE double open_uniform<double>(uint32_t bits) {
  return (static_cast<double>(bits) + 0.5) * 2.3283064365386963e-10;  // 2^-32
}

// Four standard normals from one Philox block: Box-Muller on (r0, r1) and (r2, r3).
template <typename T>
C10_HOST_DEVICE C10_ALWAYS_INLINE void philox_normal4(uint64_t seed,
                                                      uint64_t block,
                                                      T out[4]) {
  const PhiloxBlock b = philox4x32_10(seed, block);
  constexpr T kTwoPi = T(6.283185307179586);
  for (int pair = 0; pair < 2; ++pair) {
    const T u1 = open_uniform<T>(b.r[2 * pair]);
    const T u2 = open_uniform<T>(b.r[2 * pair + 1]);
    const T radius = std::sqrt(T(-2) * std::log(u1));
    const T theta = kTwoPi * u2;
    out[2 * pair] = radius * std::cos(theta);
    out[2 * pair + 1] = radius * std::sin(theta);
  }
}

// Calls fn(i, normal_i) for every flat index i in [begin, end).
template <typename T, typename Fn>
C10_ALWAYS_INLINE void for_each_normal(uint64_t seed, int64_t begin, int64_t end,
                                       Fn&& fn) {
  T normals[4];
  for (int64_t block = begin / 4; block * 4 < end; ++block) {
    philox_normal4<T>(seed, static_cast<uint64_t>(block), normals);
    const int64_t first = block * 4;
    const int64_t lo = first < begin ? begin : first;
    const int64_t hi = first + 4 > end ? end : first + 4;
    for (int64_t i = lo; i < hi; ++i) fn(i, normals[i - first]);
  }
}

}  // namespace paf
