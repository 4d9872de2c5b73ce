"""Scene entities: each maps camera-frame ray samples into its canonical space, where its fields live."""
from hold.nodes.background import BackgroundConfig, BackgroundNode
from hold.nodes.base import FieldNodeConfig, NodeOutput
from hold.nodes.hand import HandNode, HandNodeConfig
from hold.nodes.object import ObjectNode, ObjectNodeConfig

__all__ = ["BackgroundConfig", "BackgroundNode", "FieldNodeConfig", "NodeOutput", "HandNode", "HandNodeConfig",
           "ObjectNode", "ObjectNodeConfig"]
