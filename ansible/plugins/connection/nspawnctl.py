# -*- coding: utf-8 -*-
# Copyright: nspawnctl developers
# GNU Lesser General Public License v2.1 or later (see COPYING or https://www.gnu.org/licenses/lgpl-2.1.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type

DOCUMENTATION = r'''
name: nspawnctl
short_description: Run tasks inside an nspawnctl container
description:
  - Runs each task's commands inside a running container with C(nspawnctl exec) and copies
    files with C(nspawnctl cp), on the machine the play runs on (the controller), as root.
  - The container needs C(/bin/sh), and Python for modules other than C(raw) and C(script).
  - The path rules are nspawnctl's, a path in the container never leads out of its tree.
  - C(nspawnctl cp) writes into the container's tree on disk, not into what a running
    container mounted over it (a tmpfs on C(/tmp) or C(/run)). Keep the remote temporary
    directory on disk, as the default C(~/.ansible/tmp) is; a C(remote_tmp)
    under C(/tmp) makes modules and scripts fail to find the files copied for them.
author: nspawnctl developers (!UNKNOWN)
version_added: 0.1.0
options:
  remote_addr:
    description: The container's name.
    type: str
    default: inventory_hostname
    vars:
      - name: inventory_hostname
      - name: ansible_host
      - name: ansible_nspawnctl_host
  remote_user:
    description: The user commands run as in the container (C(exec --user)); default the
      container's root.
    type: str
    vars:
      - name: ansible_user
      - name: ansible_nspawnctl_user
    keyword:
      - name: remote_user
  nspawnctl_executable:
    description: The nspawnctl command on the controller.
    type: str
    default: nspawnctl
    vars:
      - name: ansible_nspawnctl_executable
'''

import subprocess

from ansible.errors import AnsibleConnectionFailure, AnsibleFileNotFound
from ansible.module_utils.common.text.converters import to_bytes, to_native, to_text
from ansible.plugins.connection import ConnectionBase
from ansible.utils.display import Display

display = Display()

EXEC_FAILED = 125  # exec: nspawnctl itself failed (no such container, not running)


class Connection(ConnectionBase):
    """A container, reached through the nspawnctl command (its exec and cp)."""

    transport = 'nspawnctl.containers.nspawnctl'
    has_pipelining = True

    def _connect(self):
        if not self._connected:
            display.vvv(u'ESTABLISH NSPAWNCTL CONNECTION', host=self._container())
            self._connected = True
        return self

    def _container(self):
        return self.get_option('remote_addr')

    def _nspawnctl(self, args, in_data=None):
        argv = [self.get_option('nspawnctl_executable')] + list(args)
        display.vvv(u'EXEC %s' % argv, host=self._container())
        try:
            p = subprocess.Popen([to_bytes(a, errors='surrogate_or_strict') for a in argv],
                                 stdin=subprocess.PIPE if in_data is not None
                                 else subprocess.DEVNULL,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        except OSError as exc:
            raise AnsibleConnectionFailure('cannot run %s: %s' % (argv[0], to_native(exc)))
        out, err = p.communicate(in_data)
        return p.returncode, out, err

    @staticmethod
    def _said(err):
        """nspawnctl's own error line (not the command's output)."""
        lines = [line for line in to_text(err, errors='surrogate_or_replace').splitlines()
                 if line.startswith('nspawnctl')]
        return lines[0] if lines else to_text(err, errors='surrogate_or_replace').strip()

    def exec_command(self, cmd, in_data=None, sudoable=False):
        super(Connection, self).exec_command(cmd, in_data=in_data, sudoable=sudoable)
        args = ['exec']
        if in_data is not None:
            args.append('--interactive')
        user = self.get_option('remote_user')
        if user:
            args += ['--user', user]
        # the command is one shell string (Ansible's own quoting): the container's sh runs it
        args += [self._container(), '--', '/bin/sh', '-c', to_text(cmd)]
        rc, out, err = self._nspawnctl(args, in_data)
        if rc == EXEC_FAILED and err.startswith(b'nspawnctl'):
            raise AnsibleConnectionFailure(self._said(err))
        return rc, out, err

    def put_file(self, in_path, out_path):
        super(Connection, self).put_file(in_path, out_path)
        display.vvv(u'PUT %s TO %s' % (in_path, out_path), host=self._container())
        target = '%s:%s' % (self._container(), out_path)
        rc, _out, err = self._nspawnctl(['cp', in_path, target])
        if rc != 0:
            raise AnsibleFileNotFound('put %s: %s' % (in_path, self._said(err)))

    def fetch_file(self, in_path, out_path):
        super(Connection, self).fetch_file(in_path, out_path)
        display.vvv(u'FETCH %s TO %s' % (in_path, out_path), host=self._container())
        source = '%s:%s' % (self._container(), in_path)
        rc, _out, err = self._nspawnctl(['cp', source, out_path])
        if rc != 0:
            raise AnsibleFileNotFound('fetch %s: %s' % (in_path, self._said(err)))

    def close(self):
        self._connected = False
