// Philox4x32-10 (host/device): the counter-based generator behind the
// sampling noise of the CPU and CUDA kernels (cpu/philox_normal.h and
// cuda/reparameterize.cuh map its words to normals).
#pragma once

#include <c10/macros/Macros.h>

#include <cstdint>

namespace paf {

// Philox4x32-10 multipliers and Weyl key increments.
constexpr uint32_t kPhiloxM0 = 0xD2511F53u, kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u, kPhiloxW1 = 0xBB67AE85u;

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

// One Philox4x32 round on the counter words (c0..c3) with key (k0, k1).
C10_HOST_DEVICE C10_ALWAYS_INLINE void philox_round(uint32_t& c0, uint32_t& c1, uint32_t& c2, uint32_t& c3,
                                                    uint32_t k0, uint32_t k1) {
  const uint64_t p0 = uint64_t(kPhiloxM0) * c0;
  const uint64_t p1 = uint64_t(kPhiloxM1) * c2;
  c0 = static_cast<uint32_t>(p1 >> 32) ^ c1 ^ k0;
  c2 = static_cast<uint32_t>(p0 >> 32) ^ c3 ^ k1;
  c1 = static_cast<uint32_t>(p1);
  c3 = static_cast<uint32_t>(p0);
}

// The four 32-bit words of Philox4x32-10 block `block` under key `seed`
// (counter = (block low, block high, 0, 0)).
C10_HOST_DEVICE C10_ALWAYS_INLINE void philox4x32_10(uint64_t seed, uint64_t block, uint32_t (&w)[4]) {
  uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
  w[0] = static_cast<uint32_t>(block);
  w[1] = static_cast<uint32_t>(block >> 32);
  w[2] = 0;
  w[3] = 0;
  for (int round = 0; round < 10; ++round) {
    philox_round(w[0], w[1], w[2], w[3], k0, k1);
    k0 += kPhiloxW0;
    k1 += kPhiloxW1;
  }
}

}  // namespace paf
