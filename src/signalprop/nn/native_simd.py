"""The C++ shared by the fused BPTT kernels of the additive-filter RNN
(:mod:`signalprop.nn.filter_bptt_native`) and LEM (:mod:`signalprop.nn.lem_bptt_native`): the
vector helpers and the entry-point checks, as source both extensions include."""

#: The vector helpers of the fused kernels (GCC/clang vector extensions: 32-byte vectors,
#: loads and stores, column padding, a float32 ``exp`` with relative error below 1e-7 and the
#: sigmoid), shared with LEM's kernels (:mod:`signalprop.nn.lem_bptt_native`); used inside a
#: ``namespace fused`` after ``<algorithm>``, ``<cmath>``, ``<cstdint>`` and ``<vector>``.
SIMD_SOURCE = r"""
// 32-byte vectors (8 floats, 4 doubles), unaligned and free to alias the buffers they load.
template <typename T>
struct Simd {
  typedef T V __attribute__((vector_size(32), aligned(alignof(T)), may_alias));
  static constexpr int64_t kLanes = 32 / sizeof(T);
};
template <typename T>
using V = typename Simd<T>::V;
typedef int32_t VInt __attribute__((vector_size(32)));

// A block of columns is kVecs vectors; two blocks (W and O) of accumulators fill about half
// of the 16 AVX2 registers.
constexpr int64_t kVecs = 4;
template <typename T>
constexpr int64_t kBlock = kVecs * Simd<T>::kLanes;

template <typename T>
inline V<T> load(const T* p) { return *reinterpret_cast<const V<T>*>(p); }
template <typename T>
inline void store(T* p, V<T> v) { *reinterpret_cast<V<T>*>(p) = v; }
template <typename T>
inline V<T> splat(T x) { return V<T>{} + x; }

inline int64_t padded(int64_t n, int64_t block) { return (n + block - 1) / block * block; }

// The (n, n) matrix m as a row-major (n, np) copy whose columns n .. np - 1 are zero.
template <typename T>
std::vector<T> pad_columns(const at::Tensor& m, int64_t np) {
  const at::Tensor c = m.contiguous();
  const int64_t n = c.size(0);
  const T* src = c.data_ptr<T>();
  std::vector<T> out(n * np, T(0));
  for (int64_t i = 0; i < n; ++i) {
    std::copy(src + i * n, src + (i + 1) * n, out.begin() + i * np);
  }
  return out;
}

// exp of 8 floats: x = k ln 2 + r with k rounded by the 1.5 * 2^23 trick (exact without
// -ffast-math), exp(r) by Cephes' degree-6 polynomial (relative error below 1e-7), 2^k from
// its exponent bits; x is clamped to [-87, 88] so 2^k stays a normal float.
inline V<float> exp_of(V<float> x) {
  x = x < -87.0f ? splat(-87.0f) : x;
  x = x > 88.0f ? splat(88.0f) : x;
  const V<float> magic = splat(12582912.0f);
  const V<float> k = (x * 1.44269504088896341f + magic) - magic;
  V<float> r = x - k * 0.693359375f;
  r = r + k * 2.12194440e-4f;
  V<float> p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const VInt bits = (__builtin_convertvector(k, VInt) + 127) << 23;
  return p * reinterpret_cast<const V<float>&>(bits);
}

// float64 keeps the library exp (its kernels are for checking, not for speed).
inline V<double> exp_of(V<double> x) {
  for (int64_t l = 0; l < Simd<double>::kLanes; ++l) x[l] = std::exp(x[l]);
  return x;
}

template <typename T>
inline V<T> sigmoid(V<T> x) { return T(1) / (T(1) + exp_of(-x)); }
"""

#: The entry points' checks both extensions share, placed after their kernels (where
#: ``SIGNALPROP_FUSED`` is defined on GCC and clang) and after ``<initializer_list>``.
ENTRY_SOURCE = r"""
// Fails unless this build has the fused kernels and every tensor is a contiguous CPU buffer of
// the first one's dtype (what the kernels read through raw pointers).
void check_fused(std::initializer_list<at::Tensor> tensors) {
#ifndef SIGNALPROP_FUSED
  TORCH_CHECK(false, "the fused loops need GCC or clang vector extensions");
#endif
  const at::Tensor& first = *tensors.begin();
  for (const at::Tensor& t : tensors) {
    TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == first.scalar_type(),
                "the fused loops need contiguous CPU buffers of one dtype");
  }
}

// Whether this build has the fused kernels (GCC or clang).
bool fused_available() {
#ifdef SIGNALPROP_FUSED
  return true;
#else
  return false;
#endif
}
"""
