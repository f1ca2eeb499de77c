"""Options shared by commands: the settings table's (create, set) and names checked first."""

import click

from ..runtime.lifecycle import TIMEOUT
from ..settings.model import CLI_SETTINGS
from . import completion


def config_params(editing: bool = False) -> list:
    """The options that describe how a container runs, shared by create and set: one per
    setting of the table in settings/model.py that has a flag (and for set, --no-FLAG for the
    settings it edits item by item)."""
    params: list = []
    for s in CLI_SETTINGS:
        assert s.flag is not None
        if s.switch:
            params.append(click.Option([f"{s.flag}/--no-{s.flag[2:]}", s.name], default=None,
                                       help=s.help))
        else:
            params.append(click.Option([s.flag, s.name], multiple=s.multiple,
                                       metavar=s.metavar,
                                       type=click.Choice(s.choices) if s.choices else None,
                                       help=s.help,
                                       shell_complete=completion.for_setting(s.name)))
        if editing and s.removes is not None:
            params.append(click.Option([f"--no-{s.flag[2:]}", f"no_{s.name}"], multiple=True,
                                       metavar="KEY",
                                       help=f"Remove a {s.flag} item (repeatable).",
                                       shell_complete=completion.for_setting(f"no_{s.name}")))
    return params


def config_options(editing: bool = False):
    """The settings table's options as decorators, for create and set (see _config_params)."""
    def add(f):
        for param in reversed(config_params(editing)):
            f.__dict__.setdefault("__click_params__", []).append(param)  # as click.option does
        return f
    return add


# The sources are imported by the two that list them, create's and run's: every command
# imports this module, and the sources' modules (debootstrap, OCI, registry, scratch) are
# about 60 ms of start-up that exec, health, start or set never use (a quarter of the CPU of
# a health check's process, issue 31).

def sources_help() -> str:
    """--from's help: every source, from their registry."""
    from ..sources import syntaxes
    return f"Where the tree comes from: {syntaxes()}."


def sources_epilog() -> str:
    from ..sources import SOURCES
    return "Sources for --from:\n\n\b\n" + "\n".join(
        f"  {s.syntax:<22} {s.summary}" for s in SOURCES.values())


def registry_options(default_policy: str):
    """--pull, --tls-verify and --platform, as podman spells them (create and pull); the
    --pull default each command has (podman's: missing for create, always for pull) is the
    command's own, said in its help."""
    return lambda f: _registry_options(f, default_policy)


def _registry_options(f, default_policy: str):
    policies = {"missing": "only when the image is not pulled yet",
                "always": "every time",
                "never": "not at all (only images already pulled)",
                "newer": "when the registry has another digest for it (the pulled one if "
                         "it cannot be reached)"}
    said = "; ".join(f"{k}{' (default)' if k == default_policy else ''}: {v}"
                     for k, v in policies.items())
    f = click.option("--platform", metavar="OS/ARCH[/VARIANT]",
                     help="Image platform to pick from an index, e.g. linux/arm64 "
                          "(default: this host's).")(f)
    f = click.option("--tls-verify", type=click.BOOL, default=None, metavar="BOOL",
                     is_flag=False, flag_value="true",
                     help="Registries: require HTTPS with a verified certificate (default: "
                          "yes, unless registries.conf marks the registry insecure); "
                          "--tls-verify=false allows plain HTTP and any certificate.")(f)
    f = click.option("--pull", "pull_policy",
                     type=click.Choice(["missing", "always", "never", "newer"]), default=None,
                     help=f"Registries: when to ask the registry.  {said}.")(f)
    return f


def timeout_option(what: str):
    """--timeout, as every command that waits takes it: one default (runtime/lifecycle.py's
    TIMEOUT), said, and what it waits for."""
    return click.option("--timeout", type=click.FloatRange(min=0.1), default=TIMEOUT,
                        show_default=True, metavar="SECONDS", help=f"Seconds to wait {what}.")


def json_option(what: str = "Print the result as JSON."):
    """--json: the result as data instead of the lines for people."""
    return click.option("--json", "as_json", is_flag=True, help=what)


def existing(app, names) -> list[str]:
    """Names given to a command that acts on several: all checked before it acts on any, so
    a typo in the last one does not leave the first ones half done."""
    names = list(dict.fromkeys(names))
    store = app.ctx.store
    for name in names:
        store.require(name)
    return names
