"""nspawnctl(1), written from the click commands and the settings table.

Nothing here describes a command by hand: every visible command of the group, with its usage,
help and options, is walked from click (so a new command is in the page the moment it
exists), and the container settings that create and set share are listed once, from
settings/model.py, with when a change takes effect.  Only the page's frame (files,
environment, exit status) is written here.  `nspawnctl install-extras` installs the page.
"""

import inspect
from pathlib import Path

import click

from .. import __version__
from ..paths import Paths
from ..settings.model import CLI_SETTINGS, Apply

SECTION = 1

# When a changed setting takes effect on a running container (settings/model.py, Apply).
TAKES_EFFECT = {
    Apply.LIVE: "A change applies at once to a running container.",
    Apply.RELOAD: "A change takes effect with the reload of systemd that set does.",
    Apply.FIREWALL: "A change applies at once (nspawnctl's firewall table is rewritten).",
    Apply.RESTART: "A change takes effect at the container's next start.",
    Apply.RECORD: "A record nspawnctl keeps.",
}

EXIT_STATUS = [
    ("0", "Success."),
    ("1", "An error, said in one line (and a hint); doctor: a check failed."),
    ("2", "Bad usage: an unknown option, a missing or invalid argument."),
    ("70", "An internal error (a bug; --debug shows its traceback)."),
    ("130", "Interrupted (Ctrl-C or SIGTERM); what was half made is removed."),
    ("141", "The output was closed (a broken pipe)."),
    ("", "exec, shell and logs exit with the status of what they ran."),
]

ENVIRONMENT = [
    ("NSPAWNCTL_ROOT", "Prefix every path below (the unit tests' private trees).  Under another "
                       "root, commands that would change the host's network or ask systemd "
                       "about units refuse."),
    ("NSPAWNCTL_SUBNET_POOL", "Where networks take their subnets: comma-separated IPv4 blocks, "
                              "cut into /24s (default 10.213.0.0/16)."),
    ("NSPAWNCTL_DEFAULT_SUBNET", "The default network's subnet, when it is first made."),
]

SEE_ALSO = ["machinectl(1)", "systemd-nspawn(1)", "systemd.nspawn(5)", "journalctl(1)",
            "systemctl(1)", "ssh(1)", "ssh_config(5)"]


def render(group: click.Group, name: str = "nspawnctl") -> str:
    """The whole page, as roff (man(7) macros)."""
    root = click.Context(group, info_name=name, **group.context_settings)
    out = [f'.TH {name.upper()} {SECTION} "" "{name} {__version__}" "User Commands"',
           ".SH NAME", f"{_esc(name)} \\- {_esc(_first_line(group))}",
           ".SH SYNOPSIS", f".B {_esc(name)}",
           "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGUMENTS\\fR]...",
           ".SH DESCRIPTION", *_paragraphs(_help(group)),
           ".SH OPTIONS", *_options(group, root, keep_help=True)]
    plain: list[tuple[str, click.Command]] = []
    groups: list[tuple[str, click.Command]] = []
    canonical = _canonical(group, root)
    for sub_name, command in _visible(group, root):
        (groups if isinstance(command, click.Group) else plain).append((sub_name, command))
    out.append(".SH COMMANDS")
    for sub_name, command in plain:
        ctx = click.Context(command, info_name=sub_name, parent=root)
        out += _command(command, ctx, canonical)
    for sub_name, command in groups:
        ctx = click.Context(command, info_name=sub_name, parent=root)
        out.append(f'.SH "{_esc(sub_name.upper())} COMMANDS"')
        out += _command(command, ctx, canonical)
        assert isinstance(command, click.Group)
        for leaf_name, leaf in _visible(command, ctx):
            leaf_ctx = click.Context(leaf, info_name=leaf_name, parent=ctx)
            out += _command(leaf, leaf_ctx, canonical)
    out += [".SH CONTAINER SETTINGS",
            *_paragraphs("The options that say how a container runs, the same for create "
                         "and set (set changes only those given)."),
            *_settings(root)]
    out += [".SH FILES", *_files(), ".SH ENVIRONMENT"]
    for var, text in ENVIRONMENT:
        out += [".TP", f"\\fB{_esc(var)}\\fR", _esc(text)]
    out.append(".SH EXIT STATUS")
    for code, text in EXIT_STATUS:
        out += [".TP", f"\\fB{code}\\fR", _esc(text)] if code else [".PP", _esc(text)]
    out += [".SH SEE ALSO", ",\n".join(_reference(page) for page in SEE_ALSO)]
    return "\n".join(out) + "\n"


def _walk(group: click.Group, ctx: click.Context) -> list[tuple[click.Command, click.Context]]:
    """Every visible command below group, depth first, with its context."""
    found = []
    for sub_name, command in _visible(group, ctx):
        sub_ctx = click.Context(command, info_name=sub_name, parent=ctx)
        found.append((command, sub_ctx))
        if isinstance(command, click.Group):
            found += _walk(command, sub_ctx)
    return found


def _canonical(group: click.Group, root: click.Context) -> dict[int, str]:
    """Each command's own path, where it is added under its own name: `snapshots` is an
    alias of `snapshot list` (the same command object, added again under another name)."""
    found: dict[int, str] = {}
    for command, ctx in _walk(group, root):
        if ctx.info_name == command.name:
            found.setdefault(id(command), ctx.command_path)  # the first: in its group
    return found


