import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("T2IBENCH_OFFLINE", "1")

from importlib.metadata import entry_points

if not entry_points(group="pytest11", name="t2ibench"):  # installed before t2ibench had its pytest11 entry point
    pytest_plugins = ["t2ibench.pytest_plugin"]
