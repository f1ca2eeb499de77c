#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nspawnctl developers
# GNU Lesser General Public License v2.1 or later (see COPYING or https://www.gnu.org/licenses/lgpl-2.1.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: network
short_description: An nspawnctl network (a bridge and its subnet)
description:
  - Creates or removes a network with C(nspawnctl network create) and C(network remove),
    after reading the host's networks with C(nspawnctl network list --json).
  - A network that is there with another subnet than I(subnet) is not changed; the task
    fails and says so (a network's subnet changes only by removing it, and its containers
    first).
  - Check mode changes nothing and says whether the task would; diff mode shows the network
    before and after.
version_added: 0.1.0
author: nspawnctl developers (!UNKNOWN)
extends_documentation_fragment:
  - nspawnctl.containers.nspawnctl
options:
  name:
    description: The network's name.
    type: str
    required: true
  subnet:
    description: Its IPv4 subnet, for example C(10.99.0.0/24) (default a free one).
    type: str
  state:
    description: Whether the network is there.
    type: str
    choices: [present, absent]
    default: present
attributes:
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
'''

EXAMPLES = r'''
- name: The backend network
  nspawnctl.containers.network:
    name: backend
    subnet: 10.99.0.0/24

- name: No backend network
  nspawnctl.containers.network:
    name: backend
    state: absent
'''

RETURN = r'''
network:
  description: The network as C(nspawnctl network list --json) shows it after the task.
  returned: when it exists after the task, not in check mode
  type: dict
  sample: {"name": "backend", "subnet": "10.99.0.0/24", "gateway": "10.99.0.1",
           "bridge": "nsc-backend", "containers": []}
'''

import ipaddress

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nspawnctl.containers.plugins.module_utils.nspawnctl import (
    COMMON_OPTIONS, run, run_json)


def find(module, name):
    return next((n for n in run_json(module, ['network', 'list'])[1] or []
                 if n.get('name') == name), None)


def same_subnet(a, b):
    try:
        return ipaddress.ip_network(a, strict=False) == ipaddress.ip_network(b, strict=False)
    except ValueError:
        return a == b


def describe(network):
    return '' if network is None else 'network %s: subnet %s\n' % (network['name'],
                                                                   network['subnet'])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            subnet=dict(type='str'),
            state=dict(type='str', default='present', choices=['present', 'absent']),
            **COMMON_OPTIONS
        ),
        supports_check_mode=True,
    )
    name, subnet, state = module.params['name'], module.params['subnet'], module.params['state']
    before = find(module, name)
    result = dict(changed=False)
    if state == 'present' and before is not None:
        if subnet and not same_subnet(before['subnet'], subnet):
            module.fail_json(msg='network %s has subnet %s, not %s; remove it (and its '
                                 'containers) to change it' % (name, before['subnet'], subnet))
        result['network'] = before
    elif state == 'present':
        result['changed'] = True
        after = {'name': name, 'subnet': subnet or '(a free one)'}
        if not module.check_mode:
            run(module, ['network', 'create', name] + (['--subnet', subnet] if subnet else []))
            after = result['network'] = find(module, name)
        result['diff'] = dict(before=describe(None), after=describe(after))
    elif before is not None:
        result['changed'] = True
        if not module.check_mode:
            run(module, ['network', 'remove', name])
        result['diff'] = dict(before=describe(before), after='')
    module.exit_json(**result)


if __name__ == '__main__':
    main()
