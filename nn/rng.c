/*
 * The seedable generator: xoshiro256** over a state filled by splitmix64,
 * with uniform, Box-Muller normal and unbiased integer draws, and its state
 * as plain words for checkpoints.
 */
#include <math.h>
#include <string.h>

#include <tapegrad/nn.h>

#include "core-impl.h"

#define SPARE_PENDING ((uint64_t)1 << 32)
#define TWO_PI        6.283185307179586

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void tg_rng_seed(struct tg_rng *rng, uint64_t seed)
{
    if (!rng)
        return;
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&x);
    rng->spare = 0.0f;
    rng->has_spare = false;
}

uint64_t tg_rng_next_u64(struct tg_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float tg_rng_uniform(struct tg_rng *rng)
{
    return (float)(tg_rng_next_u64(rng) >> 40) * 0x1.0p-24f;
}

/* Uniform double in (0, 1]: never 0, so its logarithm is finite. */
static double uniform_open0(struct tg_rng *rng)
{
    return (double)((tg_rng_next_u64(rng) >> 11) + 1) * 0x1.0p-53;
}

float tg_rng_normal(struct tg_rng *rng)
{
    if (rng->has_spare) {
        rng->has_spare = false;
        return rng->spare;
    }
    double r = sqrt(-2.0 * log(uniform_open0(rng)));
    double theta = TWO_PI * uniform_open0(rng);
    rng->spare = (float)(r * sin(theta));
    rng->has_spare = true;
    return (float)(r * cos(theta));
}

uint64_t tg_rng_int(struct tg_rng *rng, uint64_t n)
{
    if (n == 0)
        return 0;
    uint64_t threshold = (0 - n) % n; // 2^64 mod n
    for (;;) {
        uint64_t x = tg_rng_next_u64(rng);
        if (x >= threshold)
            return x % n;
    }
}

void tg_rng_get_state(const struct tg_rng *rng, uint64_t state[TG_RNG_STATE_WORDS])
{
    if (!rng || !state)
        return;
    for (int i = 0; i < 4; i++)
        state[i] = rng->s[i];
    uint32_t bits;
    memcpy(&bits, &rng->spare, sizeof(bits));
    state[4] = (uint64_t)bits | (rng->has_spare ? SPARE_PENDING : 0);
}

enum tg_status tg_rng_set_state(struct tg_rng *rng, const uint64_t state[TG_RNG_STATE_WORDS])
{
    if (!rng || !state)
        return tg_error_set(TG_ERR_INVALID, "tg_rng_set_state: NULL %s", rng ? "state" : "rng");
    if ((state[0] | state[1] | state[2] | state[3]) == 0)
        return tg_error_set(TG_ERR_INVALID, "tg_rng_set_state: the generator state is all zero");
    if (state[4] >> 33)
        return tg_error_set(TG_ERR_INVALID, "tg_rng_set_state: unknown bits in word 4 (0x%016llx)",
                            (unsigned long long)state[4]);
    for (int i = 0; i < 4; i++)
        rng->s[i] = state[i];
    uint32_t bits = (uint32_t)state[4];
    memcpy(&rng->spare, &bits, sizeof(bits));
    rng->has_spare = (state[4] & SPARE_PENDING) != 0;
    return TG_OK;
}
