"""Benchmark: making containers, beside what users would run instead.

- cold create (no base tree cached) vs plain debootstrap and mmdebstrap with the same package
  set, twice: with every .deb cache empty (network-bound: the mirror is reached through a
  forward), and with each tool's .deb cache warm from its own earlier run (nspawnctl's
  /var/cache/nspawnctl/debs, debootstrap's --cache-dir, mmdebstrap's sync-in/sync-out hooks),
  where the work of bootstrapping, not the network, dominates.  Each tool is cold or warm
  alike in a row, so the ratio is nspawnctl's overhead over the bootstrapper it runs.
- warm create (base tree cached) vs `cp -a --reflink=auto` of that base tree and vs
  `machinectl clone` of a container made from it.
- the default image's size vs a plain `debootstrap --variant=minbase` tree, and vs debootstrap
  with the same packages (not slimmed).

All of it runs inside the systemd host; its trees live on the same filesystem as
/var/lib/machines so every contender writes to the same disk.
"""

from nspawnctl.sources.debootstrap import (
    BOOT_PACKAGES,
    DEFAULT_MIRROR,
    DEFAULT_SUITE,
    MMDEBSTRAP_HOOKS,
    BootstrapSpec,
    incremental_key,
)

from .common import ENV, check, du_mb, guarded, log, medians, time_inside

PACKAGES = ",".join(BOOT_PACKAGES)  # what `nspawnctl create` adds to minbase
WORK = "/var/tmp/nspawnctl-bench"
IMAGES = "/var/lib/nspawnctl/images"
NS_DEBS = "/var/cache/nspawnctl/debs"
BASE = "bench-base"  # a container from the default image, kept for clones and the lifecycle


def image_key(include: tuple[str, ...] = ()) -> str:
    """The default image's cache key (with include: a cold bootstrap's with those packages),
    computed by the same code the testbed runs, which has mmdebstrap (the default there)."""
    return "debootstrap-" + BootstrapSpec(bootstrapper="mmdebstrap", include=include).key()


def incremental_image_key(include: tuple[str, ...]) -> str:
    return "debootstrap-" + incremental_key(image_key(), include)


def debootstrap_argv(target: str, cache: str, include: bool = True) -> list[str]:
    argv = ["debootstrap", "--variant=minbase", f"--cache-dir={cache}"]
    if include:
        argv.append(f"--include={PACKAGES}")
    return argv + [DEFAULT_SUITE, target, DEFAULT_MIRROR]


def mmdebstrap_argv(target: str, cache: str, eatmydata: bool = False) -> list[str]:
    # The deb cache recipe from mmdebstrap's manual page, as nspawnctl uses it; with an empty
    # cache it only adds copying the .debs out.  The merged-usr hook makes the same packages
    # as nspawnctl's tree (and debootstrap's): without it apt merges /usr with the usrmerge
    # package, which brings perl.  Without the eatmydata hook: what a user would type; with
    # it: the floor, mmdebstrap as fast as nspawnctl runs it (no dpkg fsyncs), which
    # nspawnctl, running that and more, cannot beat.
    hooks = ["merged-usr"] + (["eatmydata"] if eatmydata else [])
    return ["mmdebstrap", "--variant=minbase", f"--include={PACKAGES}",
            *[f"--hook-dir={MMDEBSTRAP_HOOKS / hook}" for hook in hooks],
            '--setup-hook=mkdir -p "$1"/var/cache/apt/archives/',
            f"--setup-hook=sync-in {cache} /var/cache/apt/archives/",
            f"--customize-hook=sync-out /var/cache/apt/archives {cache}",
            DEFAULT_SUITE, target, DEFAULT_MIRROR]


def _rm(*paths) -> list[str]:
    return ["rm", "-rf", "--one-file-system", *paths]


