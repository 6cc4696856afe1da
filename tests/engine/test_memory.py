"""Memory handed back to the OS: a loader's freed temporaries must not stay in the peak."""

from __future__ import annotations

import subprocess
import sys

import pytest

CHILD = r"""
import torch
from soprano_cli.engine.memory import temporaries_returned_at_once

def resident_mb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS")) / 1024

# A freed 24 MB block raises glibc's automatic threshold: 16 MB blocks then come from the heap,
# and a freed one stays resident.
first = torch.ones(6 * 1024 * 1024)
del first
{wrapper}
    before = resident_mb()
    block = torch.ones(4 * 1024 * 1024)
    block += 1  # touched: resident
    del block
    print(resident_mb() - before)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
@pytest.mark.parametrize("loading", [True, False])
def test_a_freed_temporary_goes_back_at_once_while_loading(loading):
    wrapper = "with temporaries_returned_at_once():" if loading else "if True:"
    child = subprocess.run([sys.executable, "-c", CHILD.format(wrapper=wrapper)], capture_output=True, text=True,
                           timeout=120, check=True)
    kept_mb = float(child.stdout.strip())
    if loading:
        assert kept_mb < 6
    else:  # glibc's default, which the loader works around (if this changes, so may the loader)
        assert kept_mb > 12
