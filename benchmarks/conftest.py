import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("T2IBENCH_OFFLINE", "1")