def cold_create(host, runs: int, warm_debs: bool, state: dict) -> list:
    key = image_key()
    which = "warm .deb caches" if warm_debs else "empty .deb caches"
    log(f"cold create with {which}: {runs} run(s) of nspawnctl, debootstrap, mmdebstrap "
        "(tens of seconds each)")
    n = {"i": 0}

    def ours():
        n["i"] += 1
        name = f"bench-cold{n['i']}"
        before = [_rm(f"{IMAGES}/{key}")] + ([] if warm_debs else [_rm(NS_DEBS)]) + [["sync"]]
        s = time_inside(host, [["nspawnctl", "create", name]], before=before, timeout=1200)
        check(host, ["nspawnctl", "remove", name])
        return s

    def deb():
        cache = f"{WORK}/debootstrap-debs"
        before = [_rm(f"{WORK}/debootstrap")] + ([] if warm_debs else [_rm(cache)]) + \
            [["mkdir", "-p", cache], ["sync"]]
        s = time_inside(host, [debootstrap_argv(f"{WORK}/debootstrap", cache)], before=before,
                        timeout=1200)
        state["same-packages-size"] = du_mb(host, f"{WORK}/debootstrap")
        check(host, _rm(f"{WORK}/debootstrap"))
        return s

    def mm_run(eatmydata: bool):
        def mm():
            cache = f"{WORK}/mmdebstrap-debs"
            before = [_rm(f"{WORK}/mmdebstrap")] + ([] if warm_debs else [_rm(cache)]) + \
                [["mkdir", "-p", cache], ["sync"]]
            s = time_inside(host, [mmdebstrap_argv(f"{WORK}/mmdebstrap", cache, eatmydata)],
                            before=before, timeout=1200)
            check(host, _rm(f"{WORK}/mmdebstrap"))
            return s
        mm.__name__ = "mmdebstrap+eatmydata" if eatmydata else "mmdebstrap"  # for the log
        return mm

    rows = []
    figure = f"cold create, {which} (aim: <= 1.0 of mmdebstrap)"
    # all interleaved, so that a change of load falls on every contender alike
    have_mm = host.run(["sh", "-c", "command -v mmdebstrap"]).returncode == 0
    times = medians([ours, deb] + ([mm_run(False), mm_run(True)] if have_mm else []), runs,
                    say=True)
    rows.append((figure, times[0], times[1], "debootstrap, same packages"))
    if have_mm:
        rows.append((figure, times[0], times[2], "mmdebstrap, same packages"))
        rows.append((f"cold create, {which} (floor: >= 1.0)", times[0], times[3],
                     "mmdebstrap + its eatmydata hook, same packages"))
    return rows


INCLUDE = ("nginx",)  # what the incremental figure adds to the default image


def incremental_create(host, runs: int) -> list:
    """create --include nginx from the cached default base (an incremental base: apt-get
    install into a copy) beside a cold create with the same packages (one bootstrap of them
    all), interleaved.  Both with nspawnctl's .deb cache warm (the first run of each fills
    it): the figure is the work, not the network.  For the cold runs the default base is
    moved aside (a rename) so that nothing is there to start from, and put back after."""
    ensure_base(host)
    base, cold_key, inc_key = image_key(), image_key(INCLUDE), incremental_image_key(INCLUDE)
    aside = f"{WORK}/aside-{base}"
    include = ",".join(INCLUDE)
    log(f"incremental create --include {include}: {runs} runs each of it and of a cold create "
        "with the same packages (tens of seconds each)")
    check(host, ["mkdir", "-p", WORK])
    check(host, ["nspawnctl", "create", "bench-inc-warmup", "--include", include],
          timeout=1200)  # fills the .deb cache with the package's debs
    check(host, ["nspawnctl", "remove", "bench-inc-warmup"])
    n = {"i": 0}

    def incremental():
        n["i"] += 1
        name = f"bench-inc{n['i']}"
        s = time_inside(host, [["nspawnctl", "create", name, "--include", include]],
                        before=[_rm(f"{IMAGES}/{inc_key}", f"{IMAGES}/{cold_key}"), ["sync"]],
                        timeout=1200)
        check(host, ["nspawnctl", "remove", name])
        check(host, _rm(f"{IMAGES}/{inc_key}"))
        return s

    def cold():
        n["i"] += 1
        name = f"bench-incold{n['i']}"
        check(host, ["mv", f"{IMAGES}/{base}", aside])
        try:
            s = time_inside(host, [["nspawnctl", "create", name, "--include", include]],
                            before=[_rm(f"{IMAGES}/{inc_key}", f"{IMAGES}/{cold_key}"),
                                    ["sync"]], timeout=1200)
            check(host, ["nspawnctl", "remove", name])
            check(host, _rm(f"{IMAGES}/{cold_key}"))
        finally:
            check(host, ["mv", aside, f"{IMAGES}/{base}"])
        return s

    t_inc, t_cold = medians([incremental, cold], runs)
    return [(f"create --include {include}, default base cached (aim: <= 0.4 of cold)", t_inc,
             t_cold, f"cold create --include {include} (one bootstrap)")]


