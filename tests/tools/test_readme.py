"""The commands, paths and links of the README and of ``docs/*.md`` point at things that
exist (what users copy must run).

* every fenced ``bash`` block is parsed into simple commands; ``python tools/X.py``,
  ``bash tools/X.sh``, ``tools/X.sh``, ``python -m tinyvim_mm....`` and ``mim ...`` must
  name existing scripts / modules / configs, and every ``python tools/X.py`` answers
  ``--help`` (each script run once, a few in parallel);
* every ``configs/...py`` path (``{s,b,l}`` brace sets expanded) and every
  ``tinyvim_mm::NAME.py`` of a code block exists;
* every relative link / image exists (and ``#anchors`` match a heading);
* the README's model-zoo tables are those its single source, the metafiles, give
  (``tools/misc/model_zoo.py``).

The checkers take the README text as an argument; ``test_checkers_catch_*`` feed them
broken snippets to show that the tests fail when a script, config or link is missing.
"""
import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

from conftest import REPO, load_module  # noqa: E402
README = REPO / 'README.md'
PAGES = [README] + sorted((REPO / 'docs').glob('*.md'))
HELP_TIMEOUT = 120
MIM_SUBCOMMANDS = {'search', 'train', 'test', 'run', 'gridsearch', 'install', 'uninstall',
                   'download', 'list'}
OPERATORS = {'&&', '||', ';', '|', '(', ')', '&', ';;'}


def readme_text() -> str:
    return README.read_text(encoding='utf-8')


def all_pages_text() -> str:
    """README.md and docs/*.md, one after the other."""
    return '\n'.join(page.read_text(encoding='utf-8') for page in PAGES)


# ---------------------------------------------------------------------------------------
# Parsing


def fenced_blocks(text: str) -> Iterator[Tuple[str, str]]:
    """``(language, body)`` of every fenced code block."""
    for m in re.finditer(r'^```([\w+-]*)[^\n]*\n(.*?)^```', text, re.S | re.M):
        yield m.group(1).lower(), m.group(2)


def without_code(text: str) -> str:
    """The text without fenced blocks, inline code and HTML comments."""
    text = re.sub(r'^```.*?^```', '', text, flags=re.S | re.M)
    text = re.sub(r'<!--.*?-->', '', text, flags=re.S)
    return re.sub(r'`[^`\n]*`', '', text)


def expand_braces(word: str) -> List[str]:
    """``a_{s,b}_c`` -> ``['a_s_c', 'a_b_c']`` (nested or several sets too)."""
    m = re.search(r'\{([^{}]*,[^{}]*)\}', word)
    if not m:
        return [word]
    return [out for alt in m.group(1).split(',')
            for out in expand_braces(word[:m.start()] + alt + word[m.end():])]


def bash_commands(text: str) -> List[List[str]]:
    """The simple commands (token lists, leading ``VAR=value`` dropped) of every ``bash``
    block; backslash continuations are joined and comments removed."""
    commands = []
    for lang, body in fenced_blocks(text):
        if lang not in ('bash', 'sh', 'shell', 'console'):
            continue
        body = re.sub(r'\\\n', ' ', body)
        for line in body.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            tokens = list(lexer)
            current: List[str] = []
            for token in tokens + [';']:
                if token in OPERATORS:
                    while current and re.match(r'^[A-Za-z_]\w*=', current[0]):
                        current.pop(0)
                    if current:
                        commands.append(current)
                    current = []
                else:
                    current.append(token)
    return commands


def repo_relative_tool(token: str) -> str:
    """``/path/to/tinyvim_mm/tools/train.py`` -> ``tools/train.py``; other tokens as is."""
    m = re.search(r'(?:^|/)(tools/\S+)$', token)
    return m.group(1) if m else token


