"""Triton kernel of the fused FFN block. Imported lazily (by the custom op's
implementation), so that ``TRITON_INTERPRET=1`` set before the first call selects the
CPU interpreter and ``import tinyvim_mm`` works without Triton."""
import triton
import triton.language as tl


@triton.jit
def _gelu(x):
    """Exact GELU, ``x * Phi(x) = max(x, 0) - |x| * Q(|x|)``, with the normal tail
    ``Q(t) = P(N(0, 1) > t) = 2**-s(t)`` and ``s`` a degree-6 polynomial (fitted by
    ``tools/misc/fit_gelu.py`` on ``0 <= t <= 6``): one ``exp2``, 7 FMAs and a min / max,
    about half the instructions of an ``erf``, which takes an ``exp``, a division and a
    longer polynomial (19-34 % less kernel time on an H100; docs/benchmarks.md, "The
    fused FFN kernel's launch"). Within 2.9e-7 (absolute, float32) of the exact GELU."""
    t = tl.minimum(tl.abs(x), 6.0)
    s = 0.9999930610 + t * (1.151201702 + t * (0.4587709737 + t * (
        0.05341210389 + t * (-0.008080716439 + t * (7.692196950e-4 + t * -3.309281646e-5)))))
    return tl.maximum(x, 0.0) - tl.abs(x) * tl.exp2(-s)  # x * Phi(x), in one FFMA


@triton.jit
def ffn_kernel(x_ptr, out_ptr, dw_w_ptr, dw_b_ptr, w1t_ptr, b1_ptr, w2t_ptr, b2_ptr,
               M, H, W, C, HID,
               HAS_DW: tl.constexpr, KS: tl.constexpr, BLOCK_M: tl.constexpr,
               BLOCK_C: tl.constexpr, BLOCK_H: tl.constexpr, PRECISION: tl.constexpr):
    """``out = x + fc2(gelu(fc1(dw(x))))`` for ``BLOCK_M`` pixels of a
    channels-last ``(M = B*H*W, C)`` tensor; ``dw`` a ``KS x KS`` depth-wise
    conv (zero padding) or the identity; ``w1t``: ``fc1``'s weight as
    ``(C, HID)``, ``w2t``: ``fc2``'s as ``(HID, C)`` (row-major, so that weight
    tiles load along rows). The hidden ``BLOCK_M x HID`` activation lives in
    registers only, ``BLOCK_H`` columns at a time; float32 accumulation."""
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)  # M * C < 2**31 (host check)
    cols = tl.arange(0, BLOCK_C)
    r_mask = rows < M
    c_mask = cols < C
    mask = r_mask[:, None] & c_mask[None, :]
    offsets = rows[:, None] * C + cols[None, :]
    if HAS_DW:
        px = rows % W
        py = (rows // W) % H
        acc = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
        for i in range(KS * KS):  # a run-time loop: one tap's tile live at a time
            dy = i // KS - KS // 2
            dx = i % KS - KS // 2
            ok = r_mask & (py + dy >= 0) & (py + dy < H) & (px + dx >= 0) & (px + dx < W)
            v = tl.load(x_ptr + offsets + (dy * W + dx) * C, mask=ok[:, None] & c_mask[None, :],
                        other=0.0)
            tap = tl.load(dw_w_ptr + cols * (KS * KS) + i, mask=c_mask, other=0.0)
            acc += v.to(tl.float32) * tap.to(tl.float32)[None, :]
        acc += tl.load(dw_b_ptr + cols, mask=c_mask, other=0.0).to(tl.float32)[None, :]
        a = acc.to(x_ptr.dtype.element_ty)
    else:
        a = tl.load(x_ptr + offsets, mask=mask, other=0.0)
    y = tl.zeros((BLOCK_M, BLOCK_C), dtype=tl.float32)
    for h0 in range(0, HID, BLOCK_H):
        hid_cols = h0 + tl.arange(0, BLOCK_H)
        h_mask = hid_cols < HID
        w1 = tl.load(w1t_ptr + cols[:, None] * HID + hid_cols[None, :],
                     mask=c_mask[:, None] & h_mask[None, :], other=0.0)  # (BLOCK_C, BLOCK_H)
        hid = tl.dot(a, w1, input_precision=PRECISION)
        hid += tl.load(b1_ptr + hid_cols, mask=h_mask, other=0.0).to(tl.float32)[None, :]
        hid = _gelu(hid)
        w2 = tl.load(w2t_ptr + hid_cols[:, None] * C + cols[None, :],
                     mask=h_mask[:, None] & c_mask[None, :], other=0.0)  # (BLOCK_H, BLOCK_C)
        y = tl.dot(hid.to(w2.dtype), w2, y, input_precision=PRECISION)
    y += tl.load(b2_ptr + cols, mask=c_mask, other=0.0).to(tl.float32)[None, :]
    y += tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)  # residual (cached)
    tl.store(out_ptr + offsets, y.to(out_ptr.dtype.element_ty), mask=mask)
