# -*- coding: utf-8 -*-
# Copyright: nspawnctl developers
# GNU Lesser General Public License v2.1 or later (see COPYING or https://www.gnu.org/licenses/lgpl-2.1.txt)

from __future__ import absolute_import, division, print_function
__metaclass__ = type


class ModuleDocFragment(object):
    # What every module of the collection says alike: the nspawnctl it runs, check mode
    # (each has it, through nspawnctl's own dry runs), what the managed host needs.
    DOCUMENTATION = r'''
options:
  executable:
    description: The nspawnctl command on the managed host.
    type: path
    default: nspawnctl
attributes:
  check_mode:
    description: Can run in check mode and return changed status prediction without modifying target.
    support: full
requirements:
  - nspawnctl on the managed host, run as root
'''
