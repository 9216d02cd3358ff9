"""Minibatch optimal-transport couplings between source and target batches, in torch."""

from fm_core.coupling.auction import auction_assignment
from fm_core.coupling.cost import squared_euclidean_cost
from fm_core.coupling.ot import Coupling, CouplingSample, ExactOTCoupling, SinkhornOTCoupling
from fm_core.coupling.sinkhorn import sinkhorn_plan

__all__ = [
    "Coupling",
    "CouplingSample",
    "ExactOTCoupling",
    "SinkhornOTCoupling",
    "auction_assignment",
    "sinkhorn_plan",
    "squared_euclidean_cost",
]
