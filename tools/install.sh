#!/usr/bin/env bash
# Install the pinned CPU stack and tinyvim_mm into the current Python.
#
#   bash tools/install.sh
#
# Idempotent. When everything is already there (pinned versions, mmcv ops importable,
# tinyvim_mm installed from this checkout and equal to it, openmim) it touches nothing and
# returns in a few seconds; a checkout edited since the last install is re-installed
# (seconds). Otherwise:
#   1. mmcv 2.1.0: the prebuilt wheel of ../shared/wheels/cpu-cp311 when it matches this
#      Python, else a wheel cached by an earlier run, else a build from the PyPI sdist
#      (setup.py's -std=c++17 raised to -std=c++20, MMCV_WITH_OPS=1, no build isolation;
#      ~25 min on 2 cores; the wheel is cached for the next run);
#   2. ONE pip call for the whole stack (requirements.txt: torch/torchvision pinned in it,
#      so the resolver cannot swap torch under the prebuilt mmcv);
#   3. pip install --no-deps --no-build-isolation .  (a regular install: copies of configs/,
#      tools/, ... in tinyvim_mm/.mim, where mim and `tinyvim_mm::` config bases look);
#   4. openmim with --no-deps (its own requirements pull openxlab, which pins an old
#      setuptools); what it really imports comes with step 2 (requirements/optional.txt).
#
# Environment:
#   TINYVIM_SKIP_INSTALL=1   do nothing (e.g. a hand-made environment)
#   TINYVIM_FORCE_INSTALL=1  skip the "already installed" check, run the pip steps
#   TINYVIM_CHECK_ONLY=1     only check (exit 0 = complete, 2 = tinyvim_mm missing, 1 = more)
#   TINYVIM_SHARED=DIR       the shared folder (default: <repo>/../shared)
#   TINYVIM_WHEEL_CACHE=DIR  where a source-built mmcv wheel is kept
#                            (default: ~/.cache/tinyvim_mm/wheels)
#   TINYVIM_BUILD_MMCV=1     build mmcv from the sdist even if a prebuilt wheel exists
#   TINYVIM_NO_MIM=1         do not install openmim
#   PYTHON=python3.11        the interpreter to install into (default: python)
#   MAX_JOBS=N               parallel compile jobs for the mmcv build (default: nproc)
set -euo pipefail

MMCV_VERSION=2.1.0
OPENMIM_VERSION=0.3.9

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python}"
PIP=("$PYTHON" -m pip)
SHARED="${TINYVIM_SHARED:-$ROOT/../shared}"
WHEELS="$SHARED/wheels/cpu-cp311"
CACHE="${TINYVIM_WHEEL_CACHE:-$HOME/.cache/tinyvim_mm/wheels}"
T0=$SECONDS

say() { printf '[install] %s\n' "$*"; }
die() { printf '[install] ERROR: %s\n' "$*" >&2; exit 1; }

if [ "${TINYVIM_SKIP_INSTALL:-0}" = 1 ]; then
  say "TINYVIM_SKIP_INSTALL=1: skipping installation"
  exit 0
fi
command -v "$PYTHON" >/dev/null || die "no '$PYTHON' on PATH (set PYTHON=...)"
cd "$ROOT"

