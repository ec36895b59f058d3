// Instruction-set clones for the CPU hot loops.
#pragma once

// IRNET_CLONES compiles a function once per instruction set (AVX-512, AVX2 + FMA, baseline) and
// picks one when the library loads: the extension stays portable while the hot loops use the
// widest vectors the CPU has. Only non-template functions can carry it; they call
// always-inline templates, which are then compiled for each clone.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define IRNET_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define IRNET_CLONES
#endif

#define IRNET_INLINE __attribute__((always_inline)) inline