def check_commands(text: str, repo: Path = REPO) -> Tuple[List[str], Set[str]]:
    """``(problems, python scripts to --help)`` of the README's bash commands."""
    problems: List[str] = []
    scripts: Set[str] = set()

    def need(path: str, what: str, cmd: List[str]) -> None:
        if not (repo / path).exists():
            problems.append(f'{what} {path} does not exist: {" ".join(cmd)}')

    for cmd in bash_commands(text):
        head, args = cmd[0], cmd[1:]
        if re.fullmatch(r'python(3(\.\d+)?)?', head) and args:
            if args[0] == '-m' and len(args) > 1:
                if args[1].split('.')[0] == 'tinyvim_mm':
                    module = args[1].replace('.', '/')
                    if not ((repo / f'{module}.py').is_file()
                            or (repo / module / '__init__.py').is_file()):
                        problems.append(f'module {args[1]} does not exist: {" ".join(cmd)}')
            else:
                script = repo_relative_tool(args[0])
                if script.startswith('tools/'):
                    need(script, 'script', cmd)
                    if script.endswith('.py'):
                        scripts.add(script)
        elif head in ('bash', 'sh') and args:
            script = repo_relative_tool(args[0])
            if script.startswith('tools/'):
                need(script, 'script', cmd)
        elif repo_relative_tool(head).startswith('tools/'):
            need(repo_relative_tool(head), 'script', cmd)
        elif head == 'mim':
            if not args or args[0] not in MIM_SUBCOMMANDS:
                problems.append(f'unknown mim sub-command: {" ".join(cmd)}')
            elif args[0] in ('search', 'train', 'test', 'run', 'gridsearch'):
                if len(args) < 2 or args[1] != 'tinyvim_mm':
                    problems.append(f'mim command without the tinyvim_mm package: {" ".join(cmd)}')
                elif args[0] == 'search':
                    need('model-index.yml', 'mim model index', cmd)
                elif len(args) > 2 and args[0] == 'run':
                    need(f'tools/{args[2]}.py', 'mim run script', cmd)
                elif len(args) > 2 and args[2].endswith('.py'):
                    config = args[2]
                    if '/' not in config:  # a name mim finds in .mim/configs
                        need(f'configs/{config}', 'config', cmd)
                    elif config.startswith('configs/'):
                        need(config, 'config', cmd)
        for token in cmd:  # configs/*.py anywhere on the line
            for path in config_paths(token):
                need(path, 'config', cmd)
    return problems, scripts


def config_paths(text: str) -> List[str]:
    """Every ``configs/...py`` path of ``text`` (not ``.mim/configs``), braces expanded."""
    found = re.findall(r'(?<![\w/.-])configs/[\w{},./-]*?\.py\b', text)
    return sorted({p for word in found for p in expand_braces(word)})


def bare_config_names(text: str) -> List[str]:
    """``configs/NAME`` for every bare config name (``tinyvim_*``, ``mask_rcnn_tinyvim_*``,
    ``fpn_tinyvim_*`` ending in ``.py``, not part of a path), braces expanded."""
    found = re.findall(r'(?<![\w/.:-])((?:mask_rcnn_|fpn_)?tinyvim_[\w{},-]*\.py)\b', text)
    return sorted({f'configs/{n}' for word in found for n in expand_braces(word)})


def tinyvim_base_names(text: str) -> List[str]:
    """``configs/NAME`` for every ``tinyvim_mm::NAME`` of the code blocks."""
    names = set()
    for _, body in fenced_blocks(text):
        names.update(re.findall(r'tinyvim_mm::([\w/.-]+\.py)', body))
    return sorted(f'configs/{name}' for name in names)


def github_slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    heading = re.sub(r'`([^`]*)`', r'\1', heading.strip()).lower()
    heading = re.sub(r'[^\w\- ]', '', heading)
    return heading.replace(' ', '-')


def anchors(markdown: str) -> Set[str]:
    text = re.sub(r'^```.*?^```', '', markdown, flags=re.S | re.M)
    return {github_slug(m) for m in re.findall(r'^#{1,6}\s+(.+?)\s*#*$', text, re.M)}