# ---------------------------------------------------------------------------------------
# The check: versions pinned in requirements.txt (recursively), the other listed packages
# present, mmcv ops / toolboxes importable, tinyvim_mm installed from this checkout and equal
# .mim links, openmim. Prints what is missing; exit status 0 = nothing to do, 2 = only the
# tinyvim_mm install is missing or stale (step 3 fixes it), 1 = more.
check_env() {
  TINYVIM_ROOT="$ROOT" TINYVIM_OPENMIM="$OPENMIM_VERSION" TINYVIM_NO_MIM="${TINYVIM_NO_MIM:-0}" \
    "$PYTHON" -W ignore - <<'PY'
import importlib.metadata as md
import json
import os
import re
import sys

root = os.environ['TINYVIM_ROOT']
problems = []  # the stack
pkg_problems = []  # tinyvim_mm itself
try:
    from packaging.requirements import Requirement
except ImportError:  # a bare machine: pip's vendored copy
    from pip._vendor.packaging.requirements import Requirement


def read(path):
    for raw in open(path, encoding='utf-8'):
        line = raw.split(' #', 1)[0].strip()
        if not line or line.startswith('#'):
            continue
        if line.startswith('-r '):
            yield from read(os.path.join(os.path.dirname(path), line[3:].strip()))
        elif not line.startswith('-'):
            yield Requirement(line)


for req in read(os.path.join(root, 'requirements.txt')):
    if req.marker is not None and not req.marker.evaluate():
        continue
    try:
        version = md.version(req.name)
    except md.PackageNotFoundError:
        problems.append(f'{req} not installed')
        continue
    if req.specifier and not req.specifier.contains(version, prereleases=True):
        problems.append(f'{req.name} {version} installed, {req} wanted')

if os.environ.get('TINYVIM_NO_MIM') != '1':
    want = os.environ['TINYVIM_OPENMIM']
    try:
        if md.version('openmim') != want:
            problems.append(f'openmim {md.version("openmim")} installed, {want} wanted')
    except md.PackageNotFoundError:
        problems.append('openmim not installed')
try:  # mmpretrain 1.2.0's multimodal models break on import with transformers 5.x
    if int(md.version('transformers').split('.')[0]) >= 5:
        print('[install] warning: transformers>=5 is installed; mmpretrain 1.2.0 '
              'multimodal imports break with it (TinyViM does not need transformers)')
except md.PackageNotFoundError:
    pass

# tinyvim_mm installed (a regular install, as mim needs) from this checkout, up to date:
# every file of the package, its .mim copies and the start-up .pth equal the checkout's.
def same_tree(src, dst, suffixes):
    """Relative paths under src / dst (files with these suffixes) that differ."""
    def files(top):
        return {os.path.relpath(os.path.join(d, f), top)
                for d, _, names in os.walk(top)
                if not {'__pycache__', '.mim'} & set(os.path.relpath(d, top).split(os.sep))
                for f in names if f.endswith(suffixes)} if os.path.isdir(top) else set()
    a, b = files(src), files(dst)
    return sorted((a ^ b) | {f for f in a & b if open(os.path.join(src, f), 'rb').read()
                              != open(os.path.join(dst, f), 'rb').read()})


try:
    dists = [d for d in md.distributions(name='tinyvim_mm') if d.read_text('INSTALLER')]
    if not dists:
        raise md.PackageNotFoundError('tinyvim_mm')
    dist = dists[0]
    info = json.loads(dist.read_text('direct_url.json') or '{}')
    path = re.sub(r'^file://', '', info.get('url', ''))
    site = str(dist.locate_file(''))
    if info.get('dir_info', {}).get('editable'):
        pkg_problems.append('tinyvim_mm is an editable install; mim needs a regular one')
    elif os.path.realpath(path) != os.path.realpath(root):
        pkg_problems.append(f'tinyvim_mm was installed from {path or "an index"}, not {root}')
    else:
        pkg = os.path.join(site, 'tinyvim_mm')
        stale = same_tree(os.path.join(root, 'tinyvim_mm'), pkg, ('.py', ))
        for name in ('configs', 'tools', 'requirements'):
            stale += [f'{name}/{f}' for f in same_tree(
                os.path.join(root, name), os.path.join(pkg, '.mim', name), ('.py', '.sh', '.txt', '.yml'))]
        for name, where in (('tinyvim_mm_compat.py', site), ('model-index.yml', os.path.join(pkg, '.mim'))):
            if not os.path.isfile(os.path.join(where, name)) or open(os.path.join(root, name), 'rb').read() \
                    != open(os.path.join(where, name), 'rb').read():
                stale.append(name)
        if not os.path.isfile(os.path.join(site, 'tinyvim_mm-mmengine.pth')):
            stale.append('tinyvim_mm-mmengine.pth')
        if stale:
            pkg_problems.append(f'installed tinyvim_mm differs from the checkout in {len(stale)} '
                                f'file(s), e.g. {", ".join(stale[:3])}')
except md.PackageNotFoundError:
    pkg_problems.append('tinyvim_mm not installed')

if not problems:  # the imports themselves (a few seconds)
    try:
        import torch  # noqa: F401
        import mmcv
        import mmcv.ops  # noqa: F401  (compiled ops linked against this torch)
        import mmdet  # noqa: F401
        import mmseg  # noqa: F401
        import mmpretrain  # noqa: F401
    except Exception as e:  # noqa: BLE001
        problems.append(f'import failed: {type(e).__name__}: {e}')
for p in problems + pkg_problems:
    print(f'[install]   - {p}')
sys.exit(1 if problems else 2 if pkg_problems else 0)
PY
}

