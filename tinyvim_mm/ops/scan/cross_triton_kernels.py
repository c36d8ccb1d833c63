"""Triton kernels of the trainable 4-direction cross selective scan
(:mod:`.cross_triton` describes the algorithm and launches them).

Imported lazily by the custom ops' implementations, so that ``TRITON_INTERPRET=1``
set before the first call selects the CPU interpreter and ``import tinyvim_mm``
works without Triton.

Conventions shared by the kernels:

- A program handles ``BLOCK_T`` consecutive scan steps (one chunk) of ``BLOCK_D``
  channels of one direction ``k`` of one batch element ``b``: ``program_id(0)`` is
  the chunk, ``program_id(1)`` the channel block, ``program_id(2)`` is ``4 * b + k``.
- Inputs are read at their pixels through their strides: step ``s`` of direction
  ``k`` is pixel ``(row, col)`` of :func:`_pixels`; nothing is cross-scanned in memory.
- Tiles are ``(steps, channels)`` for per-channel values, ``(steps, states)`` for
  ``B``/``C`` and ``(steps, channels, states)`` for the recurrence; float32 always.
- ``A`` is pre-scaled by ``log2(e)`` so that decays are ``exp2(dt * A2)``; its
  exponents are never positive (``dt >= 0``, ``A <= 0``), so nothing overflows.
"""
import triton
import triton.language as tl

from .triton_fwd_kernels import LOG2E, _softplus


@triton.jit
def _combine(a1, x1, a2, x2):
    """Compose ``h -> a1 h + x1`` then ``h -> a2 h + x2`` (associative, not commutative)."""
    return a1 * a2, a2 * x1 + x2