def ensure_base(host):
    """A container of the default image (a cache hit once any create has run)."""
    if host.run(["test", "-d", f"/var/lib/machines/{BASE}"]).returncode != 0:
        check(host, ["nspawnctl", "create", BASE], timeout=1200)


STAGING = "/var/lib/machines/.nspawnctl-staging"  # where nspawnctl builds a new tree


def staged_copy(host, src: str, sync: bool) -> float:
    """The copy anchor: cp -a of src into a fresh directory in the parent nspawnctl stages its
    own copies in (see warm_create for why the place decides much), from a synced start with
    the page cache dropped; sync: then `sync -f`, as nspawnctl makes its copy durable before
    the rename that commits it."""
    d = f"{STAGING}/bench-cp"
    s = time_inside(host, [["mkdir", "-p", d], ["cp", "-a", "--reflink=auto", src, f"{d}/tree"],
                           *([["sync", "-f", d]] if sync else [])],
                    before=[_rm(d)], cold=True)
    check(host, _rm(d))
    return s


def warm_create(host, runs: int) -> list:
    """nspawnctl create from the cached base beside cp -a of that base tree, interleaved,
    each run from the same start: the page cache dropped, nothing in writeback (sync).

    The cp -a copies into a fresh directory in the same parent directory nspawnctl stages its
    copy in: where a new directory lands decides much here.  On ext4 a copy into a new
    directory beside a populated one (/var/lib/machines/copy) was seen taking 3-4 s with warm
    caches where the same copy one level down in a fresh directory took 0.3 s, run after run:
    ext4's placement of the new inodes (which block group, and whether their inode table
    blocks must be read first), not the copying.  The earlier bench copied to
    /var/tmp/nspawnctl-bench/copy and so measured that placement against nspawnctl's (the
    ratio 0.17 that could not be true), with warm caches for both."""
    ensure_base(host)
    key = image_key()
    log(f"warm create: {runs} runs each of nspawnctl create, cp -a (and + sync), machinectl clone "
        "(sync and dropped caches before each)")
    n = {"i": 0}

    def ours():
        n["i"] += 1
        s = time_inside(host, [["nspawnctl", "create", f"bench-warm{n['i']}"]], cold=True)
        check(host, ["nspawnctl", "remove", f"bench-warm{n['i']}"])
        return s

    def overlay():
        n["i"] += 1
        s = time_inside(host, [["nspawnctl", "create", "--overlay", f"bench-ovl{n['i']}"]],
                        cold=True)
        check(host, ["nspawnctl", "remove", f"bench-ovl{n['i']}"])
        return s

    def cp():
        return staged_copy(host, f"{IMAGES}/{key}/tree", sync=False)

    def cp_sync():
        return staged_copy(host, f"{IMAGES}/{key}/tree", sync=True)

    def clone():
        s = time_inside(host, [["machinectl", "clone", BASE, "bench-mclone"]], cold=True)
        check(host, ["machinectl", "remove", "bench-mclone"])
        return s

    check(host, ["mkdir", "-p", WORK, STAGING])
    t_ours, t_cp, t_cp_sync, t_clone = medians([ours, cp, cp_sync, clone], runs)
    figure = "warm create, base cached, cold page cache (aim: ratio <= 1.1)"
    rows = [(figure, t_ours, t_cp, "cp -a --reflink=auto of the base tree"),
            (figure, t_ours, t_cp_sync, "the same cp -a, then sync -f (durable, as ours)"),
            (figure, t_ours, t_clone, "machinectl clone")]
    if "--overlay" in host.run(["nspawnctl", "create", "--help"], env=ENV).stdout:
        guarded(rows, "warm create --overlay", "mount -t overlay",
                lambda: overlay_rows(host, key, runs, overlay, t_cp))
    else:
        rows.append(("warm create --overlay", "not implemented", t_cp,
                     "cp -a --reflink=auto of the base tree"))
    return rows


