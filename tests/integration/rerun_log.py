"""Records every test that needed a rerun (pytest-rerunfailures) so the
closing line of `make test` can say so: a rerun is a flaky test to fix, not
a pass to forget.  The file is named by $PORTICO_RERUN_LOG."""
import os


def pytest_runtest_logreport(report):
    path = os.environ.get("PORTICO_RERUN_LOG")
    if not path or report.outcome != "rerun":
        return
    first = str(report.longrepr).strip().splitlines()
    with open(path, "a") as f:
        f.write(f"{report.nodeid} [{report.when}]: {first[-1] if first else ''}\n")
