"""The register-tiled inner kernels, written out per tile shape.

GCC does not keep an array of vector accumulators (``pt_vf acc[6][4]``) in registers: it
leaves it on the stack and loads and stores it around every FMA, even with constant
bounds and full unrolling (measured: 3x slower than torch on a 3x3 conv). So the two
register-tiled kernels are emitted from here with one named variable per accumulator,
once per tile shape a network uses:

* ``pt_conv_<O>x<N>``: direct convolution, ``O`` filters x ``N`` vectors of one output row,
  for output rows ``oy0 .. oy1 - 1``;
* ``pt_gemm_<M>x<N>``: the 1x1 convolution's matrix product, ``M`` filters x ``N`` vectors
  of pixels over the whole reduction, for pixel blocks ``nb0 .. nb1 - 1``.

Both are ``always_inline`` functions of one work item (a block of filters and a share of
its rows or pixels) taking the shapes as arguments; the generated call passes literals,
so GCC specialises each call.
"""

from __future__ import annotations


def _accs(o: int, n: int, init: str) -> list[str]:
    return [f"pt_vf a{i}_{j} = {init.format(i=i)};" for i in range(o) for j in range(n)]


def _store(o: int, n: int, row: str, left: str) -> list[str]:
    """Store accumulator rows with the activation; partial vectors through a buffer."""
    lines = []
    for i in range(o):
        lines.append(f"  if (OB0 + {i} < LIMIT) {{")
        lines.append(f"    float* restrict dst = {row.format(i=i)};")
        for j in range(n):
            lines.append(f"    {{ const int left = {left} - {j} * VL; const pt_vf v = "
                         f"pt_act_v(a{i}_{j}, act);")
            lines.append(f"      if (left >= VL) PT_ST(dst + {j} * VL, v); "
                         f"else if (left > 0) pt_store_part(dst + {j} * VL, v, left); }}")
        lines.append("  }")
    return lines


def conv_tile(o: int, n: int) -> str:
    """C of ``pt_conv_<o>x<n>``: one block of ``o`` filters of a direct convolution.

    Reads the phase planes of ``pt_pad_planes``; weights packed
    ``[G][blocks][cin/G][KH][KW][o]``, bias ``[G][blocks][o]`` (see
    :func:`codegen.network.kernels.pack_conv`).
    """
    fmas = []
    for j in range(n):
        fmas.append(f"          const pt_vf v{j} = PT_LD(src + {j} * VL);")
    for i in range(o):
        fmas.append(f"          {{ const pt_vf wv = PT_SPLAT(wk[kx * {o} + {i}]); "
                    + " ".join(f"a{i}_{j} += wv * v{j};" for j in range(n)) + " }")
    body = [
        f"PT_INLINE void pt_conv_{o}x{n}(const float* restrict xp, float* restrict y,",
        "    const float* restrict w, const float* restrict bias, const int gb, const int CINPG,",
        "    const int COUTPG, const int OH, const int OW, const int KH, const int KW,",
        "    const int S, const int WPH, const int PLANE, const int act, const int oy0,",
        "    const int oy1) {",
        f"  const int NOB = (COUTPG + {o - 1}) / {o};",
        f"  const int NXB = (OW + {n} * VL - 1) / ({n} * VL);",
        "  const int g = gb / NOB, ob = gb % NOB;",
        f"  const float* restrict wb = w + (size_t)gb * CINPG * KH * KW * {o};",
        f"  const float* restrict bb = bias + (size_t)gb * {o};",
        "  const float* restrict xg = xp + (size_t)g * CINPG * S * PLANE;",
        f"  const int OB0 = ob * {o}, LIMIT = COUTPG;",
        "  for (int oy = oy0; oy < oy1; ++oy) {",
        "   for (int xb = 0; xb < NXB; ++xb) {",
        f"    const int ox = xb * {n} * VL;",
        *("    " + a for a in _accs(o, n, "PT_SPLAT(bb[{i}])")),
        "    for (int ic = 0; ic < CINPG; ++ic) {",
        "      for (int ky = 0; ky < KH; ++ky) {",
        "        const float* restrict row = xg + (size_t)ic * S * PLANE"
        " + (size_t)(oy * S + ky) * WPH + ox;",
        f"        const float* restrict wk = wb + (size_t)(ic * KH + ky) * KW * {o};",
        "#pragma GCC unroll 16",
        "        for (int kx = 0; kx < KW; ++kx) {",
        "          const float* restrict src = row + (size_t)(kx % S) * PLANE + kx / S;",
        *fmas,
        "        }",
        "      }",
        "    }",
        *("  " + ln for ln in _store(
            o, n, "y + ((size_t)(g * COUTPG + OB0 + {i}) * OH + oy) * OW + ox", "OW - ox")),
        "   }",
        "  }",
        "}",
    ]
    return "\n".join(body) + "\n"


def gemm_tile(m: int, n: int) -> str:
    """C of ``pt_gemm_<m>x<n>``: ``y[M][N] = w[M][K] x[K][N] + bias`` for one block of ``m``
    filters, the whole K per tile (the epilogue fused); ``w`` packed ``[M/m][K][m]``.

    The last pixel block reads up to one tile past row ``K - 1`` (the arena has slack
    there); those lanes are never stored.
    """
    fmas = [f"      const pt_vf v{j} = PT_LD(xk + (size_t)k * N + {j} * VL);" for j in range(n)]
    for i in range(m):
        fmas.append(f"      {{ const pt_vf wv = PT_SPLAT(wb[(size_t)k * {m} + {i}]); "
                    + " ".join(f"a{i}_{j} += wv * v{j};" for j in range(n)) + " }")
    body = [
        f"PT_INLINE void pt_gemm_{m}x{n}(const float* restrict x, float* restrict y,",
        "    const float* restrict w, const float* restrict bias, const int mb, const int M,",
        "    const int K, const int N, const int act, const int nb0, const int nb1) {",
        f"  const float* restrict wb = w + (size_t)mb * K * {m};",
        f"  const int OB0 = mb * {m}, LIMIT = M;",
        "  for (int nb = nb0; nb < nb1; ++nb) {",
        f"    const int n0 = nb * {n} * VL;",
        *("    " + a for a in _accs(m, n, f"PT_SPLAT(bias[mb * {m} + {{i}}])")),
        "    const float* restrict xk = x + n0;",
        "    for (int k = 0; k < K; ++k) {",
        *fmas,
        "    }",
        *("  " + ln for ln in _store(m, n, "y + (size_t)(OB0 + {i}) * N + n0", "N - n0")),
        "  }",
        "}",
    ]
    return "\n".join(body) + "\n"


__all__ = ["conv_tile", "gemm_tile"]
