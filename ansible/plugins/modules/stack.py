#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nspawnctl developers
# GNU Lesser General Public License v2.1 or later (see COPYING or https://www.gnu.org/licenses/lgpl-2.1.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: stack
short_description: Make a host's nspawn containers and networks match a stack
description:
  - Runs C(nspawnctl apply --json) on the managed host, with a stack file there (I(src)) or an
    inline definition (I(definition)) given on standard input. nspawnctl plans and makes
    the changes, so the rules and the messages are the command line's (see nspawnctl's
    docs/stacks.md for the format).
  - A stack only ever changes or removes the containers it made; a container of the same
    name made by hand or by another stack is refused with nspawnctl's message.
  - Check mode runs C(apply --dry-run); diff mode shows the planned steps.
version_added: 0.1.0
author: nspawnctl developers (!UNKNOWN)
extends_documentation_fragment:
  - nspawnctl.containers.nspawnctl
options:
  src:
    description:
      - Path of a stack file (or a compose file) on the managed host.
      - Exactly one of I(src) and I(definition) for I(state=present).
    type: path
  definition:
    description:
      - The stack itself, a mapping in the stack file's format (C(name), C(networks),
        C(containers)).
    type: dict
  name:
    description:
      - The stack's name (C(apply --name)); default the definition's C(name) key, else the
        file's name without its extension.
      - Required for I(state=absent) unless I(definition) has a C(name).
    type: str
  prune:
    description:
      - Remove the containers and networks this stack made that it no longer lists.
    type: bool
    default: false
  ignore_unsupported:
    description:
      - Compose files only, go on without the keys nspawnctl cannot honour (each becomes a
        warning) instead of refusing the file.
    type: bool
    default: false
  state:
    description:
      - C(present) applies the stack.
      - C(absent) removes every container and network the stack made (an empty stack,
        applied with C(--prune)).
    type: str
    choices: [present, absent]
    default: present
attributes:
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
'''

EXAMPLES = r'''
- name: The shop stack, from a file on the host
  nspawnctl.containers.stack:
    src: /etc/nspawnctl/shop.yaml
    prune: true

- name: An inline stack
  nspawnctl.containers.stack:
    definition:
      name: web
      networks:
        front:
          subnet: 10.99.0.0/24
      containers:
        web:
          from: docker://docker.io/library/nginx:1.25
          network: front
          port: ["8080:80"]
          memory: 256M
          enabled: true

- name: Everything the stack made, gone
  nspawnctl.containers.stack:
    name: web
    state: absent
'''

RETURN = r'''
stack:
  description: The stack's name.
  returned: always
  type: str
  sample: shop
steps:
  description: The steps done (in check mode, the steps that would be done), as nspawnctl
    apply --json gives them.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "create", "kind": "container", "name": "web", "why": "from scratch"}]
left:
  description: What the stack made that it no longer lists, left in place (without prune).
  returned: always
  type: list
  elements: str
  sample: ["container old"]
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nspawnctl.containers.plugins.module_utils.nspawnctl import (
    COMMON_OPTIONS, apply_stack)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            src=dict(type='path'),
            definition=dict(type='dict'),
            name=dict(type='str'),
            prune=dict(type='bool', default=False),
            ignore_unsupported=dict(type='bool', default=False),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            **COMMON_OPTIONS
        ),
        mutually_exclusive=[('src', 'definition')],
        supports_check_mode=True,
    )
    params = module.params
    definition, source, extra = params['definition'], params['src'] or '-', []
    if params['state'] == 'absent':
        name = params['name'] or (definition or {}).get('name')
        if not name:
            module.fail_json(msg='state=absent needs the stack\'s name (name)')
        definition, source, prune = {'name': name}, '-', True
    else:
        if definition is None and params['src'] is None:
            module.fail_json(msg='state=present needs one of src and definition')
        prune = params['prune']
        if params['name']:
            extra += ['--name', params['name']]
        if params['ignore_unsupported']:
            extra.append('--ignore-unsupported')
    module.exit_json(**apply_stack(module, definition, prune=prune, source=source,
                                   extra=extra))


if __name__ == '__main__':
    main()