@triton.jit
def _pixels(steps, k, L, H, W):
    """``(row, col)`` of scan ``steps`` of direction ``k``: 0 row-major, 1 column-major,
    2 and 3 the same reversed. Meaningless (but never read) for ``steps`` outside ``[0, L)``."""
    pos = tl.where(k >= 2, L - 1 - steps, steps)
    col_major = (k % 2) == 1
    row = tl.where(col_major, pos % H, pos // W)
    col = tl.where(col_major, pos // H, pos % W)
    return row, col


@triton.jit
def _load_tile(ptr, base, idx, s_i, row, col, s_h, s_w, mask):
    """``(steps, len(idx))`` float32 tile of ``ptr[base + idx * s_i + row * s_h + col * s_w]``."""
    offs = base + idx[None, :] * s_i + row[:, None] * s_h + col[:, None] * s_w
    return tl.load(ptr + offs, mask=mask, other=0.0).to(tl.float32)


@triton.jit
def _dt_tile(delta_ptr, base, c, s_dc, row, col, s_dh, s_dw, mask, bias, SOFTPLUS: tl.constexpr):
    """``(softplus(delta + bias), delta + bias)`` at the tile's steps; ``dt`` is 0 off ``mask``."""
    z = _load_tile(delta_ptr, base, c, s_dc, row, col, s_dh, s_dw, mask) + bias[None, :]
    if SOFTPLUS:
        dt = _softplus(z)
    else:
        dt = z
    return tl.where(mask, dt, 0.0), z


@triton.jit
def _d_sum(D_ptr, c, c_mask, d):
    """``D_0 + D_1 + D_2 + D_3`` of channels ``c``: the skip term of all 4 directions."""
    total = tl.load(D_ptr + c, mask=c_mask, other=0.0)
    for k in tl.static_range(1, 4):
        total += tl.load(D_ptr + k * d + c, mask=c_mask, other=0.0)
    return total


@triton.jit
def fwd_chunk_kernel(x_ptr, delta_ptr, B_ptr, A_ptr, D_ptr, bias_ptr, y_ptr, end_ptr, dtsum_ptr,
                     d, L, H, W, n_chunks,
                     s_xb, s_xc, s_xh, s_xw,
                     s_db, s_dk, s_dc, s_dh, s_dw,
                     s_bb, s_bk, s_bn, s_bh, s_bw,
                     N: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
                     BLOCK_D: tl.constexpr, SOFTPLUS: tl.constexpr, STATES: tl.constexpr):
    """Forward pass 1. Direction-0 programs initialise ``y = (D_0 + .. + D_3) * x`` at their
    pixels (the skip term of all 4 directions; the scans are added atomically later).
    With ``STATES``, every program writes its chunk's end state from a zero start,
    ``sum_t exp2(A2 * (dt_{t+1} + .. + dt_last)) * dt_t u_t B_t`` (``BLOCK_D x N``, no
    scan needed), and ``sum_t dt_t``, for the carry pass. Steps are loaded last
    first, so that the decay exponents are forward cumulative sums (accurate)."""
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_bk = tl.program_id(2)
    b = (pid_bk // 4).to(tl.int64)
    k = pid_bk % 4
    i = tl.arange(0, BLOCK_T)
    s = pid_t * BLOCK_T + (BLOCK_T - 1 - i)
    t_mask = s < L
    row, col = _pixels(s, k, L, H, W)
    c = pid_c * BLOCK_D + tl.arange(0, BLOCK_D)
    c_mask = c < d
    mask = t_mask[:, None] & c_mask[None, :]
    u = _load_tile(x_ptr, b * s_xb, c, s_xc, row, col, s_xh, s_xw, mask)
    if k == 0:
        d_sum = _d_sum(D_ptr, c, c_mask, d)
        y_offs = (b * d + c[None, :]) * L + row[:, None] * W + col[:, None]
        tl.store(y_ptr + y_offs, u * d_sum[None, :], mask=mask)
    if STATES:
        n = tl.arange(0, BLOCK_N)
        n_mask = n < N
        ch = k * d + c
        bias = tl.load(bias_ptr + ch, mask=c_mask, other=0.0)
        dt, _ = _dt_tile(delta_ptr, b * s_db + k * s_dk, c, s_dc, row, col, s_dh, s_dw, mask, bias,
                         SOFTPLUS)
        Bt = _load_tile(B_ptr, b * s_bb + k * s_bk, n, s_bn, row, col, s_bh, s_bw,
                        t_mask[:, None] & n_mask[None, :])
        A2 = tl.load(A_ptr + ch[:, None] * N + n[None, :], mask=c_mask[:, None] & n_mask[None, :],
                     other=0.0) * LOG2E
        later = tl.cumsum(dt, axis=0) - dt  # dt of the steps after each (rows run backwards)
        decay = tl.exp2(later[:, :, None] * A2[None, :, :])
        end = tl.sum(decay * ((dt * u)[:, :, None] * Bt[:, None, :]), axis=0)
        chunk = pid_bk.to(tl.int64) * n_chunks + pid_t
        cn_mask = c_mask[:, None] & n_mask[None, :]
        tl.store(end_ptr + (chunk * d + c[:, None]) * N + n[None, :], end, mask=cn_mask)
        tl.store(dtsum_ptr + chunk * d + c, tl.sum(dt, axis=0), mask=c_mask)


@triton.jit
def chunk_carry_kernel(end_ptr, dtsum_ptr, A_ptr, carry_ptr, d, n_chunks,
                       N: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_C: tl.constexpr,
                       BLOCK_D: tl.constexpr, REVERSE: tl.constexpr):
    """Carry pass over the chunks of one ``(b, k)`` and ``BLOCK_D`` channels: with
    ``e_j`` chunk ``j``'s state from a zero start and ``a_j = exp2(A2 * dtsum_j)`` its
    total decay, ``carry_j`` is the state entering chunk ``j``
    (``carry_{j+1} = a_j carry_j + e_j``, ``carry_0 = 0``), or with ``REVERSE`` the
    one entering it from the right (``carry_{j-1} = a_j carry_j + e_j``,
    ``carry_{last} = 0``). ``BLOCK_C`` chunks at a time by an associative scan."""
    pid_c = tl.program_id(0)
    pid_bk = tl.program_id(1)
    k = pid_bk % 4
    c = pid_c * BLOCK_D + tl.arange(0, BLOCK_D)
    n = tl.arange(0, BLOCK_N)
    c_mask = c < d
    cn_mask = c_mask[:, None] & (n < N)[None, :]
    cn = c[:, None] * N + n[None, :]
    A2 = tl.load(A_ptr + (k * d) * N + cn, mask=cn_mask, other=0.0) * LOG2E
    base = pid_bk.to(tl.int64) * n_chunks
    first = n_chunks - 1 if REVERSE else 0
    carry = tl.zeros((BLOCK_D, BLOCK_N), dtype=tl.float32)
    tl.store(carry_ptr + (base + first) * d * N + cn, carry, mask=cn_mask)
    r_block = tl.arange(0, BLOCK_C)
    for r0 in range(0, n_chunks, BLOCK_C):
        r = r0 + r_block  # position in processing order
        r_mask = r < n_chunks
        j = (n_chunks - 1 - r) if REVERSE else r
        m3 = r_mask[:, None, None] & cn_mask[None, :, :]
        e = tl.load(end_ptr + (base + j[:, None, None]) * d * N + cn[None, :, :], mask=m3,
                    other=0.0)
        dts = tl.load(dtsum_ptr + (base + j[:, None]) * d + c[None, :],
                      mask=r_mask[:, None] & c_mask[None, :], other=0.0)
        a = tl.exp2(dts[:, :, None] * A2[None, :, :])  # 1 on masked rows: identity elements
        e = tl.where(r_block[:, None, None] == 0, e + a * carry[None, :, :], e)
        _, out = tl.associative_scan((a, e), 0, _combine)
        j_next = (j - 1) if REVERSE else (j + 1)
        tl.store(carry_ptr + (base + j_next[:, None, None]) * d * N + cn[None, :, :], out,
                 mask=((r + 1) < n_chunks)[:, None, None] & cn_mask[None, :, :])
        carry = tl.sum(tl.where(r_block[:, None, None] == BLOCK_C - 1, out, 0.0), axis=0)


@triton.jit
def fwd_scan_kernel(x_ptr, delta_ptr, B_ptr, C_ptr, A_ptr, bias_ptr, carry_ptr, y_ptr,
                    d, L, H, W, n_chunks, y_dir,
                    s_xb, s_xc, s_xh, s_xw,
                    s_db, s_dk, s_dc, s_dh, s_dw,
                    s_bb, s_bk, s_bn, s_bh, s_bw,
                    s_cb, s_ck, s_cn, s_ch, s_cw,
                    N: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
                    BLOCK_D: tl.constexpr, SOFTPLUS: tl.constexpr, CARRY: tl.constexpr):
    """Forward pass 3: the chunk's states ``h_t = exp2(dt_t A2) h_{t-1} + dt_t u_t B_t``
    from the carried state (``CARRY``) by an associative scan over the chunk, and
    ``y += <C_t, h_t>`` at each step's pixel (float32 atomics: the 4 directions
    of a pixel are 4 different programs)."""
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_bk = tl.program_id(2)
    b = (pid_bk // 4).to(tl.int64)
    k = pid_bk % 4
    i = tl.arange(0, BLOCK_T)
    s = pid_t * BLOCK_T + i
    t_mask = s < L
    row, col = _pixels(s, k, L, H, W)
    c = pid_c * BLOCK_D + tl.arange(0, BLOCK_D)
    c_mask = c < d
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    mask = t_mask[:, None] & c_mask[None, :]
    tn_mask = t_mask[:, None] & n_mask[None, :]
    cn_mask = c_mask[:, None] & n_mask[None, :]
    ch = k * d + c
    bias = tl.load(bias_ptr + ch, mask=c_mask, other=0.0)
    A2 = tl.load(A_ptr + ch[:, None] * N + n[None, :], mask=cn_mask, other=0.0) * LOG2E
    u = _load_tile(x_ptr, b * s_xb, c, s_xc, row, col, s_xh, s_xw, mask)
    dt, _ = _dt_tile(delta_ptr, b * s_db + k * s_dk, c, s_dc, row, col, s_dh, s_dw, mask, bias,
                     SOFTPLUS)
    Bt = _load_tile(B_ptr, b * s_bb + k * s_bk, n, s_bn, row, col, s_bh, s_bw, tn_mask)
    Ct = _load_tile(C_ptr, b * s_cb + k * s_ck, n, s_cn, row, col, s_ch, s_cw, tn_mask)
    a = tl.exp2(dt[:, :, None] * A2[None, :, :])
    xw = (dt * u)[:, :, None] * Bt[:, None, :]
    if CARRY:
        chunk = pid_bk.to(tl.int64) * n_chunks + pid_t
        h0 = tl.load(carry_ptr + (chunk * d + c[:, None]) * N + n[None, :], mask=cn_mask, other=0.0)
        xw = tl.where(i[:, None, None] == 0, xw + a * h0[None, :, :], xw)
    _, h = tl.associative_scan((a, xw), 0, _combine)
    y = tl.sum(h * Ct[:, None, :], axis=2)
    y_offs = k.to(tl.int64) * y_dir + (b * d + c[None, :]) * L + row[:, None] * W + col[:, None]
    tl.atomic_add(y_ptr + y_offs, y, mask=mask, sem='relaxed')


@triton.jit
def bwd_chunk_kernel(gy_ptr, delta_ptr, C_ptr, A_ptr, D_ptr, bias_ptr, dx_ptr, dB_ptr, dC_ptr,
                     end_ptr, dtsum_ptr,
                     d, L, H, W, n_chunks,
                     s_gb, s_gc, s_gh, s_gw,
                     s_db, s_dk, s_dc, s_dh, s_dw,
                     s_cb, s_ck, s_cn, s_ch, s_cw,
                     s_ob, s_ok, s_on, s_oh, s_ow,
                     N: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
                     BLOCK_D: tl.constexpr, SOFTPLUS: tl.constexpr, STATES: tl.constexpr):
    """Backward pass 1. Direction-0 programs initialise ``dx = (D_0 + .. + D_3) * dy``,
    channel-block-0 programs zero ``dB``, ``dC`` at their pixels (strides ``s_o*``, both
    alike; all three are then accumulated atomically). With ``STATES`` every program
    writes, for the reverse carry, its chunk's ``a_first * dh_first`` from a zero
    right-hand state,
    ``sum_t exp2(A2 * (dt_first + .. + dt_t)) * C_t dy_t``, and ``sum_t dt_t``."""
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_bk = tl.program_id(2)
    b = (pid_bk // 4).to(tl.int64)
    k = pid_bk % 4
    i = tl.arange(0, BLOCK_T)
    s = pid_t * BLOCK_T + i
    t_mask = s < L
    row, col = _pixels(s, k, L, H, W)
    c = pid_c * BLOCK_D + tl.arange(0, BLOCK_D)
    c_mask = c < d
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    mask = t_mask[:, None] & c_mask[None, :]
    tn_mask = t_mask[:, None] & n_mask[None, :]
    pix = row * W + col
    g = _load_tile(gy_ptr, b * s_gb, c, s_gc, row, col, s_gh, s_gw, mask & ((k == 0) | STATES))
    if k == 0:
        d_sum = _d_sum(D_ptr, c, c_mask, d)
        tl.store(dx_ptr + (b * d + c[None, :]) * L + pix[:, None], g * d_sum[None, :], mask=mask)
    if pid_c == 0:
        zero = tl.zeros((BLOCK_T, BLOCK_N), dtype=tl.float32)
        bn_offs = (b * s_ob + k * s_ok + n[None, :] * s_on + row[:, None] * s_oh
                   + col[:, None] * s_ow)
        tl.store(dB_ptr + bn_offs, zero, mask=tn_mask)
        tl.store(dC_ptr + bn_offs, zero, mask=tn_mask)
    if STATES:
        ch = k * d + c
        cn_mask = c_mask[:, None] & n_mask[None, :]
        bias = tl.load(bias_ptr + ch, mask=c_mask, other=0.0)
        A2 = tl.load(A_ptr + ch[:, None] * N + n[None, :], mask=cn_mask, other=0.0) * LOG2E
        dt, _ = _dt_tile(delta_ptr, b * s_db + k * s_dk, c, s_dc, row, col, s_dh, s_dw, mask, bias,
                         SOFTPLUS)
        Ct = _load_tile(C_ptr, b * s_cb + k * s_ck, n, s_cn, row, col, s_ch, s_cw, tn_mask)
        decay = tl.exp2(tl.cumsum(dt, axis=0)[:, :, None] * A2[None, :, :])
        end = tl.sum(decay * (g[:, :, None] * Ct[:, None, :]), axis=0)
        chunk = pid_bk.to(tl.int64) * n_chunks + pid_t
        tl.store(end_ptr + (chunk * d + c[:, None]) * N + n[None, :], end, mask=cn_mask)
        tl.store(dtsum_ptr + chunk * d + c, tl.sum(dt, axis=0), mask=c_mask)


@triton.jit
def bwd_scan_kernel(x_ptr, delta_ptr, B_ptr, C_ptr, A_ptr, bias_ptr, gy_ptr, carry_ptr,
                    dcarry_ptr, dx_ptr, ddelta_ptr, dB_ptr, dC_ptr, dparam_ptr,
                    d, L, H, W, n_chunks, dx_dir, dbc_block,
                    s_xb, s_xc, s_xh, s_xw,
                    s_db, s_dk, s_dc, s_dh, s_dw,
                    s_bb, s_bk, s_bn, s_bh, s_bw,
                    s_cb, s_ck, s_cn, s_ch, s_cw,
                    s_gb, s_gc, s_gh, s_gw,
                    s_eb, s_ek, s_ec, s_eh, s_ew,
                    s_ob, s_ok, s_on, s_oh, s_ow,
                    N: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_T: tl.constexpr,
                    BLOCK_D: tl.constexpr, SOFTPLUS: tl.constexpr, CARRY: tl.constexpr):
    """Backward pass 3 for one chunk: the states ``h_t`` again (forward scan from the
    saved carry), the adjoints ``g_t = C_t dy_t + a_{t+1} g_{t+1}`` (reverse scan from
    the reverse carry, ``a_{t+1}`` from ``delta`` loaded one step ahead), then

    - ``dx += sum_n g dt B`` and ``dB += sum_c g dt u``, ``dC += sum_c dy h`` (atomics;
      ``dx`` at ``dx_ptr + k * dx_dir``, ``dB`` and ``dC`` at ``+ pid_c * dbc_block``:
      strides 0 share one output, others give each direction / channel block its own);
    - ``ddelta = sum_n g (u B + A a_t h_{t-1}) * sigmoid(delta + bias)`` (stored at
      strides ``s_e*``; ``dB``, ``dC`` at ``s_o*``), with
      ``a_t h_{t-1} = h_t - dt u B`` as mamba-ssm's kernel forms it;
    - per chunk partial sums of ``dA = sum_t g dt a_t h_{t-1}``, ``dD = sum_t dy u`` and
      ``dbias = sum_t ddelta`` into row ``b * n_chunks + chunk`` of ``dparam``
      (``(rows, 4d * (N + 2))``: ``dA`` as ``(4d, N)``, then ``dD``, then ``dbias``),
      summed over rows by the caller."""
    pid_t = tl.program_id(0)
    pid_c = tl.program_id(1)
    pid_bk = tl.program_id(2)
    b = (pid_bk // 4).to(tl.int64)
    k = pid_bk % 4
    i = tl.arange(0, BLOCK_T)
    s = pid_t * BLOCK_T + i
    t_mask = s < L
    row, col = _pixels(s, k, L, H, W)
    # the next step within the chunk (its decay links g_t to g_{t+1})
    next_mask = (i < BLOCK_T - 1) & (s + 1 < L)
    row_n, col_n = _pixels(s + 1, k, L, H, W)
    c = pid_c * BLOCK_D + tl.arange(0, BLOCK_D)
    c_mask = c < d
    n = tl.arange(0, BLOCK_N)
    n_mask = n < N
    mask = t_mask[:, None] & c_mask[None, :]
    tn_mask = t_mask[:, None] & n_mask[None, :]
    cn_mask = c_mask[:, None] & n_mask[None, :]
    ch = k * d + c
    bias = tl.load(bias_ptr + ch, mask=c_mask, other=0.0)
    A = tl.load(A_ptr + ch[:, None] * N + n[None, :], mask=cn_mask, other=0.0)
    A2 = A * LOG2E
    d_base = b * s_db + k * s_dk
    u = _load_tile(x_ptr, b * s_xb, c, s_xc, row, col, s_xh, s_xw, mask)
    g = _load_tile(gy_ptr, b * s_gb, c, s_gc, row, col, s_gh, s_gw, mask)
    dt, z = _dt_tile(delta_ptr, d_base, c, s_dc, row, col, s_dh, s_dw, mask, bias, SOFTPLUS)
    dt_next, _ = _dt_tile(delta_ptr, d_base, c, s_dc, row_n, col_n, s_dh, s_dw,
                          next_mask[:, None] & c_mask[None, :], bias, SOFTPLUS)
    Bt = _load_tile(B_ptr, b * s_bb + k * s_bk, n, s_bn, row, col, s_bh, s_bw, tn_mask)
    Ct = _load_tile(C_ptr, b * s_cb + k * s_ck, n, s_cn, row, col, s_ch, s_cw, tn_mask)

    a = tl.exp2(dt[:, :, None] * A2[None, :, :])
    a_next = tl.where(next_mask[:, None, None], tl.exp2(dt_next[:, :, None] * A2[None, :, :]), 0.0)
    xw = (dt * u)[:, :, None] * Bt[:, None, :]
    cg = g[:, :, None] * Ct[:, None, :]
    first = i[:, None, None] == 0
    if CARRY:
        chunk = pid_bk.to(tl.int64) * n_chunks + pid_t
        cn_offs = (chunk * d + c[:, None]) * N + n[None, :]
        # a_t h_{t-1} of the first row; a_{t+1} g_{t+1} flowing into the last row
        h0 = a * tl.load(carry_ptr + cn_offs, mask=cn_mask, other=0.0)[None, :, :]
        g_right = tl.load(dcarry_ptr + cn_offs, mask=cn_mask, other=0.0)
        last = tl.minimum(L - pid_t * BLOCK_T, BLOCK_T) - 1
        _, h = tl.associative_scan((a, tl.where(first, xw + h0, xw)), 0, _combine)
        cg_in = tl.where(i[:, None, None] == last, cg + g_right[None, :, :], cg)
    else:
        h0 = tl.zeros((BLOCK_T, BLOCK_D, BLOCK_N), dtype=tl.float32)
        _, h = tl.associative_scan((a, xw), 0, _combine)
        cg_in = cg
    _, gh = tl.associative_scan((a_next, cg_in), 0, _combine, reverse=True)
    ah = tl.where(first, h0, h - xw)  # a_t h_{t-1}

    gdt = gh * dt[:, :, None]
    du = tl.sum(gdt * Bt[:, None, :], axis=2)
    ddt = tl.sum(gh * (u[:, :, None] * Bt[:, None, :] + A[None, :, :] * ah), axis=2)
    if SOFTPLUS:
        ddt = ddt * tl.sigmoid(z)
    ddt = tl.where(mask, ddt, 0.0)
    dBt = tl.sum(gdt * u[:, :, None], axis=1)
    dCt = tl.sum(h * g[:, :, None], axis=1)

    pix = row * W + col
    tl.atomic_add(dx_ptr + k.to(tl.int64) * dx_dir + (b * d + c[None, :]) * L + pix[:, None], du,
                  mask=mask, sem='relaxed')
    e_offs = (b * s_eb + k * s_ek + c[None, :] * s_ec + row[:, None] * s_eh
              + col[:, None] * s_ew)
    tl.store(ddelta_ptr + e_offs, ddt.to(ddelta_ptr.dtype.element_ty), mask=mask)
    bn_offs = (pid_c.to(tl.int64) * dbc_block + b * s_ob + k * s_ok + n[None, :] * s_on
               + row[:, None] * s_oh + col[:, None] * s_ow)
    tl.atomic_add(dB_ptr + bn_offs, dBt, mask=tn_mask, sem='relaxed')
    tl.atomic_add(dC_ptr + bn_offs, dCt, mask=tn_mask, sem='relaxed')

    p_row = dparam_ptr + (b * n_chunks + pid_t) * (4 * d * (N + 2))
    tl.store(p_row + ch[:, None] * N + n[None, :], tl.sum(gdt * ah, axis=0), mask=cn_mask)
    tl.store(p_row + 4 * d * N + ch, tl.sum(g * u, axis=0), mask=c_mask)
    tl.store(p_row + 4 * d * (N + 1) + ch, tl.sum(ddt, axis=0), mask=c_mask)
