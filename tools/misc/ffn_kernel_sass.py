"""Compile the fused FFN kernel for a GPU architecture without a GPU and count its
machine instructions (SASS), loop by loop: a first look at a kernel change on a
machine without a GPU (the kernel is bound by instruction issue, so fewer
instructions per loop iteration is what a change should show before it is timed).

Needs Triton with its NVIDIA backend (``ptxas`` and ``nvdisasm`` ship with it).

Example::

    python tools/misc/ffn_kernel_sass.py                       # TinyViM-S stage 1, fp16
    python tools/misc/ffn_kernel_sass.py --channels 64 --no-dw --arch 80
    python tools/misc/ffn_kernel_sass.py --kernel-file my_kernels.py --top 40
"""
import argparse
import collections
import importlib.util
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

REPO = Path(__file__).resolve().parents[2]
KERNELS = REPO / 'tinyvim_mm' / 'ops' / 'ffn' / 'kernels.py'
INSTRUCTION = re.compile(r'^\s+/\*([0-9a-f]+)\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*)[^;]*;')
BRANCH = re.compile(r'BRA\s+`\((\.L_x_\d+)\)')


def compile_kernel(path: Path, constexprs: Dict[str, object], arch: int, warps: int,
                   stages: int):
    """The compiled kernel (``triton.compile``'s result) of ``ffn_kernel`` in ``path``."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    spec = importlib.util.spec_from_file_location('ffn_kernels_under_test', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    fn = module.ffn_kernel
    names = fn.arg_names
    unknown = set(constexprs) - set(names)
    if unknown:
        raise SystemExit(f'ffn_kernel in {path} has no argument(s) {sorted(unknown)}')
    dtype = '*fp16' if constexprs.get('PRECISION') == 'tf32' else '*fp32'
    signature = {n: 'constexpr' if n in constexprs else dtype if n.endswith('_ptr') else 'i32'
                 for n in names}
    # as a launch specializes them: pointers 16-byte aligned; M, C and the hidden width
    # multiples of 16 (TinyViM's are); H and W not (56, 28, ...)
    aligned = [n for n in names if n.endswith('_ptr') or n in ('M', 'C', 'HID')]
    source = ASTSource(fn=fn, signature=signature,
                       constexprs={(names.index(n), ): v for n, v in constexprs.items()},
                       attrs={(names.index(n), ): [['tt.divisibility', 16]] for n in aligned})
    return triton.compile(source, target=GPUTarget('cuda', arch, 32),
                          options=dict(num_warps=warps, num_stages=stages))


def disassemble(cubin: bytes) -> Tuple[str, str]:
    """``(resource usage line, SASS text)`` of a cubin, by the tools Triton ships."""
    import triton
    tools = Path(triton.__file__).parent / 'backends' / 'nvidia' / 'bin'
    with tempfile.NamedTemporaryFile(suffix='.cubin') as file:
        file.write(cubin)
        file.flush()
        usage = subprocess.run([str(tools / 'cuobjdump'), '-res-usage', file.name],
                               capture_output=True, text=True, check=True).stdout
        sass = subprocess.run([str(tools / 'nvdisasm'), '-c', file.name],
                              capture_output=True, text=True, check=True).stdout
    return next((line.strip() for line in usage.splitlines() if 'REG:' in line), ''), sass


def loops(sass: str) -> List[Tuple[int, collections.Counter]]:
    """``(instructions, opcode counts)`` of each loop body: from a label to the branch
    back to it (the innermost loops of the kernel; nested ones are counted whole)."""
    label_at: Dict[str, int] = {}
    ops: List[str] = []
    found = []
    for line in sass.splitlines():
        if line.startswith('.L_x_'):
            label_at[line.rstrip(':')] = len(ops)
            continue
        match = INSTRUCTION.match(line)
        if not match:
            continue
        ops.append(match.group(2))
        branch = BRANCH.search(line)
        if branch and branch.group(1) in label_at and label_at[branch.group(1)] < len(ops) - 1:
            body = ops[label_at[branch.group(1)]:]
            found.append((len(body), collections.Counter(body)))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--kernel-file', type=Path, default=KERNELS)
    parser.add_argument('--channels', type=int, default=48)
    parser.add_argument('--no-dw', action='store_true', help='without the depth-wise taps')
    parser.add_argument('--fp32', action='store_true', help='float32 (default: float16)')
    parser.add_argument('--arch', type=int, default=90, help='compute capability x 10')
    parser.add_argument('--top', type=int, default=12, help='opcodes listed per loop')
    args = parser.parse_args()
    if args.channels < 1:
        parser.error('--channels must be positive')
    from tinyvim_mm.ops.ffn.fused_ffn import launch_config
    block_c, block_m, block_h, warps, stages = launch_config(args.channels, not args.fp32)
    constexprs = dict(HAS_DW=not args.no_dw, KS=3, BLOCK_M=block_m, BLOCK_C=block_c,
                      BLOCK_H=block_h, PRECISION='ieee' if args.fp32 else 'tf32')
    compiled = compile_kernel(args.kernel_file, constexprs, args.arch, warps, stages)
    usage, sass = disassemble(compiled.asm['cubin'])
    total = sum(1 for line in sass.splitlines() if INSTRUCTION.match(line))
    print(f'{args.kernel_file.name}: sm_{args.arch}, {constexprs}, {warps} warps, '
          f'{stages} stages\n{usage}\n{total} instructions in all')
    for n, counts in loops(sass):
        top = ', '.join(f'{op} {k}' for op, k in counts.most_common(args.top))
        print(f'loop body: {n} instructions ({top})')


if __name__ == '__main__':
    main()
