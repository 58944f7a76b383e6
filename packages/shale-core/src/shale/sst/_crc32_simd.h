/* CRC-32 (zlib's polynomial, reflected) folded with carry-less multiplication (PCLMULQDQ).
 *
 * The SST chunk checksum is zlib's crc32; zlib 1.2.x computes it with tables (~2 GB/s), which
 * made the checksums a third of a compaction's CPU time. This is the folding algorithm of
 * Intel's "Fast CRC Computation for Generic Polynomials Using PCLMULQDQ Instruction" as in
 * Chromium's zlib (crc32_simd.c, BSD licence): four 128-bit lanes folded 64 bytes at a time,
 * then to 128 bits, 64 bits and a Barrett reduction. shale_crc32() picks it at run time when
 * the CPU has PCLMULQDQ and SSE4.1, for 64 bytes or more, and leaves the tail (and every other
 * machine) to zlib. The twin test checks it against zlib.crc32 on every length.
 */
#ifndef SHALE_CRC32_SIMD_H
#define SHALE_CRC32_SIMD_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define SHALE_CRC32_SIMD 1
#include <immintrin.h>

__attribute__((target("pclmul,sse4.1")))
static uint32_t shale_crc32_fold(const unsigned char *buf, size_t len, uint32_t crc)
{
    /* len >= 64 and a multiple of 16; crc is the pre-inverted running value */
    static const uint64_t k1k2[2] __attribute__((aligned(16))) = {0x0154442bd4ULL, 0x01c6e41596ULL};
    static const uint64_t k3k4[2] __attribute__((aligned(16))) = {0x01751997d0ULL, 0x00ccaa009eULL};
    static const uint64_t k5k0[2] __attribute__((aligned(16))) = {0x0163cd6124ULL, 0x0000000000ULL};
    static const uint64_t poly[2] __attribute__((aligned(16))) = {0x01db710641ULL, 0x01f7011641ULL};
    __m128i x0, x1, x2, x3, x4, x5, x6, x7, x8, y5, y6, y7, y8;

    x1 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
    x2 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
    x3 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
    x4 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
    x1 = _mm_xor_si128(x1, _mm_cvtsi32_si128((int)crc));
    x0 = _mm_load_si128((const __m128i *)k1k2);
    buf += 64;
    len -= 64;
    while (len >= 64) {
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x6 = _mm_clmulepi64_si128(x2, x0, 0x00);
        x7 = _mm_clmulepi64_si128(x3, x0, 0x00);
        x8 = _mm_clmulepi64_si128(x4, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x2 = _mm_clmulepi64_si128(x2, x0, 0x11);
        x3 = _mm_clmulepi64_si128(x3, x0, 0x11);
        x4 = _mm_clmulepi64_si128(x4, x0, 0x11);
        y5 = _mm_loadu_si128((const __m128i *)(buf + 0x00));
        y6 = _mm_loadu_si128((const __m128i *)(buf + 0x10));
        y7 = _mm_loadu_si128((const __m128i *)(buf + 0x20));
        y8 = _mm_loadu_si128((const __m128i *)(buf + 0x30));
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x5), y5);
        x2 = _mm_xor_si128(_mm_xor_si128(x2, x6), y6);
        x3 = _mm_xor_si128(_mm_xor_si128(x3, x7), y7);
        x4 = _mm_xor_si128(_mm_xor_si128(x4, x8), y8);
        buf += 64;
        len -= 64;
    }
    /* fold the four lanes into one */
    x0 = _mm_load_si128((const __m128i *)k3k4);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x3), x5);
    x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
    x1 = _mm_xor_si128(_mm_xor_si128(x1, x4), x5);
    /* single 16-byte folds */
    while (len >= 16) {
        x2 = _mm_loadu_si128((const __m128i *)buf);
        x5 = _mm_clmulepi64_si128(x1, x0, 0x00);
        x1 = _mm_clmulepi64_si128(x1, x0, 0x11);
        x1 = _mm_xor_si128(_mm_xor_si128(x1, x2), x5);
        buf += 16;
        len -= 16;
    }
    /* 128 -> 64 bits */
    x2 = _mm_clmulepi64_si128(x1, x0, 0x10);
    x3 = _mm_setr_epi32(~0, 0, ~0, 0);
    x1 = _mm_srli_si128(x1, 8);
    x1 = _mm_xor_si128(x1, x2);
    x0 = _mm_loadl_epi64((const __m128i *)k5k0);
    x2 = _mm_srli_si128(x1, 4);
    x1 = _mm_and_si128(x1, x3);
    x1 = _mm_clmulepi64_si128(x1, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    /* Barrett reduction to 32 bits */
    x0 = _mm_load_si128((const __m128i *)poly);
    x2 = _mm_and_si128(x1, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x10);
    x2 = _mm_and_si128(x2, x3);
    x2 = _mm_clmulepi64_si128(x2, x0, 0x00);
    x1 = _mm_xor_si128(x1, x2);
    return (uint32_t)_mm_extract_epi32(x1, 1);
}

static int shale_crc32_simd_ok = -1;

static int shale_crc32_simd_available(void)
{
    if (shale_crc32_simd_ok < 0) {
        __builtin_cpu_init();
        shale_crc32_simd_ok = __builtin_cpu_supports("pclmul") && __builtin_cpu_supports("sse4.1");
    }
    return shale_crc32_simd_ok;
}
#else
#define SHALE_CRC32_SIMD 0
static int shale_crc32_simd_available(void) { return 0; }
#endif

/* zlib's crc32(crc, buf, len) for any length (no GIL needed). */
static uint32_t shale_crc32(uint32_t crc, const unsigned char *buf, size_t len)
{
#if SHALE_CRC32_SIMD
    if (len >= 64 && shale_crc32_simd_available()) {
        size_t chunk = len & ~(size_t)15;
        crc = ~shale_crc32_fold(buf, chunk, ~crc);
        buf += chunk;
        len -= chunk;
    }
#endif
    while (len > 0) {
        unsigned int step = len > 0x40000000 ? 0x40000000u : (unsigned int)len;
        crc = (uint32_t)crc32(crc, buf, step);
        buf += step;
        len -= step;
    }
    return crc;
}

#endif
