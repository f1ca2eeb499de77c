#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nspawnctl developers
# GNU Lesser General Public License v2.1 or later (see COPYING or https://www.gnu.org/licenses/lgpl-2.1.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: image
short_description: Pull, remove and prune nspawnctl's images
description:
  - C(present) runs C(nspawnctl pull REF --pull missing --json) (I(pull=always) or
    I(pull=newer) asks the registry as C(pull) does); changed when something was fetched.
  - C(absent) runs C(nspawnctl images rm REF); an image a container uses is refused with
    nspawnctl's message.
  - I(prune=true) (without I(name)) runs C(nspawnctl images prune), removing the base trees
    no container uses and the blobs no image needs.
  - Check mode asks nspawnctl with C(images rm --dry-run) and C(images prune --dry-run), and
    changes nothing.
version_added: 0.1.0
author: nspawnctl developers (!UNKNOWN)
extends_documentation_fragment:
  - nspawnctl.containers.nspawnctl
options:
  name:
    description: The image reference, as C(nspawnctl pull) takes it
      (C(docker.io/library/busybox:1.36)).
    type: str
  state:
    description: Whether the image is pulled.
    type: str
    choices: [present, absent]
    default: present
  pull:
    description: When to ask the registry, for C(present) (C(pull --pull)).
    type: str
    choices: [missing, always, newer]
    default: missing
  platform:
    description: The platform to pick from an index (C(pull --platform)).
    type: str
  tls_verify:
    description: Require HTTPS with a verified certificate (C(pull --tls-verify)).
    type: bool
  prune:
    description: Prune the cache (C(images prune)) instead of pulling or removing an image.
    type: bool
    default: false
attributes:
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
notes:
  - In check mode, C(present) reports a change unless C(images rm --dry-run) finds the
    reference as given.
'''

EXAMPLES = r'''
- name: busybox, pulled once
  nspawnctl.containers.image:
    name: docker.io/library/busybox:1.36

- name: Removed
  nspawnctl.containers.image:
    name: docker.io/library/busybox:1.36
    state: absent

- name: The cache pruned
  nspawnctl.containers.image:
    prune: true
'''

RETURN = r'''
pulled:
  description: What C(nspawnctl pull --json) says (C(present), not in check mode).
  returned: when pulled
  type: dict
  sample: {"name": "docker.io/library/busybox:1.36", "cached": false, "fetched_blobs": 1}
said:
  description: nspawnctl's lines, for C(absent) and I(prune).
  returned: when removing or pruning
  type: list
  elements: str
  sample: ["removed docker.io/library/busybox:1.36: 1 blob (2 MB)"]
'''

import re

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nspawnctl.containers.plugins.module_utils.nspawnctl import (
    COMMON_OPTIONS, CONFLICT, NOT_FOUND, run, run_json)

NOTHING_PRUNED = re.compile(r'^(would remove|removed) 0 base trees$')


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            pull=dict(type='str', default='missing', choices=['missing', 'always', 'newer']),
            platform=dict(type='str'),
            tls_verify=dict(type='bool'),
            prune=dict(type='bool', default=False),
            **COMMON_OPTIONS
        ),
        required_one_of=[('name', 'prune')],
        mutually_exclusive=[('name', 'prune')],
        supports_check_mode=True,
    )
    params, check = module.params, module.check_mode
    dry = ['--dry-run'] if check else []
    if params['prune']:
        _rc, out, _err = run(module, ['images', 'prune'] + dry)
        lines = out.splitlines()
        changed = len(lines) > 1 or not NOTHING_PRUNED.match(lines[0] if lines else '')
        module.exit_json(changed=changed, said=lines)
    ref = params['name']
    if params['state'] == 'absent':
        rc, out, _err = run(module, ['images', 'rm', ref] + dry, ok=(0, NOT_FOUND))
        module.exit_json(changed=rc == 0, said=out.splitlines())
    if check:
        # there (rc 0) or used by a container (CONFLICT): nothing to pull with --pull missing
        rc, _out, _err = run(module, ['images', 'rm', ref, '--dry-run'],
                             ok=(0, NOT_FOUND, CONFLICT))
        module.exit_json(changed=rc == NOT_FOUND or params['pull'] != 'missing')
    args = ['pull', ref, '--pull', params['pull']]
    if params['platform']:
        args += ['--platform', params['platform']]
    if params['tls_verify'] is not None:
        args.append('--tls-verify=%s' % ('true' if params['tls_verify'] else 'false'))
    _rc, pulled = run_json(module, args)
    pulled = pulled or {}
    changed = (not pulled.get('cached', False) or bool(pulled.get('fetched_blobs'))
               or bool(pulled.get('unpacked')))
    module.exit_json(changed=changed, pulled=pulled)


if __name__ == '__main__':
    main()
