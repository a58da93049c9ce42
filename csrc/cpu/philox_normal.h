// Counter-based standard-normal noise: element i of a sampled tensor gets
// the normal number derived from Philox4x32-10(key = seed, counter = i / 4),
// lane i % 4, through Box-Muller. Any element can be regenerated on its own,
// so the backward pass needs only the seed (not the noise), results do not
// depend on the thread count, and a CUDA kernel can produce the same numbers.
// pyautoencoder_fast/reference.py (philox4x32_10, philox_normal) implements
// the same mapping in PyTorch; the tests hold the two together.
// This header is the CPU part (the generator itself, host/device, is philox.h).
#pragma once

#include "elementwise_math.h"  // box_muller on at::vec registers
#include "../common/philox.h"

#include <ATen/cpu/vec/vec.h>

#include <algorithm>

namespace paf {

// CPU: Philox4x32-10 and Box-Muller for kBlocks blocks at a time. The rounds
// run on AVX2/AVX-512 registers (a scalar loop in the DEFAULT build) and
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
  // The ten Philox4x32 rounds on kBlocks counters. Each 32-bit word sits in
  // the low half of a 64-bit lane; the high halves carry junk that nothing
  // reads, so a round needs no masking, and its 32x32->64-bit products are
  // one widening multiply per lane (compilers emit a slow full 64-bit
  // multiply for the portable form, hence the intrinsics).
  static C10_ALWAYS_INLINE void philox_rounds(uint64_t seed, uint64_t* c0, uint64_t* c1, uint64_t* c2,
                                              uint64_t* c3) {
    uint32_t k0 = static_cast<uint32_t>(seed), k1 = static_cast<uint32_t>(seed >> 32);
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#if defined(CPU_CAPABILITY_AVX512)
    using Lanes = __m512i;
    constexpr int64_t kLanes = 8;
    const auto load = [](const uint64_t* p) { return _mm512_loadu_si512(p); };
    const auto store = [](uint64_t* p, Lanes v) { _mm512_storeu_si512(p, v); };
    const auto splat = [](uint32_t v) { return _mm512_set1_epi64(v); };
    const auto mul_wide = [](Lanes a, Lanes b) { return _mm512_mul_epu32(a, b); };
    const auto high = [](Lanes v) { return _mm512_srli_epi64(v, 32); };
    const auto xor3 = [](Lanes a, Lanes b, Lanes c) { return _mm512_ternarylogic_epi64(a, b, c, 0x96); };
#else
    using Lanes = __m256i;
    constexpr int64_t kLanes = 4;
    const auto load = [](const uint64_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
    const auto store = [](uint64_t* p, Lanes v) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v); };
    const auto splat = [](uint32_t v) { return _mm256_set1_epi64x(v); };
    const auto mul_wide = [](Lanes a, Lanes b) { return _mm256_mul_epu32(a, b); };
    const auto high = [](Lanes v) { return _mm256_srli_epi64(v, 32); };
    const auto xor3 = [](Lanes a, Lanes b, Lanes c) { return _mm256_xor_si256(_mm256_xor_si256(a, b), c); };
#endif
    static_assert(kBlocks % kLanes == 0, "the rounds run on whole registers");
    constexpr int64_t kRegs = kBlocks / kLanes;
    Lanes w0[kRegs], w1[kRegs], w2[kRegs], w3[kRegs];
    for (int64_t r = 0; r < kRegs; ++r) {
      w0[r] = load(c0 + r * kLanes);
      w1[r] = load(c1 + r * kLanes);
      w2[r] = load(c2 + r * kLanes);
      w3[r] = load(c3 + r * kLanes);
    }
    const Lanes m0 = splat(kPhiloxM0), m1 = splat(kPhiloxM1);
    for (int round = 0; round < 10; ++round) {
      const Lanes key0 = splat(k0), key1 = splat(k1);
      for (int64_t r = 0; r < kRegs; ++r) {
        const Lanes p0 = mul_wide(w0[r], m0), p1 = mul_wide(w2[r], m1);
        w0[r] = xor3(high(p1), w1[r], key0);
        w2[r] = xor3(high(p0), w3[r], key1);
        w1[r] = p1;
        w3[r] = p0;
      }
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    for (int64_t r = 0; r < kRegs; ++r) {
      store(c0 + r * kLanes, w0[r]);
      store(c1 + r * kLanes, w1[r]);
      store(c2 + r * kLanes, w2[r]);
      store(c3 + r * kLanes, w3[r]);
    }
#else
    for (int round = 0; round < 10; ++round) {
      for (int64_t i = 0; i < kBlocks; ++i) {
        uint32_t w[4] = {static_cast<uint32_t>(c0[i]), static_cast<uint32_t>(c1[i]), static_cast<uint32_t>(c2[i]),
                         static_cast<uint32_t>(c3[i])};
        philox_round(w[0], w[1], w[2], w[3], k0, k1);
        c0[i] = w[0];
        c1[i] = w[1];
        c2[i] = w[2];
        c3[i] = w[3];
      }
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
#endif
  }

  // The 4 * kBlocks normals of blocks [block0, block0 + kBlocks).
  static void generate(uint64_t seed, int64_t block0, T* out) {
    uint64_t c0[kBlocks], c1[kBlocks], c2[kBlocks], c3[kBlocks];
    for (int64_t i = 0; i < kBlocks; ++i) {
      const uint64_t counter = static_cast<uint64_t>(block0 + i);
      c0[i] = counter;  // only the low 32 bits of each word are used
      c1[i] = counter >> 32;
      c2[i] = 0;
      c3[i] = 0;
    }
    philox_rounds(seed, c0, c1, c2, c3);
    // Box-Muller on (c0, c1) -> lanes 0, 1 and (c2, c3) -> lanes 2, 3.
    T u1[2][kBlocks], u2[2][kBlocks];
    for (int64_t i = 0; i < kBlocks; ++i) {
      u1[0][i] = open_uniform<T>(static_cast<uint32_t>(c0[i]));
      u2[0][i] = open_uniform<T>(static_cast<uint32_t>(c1[i]));
      u1[1][i] = open_uniform<T>(static_cast<uint32_t>(c2[i]));
      u2[1][i] = open_uniform<T>(static_cast<uint32_t>(c3[i]));
    }
    T cos_part[2][kBlocks], sin_part[2][kBlocks];
    for (int pair = 0; pair < 2; ++pair) {
      for (int64_t i = 0; i < kBlocks; i += Vec::size()) {
        Vec c, s;
        box_muller(Vec::loadu(&u1[pair][i]), Vec::loadu(&u2[pair][i]), c, s);
        c.store(&cos_part[pair][i]);
        s.store(&sin_part[pair][i]);
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
