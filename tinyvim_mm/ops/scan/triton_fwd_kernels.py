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