def check_links(text: str, base: Path = REPO) -> List[str]:
    """Relative links and images (Markdown and ``<img src>``) that do not resolve."""
    problems = []
    prose = without_code(text)
    targets = re.findall(r'!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)', prose)
    targets += re.findall(r'<img[^>]*\bsrc="([^"]+)"', prose)
    for target in targets:
        if re.match(r'^[a-z][a-z0-9+.-]*:', target, re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition('#')
        file = (base / path) if path else None
        if file is not None and not file.exists():
            problems.append(f'link target {target} does not exist')
            continue
        if anchor:
            page = text if file is None else file.read_text(encoding='utf-8')
            if file is None or file.suffix == '.md':
                if anchor not in anchors(page):
                    problems.append(f'link {target}: no heading #{anchor}')
    return problems


def section(text: str, name: str) -> str:
    m = re.search(rf'<!-- section: {name} -->(.*?)<!-- /section: {name} -->', text, re.S)
    assert m, f'README has no "{name}" section markers'
    return m.group(1)


def markdown_tables(text: str) -> List[List[List[str]]]:
    """Tables as lists of rows of cells (header first, separator dropped)."""
    tables, rows = [], []
    for line in text.splitlines() + ['']:
        if line.startswith('|'):
            cells = [c.strip() for c in line.strip().strip('|').split('|')]
            if not all(re.fullmatch(r':?-+:?', c) for c in cells):
                rows.append(cells)
        elif rows:
            tables.append(rows)
            rows = []
    return tables


def zoo_config_entries(text: str) -> List[Tuple[List[str], List[str]]]:
    """``(row, [config paths])`` of every data row of the model-zoo tables that have a
    config column; a table without a config column is an error."""
    out = []
    tables = [t for t in markdown_tables(section(text, 'model zoo'))]
    for table in tables:
        header = [c.lower() for c in table[0]]
        column = next((i for i, c in enumerate(header) if 'config' in c), None)
        assert column is not None, f'model-zoo table without a config column: {table[0]}'
        for row in table[1:]:
            cell = row[column] if column < len(row) else ''
            names = re.findall(r'\]\(([^)]+)\)', cell) or re.findall(r'[\w{},./-]+\.py', cell)
            paths = []
            for name in names:
                for item in expand_braces(name):
                    paths.append(item if '/' in item else f'configs/{item}')
            out.append((row, paths))
    return out


# ---------------------------------------------------------------------------------------
# The README and docs as they are


def test_bash_commands_name_existing_files():
    problems, scripts = check_commands(all_pages_text())
    assert not problems, '\n'.join(problems)
    for script in ('tools/train.py', 'tools/test.py', 'tools/get_flops.py',
                   'tools/benchmark.py', 'tools/demo.py', 'tools/export_onnx.py'):
        assert script in scripts, f'no bash block of the README or docs runs {script}'


@pytest.fixture(scope='module')
def help_results() -> Dict[str, subprocess.CompletedProcess]:
    """``python SCRIPT --help`` of every script the pages run, each once, 3 at a time."""
    _, scripts = check_commands(all_pages_text())
    env = dict(os.environ, MPLBACKEND='Agg', CUDA_VISIBLE_DEVICES='',
               PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in [
                   os.environ.get('PYTHONPATH')] if p]))

    def run(script: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, script, '--help'], cwd=REPO, env=env,
                              capture_output=True, text=True, timeout=HELP_TIMEOUT)

    existing = sorted(s for s in scripts if (REPO / s).is_file())
    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(zip(existing, pool.map(run, existing)))


def test_python_tools_answer_help(help_results):
    assert help_results, 'no python tools/*.py command in the README or docs'
    failed = {s: (r.returncode, (r.stderr or r.stdout)[-800:])
              for s, r in help_results.items()
              if r.returncode != 0 or 'usage' not in r.stdout.lower()}
    assert not failed, failed


