"""Triton kernels. Imported lazily (by the custom ops' implementations), so that
``TRITON_INTERPRET=1`` set before the first call selects the CPU interpreter
and ``import tinyvim_mm`` works without Triton."""
import triton
import triton.language as tl

LOG2E = tl.constexpr(1.4426950408889634)


@triton.jit
def _softplus(x):
    """``max(x, 0) + log1p(exp(-|x|))`` with ``log1p`` as a compensated ``log``."""
    e = tl.exp(-tl.abs(x))
    p = e + 1.0
    return tl.maximum(x, 0.0) + tl.log(p) - ((p - 1.0) - e) / p


@triton.jit
def scan_kernel(u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, bias_ptr, nw_ptr, nb_ptr, out_ptr,
                d, L, H, W, eps,
                s_ub, s_uk, s_uc, s_uh, s_uw,
                s_db, s_dk, s_dc, s_dh, s_dw,
                s_bb, s_bk, s_bn, s_bh, s_bw,
                s_cb, s_ck, s_cn, s_ch, s_cw,
                s_ob, s_ok, s_oc, s_oh, s_ow,
                N: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                CROSS: tl.constexpr, NUM_DIRS: tl.constexpr, HAS_D: tl.constexpr, HAS_BIAS: tl.constexpr,
                SOFTPLUS: tl.constexpr, NORM: tl.constexpr):
    """Selective scan of ``BLOCK_D`` channels of one batch element.

    Every tensor is addressed as ``(batch, direction, channel|state, row, col)``
    through its strides. Without ``CROSS`` the program scans direction
    ``program_id(1)`` along ``col`` (``H = 1``, ``W = L``) and writes its own
    channels. With ``CROSS`` it runs the 4 directions of a 2-D cross scan one
    after the other on an ``H x W`` grid (row-major, column-major, both
    reversed), reading every input at its pixel (no cross-scan copies), and
    sums them into ``out`` (float32); ``NORM`` then layer-norms the sum over the
    ``d`` channels (all in this program) as the last direction completes it.
    State ``h`` (``BLOCK_D x N``) stays in registers; float32 throughout.
    """
    pid_b = tl.program_id(0).to(tl.int64)
    pid_k = tl.program_id(1)
    c = tl.program_id(2) * BLOCK_D + tl.arange(0, BLOCK_D)
    c_mask = c < d
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    if NORM:
        norm_w = tl.load(nw_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
        norm_b = tl.load(nb_ptr + c, mask=c_mask, other=0.0).to(tl.float32)
    for kk in tl.static_range(NUM_DIRS):  # 4 with CROSS, else 1
        k = pid_k + kk
        ch = k * d + c
        A = tl.load(A_ptr + ch[:, None] * N + n[None, :],
                    mask=c_mask[:, None] & n_mask[None, :], other=0.0).to(tl.float32) * LOG2E
        if HAS_D:
            Dv = tl.load(D_ptr + ch, mask=c_mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            bias = tl.load(bias_ptr + ch, mask=c_mask, other=0.0).to(tl.float32)
        u_base = u_ptr + pid_b * s_ub + k * s_uk + c * s_uc
        d_base = delta_ptr + pid_b * s_db + k * s_dk + c * s_dc
        b_base = B_ptr + pid_b * s_bb + k * s_bk + n * s_bn
        c_base = C_ptr + pid_b * s_cb + k * s_ck + n * s_cn
        o_base = out_ptr + pid_b * s_ob + k * s_ok + c * s_oc
        h = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
        for t in range(L):
            if kk >= 2:  # reversed directions
                s = L - 1 - t
            else:
                s = t
            if kk % 2 == 1:  # column-major directions
                row = s % H
                col = s // H
            else:
                row = s // W
                col = s % W
            u = tl.load(u_base + row * s_uh + col * s_uw, mask=c_mask, other=0.0).to(tl.float32)
            dt = tl.load(d_base + row * s_dh + col * s_dw, mask=c_mask, other=0.0).to(tl.float32)
            if HAS_BIAS:
                dt += bias
            if SOFTPLUS:
                dt = _softplus(dt)
            Bt = tl.load(b_base + row * s_bh + col * s_bw, mask=n_mask, other=0.0).to(tl.float32)
            Ct = tl.load(c_base + row * s_ch + col * s_cw, mask=n_mask, other=0.0).to(tl.float32)
            h = tl.exp2(dt[:, None] * A) * h + (dt * u)[:, None] * Bt[None, :]
            y = tl.sum(h * Ct[None, :], axis=1)
            if HAS_D:
                y += Dv * u
            o_ptrs = o_base + row * s_oh + col * s_ow
            if kk > 0:  # CROSS: add the earlier directions' sum at this pixel
                y += tl.load(o_ptrs, mask=c_mask, other=0.0)
            if NORM:
                if kk == 3:
                    mean = tl.sum(tl.where(c_mask, y, 0.0), axis=0) / d
                    diff = tl.where(c_mask, y - mean, 0.0)
                    var = tl.sum(diff * diff, axis=0) / d
                    y = diff * tl.rsqrt(var + eps) * norm_w + norm_b
            tl.store(o_ptrs, y.to(out_ptr.dtype.element_ty), mask=c_mask)
        if CROSS:
            tl.debug_barrier()  # the next direction reads what other threads wrote


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
        hid = 0.5 * hid * (1.0 + tl.erf(hid * 0.7071067811865476))  # exact GELU
        w2 = tl.load(w2t_ptr + hid_cols[:, None] * C + cols[None, :],
                     mask=h_mask[:, None] & c_mask[None, :], other=0.0)  # (BLOCK_H, BLOCK_C)
        y = tl.dot(hid.to(w2.dtype), w2, y, input_precision=PRECISION)
    y += tl.load(b2_ptr + cols, mask=c_mask, other=0.0).to(tl.float32)[None, :]
    y += tl.load(x_ptr + offsets, mask=mask, other=0.0).to(tl.float32)  # residual (cached)
    tl.store(out_ptr + offsets, y.to(out_ptr.dtype.element_ty), mask=mask)
