// AMR_VECTOR_CLONES before a cpu kernel builds it three times, for AVX-512, AVX2 and the baseline (SSE2), and lets
// the loader pick the widest the CPU has (GCC's target_clones: an ifunc resolved once, at load). Kernels written as
// independent row updates vectorize under the build's IEEE order in every clone, so all three give the same bits.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AMR_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define AMR_VECTOR_CLONES
#endif