# A regular install (copies; mim needs them) from this checkout. build/ is removed first:
# setuptools would otherwise ship files deleted from the checkout but left in build/lib.
install_package() {
  say "pip install --no-deps --no-build-isolation . (tinyvim_mm from $ROOT)"
  rm -rf "$ROOT/build"
  "${PIP[@]}" install -q --no-deps --no-build-isolation --force-reinstall "$ROOT"
  rm -rf "$ROOT/build" "$ROOT"/*.egg-info
}

say "python: $("$PYTHON" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
if [ "${TINYVIM_CHECK_ONLY:-0}" = 1 ]; then
  rc=0; check_env || rc=$?
  say "check only: exit $rc [$((SECONDS - T0)) s]"
  exit "$rc"
fi
if [ "${TINYVIM_FORCE_INSTALL:-0}" != 1 ]; then
  rc=0; check_env || rc=$?
  if [ "$rc" = 0 ]; then
    say "environment complete (pinned stack, mmcv ops, tinyvim_mm = this checkout): nothing to do [$((SECONDS - T0)) s]"
    exit 0
  elif [ "$rc" = 2 ]; then
    say "stack complete; (re)installing tinyvim_mm ..."
    install_package
    check_env || die "the environment is still incomplete (see above)"
    say "done [$((SECONDS - T0)) s]"
    exit 0
  fi
  say "environment incomplete (see above): installing"
fi

# ---------------------------------------------------------------------------------------
# 1. Where mmcv 2.1.0 comes from.
PYTAG="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
PIP_OPTS=(--prefer-binary)
mmcv_ok() {
  "$PYTHON" -W ignore -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" >/dev/null 2>&1
}
have_wheel() { compgen -G "$1/mmcv-$MMCV_VERSION-$PYTAG-$PYTAG-*.whl" >/dev/null 2>&1; }

build_mmcv() {
  say "no prebuilt mmcv $MMCV_VERSION wheel for $PYTAG: building it from the PyPI sdist."
  say ">>> THIS TAKES ~25 MINUTES on 2 cores (once; the wheel is cached in $CACHE) <<<"
  # torch must be in place first (no build isolation), pinned as in requirements.txt.
  local pins
  pins=$(grep -E '^(torch|torchvision)==' requirements.txt | tr '\n' ' ')
  say "build prerequisites: $pins+ requirements/build.txt"
  # shellcheck disable=SC2086
  "${PIP[@]}" install "${PIP_OPTS[@]}" $pins -r requirements/build.txt
  local tmp
  tmp="$(mktemp -d)"
  # --no-build-isolation: pip prepares the sdist's metadata, and mmcv's setup.py imports
  # pkg_resources, which an isolated (latest) setuptools no longer has.
  "${PIP[@]}" download --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$tmp"
  tar -xzf "$tmp/mmcv-$MMCV_VERSION.tar.gz" -C "$tmp"
  local src="$tmp/mmcv-$MMCV_VERSION"
  # torch >= 2.12 headers need C++20; mmcv 2.1.0 passes -std=c++17.
  sed -i 's/-std=c++17/-std=c++20/g' "$src/setup.py"
  grep -q -- '-std=c++20' "$src/setup.py" || die "patching mmcv's setup.py (-std=c++20) failed"
  mkdir -p "$CACHE"
  say "compiling mmcv $MMCV_VERSION ops (MMCV_WITH_OPS=1, MAX_JOBS=${MAX_JOBS:-$(nproc)}) ..."
  (cd "$src" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
     CFLAGS="${CFLAGS:--O2 -g0 -DNDEBUG}" CXXFLAGS="${CXXFLAGS:--O2 -g0 -DNDEBUG}" \
     "${PIP[@]}" wheel --no-build-isolation --no-deps -w "$CACHE" .)
  rm -rf "$tmp"
  have_wheel "$CACHE" || die "the mmcv build produced no wheel in $CACHE"
}

if mmcv_ok && [ "${TINYVIM_BUILD_MMCV:-0}" != 1 ]; then
  say "mmcv $MMCV_VERSION with ops already importable: keeping it"
elif [ "${TINYVIM_BUILD_MMCV:-0}" != 1 ] && have_wheel "$WHEELS"; then
  say "mmcv $MMCV_VERSION: prebuilt wheel from $WHEELS"
  PIP_OPTS+=(--find-links "$WHEELS" --only-binary mmcv)
elif [ "${TINYVIM_BUILD_MMCV:-0}" != 1 ] && have_wheel "$CACHE"; then
  say "mmcv $MMCV_VERSION: wheel built earlier, from $CACHE"
  PIP_OPTS+=(--find-links "$CACHE" --only-binary mmcv)
else
  build_mmcv
  PIP_OPTS+=(--find-links "$CACHE" --only-binary mmcv)
fi

# ---------------------------------------------------------------------------------------
# 2. The whole pinned stack in ONE pip call (torch/torchvision pinned in requirements.txt).
say "pip install -r requirements.txt (pinned stack, one call) ..."
"${PIP[@]}" install "${PIP_OPTS[@]}" -r requirements.txt

# 3. tinyvim_mm itself.
install_package

# 4. openmim without its requirements (openxlab pins an old setuptools).
if [ "${TINYVIM_NO_MIM:-0}" != 1 ]; then
  say "pip install --no-deps openmim==$OPENMIM_VERSION ..."
  "${PIP[@]}" install --no-deps "openmim==$OPENMIM_VERSION"
fi

say "checking the result ..."
check_env || die "the environment is still incomplete (see above)"
say "done [$((SECONDS - T0)) s]"
