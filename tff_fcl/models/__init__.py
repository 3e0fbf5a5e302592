"""Keras encoders and the embedding network of federated contrastive learning."""
from tff_fcl.models.embedding import EmbeddingNetwork
from tff_fcl.models.embedding import build_embedding_network
from tff_fcl.models.encoders import ENCODERS
from tff_fcl.models.encoders import build_encoder