def overlay_rows(host, key: str, runs: int, overlay, t_cp) -> list:
    """--overlay beside doing it by hand: an overlayfs mount of the base with fresh layers."""
    d = f"{WORK}/ovl"
    opts = f"lowerdir={IMAGES}/{key}/tree,upperdir={d}/upper,workdir={d}/work"

    def by_hand():
        s = time_inside(host, [["sh", "-c", f"mkdir -p {d}/upper {d}/work {d}/merged && "
                                f"mount -t overlay overlay -o {opts} {d}/merged"]],
                        cold=True)
        check(host, ["umount", f"{d}/merged"])
        check(host, _rm(d))
        return s

    t_ours, t_hand = medians([overlay, by_hand], runs)
    figure = "warm create --overlay, cold page cache"
    return [(figure, t_ours, t_hand, "mkdir + mount -t overlay by hand"),
            (figure, t_ours, t_cp, "cp -a --reflink=auto of the base tree")]


def sizes(host, state: dict) -> list:
    ensure_base(host)
    ours = du_mb(host, f"/var/lib/machines/{BASE}")
    log("size: a plain debootstrap minbase tree (shares debootstrap's .deb cache)")
    cache = f"{WORK}/debootstrap-debs"
    check(host, ["mkdir", "-p", cache])
    check(host, debootstrap_argv(f"{WORK}/minbase", cache, include=False), timeout=1200)
    minbase = du_mb(host, f"{WORK}/minbase")
    check(host, _rm(f"{WORK}/minbase"))
    figure = "default image size (aim <= 150 MB)"
    rows = [(figure, ours, minbase, "debootstrap minbase (fewer packages)")]
    if "same-packages-size" in state:
        rows.append((figure, ours, state["same-packages-size"],
                     "debootstrap minbase + same packages"))
    return rows


def run(host, quick: bool = False) -> list:
    # copies are the noisiest figures (writeback of other work on the disk): more runs
    runs, cold_runs = 5, (1 if quick else 3)
    check(host, ["mkdir", "-p", WORK])
    rows: list = []
    state: dict = {}
    anchor = "debootstrap, same packages"
    guarded(rows, "cold create, empty .deb caches", anchor,
            lambda: cold_create(host, cold_runs, warm_debs=False, state=state))
    guarded(rows, "cold create, warm .deb caches", anchor,
            lambda: cold_create(host, cold_runs, warm_debs=True, state=state))
    guarded(rows, "incremental create", "cold create, same packages",
            lambda: incremental_create(host, cold_runs))
    guarded(rows, "warm create", "cp -a / machinectl clone", lambda: warm_create(host, runs))
    guarded(rows, "default image size", "debootstrap minbase", lambda: sizes(host, state))
    host.run(_rm(f"{WORK}/copy", f"{WORK}/debootstrap", f"{WORK}/mmdebstrap", f"{WORK}/minbase"))
    return rows
