#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: nspawnctl developers
# GNU Lesser General Public License v2.1 or later (see COPYING or https://www.gnu.org/licenses/lgpl-2.1.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
---
module: container
short_description: One systemd-nspawn container, owned through nspawnctl
description:
  - Makes one container match its parameters, which are C(nspawnctl create)'s and
    C(nspawnctl set)'s options by their long names (a hyphen is an underscore here,
    I(start_timeout) for C(--start-timeout)).
  - The container is a stack of one, named after the container, applied with
    C(nspawnctl apply --json) on the managed host. nspawnctl plans and makes the change, so
    the rules and the messages are the command line's, and the module manages only the
    containers it made. A container of that name made by hand (or by another stack) is
    refused with nspawnctl's message; do not name a stack file after a container this module
    manages.
  - The parameters describe the whole container, as a stack file does. A setting left out
    gets create's default, so removing I(memory) from the task removes the limit. Changing a
    create-only option (I(from), I(include), I(cmd), I(args), I(add), ...) makes the tree
    again. A setting that needs a restart restarts the container.
  - Check mode runs C(apply --dry-run); diff mode shows the planned steps.
version_added: 0.1.0
author: nspawnctl developers (!UNKNOWN)
extends_documentation_fragment:
  - nspawnctl.containers.nspawnctl
