"""``mlcp demo``: the whole lifecycle on the embedded default, narrated.

`setup` defines and materializes features, builds training sets, registers a baseline and a
weak model and promotes them through the gates; `scenes` starts two replicas, the rollback
controller and traffic, and plays a canary walk, a latency rollback and a drift rollback.
"""

from controlplane.demo.scenes import Lifecycle, Scene, run_lifecycle
from controlplane.demo.setup import (
    DEMO_POLICY,
    FEATURES,
    LABEL,
    DemoResult,
    demo_policy,
    make_churn_data,
    run_demo,
    train,
)

__all__ = [
    "DEMO_POLICY",
    "FEATURES",
    "LABEL",
    "DemoResult",
    "Lifecycle",
    "Scene",
    "demo_policy",
    "make_churn_data",
    "run_demo",
    "run_lifecycle",
    "train",
]
