# -*- coding: utf-8 -*-
# Copyright: nspawnctl developers
# GNU Lesser General Public License v2.1 or later (see COPYING or https://www.gnu.org/licenses/lgpl-2.1.txt)
"""What every module of the collection shares: running nspawnctl on the managed host.

The modules never decide what is valid or what must change: nspawnctl does, through its
--json interface (and `apply` for stacks), so a playbook and a person at the shell get the
same rules and the same one-line messages.  Commands are argv lists (run_command never goes
through a shell), and a definition goes on standard input, never into a temporary file.
"""

from __future__ import absolute_import, division, print_function
__metaclass__ = type

import json

CHANGES = 6  # apply --dry-run: the host does not match the file (0: it does)
NOT_FOUND = 3
CONFLICT = 4

COMMON_OPTIONS = dict(
    executable=dict(type='path', default='nspawnctl'),
)


def error_text(stderr):
    """The CLI's message: its error lines without the hint and the warnings (said apart)."""
    lines = [line for line in (stderr or '').splitlines()
             if line.strip() and not line.startswith(('hint: ', 'warning: '))]
    return '\n'.join(lines) or 'nspawnctl failed with no message'


def hint_text(stderr):
    return '\n'.join(line[len('hint: '):] for line in (stderr or '').splitlines()
                     if line.startswith('hint: '))


def warnings_of(stderr):
    return [line[len('warning: '):] for line in (stderr or '').splitlines()
            if line.startswith('warning: ')]


def run(module, args, data=None, ok=(0,)):
    """Run `nspawnctl ARGS` (a list); fail the task with the CLI's line unless its exit
    status is in ok.  Returns (rc, stdout, stderr)."""
    executable = module.params['executable']
    if '/' not in executable:
        # a clear "not found in PATH" before anything runs, instead of an OSError's text
        executable = module.get_bin_path(executable, required=True)
    argv = [executable] + [str(a) for a in args]
    rc, out, err = module.run_command(argv, data=data, check_rc=False, encoding='utf-8')
    if rc not in ok:
        module.fail_json(msg=error_text(err), rc=rc, hint=hint_text(err), stderr=err,
                         cmd=argv)
    return rc, out, err


def run_json(module, args, data=None, ok=(0,)):
    """run() with --json; returns (rc, the parsed output or None when there was none)."""
    rc, out, err = run(module, list(args) + ['--json'], data=data, ok=ok)
    for line in warnings_of(err):
        module.warn(line)
    if not out.strip():
        return rc, None
    try:
        return rc, json.loads(out)
    except ValueError:
        module.fail_json(msg='nspawnctl printed no JSON: %s' % out.strip()[:200], rc=rc)


def step_lines(applied):
    """The steps of an `applied` object as apply prints them (`create web: from scratch`;
    a network's action names its kind: `create network back: subnet ...`)."""
    lines = []
    for step in applied.get('steps', []):
        why = ': %s' % step['why'] if step.get('why') else ''
        lines.append('%s %s%s' % (step['action'], step['name'], why))
    return lines


def apply_stack(module, definition, prune=False, source='-', extra=()):
    """`nspawnctl apply -f SOURCE --json` (a definition, a dict, goes on stdin as JSON, which
    is YAML); --dry-run in check mode.  Returns the result a module exits with."""
    args = ['apply', '-f', source] + list(extra)
    if prune:
        args.append('--prune')
    if module.check_mode:
        args.append('--dry-run')
    data = None if definition is None else json.dumps(definition, sort_keys=True)
    rc, applied = run_json(module, args, data=data, ok=(0, CHANGES))
    applied = applied or {}
    steps = step_lines(applied)
    result = dict(changed=bool(applied.get('changed')) or rc == CHANGES,
                  stack=applied.get('stack'), steps=applied.get('steps', []),
                  left=applied.get('left', []))
    if module._diff:
        result['diff'] = dict(prepared='\n'.join(steps) + ('\n' if steps else ''))
    return result
