/*
 * rng.c -- the runtime's random numbers: splitmix64 (Steele, Lea, Flood
 * 2014), a 64-bit counter passed through a strong mixer.  It is tiny,
 * passes BigCrush, and a stream is fully described by one 64-bit state,
 * which keeps shuffles reproducible from (seed, epoch) alone: resuming a
 * run never needs saved generator state.
 */
#include "rt.h"

/* Streams are separated by hashing (seed, stream) into the start state, so
 * epoch 3's shuffle does not depend on how many numbers epoch 2 drew. */
NnccRng rng_stream(uint64_t seed, uint64_t stream) {
  NnccRng r = {nncc_hash64(seed ^ nncc_hash64(stream))};
  return r;
}

uint64_t rng_next(NnccRng *r) {
  uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Rejection sampling: drawing from the largest multiple of n avoids the
 * modulo bias a plain `% n` would give. */
uint64_t rng_below(NnccRng *r, uint64_t n) {
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t x;
  do x = rng_next(r);
  while (x >= limit);
  return x % n;
}

/* 24 random bits give every float in [0,1) with spacing 2^-24 exactly. */
float rng_uniform(NnccRng *r, float bound) {
  double u = (double)(rng_next(r) >> 40) * 0x1p-24;
  return (float)((2.0 * u - 1.0) * (double)bound);
}
