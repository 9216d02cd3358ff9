"""Minibatch optimal-transport couplings between source and target batches, in torch."""

from fm_core.coupling.auction import auction_assignment
from fm_core.coupling.cost import squared_euclidean_cost
from fm_core.coupling.ot import Coupling, CouplingSample, ExactOTCoupling, SinkhornOTCoupling
from fm_core.coupling.reflow import ReflowCoupling, generate_reflow_pairs
from fm_core.coupling.sinkhorn import sinkhorn_plan

__all__ = [
    "Coupling",
    "CouplingSample",
    "ExactOTCoupling",
    "ReflowCoupling",
    "SinkhornOTCoupling",
    "auction_assignment",
    "generate_reflow_pairs",
    "sinkhorn_plan",
    "squared_euclidean_cost",
]
