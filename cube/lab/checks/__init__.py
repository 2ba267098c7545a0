"""Checkers for the build-it exercises, one module per chapter.

Each ``check_*`` function runs the learner's piece against the live system (a
LocalCluster, a worker or manager in this kernel, or the simulator), under a nemesis
where the chapter is about failure, and returns a :class:`~cube.lab.verdict.Verdict`
with what went wrong, a hint and a timeline picture.
"""

from cube.lab.checks.ch00_index import check_own_task
from cube.lab.checks.ch01_pieces import check_find_worker
from cube.lab.checks.ch02_transitions import check_transitions
from cube.lab.checks.ch03_runtime import check_status_of
from cube.lab.checks.ch04_worker import check_next_step
from cube.lab.checks.ch05_worker_api import check_stop_handler
from cube.lab.checks.ch06_metrics import check_cpu_busy
from cube.lab.checks.ch07_manager import check_take_turns
from cube.lab.checks.ch08_manager_api import check_logs_handler
from cube.lab.checks.ch09_failures import check_backoff
from cube.lab.checks.ch10_schedulers import check_packer
from cube.lab.checks.ch11_persistence import check_folder_store
from cube.lab.checks.ch12_cli import check_wait_command
from cube.lab.checks.ch13_controller import check_controller
from cube.lab.checks.ch14_managers import check_who_leads

__all__ = [
    "check_backoff",
    "check_controller",
    "check_cpu_busy",
    "check_find_worker",
    "check_folder_store",
    "check_logs_handler",
    "check_next_step",
    "check_own_task",
    "check_packer",
    "check_status_of",
    "check_stop_handler",
    "check_take_turns",
    "check_transitions",
    "check_wait_command",
    "check_who_leads",
]