options:
  name:
    description: The container's name.
    type: str
    required: true
  state:
    description:
      - C(running) creates the container if it is missing and starts it.
      - C(stopped) creates it if it is missing and stops it.
      - C(present) creates it stopped if it is missing, and leaves a container that is there
        running or stopped as it is.
      - C(absent) removes it (running or not), if this module made it.
    type: str
    choices: [present, running, stopped, absent]
    default: running
  enabled:
    description:
      - Start the container at boot. Left out, a container that is there keeps its
        setting, and a new one is not enabled.
    type: bool
  from:
    description:
      - What the tree is made from, as C(create --from) takes it (C(debootstrap:bookworm),
        C(docker://REF), C(scratch), an image, a directory...). Default C(debootstrap:bookworm).
    type: str
  include:
    description: Extra Debian packages in a debootstrapped tree (create --include).
    type: list
    elements: str
  cmd:
    description: The command the container runs instead of an init (create --cmd), text or a
      list of words.
    type: raw
  args:
    description: Arguments for an image's entrypoint in place of its Cmd (create --args).
    type: str
  add:
    description: Host files copied into a scratch tree, C(SRC) or C(SRC:DEST) (create --add).
    type: list
    elements: str
  mirror:
    description: The Debian mirror (create --mirror).
    type: str
  variant:
    description: The debootstrap variant (create --variant).
    type: str
  arch:
    description: The architecture (create --arch).
    type: str
  slim:
    description: A slim tree (create --slim).
    type: bool
  bootstrapper:
    description: The bootstrapper (create --bootstrapper).
    type: str
    choices: [auto, mmdebstrap, debootstrap]
  overlay:
    description: An overlay on a cached base tree (create --overlay).
    type: bool
  boot:
    description: Boot the image's init (create --boot).
    type: bool
  platform:
    description: The image platform to pull (create --platform).
    type: str
  pull:
    description: When to pull the image (create --pull).
    type: str
    choices: [missing, always, never, newer]
  tls_verify:
    description: Verify the registry's certificate (create --tls-verify).
    type: bool
  private_users:
    description: Run in a user namespace of its own (--private-users; default on).
    type: bool
  network:
    description: C(default), C(none), C(host), or a network's name (--network).
    type: str
  bind:
    description: Host paths bind-mounted inside, as --bind takes them.
    type: list
    elements: str
  volume:
    description: Named volumes mounted inside, C(NAME:/PATH[:ro]) as --volume takes them.
    type: list
    elements: str
  env:
    description:
      - Environment variables, a list of C(NAME=VALUE) or a mapping. Only these are the
        task's; the image's own (C(PATH)...) stay.
    type: raw
  port:
    description: Published ports, as --port takes them (C(8080:80), C(127.0.0.1:8080:80/udp)).
    type: list
    elements: str
  hostname:
    description: The hostname inside (default the container's name).
    type: str
  memory:
    description: Memory limit (C(512M), C(1g), C(50%), C(infinity)).
    type: raw
  cpus:
    description: CPU quota in CPUs (C(1.5)).
    type: raw
  tasks:
    description: Maximum number of tasks.
    type: raw
  restart:
    description: Restart policy of the unit (--restart).
    type: str
  start_timeout:
    description: How long systemd lets the container take to start (--start-timeout).
    type: raw
  health_cmd:
    description: A check run in the container by its /bin/sh; exit 0 is healthy (C(none) for no check).
    type: str
  health_interval:
    description: How often the check runs (C(30s), C(1min)).
    type: raw
  health_timeout:
    description: How long one check may take.
    type: raw
  health_retries:
    description: Failed checks in a row that make it unhealthy.
    type: raw
  health_start_period:
    description: Time after the start in which failed checks do not count.
    type: raw
  on_unhealthy:
    description: What to do when it becomes unhealthy.
    type: str
    choices: [none, restart, stop, kill]
  after:
    description: Containers this one starts after; C(NAME:healthy) starts it only once NAME is
      healthy, within its start timeout.
    type: list
    elements: str
  requires:
    description: Containers this one requires (started first, stopped with it);
      C(NAME:healthy) as in after.
    type: list
    elements: str
  credential:
    description:
      - Credentials for the container's services, as --credential takes them
        (C(NAME=@FILE), a file on the managed host, or C(NAME=VALUE)); nspawnctl shows
        them by name only, and the task's log never shows them (no_log).
    type: list
    elements: str
  auto_update:
    description: C(registry) to let C(nspawnctl auto-update) replace it with a newer image of
      its registry reference (rolled back when not healthy); C(none) not to (--auto-update).
    type: str
    choices: [registry, none]
attributes:
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check mode), when in diff mode.
    support: full
notes:
  - Values are checked by nspawnctl, not by the module; a bad one fails the task with
    nspawnctl's one line, and nothing is changed.
'''

EXAMPLES = r'''
- name: A web server from an OCI image, started now and at boot
  nspawnctl.containers.container:
    name: web
    from: docker://docker.io/library/nginx:1.25
    port: ["8080:80"]
    memory: 256M
    env:
      MODE: prod
    enabled: true

- name: Stopped, but kept
  nspawnctl.containers.container:
    name: web
    from: docker://docker.io/library/nginx:1.25
    port: ["8080:80"]
    memory: 256M
    env:
      MODE: prod
    state: stopped

- name: Gone
  nspawnctl.containers.container:
    name: web
    state: absent
'''

RETURN = r'''
steps:
  description: The steps done (in check mode, those that would be done), as nspawnctl
    apply --json gives them.
  returned: always
  type: list
  elements: dict
  sample: [{"action": "create", "kind": "container", "name": "web", "why": "from scratch"}]
container:
  description: The container as C(nspawnctl status NAME --json) shows it after the task
    (absent after state=absent and in check mode).
  returned: when the container exists and the task changed something for real
  type: dict
  sample: {"name": "web", "state": "running", "enabled": true, "stack": "web"}
'''

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.six import string_types
from ansible_collections.nspawnctl.containers.plugins.module_utils.nspawnctl import (
    COMMON_OPTIONS, NOT_FOUND, apply_stack, run_json)

# The stack keys this module passes on as they are (the option's name, _ for -).
CREATE_OPTIONS = {
    'from': dict(type='str'),
    'include': dict(type='list', elements='str'),
    'cmd': dict(type='raw'),
    'args': dict(type='str'),
    'add': dict(type='list', elements='str'),
    'mirror': dict(type='str'),
    'variant': dict(type='str'),
    'arch': dict(type='str'),
    'slim': dict(type='bool'),
    'bootstrapper': dict(type='str', choices=['auto', 'mmdebstrap', 'debootstrap']),
    'overlay': dict(type='bool'),
    'boot': dict(type='bool'),
    'platform': dict(type='str'),
    'pull': dict(type='str', choices=['missing', 'always', 'never', 'newer']),
    'tls_verify': dict(type='bool'),
}
SETTING_OPTIONS = dict(
    private_users=dict(type='bool'),
    network=dict(type='str'),
    bind=dict(type='list', elements='str'),
    volume=dict(type='list', elements='str'),
    env=dict(type='raw'),
    port=dict(type='list', elements='str'),
    hostname=dict(type='str'),
    memory=dict(type='raw'),
    cpus=dict(type='raw'),
    tasks=dict(type='raw'),
    restart=dict(type='str'),
    start_timeout=dict(type='raw'),
    health_cmd=dict(type='str'),
    health_interval=dict(type='raw'),
    health_timeout=dict(type='raw'),
    health_retries=dict(type='raw'),
    health_start_period=dict(type='raw'),
    on_unhealthy=dict(type='str', choices=['none', 'restart', 'stop', 'kill']),
    after=dict(type='list', elements='str'),
    requires=dict(type='list', elements='str'),
    credential=dict(type='list', elements='str', no_log=True),
    auto_update=dict(type='str', choices=['registry', 'none']),
)
STARTED = ('running', 'starting')


def env_list(module, env):
    """env as the stack takes it: a list of NAME=VALUE (a mapping is turned into one)."""
    if isinstance(env, dict):
        return ['%s=%s' % (k, '' if v is None else v) for k, v in sorted(env.items())]
    if isinstance(env, string_types):
        return [env]
    if isinstance(env, list):
        return [str(item) for item in env]
    module.fail_json(msg='env: expected a list of NAME=VALUE or a mapping')


def container_spec(module, current):
    """The container's entry of the one-container stack, from the task's parameters and (for
    state=present and an enabled left out) what the host has now (current: its list --json
    entry, or None)."""
    params = module.params
    spec = {}
    for option in list(CREATE_OPTIONS) + list(SETTING_OPTIONS):
        value = params[option]
        if value is None:
            continue
        spec[option.replace('_', '-')] = env_list(module, value) if option == 'env' else value
    state = params['state']
    if state == 'present':
        state = 'running' if current and current.get('state') in STARTED else 'stopped'
    spec['state'] = state
    enabled = params['enabled']
    if enabled is None:
        enabled = bool(current and current.get('enabled'))
    spec['enabled'] = enabled
    return spec


def listing(module):
    return run_json(module, ['list'])[1] or []


def ownership_problem(name, entries):
    """Why state=absent must not remove this container (None: it may): the stack of its name
    must hold it and nothing else, so pruning that stack removes exactly this container."""
    this = [e for e in entries if e.get('name') == name]
    if this and this[0].get('stack') != name:
        made = 'by hand' if not this[0].get('stack') else 'by stack %s' % this[0]['stack']
        return ('container %s was made %s, not by nspawnctl.containers.container; remove it '
                'with nspawnctl remove' % (name, made))
    others = sorted(e['name'] for e in entries if e.get('stack') == name and e['name'] != name)
    if others:
        return ('stack %s also holds %s; use nspawnctl.containers.stack to remove them'
                % (name, ', '.join(others)))
    return None


def main():
    module = AnsibleModule(
        argument_spec=dict(
            name=dict(type='str', required=True),
            state=dict(type='str', default='running',
                       choices=['present', 'running', 'stopped', 'absent']),
            enabled=dict(type='bool'),
            **dict(CREATE_OPTIONS, **dict(SETTING_OPTIONS, **COMMON_OPTIONS))
        ),
        supports_check_mode=True,
    )
    name = module.params['name']
    entries = listing(module)
    current = next((e for e in entries if e.get('name') == name), None)
    if module.params['state'] == 'absent':
        if current is None:
            module.exit_json(changed=False, steps=[])
        problem = ownership_problem(name, entries)
        if problem:
            module.fail_json(msg=problem)
        module.exit_json(**apply_stack(module, {'name': name}, prune=True))
    definition = {'name': name, 'containers': {name: container_spec(module, current)}}
    result = apply_stack(module, definition)
    if result['changed'] and not module.check_mode:
        rc, status = run_json(module, ['status', name], ok=(0, NOT_FOUND))
        if rc == 0:
            result['container'] = status
    module.exit_json(**result)


if __name__ == '__main__':
    main()
