// Counter-based standard-normal noise: element i of a sampled tensor gets
// the normal number derived from Philox4x32-10(key = seed, counter = i / 4),
// lane i % 4, through Box-Muller. Any element can be regenerated on its own,
// so the backward pass needs only the seed (not the noise), results do not
// depend on the thread count, and a CUDA kernel can produce the same numbers.
// pyautoencoder_fast/reference.py (philox4x32_10, philox_normal) implements
// the same mapping in PyTorch; the tests hold the two together.
#pragma once

#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

namespace paf {

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

}  // namespace paf

#ifndef __CUDACC__
#include <ATen/cpu/vec/vec.h>

#include <algorithm>

namespace paf {

// CPU: Philox4x32-10 and Box-Muller for kBlocks blocks at a time. The rounds
// run on arrays (the compiler vectorises the 32x32->64-bit products) and
// Box-Muller on at::vec registers (Sleef log/sin/cos).
template <typename T>
struct PhiloxNormalFiller {
  using Vec = at::vec::Vectorized<T>;
  static constexpr int64_t kBlocks = 16;
  static_assert(kBlocks % Vec::size() == 0, "Box-Muller runs on whole vectors");

  // out[k] = normal(begin + k) for k in [0, n).
  static void fill(uint64_t seed, int64_t begin, int64_t n, T* out) {
    T buffer[4 * kBlocks];
    int64_t done = 0;
    while (done < n) {
      const int64_t first = ((begin + done) / 4) * 4;  // aligned to a block
      const int64_t skip = begin + done - first;
      generate(seed, first / 4, buffer);
      const int64_t take = std::min<int64_t>(4 * kBlocks - skip, n - done);
      std::copy(buffer + skip, buffer + skip + take, out + done);
      done += take;
    }
  }

 private:
  // The 4 * kBlocks normals of blocks [block0, block0 + kBlocks).
  static void generate(uint64_t seed, int64_t block0, T* out) {
    uint32_t c0[kBlocks], c1[kBlocks], c2[kBlocks], c3[kBlocks];
    for (int64_t i = 0; i < kBlocks; ++i) {
      const uint64_t counter = static_cast<uint64_t>(block0 + i);
      c0[i] = static_cast<uint32_t>(counter);
      c1[i] = static_cast<uint32_t>(counter >> 32);
      c2[i] = 0;
      c3[i] = 0;
    }
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
    for (int round = 0; round < 10; ++round) {
      for (int64_t i = 0; i < kBlocks; ++i) {
        const uint64_t p0 = static_cast<uint64_t>(0xD2511F53u) * c0[i];
        const uint64_t p1 = static_cast<uint64_t>(0xCD9E8D57u) * c2[i];
        const uint32_t n0 = static_cast<uint32_t>(p1 >> 32) ^ c1[i] ^ k0;
        const uint32_t n2 = static_cast<uint32_t>(p0 >> 32) ^ c3[i] ^ k1;
        c1[i] = static_cast<uint32_t>(p1);
        c3[i] = static_cast<uint32_t>(p0);
        c0[i] = n0;
        c2[i] = n2;
      }
      k0 += 0x9E3779B9u;
      k1 += 0xBB67AE85u;
    }
    // Box-Muller on (c0, c1) -> lanes 0, 1 and (c2, c3) -> lanes 2, 3.
    T u1[2][kBlocks], u2[2][kBlocks];
    for (int64_t i = 0; i < kBlocks; ++i) {
      u1[0][i] = open_uniform<T>(c0[i]);
      u2[0][i] = open_uniform<T>(c1[i]);
      u1[1][i] = open_uniform<T>(c2[i]);
      u2[1][i] = open_uniform<T>(c3[i]);
    }
    T cos_part[2][kBlocks], sin_part[2][kBlocks];
    const Vec two_pi(T(6.283185307179586)), minus_two(T(-2));
    for (int pair = 0; pair < 2; ++pair) {
      for (int64_t i = 0; i < kBlocks; i += Vec::size()) {
        const Vec radius = (minus_two * Vec::loadu(&u1[pair][i]).log()).sqrt();
        const Vec theta = two_pi * Vec::loadu(&u2[pair][i]);
        (radius * theta.cos()).store(&cos_part[pair][i]);
        (radius * theta.sin()).store(&sin_part[pair][i]);
      }
    }
    for (int64_t i = 0; i < kBlocks; ++i) {
      out[4 * i + 0] = cos_part[0][i];
      out[4 * i + 1] = sin_part[0][i];
      out[4 * i + 2] = cos_part[1][i];
      out[4 * i + 3] = sin_part[1][i];
    }
  }
};

}  // namespace paf
#endif  // __CUDACC__