def _visible(group: click.Group, ctx: click.Context) -> list[tuple[str, click.Command]]:
    """The group's commands as they were added (the order of cli.py), hidden ones left out:
    those are for nspawnctl's own units and scripts."""
    found = []
    for sub_name in group.commands or group.list_commands(ctx):  # the root group is lazy
        command = group.get_command(ctx, sub_name)
        if command is not None and not command.hidden:
            found.append((sub_name, command))
    return found


def _command(command: click.Command, ctx: click.Context,
             canonical: dict[int, str]) -> list[str]:
    usage = " ".join(command.collect_usage_pieces(ctx))
    out = [f'.SS "{_esc(ctx.command_path)} {_esc(usage)}"']
    if canonical.get(id(command), ctx.command_path) != ctx.command_path:
        return out + [f"The same as \\fB{_esc(canonical[id(command)])}\\fR."]
    out += _paragraphs(_help(command))
    settings = _setting_names()
    own = [p for p in command.get_params(ctx) if p.name not in settings]
    out += _options_of(own, ctx)
    if len(own) < len(command.get_params(ctx)):
        out += [".PP", "And the options of \\fBCONTAINER SETTINGS\\fR below."]
    return out


def _options(command: click.Command, ctx: click.Context, keep_help: bool = False) -> list[str]:
    return _options_of(command.get_params(ctx), ctx, keep_help)


def _options_of(params: list[click.Parameter], ctx: click.Context,
                keep_help: bool = False) -> list[str]:
    out = []
    for param in params:
        if not isinstance(param, click.Option) or (param.name == "help" and not keep_help):
            continue
        out += _option(param, ctx)
    return out


def _option(param: click.Option, ctx: click.Context) -> list[str]:
    record = param.get_help_record(ctx)
    if record is None:  # hidden
        return []
    names = ", ".join(f"\\fB{_esc(o)}\\fR" for o in param.opts)
    if param.secondary_opts:
        names += " / " + ", ".join(f"\\fB{_esc(o)}\\fR" for o in param.secondary_opts)
    if not param.is_flag and not param.count:
        names += f" \\fI{_esc(param.make_metavar())}\\fR"
    return [".TP", names, _esc(record[1])]


def _settings(root: click.Context) -> list[str]:
    """Each setting once, as create's option (with set's --no-FLAG where set has one)."""
    create, create_ctx = _find(root, "create")
    set_, set_ctx = _find(root, "set")
    options = {p.name: p for p in create.get_params(create_ctx)}
    removals = {p.name: p for p in set_.get_params(set_ctx)}
    out = []
    for setting in CLI_SETTINGS:
        param = options[setting.name]
        assert isinstance(param, click.Option)
        body = _option(param, create_ctx)
        body[-1] += "  " + _esc(TAKES_EFFECT[setting.apply])
        out += body
        removal = removals.get(f"no_{setting.name}")  # set --no-port KEY
        if isinstance(removal, click.Option):
            out += _option(removal, set_ctx)
            out[-1] += "  " + _esc("(set only.)")
    return out


def _find(root: click.Context, name: str) -> tuple[click.Command, click.Context]:
    assert isinstance(root.command, click.Group)
    command = root.command.get_command(root, name)
    assert command is not None, name
    return command, click.Context(command, info_name=name, parent=root)


def _setting_names() -> set[str]:
    return {s.name for s in CLI_SETTINGS} | {f"no_{s.name}" for s in CLI_SETTINGS}


def _files() -> list[str]:
    paths = Paths.under(Path("/"))
    rows = [(paths.tree("NAME"), "A container's tree."),
            (paths.nspawn_file("NAME"), "Its settings, as systemd-nspawn reads them."),
            (paths.dropin_dir("NAME"), "Its unit's drop-ins (limits, order, start timeout)."),
            (paths.state, "nspawnctl's own state: base trees, networks and leases, locks."),
            (paths.cache, "Downloads and logs, which may be thrown away.")]
    out = []
    for path, text in rows:
        out += [".TP", f"\\fI{_esc(str(path))}\\fR", _esc(text)]
    return out


def _help(command: click.Command) -> str:
    return inspect.cleandoc(command.help or "").partition("\f")[0]


def _first_line(command: click.Command) -> str:
    return _help(command).split("\n\n")[0].replace("\n", " ").rstrip(".")


def _paragraphs(text: str) -> list[str]:
    """click's help paragraphs: blank-line separated, rewrapped, but a paragraph that starts
    with \\b keeps its lines (click's own no-rewrap mark)."""
    out = []
    for para in text.split("\n\n"):
        if not para.strip():
            continue
        if para.startswith("\b"):
            out += [".PP", ".nf", *(_esc(line) for line in para[1:].strip("\n").split("\n")),
                    ".fi"]
        else:
            out += [".PP", _esc(" ".join(line.strip() for line in para.split("\n")))]
    return out


def _reference(page: str) -> str:
    title, _, section = page.rstrip(")").partition("(")
    return f".BR {_esc(title)} ({section})"


def _esc(text: str) -> str:
    """Text as roff prints it: backslashes and hyphens escaped (a hyphen in an option is a
    minus: copied from the page it must stay '-'), anything beyond ASCII as a named glyph, and
    a line that would start with a control character made plain."""
    out = []
    for char in text.replace("\\", "\\e").replace("-", "\\-"):
        out.append(char if ord(char) < 128 else f"\\[u{ord(char):04X}]")
    lines = "".join(out).split("\n")
    return "\n".join("\\&" + line if line.startswith((".", "'")) else line for line in lines)
