#include <math.h>
#include <stddef.h>
static inline float sig(float x) { return 1.0f / (1.0f + expf(-x)); }
/* Forward of one LSTM step after its matmuls. a (B, 4H): pre-activations i, f, 2*g (doubled), o, activated in
   place (the g slot ends as 2g); c2p, c2 (B, H): 2c_{t-1} and 2c_t; h (B, H) out; d (B, 6H) out or NULL: the
   step's local derivatives [f | (i-i^2) 2g | (f-f^2) 2c_{t-1} | i (2 - (2g)^2/2) | (o-o^2) tanh c | o (1 - tanh(c)^2)/2]. */
void lstm_step(int B, int H, float *restrict a, const float *restrict c2p, float *restrict c2, float *restrict h,
               float *restrict d) {
  for (int b = 0; b < B; b++) {
    float *ab = a + (size_t)b * 4 * H;
    const float *restrict cp = c2p + (size_t)b * H;
    float *restrict cb = c2 + (size_t)b * H, *restrict hb = h + (size_t)b * H;
    for (int j = 0; j < 4 * H; j++) ab[j] = sig(ab[j]);
    float *restrict i = ab, *restrict f = ab + H, *restrict g = ab + 2 * H, *restrict o = ab + 3 * H;
    for (int j = 0; j < H; j++) {
      float g2 = 4.0f * g[j] - 2.0f, c = f[j] * cp[j] + i[j] * g2;
      g[j] = g2; cb[j] = c; hb[j] = 2.0f * sig(c) - 1.0f;  /* tanh(c), times o below */
    }
    if (d) {
      float *db = d + (size_t)b * 6 * H;
      float *restrict d0 = db, *restrict d1 = db + H, *restrict d2 = db + 2 * H, *restrict d3 = db + 3 * H,
            *restrict d4 = db + 4 * H, *restrict d5 = db + 5 * H;
#pragma GCC ivdep
      for (int j = 0; j < H; j++) {
        float tc = hb[j], g2 = g[j];
        d0[j] = f[j];
        d1[j] = (i[j] - i[j] * i[j]) * g2;
        d2[j] = (f[j] - f[j] * f[j]) * cp[j];
        d3[j] = i[j] * (2.0f - 0.5f * g2 * g2);
        d4[j] = (o[j] - o[j] * o[j]) * tc;
        d5[j] = o[j] * (0.5f - 0.5f * tc * tc);
      }
    }
    for (int j = 0; j < H; j++) hb[j] *= o[j];
  }
}
/* Backward of one LSTM step before its matmul: d (B, 6H) as above, dh (B, H) = dL/dh_t, carry (B, 5H, its first
   H read) = e_{t+1} f_{t+1} (zeros at the last step); w (B, 5H) out: [e f (the next carry) | dG_i dG_f dG_g dG_o],
   e = dL/d(2c_t). */
void lstm_step_back(int B, int H, const float *restrict d, const float *restrict dh, const float *restrict carry,
                    float *restrict w) {
  for (int b = 0; b < B; b++) {
    const float *db = d + (size_t)b * 6 * H;
    const float *restrict d0 = db, *restrict d1 = db + H, *restrict d2 = db + 2 * H, *restrict d3 = db + 3 * H,
                *restrict d4 = db + 4 * H, *restrict d5 = db + 5 * H;
    const float *restrict dhb = dh + (size_t)b * H, *restrict cr = carry + (size_t)b * 5 * H;
    float *wb = w + (size_t)b * 5 * H;
    float *restrict w0 = wb, *restrict w1 = wb + H, *restrict w2 = wb + 2 * H, *restrict w3 = wb + 3 * H,
          *restrict w4 = wb + 4 * H;
    for (int j = 0; j < H; j++) {
      float e = dhb[j] * d5[j] + cr[j];
      w0[j] = e * d0[j];
      w1[j] = e * d1[j];
      w2[j] = e * d2[j];
      w3[j] = e * d3[j];
      w4[j] = dhb[j] * d4[j];
    }
  }
}

/* A whole chunk of n steps in C, the recurrent matmuls through BLAS's sgemm_ (Fortran, column-major; here
   MKL's, exported by libtorch_cpu), so no Python runs per step. Row-major C (M x N) += A (M x K) B (K x N) is
   column-major C^T += B^T A^T: sgemm("N", "N", N, M, K, 1, B, ldb, A, lda, 1, C, ldc). */
typedef void (*sgemm_t)(const char *, const char *, const int *, const int *, const int *, const float *,
                        const float *, const int *, const float *, const int *, const float *, float *, const int *);

/* G (n, B, 4H): the chunk's input projections (plus biases); WhT (H, 4H); C2 (n+1, B, H), C2[0] = 2c before the
   chunk; Hs (n+1, B, H) from h before the chunk; D (n, B, 6H) or NULL; first: the chunk starts at t = 0. */
void lstm_chunk(sgemm_t sgemm, int B, int H, int n, int first, float *G, const float *WhT, float *C2, float *Hs,
                float *D) {
  const float one = 1.0f;
  const int G4 = 4 * H;
  for (int k = 0; k < n; k++) {
    float *g = G + (size_t)k * B * G4;
    if (!(first && k == 0)) sgemm("N", "N", &G4, &B, &H, &one, WhT, &G4, Hs + (size_t)k * B * H, &H, &one, g, &G4);
    lstm_step(B, H, g, C2 + (size_t)k * B * H, C2 + (size_t)(k + 1) * B * H, Hs + (size_t)(k + 1) * B * H,
              D ? D + (size_t)k * B * 6 * H : NULL);
  }
}

/* Backward of a chunk t0..t0+n-1: D (n, B, 6H); dhs (T, B, H) the incoming dL/dh_t, from index 0; dh (B, H) in:
   dL/dh at the chunk's last step, out: dL/dh at the step before the chunk (untouched if t0 = 0); carry (B, 5H);
   W (n, B, 5H) out; Whh (4H, H). Returns nothing; the carry for the next chunk is W[0]'s first slot. */
void lstm_chunk_back(sgemm_t sgemm, int B, int H, int n, int t0, const float *D, const float *dhs, float *dh,
                     const float *carry, float *W, const float *Whh) {
  const float one = 1.0f;
  const int G4 = 4 * H, W5 = 5 * H;
  for (int k = n - 1; k >= 0; k--) {
    float *w = W + (size_t)k * B * W5;
    lstm_step_back(B, H, D + (size_t)k * B * 6 * H, dh, carry, w);
    carry = w;
    if (t0 + k == 0) break;
    const float *prev = dhs + (size_t)(t0 + k - 1) * B * H;
    for (size_t j = 0; j < (size_t)B * H; j++) dh[j] = prev[j];
    sgemm("N", "N", &H, &B, &G4, &one, Whh, &H, w + H, &W5, &one, dh, &H);
  }
}