def test_every_config_path_exists():
    text = all_pages_text()
    paths = set(config_paths(text) + bare_config_names(text) + tinyvim_base_names(text))
    missing = sorted(p for p in paths if not (REPO / p).is_file())
    assert not missing, missing


@pytest.mark.parametrize('page', PAGES, ids=[p.name for p in PAGES])
def test_links_and_images_exist(page):
    problems = check_links(page.read_text(encoding='utf-8'), base=page.parent)
    assert not problems, '\n'.join(problems)


def test_readme_shows_the_architecture_figure():
    assert '](docs/figures/architecture.png)' in readme_text()


def test_model_zoo_tables_come_from_the_metafiles():
    zoo = load_module(REPO / 'tools' / 'misc' / 'model_zoo.py', 'model_zoo')
    assert section(readme_text(), 'model zoo').strip().startswith(zoo.tables().strip()), \
        'README model zoo differs from `python tools/misc/model_zoo.py`'
    for _, paths in zoo_config_entries(readme_text()):
        assert paths and all((REPO / p).is_file() for p in paths)


# ---------------------------------------------------------------------------------------
# The checkers fail where they should


def test_checkers_catch_missing_script_and_config():
    text = ('```bash\n'
            'python tools/no_such_tool.py --x  # comment\n'
            'NNODES=2 bash tools/no_such.sh configs/no_such_config.py 8\n'
            'tools/nope.sh && mim train tinyvim_mm no_such.py --launcher none\n'
            'mim test other_pkg x.py\n'
            'python -m tinyvim_mm.no_such_module\n'
            'python tools/train.py configs/tinyvim_{s,zz}_8xb128_in1k.py\n'
            '```\n')
    problems, scripts = check_commands(text)
    joined = '\n'.join(problems)
    for needle in ('tools/no_such_tool.py', 'tools/no_such.sh', 'configs/no_such_config.py',
                   'tools/nope.sh', 'configs/no_such.py', 'other_pkg',
                   'tinyvim_mm.no_such_module', 'configs/tinyvim_zz_8xb128_in1k.py'):
        assert needle in joined, (needle, problems)
    assert 'configs/tinyvim_s_8xb128_in1k.py' not in joined
    names = bare_config_names('`fpn_tinyvim_{s,b}_toy_ade.py`, x/tinyvim_q.py, tinyvim_mm::a.py')
    assert names == ['configs/fpn_tinyvim_b_toy_ade.py', 'configs/fpn_tinyvim_s_toy_ade.py']
    assert scripts == {'tools/no_such_tool.py', 'tools/train.py'}


def test_checkers_catch_missing_links_and_zoo_configs():
    text = ('[ok](docs/workflow.md#mim) [bad](docs/nothing.md) ![img](docs/figures/none.png)\n'
            '[anchor](docs/workflow.md#no-such-heading) [web](https://example.com/x.md)\n'
            '`[code](not/checked.md)`\n')
    problems = check_links(text)
    assert len(problems) == 3, problems
    zoo = ('<!-- section: model zoo -->\n| model | config |\n|---|---|\n'
           '| x | [a.py](configs/no_such.py) |\n| y | `mask_rcnn_tinyvim_{s,q}.py` |\n'
           '<!-- /section: model zoo -->\n')
    paths = [p for _, ps in zoo_config_entries(zoo) for p in ps]
    assert paths == ['configs/no_such.py', 'configs/mask_rcnn_tinyvim_s.py',
                     'configs/mask_rcnn_tinyvim_q.py']
    assert [p for p in paths if not (REPO / p).is_file()] == [
        'configs/no_such.py', 'configs/mask_rcnn_tinyvim_q.py']


def test_help_check_catches_failing_script(tmp_path):
    """A script that cannot start fails the --help criterion."""
    script = tmp_path / 'broken.py'
    script.write_text('import no_such_module_xyz\n')
    result = subprocess.run([sys.executable, str(script), '--help'], capture_output=True,
                            text=True, timeout=HELP_TIMEOUT)
    assert result.returncode != 0
