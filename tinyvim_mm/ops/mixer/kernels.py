"""Triton kernels of the fused Laplace mixer. Imported lazily (by the custom ops'
implementations), so that ``TRITON_INTERPRET=1`` set before the first call selects the
CPU interpreter and ``import tinyvim_mm`` works without Triton.

Both take ``(B, C, H, W)`` tensors through their strides (any layout) and flatten the
pixels of the output grid into the first program axis; a program handles
``BLOCK_P`` pixels x ``BLOCK_C`` channels and computes in float32."""
import triton
import triton.language as tl


@triton.jit
def _silu(v):
    v = v.to(tl.float32)
    return v * tl.sigmoid(v)


@triton.jit
def silu_pool_kernel(t_ptr, out_ptr, P, C, H, W, h, w,
                     st_b, st_c, st_y, st_x, so_b, so_c, so_y, so_x,
                     K: tl.constexpr, BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    """``out = avg_pool2d(silu(t), K, ceil_mode=True)``: ``out`` ``(B, C, h, w)``,
    ``h = ceil(H / K)``; a window cut by the border averages its pixels inside
    (``avg_pool2d``'s divisor without padding)."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # pixel of out, < 2**31 (host)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    p_ok = p < P
    c_ok = c < C
    j = p % w
    i = (p // w) % h
    b = p // (w * h)
    base = b * st_b + (i * K) * st_y + (j * K) * st_x
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for tap in range(K * K):  # a run-time loop: one tap's tile live at a time
        dy = tap // K
        dx = tap % K
        ok = p_ok & (i * K + dy < H) & (j * K + dx < W)
        v = tl.load(t_ptr + (base + dy * st_y + dx * st_x)[:, None] + c[None, :] * st_c,
                    mask=ok[:, None] & c_ok[None, :], other=0.0)
        acc += _silu(v)  # silu(0) = 0: pixels outside add nothing
    rows = tl.minimum(H - i * K, K)
    cols = tl.minimum(W - j * K, K)
    acc = acc / (rows * cols).to(tl.float32)[:, None]
    offsets = b * so_b + i * so_y + j * so_x
    tl.store(out_ptr + offsets[:, None] + c[None, :] * so_c, acc.to(out_ptr.dtype.element_ty),
             mask=p_ok[:, None] & c_ok[None, :])


@triton.jit
def merge_kernel(t_ptr, pooled_ptr, y_ptr, w_ptr, bias_ptr, out_ptr,
                 P, C, LOW, H, W, h, w, scale,
                 st_b, st_c, st_y, st_x, sp_b, sp_c, sp_y, sp_x,
                 sy_b, sy_c, sy_y, sy_x, so_b, so_c, so_y, so_x,
                 K: tl.constexpr, KS: tl.constexpr, BLOCK_P: tl.constexpr,
                 BLOCK_C: tl.constexpr):
    """The mixer after its scan, from the pre-activation ``t`` ``(B, C, H, W)``:
    ``out[:, :LOW] = bilinear(y) + silu(t_low) - nearest(pooled)`` (both upsampled by
    ``K`` and cropped; ``K = 1``: ``y``), ``out[:, LOW:] = dw(silu(t_high))``, ``dw`` a
    ``KS x KS`` depth-wise conv with zero padding. ``pooled``, ``y``: ``(B, LOW, h, w)``;
    ``scale``: ``1 / K`` in float32, as ``F.interpolate(scale_factor=K)`` maps pixels.
    Program axis 1 runs over ``LOW``'s channel blocks, then over the rest's."""
    p = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)  # pixel, < 2**31 (host check)
    p_ok = p < P
    x = p % W
    yy = (p // W) % H
    b = p // (W * H)
    low_blocks = tl.cdiv(LOW, BLOCK_C)
    block = tl.program_id(1)
    if block < low_blocks:  # the low-frequency channels
        c = block * BLOCK_C + tl.arange(0, BLOCK_C)
        mask = p_ok[:, None] & (c < LOW)[None, :]
        if K == 1:
            out = tl.load(y_ptr + (b * sy_b + yy * sy_y + x * sy_x)[:, None] + c[None, :] * sy_c,
                          mask=mask, other=0.0).to(tl.float32)
        else:
            a = _silu(tl.load(t_ptr + (b * st_b + yy * st_y + x * st_x)[:, None]
                              + c[None, :] * st_c, mask=mask, other=0.0))
            pooled = tl.load(pooled_ptr + (b * sp_b + (yy // K) * sp_y + (x // K) * sp_x)[:, None]
                             + c[None, :] * sp_c, mask=mask, other=0.0).to(tl.float32)
            # bilinear, align_corners=False: source = scale * (dst + 0.5) - 0.5, clamped at 0
            src_y = tl.maximum(scale * (yy.to(tl.float32) + 0.5) - 0.5, 0.0)
            src_x = tl.maximum(scale * (x.to(tl.float32) + 0.5) - 0.5, 0.0)
            y0 = src_y.to(tl.int32)
            x0 = src_x.to(tl.int32)
            ly = (src_y - y0.to(tl.float32))[:, None]
            lx = (src_x - x0.to(tl.float32))[:, None]
            y1 = tl.where(y0 < h - 1, y0 + 1, y0)
            x1 = tl.where(x0 < w - 1, x0 + 1, x0)
            row0 = b * sy_b + y0 * sy_y
            row1 = b * sy_b + y1 * sy_y
            ch = c[None, :] * sy_c
            v00 = tl.load(y_ptr + (row0 + x0 * sy_x)[:, None] + ch, mask=mask, other=0.0)
            v01 = tl.load(y_ptr + (row0 + x1 * sy_x)[:, None] + ch, mask=mask, other=0.0)
            v10 = tl.load(y_ptr + (row1 + x0 * sy_x)[:, None] + ch, mask=mask, other=0.0)
            v11 = tl.load(y_ptr + (row1 + x1 * sy_x)[:, None] + ch, mask=mask, other=0.0)
            top = (1.0 - lx) * v00.to(tl.float32) + lx * v01.to(tl.float32)
            bottom = (1.0 - lx) * v10.to(tl.float32) + lx * v11.to(tl.float32)
            out = (1.0 - ly) * top + ly * bottom + (a - pooled)
        channel = c
    else:  # the high-frequency channels: depth-wise conv of silu(t)
        c = (block - low_blocks) * BLOCK_C + tl.arange(0, BLOCK_C)
        c_ok = c < C - LOW
        mask = p_ok[:, None] & c_ok[None, :]
        channel = LOW + c
        out = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
        for tap in range(KS * KS):  # a run-time loop: one tap's tile live at a time
            dy = tap // KS - KS // 2
            dx = tap % KS - KS // 2
            ok = p_ok & (yy + dy >= 0) & (yy + dy < H) & (x + dx >= 0) & (x + dx < W)
            v = tl.load(t_ptr + (b * st_b + (yy + dy) * st_y + (x + dx) * st_x)[:, None]
                        + channel[None, :] * st_c, mask=ok[:, None] & c_ok[None, :], other=0.0)
            weight = tl.load(w_ptr + c * (KS * KS) + tap, mask=c_ok, other=0.0)
            out += _silu(v) * weight.to(tl.float32)[None, :]  # zero padding: silu(0) = 0
        out += tl.load(bias_ptr + c, mask=c_ok, other=0.0).to(tl.float32)[None, :]
    tl.store(out_ptr + (b * so_b + yy * so_y + x * so_x)[:, None] + channel[None, :] * so_c,
             out.to(out_ptr.dtype.element_ty), mask=mask)
