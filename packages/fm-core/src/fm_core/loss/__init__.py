"""The continuous flow-matching loss (the reference ``flow_matching`` has none for continuous paths)."""

from fm_core.loss.flow_map import MeanFlowLoss
from fm_core.loss.flow_matching import FlowMatchingLoss, flow_matching_loss

__all__ = ["FlowMatchingLoss", "MeanFlowLoss", "flow_matching_loss"]
