"""How `make test` shares the suite between its two worker processes (pytest-xdist).

``pytest -n 2 --dist loadgroup`` with this plugin (registered by ``conftest.py`` when xdist is
installed): a worker sends the other worker's tests away only as whole groups, and each worker takes
the next group when it runs dry, the longest first.

- **Groups.** Every test that uses a costly session fixture (``SHARED_FIXTURES``: the session's
  NUTS fit, the trained checkpoints) runs on one worker, so the fixture is built once per run, not
  once per worker; every test that uses a module-scoped fixture runs on its module's worker (a
  module's fits, e.g. the comparison of ``test_compare.py`` or the seeded fits of ``test_fit.py``).
  Any other test is a group of its own.
- **Order.** The notebooks and the slow tier first, then the other real fits, then the rest; a
  group goes where its longest test would, larger groups before smaller ones and single tests. Order
  and groups are a pure function of the collection, the same on every worker, as xdist requires.

The groups are worked out where the fixtures are known, in the workers (each writes them to a
folder the controller named), and read by the controller's scheduler. xdist's own ``xdist_group``
marks are not used: pytest 9.2 ignores the node id suffix they rely on.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

#: Session fixtures that cost a real fit or a trained checkpoint, and the group of their users (the
#: first one a test uses gives its group).
SHARED_FIXTURES = {"ci_fit": "ci-fit", "trained_dir": "checkpoints", "neox_dir": "checkpoints"}
#: Key of ``workerinput`` naming the folder where the workers write their groups.
KEY = "bayesqid_groups"


def group_of(item: pytest.Item) -> str | None:
    """The group of a test (None: a group of its own)."""
    names = item.fixturenames
    for fixture, group in SHARED_FIXTURES.items():
        if fixture in names:
            return group
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs if info is not None else {}
    if any(d and d[-1].scope == "module" for d in defs.values()):
        return item.nodeid.split("::", 1)[0]
    return None


def weight(item: pytest.Item) -> int:
    """0 for the longest tests (the notebooks, the slow tier), 1 for other real fits, 2 for the rest."""
    if "slow" in item.keywords or item.nodeid.startswith("tests/test_notebooks.py::test_notebook_executes"):
        return 0
    return 1 if "nuts" in item.keywords else 2


def arrange(items: list[pytest.Item]) -> dict[str, str]:
    """Sort ``items`` longest first (in place) and return the group of each grouped test.

    By weight class, then, within a class, larger groups first and single tests last, so that the
    run ends on short single tests that even out the two workers.
    """
    groups = {item.nodeid: g for item in items if (g := group_of(item)) is not None}
    heaviest: dict[str, int] = {}
    size: dict[str, int] = {}
    for item in items:
        if item.nodeid in groups:
            g = groups[item.nodeid]
            heaviest[g] = min(heaviest.get(g, 2), weight(item))
            size[g] = size.get(g, 0) + 1
    position = {id(item): i for i, item in enumerate(items)}

    def key(item: pytest.Item) -> tuple[int, int, int]:
        g = groups.get(item.nodeid)
        if g is None:
            return (weight(item), -1, position[id(item)])
        return (heaviest[g], -size[g], position[id(item)])

    items.sort(key=key)
    return groups


class WorkerGroups:
    """The plugin: a folder for the groups (controller), the groups (workers), the scheduler."""

    def __init__(self, config: pytest.Config) -> None:
        self.folder: Path | None = None
        self.input = getattr(config, "workerinput", None)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node) -> None:
        if self.folder is None:
            self.folder = Path(tempfile.mkdtemp(prefix="bayesqid-groups-"))
        node.workerinput[KEY] = str(self.folder)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        if not self.input or KEY not in self.input:
            return
        groups = arrange(items)
        target = Path(self.input[KEY]) / f"{self.input['workerid']}.json"
        part = target.with_suffix(".part")
        part.write_text(json.dumps(groups), encoding="utf-8")
        os.replace(part, target)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log):
        if config.getvalue("dist") != "loadgroup" or self.folder is None:
            return None
        return _scheduler(config, log, self.folder)

    def pytest_unconfigure(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)


def _scheduler(config: pytest.Config, log, folder: Path):
    from xdist.scheduler import LoadGroupScheduling

    class GroupScheduling(LoadGroupScheduling):
        """loadgroup with the workers' groups, in the workers' order (not by group size)."""

        def __init__(self, config: pytest.Config, log) -> None:
            super().__init__(config, log)
            config.option.loadscopereorder = False  # the collection is already longest first
            self.groups: dict[str, str] | None = None

        def _split_scope(self, nodeid: str) -> str:
            if self.groups is None:  # every worker has collected (and written) by now
                self.groups = {}
                for path in sorted(folder.glob("*.json")):
                    self.groups.update(json.loads(path.read_text(encoding="utf-8")))
            return self.groups.get(nodeid) or super()._split_scope(nodeid)

    return GroupScheduling(config, log)
