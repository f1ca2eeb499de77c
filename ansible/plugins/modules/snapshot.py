#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nspawnctl developers
# GNU Lesser General Public License v2.1 or later (see COPYING or https://www.gnu.org/licenses/lgpl-2.1.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: snapshot
short_description: Take, roll back to and remove a container's snapshots
description:
  - Reads the container's snapshots with C(nspawnctl snapshot list NAME --json), then
    C(present) takes snapshot I(tag) if it is missing (C(snapshot create NAME TAG --json)),
    C(absent) removes it if it is there (C(snapshot rm)), and C(rolled_back) puts the
    container back as the snapshot holds it (C(snapshot rollback --json)).
  - C(rolled_back) always changes the container (a rollback is an action, not a state), so
    it reports a change every time; guard it with C(when) in a playbook.
  - Check mode changes nothing and says whether the task would.
version_added: 0.1.0
author: nspawnctl developers (!UNKNOWN)
extends_documentation_fragment:
  - nspawnctl.containers.nspawnctl
options:
  name:
    description: The container.
    type: str
    required: true
  tag:
    description: The snapshot's tag.
    type: str
    required: true
  state:
    description: What to do with the snapshot.
    type: str
    choices: [present, absent, rolled_back]
    default: present
  stop:
    description: Where a running container cannot be frozen, stop it for the copy and start
      it again (C(snapshot create --stop)).
    type: bool
    default: false
attributes:
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: none
'''

EXAMPLES = r'''
- name: A snapshot before the upgrade
  nspawnctl.containers.snapshot:
    name: web
    tag: before-upgrade

- name: Back to it
  nspawnctl.containers.snapshot:
    name: web
    tag: before-upgrade
    state: rolled_back
  when: upgrade is failed
'''

RETURN = r'''
snapshot:
  description: What C(snapshot create --json) or C(snapshot rollback --json) says, or the
    snapshot as C(snapshot list --json) shows it when it was there.
  returned: when the snapshot exists
  type: dict
  sample: {"name": "web", "tag": "before-upgrade", "method": "btrfs"}
'''

from ansible.module_utils.basic import AnsibleModule
from ansible_collections.nspawnctl.containers.plugins.module_utils.nspawnctl import (
    COMMON_OPTIONS, run, run_json)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            tag=dict(type='str', required=True),
            state=dict(type='str', default='present',
                       choices=['present', 'absent', 'rolled_back']),
            stop=dict(type='bool', default=False),
            **COMMON_OPTIONS
        ),
        supports_check_mode=True,
    )
    name, tag, state = module.params['name'], module.params['tag'], module.params['state']
    snapshots = run_json(module, ['snapshot', 'list', name])[1] or []
    there = next((s for s in snapshots if s.get('tag') == tag), None)
    if state == 'present':
        if there is not None:
            module.exit_json(changed=False, snapshot=there)
        if module.check_mode:
            module.exit_json(changed=True)
        args = ['snapshot', 'create', name, tag] + (['--stop'] if module.params['stop'] else [])
        module.exit_json(changed=True, snapshot=run_json(module, args)[1])
    if state == 'absent':
        if there is not None and not module.check_mode:
            run(module, ['snapshot', 'rm', name, tag])
        module.exit_json(changed=there is not None)
    if module.check_mode:
        if there is None:
            module.fail_json(msg='container %s has no snapshot %s' % (name, tag))
        module.exit_json(changed=True, snapshot=there)
    # a missing snapshot: the command says so, in its words
    module.exit_json(changed=True, snapshot=run_json(module, ['snapshot', 'rollback', name,
                                                              tag])[1])


if __name__ == '__main__':
    main()
