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
