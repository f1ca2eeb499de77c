"""A host crash during a pull (issue 28), covered as create's is (test_crash.py): the testbed's
every process killed at once at a random moment of `nspawnctl pull` of an image with a 24 MB
layer, and the testbed boots again.  Before any nspawnctl command runs, the store must be
consistent (nspawnctl-recover.service swept at boot), no blob may hold other bytes than its
name says, and no image may be recorded without its blobs; then the pull is run again and
succeeds.

The registries and the outside world they live in are the testbed's (transient units, network
namespaces): the crash takes them too, so each trial brings them up again and pushes the image
anew.  2 crashes by default, 12 with --full.
"""

import json
import random

import pytest

from tests import outside, testbed
from tests.integration import registries as R
from tests.integration.test_crash import after_boot, crash_during
from tests.integration.test_kill import SEED, Tally, timed
from tests.integration.test_registry import all_blobs_whole, records
from tests.unit import imagebuild as ib

pytestmark = pytest.mark.integration

REF = f"{R.registry('tls')}/test/crash:1"


@pytest.fixture(scope="module")
def bed(host):
    if not isinstance(host, testbed.Testbed):
        pytest.skip("a host crash needs the testbed (this host would crash with it)")
    return host


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    work = tmp_path_factory.mktemp("crash-registry")
    payload = random.Random(11).randbytes(24 << 20)
    layers = [R.SCRATCH_BASE, ib.layer(ib.dir("data"), ib.file("data/blob", payload)),
              R.www(b"crash\n")]
    return work, R.layout(work, "crash", layers)


def world_and_registry(bed, image) -> R.Registries:
    """The outside world and the registries up (again, after a crash), the image pushed."""
    outside.OutsideWorld().up(bed)
    work, layout = image
    regs = R.Registries(bed, work).up()
    regs.push(layout, "1", "tls", "test/crash", "1")
    return regs


def image_records_whole(bed, nspawnctl) -> list[str]:
    """An image recorded must have every blob its manifest names in the store."""
    problems = []
    for ref, rec in records(nspawnctl).items():
        manifest = bed.run(["cat", f"/var/lib/nspawnctl/oci/blobs/sha256/"
                                   f"{rec['digest'].split(':')[1]}"])
        if manifest.returncode != 0:
            problems.append(f"{ref}: its manifest blob is missing")
            continue
        for desc in [json.loads(manifest.stdout)["config"], *json.loads(manifest.stdout)["layers"]]:
            if bed.run(["test", "-f", "/var/lib/nspawnctl/oci/blobs/sha256/"
                                      + desc["digest"].split(":")[1]]).returncode != 0:
                problems.append(f"{ref}: blob {desc['digest']} is missing")
    return problems


def test_a_host_crash_during_a_pull(bed, nspawnctl, image, full, figures):
    regs = world_and_registry(bed, image)
    argv = ["pull", REF]

    def cold():
        nspawnctl("images", "rm", REF, check=False)
    duration = timed(bed, argv, before=cold)
    rng = random.Random(f"{SEED}:crash:pull")
    tally = Tally(figures, "crash pull (24 MB layer)", duration, "the image was recorded")
    try:
        for trial in tally.attempts(12 if full else 2):
            cold()
            delay = rng.uniform(0, duration)
            where = crash_during(bed, argv, delay)
            problems = []
            if where == "crashed":
                problems += after_boot(bed, nspawnctl) + all_blobs_whole(bed)
                problems += image_records_whole(bed, nspawnctl)
                regs = world_and_registry(bed, image)
            recorded = REF in records(nspawnctl)
            rerun = nspawnctl("pull", REF, check=False)
            if rerun.returncode != 0:
                problems.append(f"the rerun failed: {rerun.stderr.strip()}")
            problems += all_blobs_whole(bed) + image_records_whole(bed, nspawnctl)
            tally.record(trial, delay, where, recorded, problems)
    finally:
        tally.report()
        nspawnctl("images", "rm", REF, check=False)
        regs.down()
        outside.OutsideWorld().down(bed)
    assert tally.problems == []
